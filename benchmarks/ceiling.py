"""The pure-SQL ceiling: the same rules as one set-based UPDATE (benchmarks/sql/ceiling_update.sql).

Measured over the whole table in one statement (PostgreSQL runs an UPDATE on
one core), and in keyset chunks of 500 IDs from 1 and from 2 processes, which
on 2 cores is the fastest pure-SQL figure.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from benchmarks.processes import timed

_SQL = (Path(__file__).parent / "sql" / "ceiling_update.sql").read_text()
UPDATE = "\n".join(line for line in _SQL.splitlines() if not line.lstrip().startswith("--"))


def chunk_bounds(ids: list[int], size: int) -> list[tuple[int, int]]:
    """(lo, hi] ranges of `size` consecutive IDs each, covering every ID."""
    bounds = []
    previous = ids[0] - 1
    for start in range(0, len(ids), size):
        last = ids[min(start + size, len(ids)) - 1]
        bounds.append((previous, last))
        previous = last
    return bounds


def _chunks_worker(url: str, bounds: list[tuple[int, int]], results) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        written = 0
        for lo, hi in bounds:
            written += conn.execute(UPDATE, {"lo": lo, "hi": hi}, prepare=False).rowcount
    results.put(written)


def run_ceiling(url: str, ids: list[int], procs: int, chunk: int | None) -> tuple[float, int]:
    """(seconds, rows written): one statement (chunk None) or chunks from `procs` processes."""
    if chunk is None:
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            written = conn.execute(UPDATE, {"lo": ids[0] - 1, "hi": ids[-1]}).rowcount
        return time.monotonic() - started, written
    bounds = chunk_bounds(ids, chunk)
    # Interleaved, so the processes walk the table together as run's batches do.
    return timed(_chunks_worker, [(url, bounds[n::procs]) for n in range(procs)])
