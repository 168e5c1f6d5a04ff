"""Progress of a long job: a tqdm bar on a terminal, else a plain stats line every few seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

# Longest a finished batch waits to appear on the bar, given a tick() at least
# this often. tqdm left to itself adapts miniters and may wait up to its
# maxinterval (10 s) before it shows the last reports of a job.
_REFRESH = 0.2


class Progress:
    """Counts killmails done and shows them; the caller adds, this only displays."""

    def __init__(
        self,
        total: int | None,
        *,
        desc: str = "backfill",
        noun: str = "killmails",
        unit: str = "killmail",
        counts: tuple[str, ...] = ("updated", "skipped", "failed"),
        stream: TextIO | None = None,
        interval: float = 5.0,
        enabled: bool = True,
    ):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.counts = dict.fromkeys(counts, 0)
        self.started = time.monotonic()
        self._interval = interval
        self._last_line = self.started
        self._printed = -1
        self._desc = desc
        self._noun = noun
        self._enabled = enabled
        self._bar = None
        self._dirty = False  # the bar shows less than is known
        if enabled and self.stream.isatty():
            # Only a terminal shows a bar: a job's output to a file or pipe does
            # without tqdm's import.
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                # tqdm glues the unit to a scaled rate ("12.3k"): a space keeps
                # "12.3k killmail/s" from reading "12.3kkm/s".
                unit=f" {unit}",
                unit_scale=True,
                file=self.stream,
                smoothing=0.1,
                miniters=1,
                mininterval=_REFRESH,
            )

    def add(self, done: int, **counts: int) -> None:
        self.done += done
        if self.total is not None and self.done > self.total:
            self.set_total(self.done)
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        if self._bar is not None:
            # Strings: tqdm would shorten a number such as 20000 to "2e+4".
            postfix = {k: str(v) for k, v in self._postfix().items()}
            self._bar.set_postfix(postfix, refresh=False)
            self._dirty = True
            if self._bar.update(done):
                self._dirty = False  # tqdm displayed it, postfix included
        self.tick()

    def tick(self) -> None:
        """Bring the display up to date if it is due (call it at least every _REFRESH s)."""
        if self._bar is not None:
            if self._dirty and self._bar._time() - self._bar.last_print_t >= _REFRESH:
                self._refresh()
            return
        if not self._enabled or self._printed == self.done:
            return
        if time.monotonic() - self._last_line >= self._interval:
            self._print_line()

    def set_total(self, total: int) -> None:
        """The total grows as more work is found (a queue still being filled)."""
        self.total = total
        if self._bar is not None and self._bar.total != total:
            self._bar.total = total
            self._refresh()

    def _refresh(self) -> None:
        self._bar.refresh()
        self._bar.last_print_n = self._bar.n
        self._bar.last_print_t = self._bar._time()
        self._dirty = False

    def _postfix(self) -> dict:
        if self._noun == "killmails" or "updated" not in self.counts:
            return self.counts
        # Progress counted in batches: killmails per second is the figure that matters.
        elapsed = time.monotonic() - self.started
        rate = self.counts["killmails"] / elapsed if elapsed > 0 else 0.0
        return {
            "killmails": self.counts["killmails"],
            "km/s": f"{rate:.0f}",
            **{k: v for k, v in self.counts.items() if k != "killmails"},
        }

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _print_line(self) -> None:
        self._last_line = time.monotonic()
        self._printed = self.done
        total = "?" if self.total is None else str(self.total)
        counts = " ".join(f"{k}={v}" for k, v in self._postfix().items())
        tail = f", {counts}" if counts else ""
        print(
            f"{self._desc}: {self.done}/{total} {self._noun}, {self.rate():.0f}/s{tail}",
            file=self.stream,
            flush=True,
        )

    def note(self, text: str) -> None:
        """A line beside the bar: what a long step after the counting is doing."""
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.write(f"{self._desc}: {text}", file=self.stream)
        else:
            print(f"{self._desc}: {text}", file=self.stream, flush=True)

    def close(self, *, failed: bool = False) -> None:
        """Show the final counts; after a failure the plain line is left out, so the
        error is the only line a bad input prints."""
        if self._bar is not None:
            self._refresh()  # the final counts, whatever the time since the last display
            self._bar.close()
        elif self._enabled and self._printed != self.done and not failed:
            self._print_line()
