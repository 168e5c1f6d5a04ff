"""What the readers of a stamp keyed by the killmail row's `xmin` would pay: the other
half of benchmarks.stamp_statement's `per-transaction` prototype.

    python -m benchmarks.stamp_readers --killmails 300000 --rounds 5

On the database of benchmarks.stamps (every killmail valued and stamped), the
stamps of `bulk_valuations` are regrouped, read-only for the killboard, into a
prototype table of one row per writing transaction (the killmails' `xmin`, the
book, the version, the written IDs as an array), as the per-transaction write
would have left them. Then two reads, each as the stamps are today and as the
prototype would need them, alternately, `--rounds` times, medians:

- `unstamped`: the killmails without a stamp of the book (the search's second
  half, sql/stale_part_unstamped.sql, in its simplest form).
- `held`: the stamps' versions of the killmails that hold one of the types
  benchmarks.stamps moves (10% of the killmails): the search's by-type route.

A prototype's stamp is found by the killmail's ID and its row's `xmin` both: the
`xmin` alone could name a transaction that wrote other killmails once the 32-bit
transaction IDs come round again. The prototype table is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import psycopg

from benchmarks.stamps import RESULTS, SERVER, pick_types, stamps_database

_PROTOTYPE = "bench_transaction_stamps"

_BUILD = f"""
CREATE TABLE {_PROTOTYPE} AS
SELECT g.xid::text::xid AS xid, g.book, g.version, g.valued_at, g.ids
FROM (
    -- xid can be hashed but not sorted, and an ordered array_agg groups by sorting
    SELECT k.xmin::text::int8 AS xid, s.book, s.version, max(s.valued_at) AS valued_at,
           array_agg(k.killmail_id::int8 ORDER BY k.killmail_id) AS ids
    FROM killmails AS k
    JOIN bulk_valuations AS s ON s.killmail_id = k.killmail_id
    GROUP BY 1, 2, 3
) AS g
"""

_STAMPS = f"""
(SELECT u.id, b.xid, b.book, b.version
 FROM {_PROTOTYPE} AS b CROSS JOIN LATERAL unnest(b.ids) AS u (id))
"""

READS = {
    "unstamped": (
        "SELECT count(*) FROM killmails AS k WHERE NOT EXISTS ("
        " SELECT 1 FROM bulk_valuations AS s WHERE s.killmail_id = k.killmail_id"
        " AND s.book = 'seed:sell')",
        f"SELECT count(*) FROM killmails AS k WHERE NOT EXISTS ("
        f" SELECT 1 FROM {_STAMPS} AS s WHERE s.id = k.killmail_id AND s.xid = k.xmin"
        f" AND s.book = 'seed:sell')",
    ),
    "held": (
        "SELECT count(*), sum(s.version) FROM (SELECT DISTINCT i.killmail_id"
        " FROM killmail_items AS i WHERE i.item_type_id = ANY(%(types)s)) AS h"
        " JOIN bulk_valuations AS s ON s.killmail_id = h.killmail_id"
        " WHERE s.book = 'seed:sell'",
        f"SELECT count(*), sum(s.version) FROM (SELECT DISTINCT i.killmail_id"
        f" FROM killmail_items AS i WHERE i.item_type_id = ANY(%(types)s)) AS h"
        f" JOIN killmails AS k ON k.killmail_id = h.killmail_id"
        f" JOIN {_STAMPS} AS s ON s.id = k.killmail_id AND s.xid = k.xmin"
        f" WHERE s.book = 'seed:sell'",
    ),
}


def measure(url: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    types = pick_types(url, 0.10)
    times: dict[str, dict[str, list[float]]] = {r: {"rows": [], "xmin": []} for r in READS}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {_PROTOTYPE}")
        conn.execute(_BUILD)
        conn.execute(f"ANALYZE {_PROTOTYPE}")
        try:
            for _ in range(rounds + 1):  # the first round warms the caches
                for read, (today, prototype) in READS.items():
                    answers = []
                    for kind, text in (("rows", today), ("xmin", prototype)):
                        began = time.perf_counter()
                        answers.append(conn.execute(text, {"types": types}).fetchone())
                        times[read][kind].append(time.perf_counter() - began)
                    if answers[0] != answers[1]:
                        raise SystemExit(f"{read}: {answers[0]} today, {answers[1]} prototyped")
            return {r: {k: t[1:] for k, t in kinds.items()} for r, kinds in times.items()}
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {_PROTOTYPE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    url = stamps_database(args.server, args.killmails)
    times = measure(url, args.rounds)
    summary = {
        read: {kind: round(statistics.median(t) * 1000, 1) for kind, t in kinds.items()}
        for read, kinds in times.items()
    }
    for read, row in summary.items():
        print(f"{read:10} stamp rows {row['rows']:7.1f} ms   by xmin {row['xmin']:7.1f} ms")
    out = args.out or RESULTS / "stamp_readers.json"
    out.write_text(json.dumps({"killmails": args.killmails, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
