"""Timing work split over spawned processes, each reporting a count back."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable


def timed(target: Callable, per_process_args: list[tuple]) -> tuple[float, int]:
    """(seconds, sum of counts): target(*args, results) runs in one process per args."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=target, args=(*args, results)) for args in per_process_args]
    started = time.monotonic()
    for w in workers:
        w.start()
    total = sum(results.get() for _ in workers)
    elapsed = time.monotonic() - started
    for w in workers:
        w.join()
    return elapsed, total
