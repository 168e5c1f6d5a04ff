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
        stream: TextIO | None = None,
        interval: float = 5.0,
        enabled: bool = True,
    ):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.counts = {"updated": 0, "skipped": 0, "failed": 0}
        self.started = time.monotonic()
        self._interval = interval
        self._last_line = self.started
        self._printed = -1
        self._desc = desc
        self._enabled = enabled
        self._bar = None
        if enabled and self.stream.isatty():
            self._bar = tqdm(
                total=total, desc=desc, unit="km", unit_scale=True, file=self.stream, smoothing=0.1
            )

    def add(self, done: int, **counts: int) -> None:
        self.done += done
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        if self._bar is not None:
            self._bar.set_postfix(self.counts, refresh=False)
            self._bar.update(done)
        elif self._enabled and time.monotonic() - self._last_line >= self._interval:
            self._print_line()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _print_line(self) -> None:
        self._last_line = time.monotonic()
        self._printed = self.done
        total = "?" if self.total is None else str(self.total)
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        print(
            f"{self._desc}: {self.done}/{total} killmails, {self.rate():.0f}/s, {counts}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._printed != self.done:
            self._print_line()
