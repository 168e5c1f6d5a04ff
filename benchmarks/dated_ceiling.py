"""The pure-SQL ceiling of a kill-date rule set (issue 14): the same rules, no tool around them.

Two formulations, both exact (the suite checks them against the independent
reference, sql/reference_<rules>.sql), both over keyset chunks of 500 IDs from
`procs` processes, each with the connection's cache of resolved (type, price
date) pairs (sql/dated_cents_table.sql):

- `chunked`: per chunk, one statement resolves the pairs the chunk lacks
  (sql/resolve_dated_<rules>.sql), one set-based UPDATE values and writes it
  (the sql engine's statement): the engine's work, without Python between;
- `materialized`: each process first resolves every pair of all its chunks in
  one statement (a daily price table built up front, the other way the issue
  names), then runs one UPDATE per chunk joining it by equality.

As a command, so the suite times it like every other figure (start-up included):
    python -m benchmarks.dated_ceiling URL --rules zkillboard --formulation chunked --procs 2
prints the number of rows written.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from benchmarks.processes import timed
from bulk.engine import dated, rules, sqlfiles

FORMULATIONS = ("chunked", "materialized")


def _worker(url: str, rules_name: str, formulation: str, chunks: list[list[int]], results) -> None:
    resolve = sqlfiles.resolve_dated_sql(rules_name)
    update = sqlfiles.value_batch_dated_sql("null", rules_name, None, "int8")
    with psycopg.connect(url, autocommit=True) as conn:
        # The engine's own cache tables, and JIT off as the engine has it.
        dated.ensure_cache(conn)
        if formulation == "materialized":
            every = [i for chunk in chunks for i in chunk]
            conn.execute(resolve, {"ids": every}, prepare=False)
            conn.execute("ANALYZE pg_temp.bulk_dated_cents")
        written = 0
        for ids in chunks:
            if formulation == "chunked":
                conn.execute(resolve, {"ids": ids}, prepare=False)
            written += conn.execute(update, {"ids": ids}, prepare=False).fetchone()[0]
    results.put(written)


def run_dated_ceiling(
    url: str, ids: list[int], rules_name: str, formulation: str, procs: int, chunk: int
) -> tuple[float, int]:
    """(seconds, rows written) of one formulation over every killmail, mode null."""
    rules.dated(rules_name)
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown formulation {formulation!r}")
    # The IDs themselves, not (lo, hi] ranges: the resolve statement takes an array.
    chunks = [ids[start : start + chunk] for start in range(0, len(ids), chunk)]
    # Interleaved, so the processes walk the table together as run's batches do.
    work = [(url, rules_name, formulation, chunks[n::procs]) for n in range(procs)]
    return timed(_worker, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dated_ceiling")
    parser.add_argument("url")
    parser.add_argument("--rules", required=True, choices=sorted(rules.DATED))
    parser.add_argument("--formulation", choices=FORMULATIONS, default="chunked")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args(argv)
    with psycopg.connect(args.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
    _, written = run_dated_ceiling(
        args.url, ids, args.rules, args.formulation, args.procs, args.chunk
    )
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
