"""The pure-SQL ceiling: the same rules as set-based UPDATEs, in several formulations.

Each formulation is an UPDATE over a keyset range (lo, hi] of killmail IDs
(benchmarks/sql/ceiling_<name>.sql), optionally after a setup statement run
once per connection (ceiling_<name>_prices.sql). Measured over the whole
table in one statement (PostgreSQL runs an UPDATE on one core), and in keyset
chunks of 500 IDs from 1 and from 2 processes, which on 2 cores is the
fastest pure-SQL figure. The suite's ceiling is the fastest formulation.

As a command, so the suite times it like every other figure (start-up included):
    python -m benchmarks.ceiling URL --formulation temp --procs 2 --chunk 500
prints the number of rows written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from benchmarks.processes import timed

_DIR = Path(__file__).parent / "sql"

# Slowest first; "temp" is the fastest exact formulation found (issue 15).
FORMULATIONS = ("numeric", "int8", "temp")


def _statement(name: str) -> str | None:
    path = _DIR / f"{name}.sql"
    if not path.exists():
        return None
    text = path.read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def statements(formulation: str) -> tuple[str | None, str]:
    """(setup or None, update) of a formulation."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown formulation {formulation!r}")
    update = _statement(f"ceiling_{formulation}")
    assert update is not None
    return _statement(f"ceiling_{formulation}_prices"), update


def chunk_bounds(ids: list[int], size: int) -> list[tuple[int, int]]:
    """(lo, hi] ranges of `size` consecutive IDs each, covering every ID."""
    bounds = []
    previous = ids[0] - 1
    for start in range(0, len(ids), size):
        last = ids[min(start + size, len(ids)) - 1]
        bounds.append((previous, last))
        previous = last
    return bounds


def _chunks_worker(url: str, formulation: str, bounds: list[tuple[int, int]], results) -> None:
    setup, update = statements(formulation)
    with psycopg.connect(url, autocommit=True) as conn:
        if setup:
            conn.execute(setup, prepare=False)
        written = 0
        for lo, hi in bounds:
            written += conn.execute(update, {"lo": lo, "hi": hi}, prepare=False).rowcount
    results.put(written)


def run_ceiling(
    url: str, ids: list[int], procs: int, chunk: int | None, formulation: str = "temp"
) -> tuple[float, int]:
    """(seconds, rows written): one statement (chunk None) or chunks from `procs` processes."""
    if chunk is None:
        return timed(_chunks_worker, [(url, formulation, [(ids[0] - 1, ids[-1])])])
    bounds = chunk_bounds(ids, chunk)
    # Interleaved, so the processes walk the table together as run's batches do.
    return timed(_chunks_worker, [(url, formulation, bounds[n::procs]) for n in range(procs)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling")
    parser.add_argument("url")
    parser.add_argument("--formulation", choices=FORMULATIONS, default="temp")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500, help="0: one statement")
    args = parser.parse_args(argv)
    with psycopg.connect(args.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
    _, written = run_ceiling(args.url, ids, args.procs, args.chunk or None, args.formulation)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
