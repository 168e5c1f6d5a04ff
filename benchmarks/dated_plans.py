"""Timings and plans of the kill-date pricing statements on one batch (issue 14).

    .venv/bin/python -m benchmarks.dated_plans --killmails 50000 [--keep]

Builds (or with --keep reuses) a demo database `bulk_backfill_dated_<N>` with
`years` of synthetic daily history for every type, ending at the newest kill
(an average that wanders around each type's price, a few days without trades),
then, for batches of 500 killmails inside the history, prints the wall time
of seed's load and, per dated rule set, of resolve on a cold cache, of the
load, and of resolve for the next batch (a partly warm cache), each the best of
a few runs, and the EXPLAIN ANALYZE of the cold resolve and of the load.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import server_url
from bulk.engine import dated, sqlfiles

SERVER = server_url()

HISTORY = """
INSERT INTO market_price_history (region_id, type_id, date, average, highest, lowest, volume)
SELECT 10000002, t.id, d::date,
       CASE WHEN random() < 0.02 THEN 0
            ELSE round((base.price * (0.85 + 0.3 * random()))::numeric, 2)::float8 END,
       NULL, NULL, (random() * 1000)::bigint
FROM types AS t
CROSS JOIN LATERAL (
    SELECT coalesce(nullif((SELECT sell FROM market_prices WHERE type_id = t.id), 0), 1000.0)
           AS price
) AS base
CROSS JOIN generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS d
"""


def build(url: str, killmails: int, years: int) -> None:
    from bulk import db
    from bulk.demo.load import load_demo_data

    with psycopg.connect(url, autocommit=True) as conn:
        db.init_db(conn)
        load_demo_data(conn, killmails, 1, progress=False)
        conn.execute(sqlfiles.load("history_schema"))
        (last,) = conn.execute("SELECT max(killmail_time)::date FROM killmails").fetchone()
        first = last.replace(year=last.year - years)
        t = time.perf_counter()
        conn.execute(HISTORY, {"first": first, "last": last})
        rows = conn.execute("SELECT count(*) FROM market_price_history").fetchone()[0]
        print(f"history: {rows:,} rows, {first} to {last}, {time.perf_counter() - t:.1f} s")
        conn.execute("VACUUM ANALYZE")


def best(conn, statement: str, ids: list[int], runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        cur = conn.execute(statement, {"ids": ids}, prepare=False)
        if cur.description:
            cur.fetchall()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def explain(conn, statement: str, ids: list[int]) -> list[str]:
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + statement, {"ids": ids}, prepare=False
    )
    return [r[0] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killmails", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="reuse the database if it exists")
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    args = parser.parse_args()
    name = f"bulk_backfill_dated_{args.killmails}"
    url = make_conninfo(SERVER, dbname=name)
    with psycopg.connect(SERVER, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not args.keep:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not exists or not args.keep:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            build(url, args.killmails, args.years)
    with psycopg.connect(url, autocommit=True) as conn:
        (first,) = conn.execute("SELECT min(date) + 40 FROM market_price_history").fetchone()
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM killmails WHERE killmail_time >= %s"
                " ORDER BY killmail_id LIMIT 1000",
                [first],
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
            f" {lines[2]:%Y-%m-%d} to {lines[3]:%Y-%m-%d}"
        )
        conn.execute("SET jit = off")
        dated.ensure_cache(conn)
        seed = sqlfiles.load_batch_sql("all", "sell")
        print(f"seed load                  {best(conn, seed, batch, args.runs):8.1f} ms")

        def truncate():
            dated.clear(conn)

        for rules in ("evekill", "zkillboard"):
            resolve = sqlfiles.resolve_dated_sql(rules)
            load = sqlfiles.load_batch_dated_sql("all", rules)
            cold = best(conn, resolve, batch, args.runs, before=truncate)
            truncate()
            pairs = conn.execute(resolve, {"ids": batch}, prepare=False).rowcount
            loaded = best(conn, load, batch, args.runs)
            warm = best(conn, resolve, batch, args.runs)
            nxt = conn.execute(resolve, {"ids": following}, prepare=False).rowcount
            truncate()
            conn.execute(resolve, {"ids": batch}, prepare=False)
            t = time.perf_counter()
            conn.execute(resolve, {"ids": following}, prepare=False)
            next_ms = (time.perf_counter() - t) * 1000
            print(f"{rules:10} resolve cold {cold:8.1f} ms  ({pairs:,} pairs)")
            print(f"{rules:10} load         {loaded:8.1f} ms")
            print(f"{rules:10} resolve warm {warm:8.1f} ms  (every pair cached)")
            print(f"{rules:10} resolve next {next_ms:8.1f} ms  (the next batch: {nxt:,} new pairs)")
            truncate()
            for what, statement in (("resolve cold", resolve), ("load", load)):
                plan = explain(conn, statement, batch)
                shown = plan if args.plans else [p for p in plan if "Execution Time" in p]
                print(f"  EXPLAIN ANALYZE {rules} {what}: " + "\n    ".join(shown))


if __name__ == "__main__":
    main()
