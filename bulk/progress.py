"""Progress of a long job: a tqdm bar on a terminal, else a plain stats line every few seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Counts killmails done and shows them; the caller adds, this only displays."""

    def __init__(
        self,
        total: int | None,
        *,
        desc: str = "backfill",
        noun: str = "killmails",
        unit: str = "km",
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
        if enabled and self.stream.isatty():
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=True, file=self.stream, smoothing=0.1
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
            self._bar.update(done)
        else:
            self.tick()

    def tick(self) -> None:
        """Print the plain stats line if it is due and something changed."""
        if self._bar is not None or not self._enabled or self._printed == self.done:
            return
        if time.monotonic() - self._last_line >= self._interval:
            self._print_line()

    def set_total(self, total: int) -> None:
        """The total grows as more work is found (a queue still being filled)."""
        self.total = total
        if self._bar is not None and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()

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
        print(
            f"{self._desc}: {self.done}/{total} {self._noun}, {self.rate():.0f}/s, {counts}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._printed != self.done:
            self._print_line()
