"""Peak resident memory of this process's children, read from /proc while they run."""

from __future__ import annotations

import multiprocessing as mp
import threading


def _peak_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class ChildPeakRSS:
    """Samples VmHWM (the kernel's own high-water mark) of every live child process."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildPeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for child in mp.active_children():
                kb = _peak_kb(child.pid)
                if kb is not None:
                    self.peaks[child.pid] = max(kb, self.peaks.get(child.pid, 0))

    @property
    def max_mb(self) -> float | None:
        return max(self.peaks.values()) / 1024 if self.peaks else None
