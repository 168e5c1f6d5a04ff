"""Timing a whole command as a user runs it: wall clock from start to exit, and the
peak resident memory of each of its processes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass
class CommandRun:
    seconds: float
    stdout: str
    stderr: str
    # The kernel's high-water mark (VmHWM) of every process the command started,
    # the command itself included, by pid, in MB.
    peak_rss_mb: dict[int, float]
    root_pid: int

    @property
    def worker_peak_mb(self) -> float | None:
        """The largest peak among the command's child processes (its workers)."""
        children = [mb for pid, mb in self.peak_rss_mb.items() if pid != self.root_pid]
        return max(children) if children else None


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return found


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _peak_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def run_command(argv: list[str], env: dict[str, str] | None = None) -> CommandRun:
    """Run argv to completion; raise CalledProcessError (with its output) on a non-zero exit."""
    peaks: dict[int, int] = {}
    stop = threading.Event()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def sample() -> None:
        while not stop.wait(0.05):
            for pid in _descendants(proc.pid):
                kb = _peak_kb(pid)
                if kb is not None and not _is_multiprocessing_tracker(pid):
                    peaks[pid] = max(kb, peaks.get(pid, 0))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, out, err)
    return CommandRun(seconds, out, err, {pid: kb / 1024 for pid, kb in peaks.items()}, proc.pid)


def _is_multiprocessing_tracker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"resource_tracker" in f.read()
    except OSError:
        return True
