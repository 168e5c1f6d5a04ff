"""Timings and plans of the price book's statements on one batch (issues 14 and 26).

    .venv/bin/python -m benchmarks.book_plans --killmails 300000 --days 60 [--plans]
    .venv/bin/python -m benchmarks.book_plans --database-url URL

On a generated database (the one benchmarks/book.py builds and reuses:
bulk_backfill_bench_<N>_d<D>, or --database-url), for batches of 500 killmails
from the middle of the table, prints the wall time of, per rule set: the
batch's build on an empty book (sql/book_build_<rules>.sql for the batch's
pairs, bulk.engine.statements.book_build_sql(rules, "sell", "batch")), the same
build again (every pair present: what a batch pays to find nothing missing),
the build of the next batch (its pairs partly there), the load of the numpy
engine (sql/load_book.sql) and the sql engine's statement (sql/value_book.sql,
run in a transaction rolled back), each the best of --runs; then the EXPLAIN
ANALYZE times (or with --plans the whole plans) of the cold build and of the
load. The rule set's book rows are deleted before and after: run it when no
job uses the database.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from benchmarks import server_url
from benchmarks.book import database_for, empty_book
from bulk.engine import statements
from bulk.engine.rules import RULES


def best(conn, statement: str, ids: list[int], runs: int, before=None, rollback=False) -> float:
    """The best wall time in ms of `runs` executions (each after `before`)."""
    times = []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        if rollback:
            with conn.transaction(force_rollback=True):
                conn.execute(statement, {"ids": ids}, prepare=False).fetchall()
        else:
            cur = conn.execute(statement, {"ids": ids}, prepare=False)
            if cur.description:
                cur.fetchall()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def explain(conn, statement: str, ids: list[int]) -> list[str]:
    with conn.transaction(force_rollback=True):
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + statement, {"ids": ids}, prepare=False
        ).fetchall()
    return [r[0] for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.book_plans", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--database-url", help="measure this database instead")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    args = parser.parse_args(argv)
    url = args.database_url or database_for(server_url(), args.killmails, args.days, print)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone TO 'UTC'")
        # As the engine's builds run (bulk/engine/book.py).
        conn.execute("SET jit = off")
        (n,) = conn.execute("SELECT count(*) FROM killmails").fetchone()
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM killmails ORDER BY killmail_id OFFSET %s LIMIT 1000",
                [n // 2],
            )
        ]
        batch, following = ids[:500], ids[500:]
        lines = conn.execute(
            "SELECT count(*), count(DISTINCT (i.item_type_id, k.killmail_time::date)),"
            " min(k.killmail_time), max(k.killmail_time)"
            " FROM killmails k JOIN killmail_items i USING (killmail_id)"
            " WHERE k.killmail_id = ANY(%s)",
            [batch],
        ).fetchone()
        print(
            f"batch: 500 killmails, {lines[0]:,} item lines, {lines[1]:,} (type, day) pairs,"
            f" {lines[2]:%Y-%m-%d %H:%M} to {lines[3]:%Y-%m-%d %H:%M}"
        )
        for rules in RULES:
            build = statements.book_build_sql(rules, "sell", "batch")
            load = statements.load_book_sql("all", rules, "sell")
            value = statements.value_book_sql("all", rules, "sell", None, "int8")

            def empty(rules=rules):
                empty_book(url, rules)

            cold = best(conn, build, batch, args.runs, before=empty)
            empty()
            pairs = conn.execute(build, {"ids": batch}, prepare=False).rowcount
            warm = best(conn, build, batch, args.runs)
            loaded = best(conn, load, batch, args.runs)
            valued = best(conn, value, batch, args.runs, rollback=True)
            t = time.perf_counter()
            nxt = conn.execute(build, {"ids": following}, prepare=False).rowcount
            next_ms = (time.perf_counter() - t) * 1000
            print(f"{rules:10} build cold   {cold:8.1f} ms  ({pairs:,} book rows)")
            print(f"{rules:10} build warm   {warm:8.1f} ms  (every pair there)")
            print(f"{rules:10} build next   {next_ms:8.1f} ms  (the next batch: {nxt:,} new rows)")
            print(f"{rules:10} load         {loaded:8.1f} ms  (sql/load_book.sql)")
            print(f"{rules:10} value        {valued:8.1f} ms  (sql/value_book.sql, rolled back)")
            empty()
            for what, statement in (("build cold", build), ("load", load)):
                if what == "load":
                    conn.execute(build, {"ids": batch}, prepare=False)
                plan = explain(conn, statement, batch)
                shown = plan if args.plans else [p for p in plan if "Execution Time" in p]
                print(f"  EXPLAIN ANALYZE {rules} {what}: " + "\n    ".join(shown))
            empty()


if __name__ == "__main__":
    main()
