"""What a stamp costs the set-based engine's one statement, per batch, and what
another stamp representation would cost (issue 27's first target, the sql engine).

    python -m benchmarks.stamp_statement --killmails 300000 --batches 80

The sql engine's statement (`run --mode all --engine sql`, seed rules) on batches of
500 consecutive killmails picked at random from the generated database of
benchmarks.stamps (bulk_backfill_stamps_<N>, every killmail already stamped, as
after any earlier job), each variant once per batch, in shuffled order, each in a
transaction rolled back, timed at the client:

- `stamps`: the statement as the tool runs it (a stamp row updated per killmail,
  inserted where it has none).
- `without`: the same statement with its stamp CTEs cut (benchmarks.without_stamps):
  the strongest reference, the engine as it would be without stamps.
- `index-array`: the stamps' UPDATE as one index scan over an array of the written
  IDs instead of a join probing the key per row.
- `range`: the join bounded by the written IDs' lowest and highest.
- `per-transaction`: not a row per killmail but one row per statement, holding the
  transaction's ID and the written and unpriced killmail IDs as arrays: what the
  write of a stamp keyed by the killmails' own `xmin` would cost. A prototype of
  the write alone: nothing reads it, and the table is a plain logged one, as a
  real stamp table would be, dropped at the end. It has no index: its readers
  would hash-join it, one row per 500 killmails, on the killmails' `xmin`.

The throughput ratio of each variant is `without`'s median over its own (the
target is at least 0.90 for `stamps`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import psycopg

from benchmarks.stamps import RESULTS, SERVER, stamps_database
from benchmarks.without_stamps import cut_stamps
from bulk import db
from bulk.engine import statements

_PROTOTYPE = "bench_transaction_stamps"
_FINAL_SELECT = "\nSELECT (SELECT count(*) FROM written)"


def _restamped(text: str, replacement: str) -> str:
    start = text.index("restamped AS (")
    end = text.index("stamped AS (", start + len("restamped AS ("))
    return text[:start] + replacement + text[end:]


_INDEX_ARRAY = """restamped AS (
    UPDATE bulk_valuations AS vs
    SET book = 'seed:sell', version = (SELECT bv.version FROM book_version AS bv),
        valued_at = statement_timestamp(),
        unpriced = vs.killmail_id = ANY(array(SELECT w.killmail_id FROM written AS w
                                              WHERE w.unpriced))
    WHERE vs.killmail_id = ANY(array(SELECT w.killmail_id FROM written AS w))
    RETURNING vs.killmail_id
),
"""

_RANGE = """restamped AS (
    UPDATE bulk_valuations AS vs
    SET book = 'seed:sell', version = (SELECT bv.version FROM book_version AS bv),
        valued_at = statement_timestamp(), unpriced = w.unpriced
    FROM written AS w
    WHERE vs.killmail_id = w.killmail_id
      AND vs.killmail_id BETWEEN (SELECT min(x.killmail_id) FROM written AS x)
                             AND (SELECT max(x.killmail_id) FROM written AS x)
    RETURNING vs.killmail_id
),
"""

_PER_TRANSACTION = f""",
stamped AS (
    INSERT INTO {_PROTOTYPE} (xid, book, version, valued_at, ids, unpriced)
    SELECT pg_current_xact_id(), 'seed:sell', (SELECT bv.version FROM book_version AS bv),
           statement_timestamp(),
           array(SELECT w.killmail_id FROM written AS w ORDER BY 1),
           array(SELECT w.killmail_id FROM written AS w WHERE w.unpriced ORDER BY 1)
)"""


def variants() -> dict[str, str]:
    stamps = statements.value_book_sql("all", "seed", "sell", None, "int8")
    without = cut_stamps(stamps)
    at = without.index(_FINAL_SELECT)
    return {
        "stamps": stamps,
        "without": without,
        "index-array": _restamped(stamps, _INDEX_ARRAY),
        "range": _restamped(stamps, _RANGE),
        "per-transaction": without[:at] + _PER_TRANSACTION + without[at:],
    }


def measure(url: str, batches: int, seed: int) -> dict[str, list[float]]:
    texts = variants()
    with psycopg.connect(url) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_PROTOTYPE} (xid xid8 NOT NULL, book text NOT NULL,"
            " version bigint NOT NULL, valued_at timestamptz NOT NULL, ids int8[] NOT NULL,"
            " unpriced int8[] NOT NULL)"
        )
        conn.commit()
        try:
            ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
            unstamped = conn.execute(
                f"SELECT count(*) FROM killmails AS k WHERE NOT EXISTS"
                f" (SELECT FROM {db.STAMPS_TABLE} AS s WHERE s.killmail_id = k.killmail_id)"
            ).fetchone()[0]
            conn.rollback()
            if unstamped > len(ids) // 100:
                raise SystemExit(
                    f"{unstamped:,} killmails have no stamp: run `bulk-backfill run --mode all`"
                    " on the database first (the statement would insert, not update, stamps)"
                )
            rng = random.Random(seed)
            starts = rng.sample(range(0, len(ids) - 500, 500), batches)
            jobs = [(s, name) for s in starts for name in texts]
            rng.shuffle(jobs)
            times: dict[str, list[float]] = {name: [] for name in texts}
            for start, name in jobs:
                batch = ids[start : start + 500]
                began = time.perf_counter()
                written = conn.execute(texts[name], {"ids": batch}, prepare=False).fetchone()[0]
                times[name].append(time.perf_counter() - began)
                conn.rollback()
                if written < 400:
                    raise SystemExit(f"{name} wrote {written} of a batch of 500")
            return times
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE IF EXISTS {_PROTOTYPE}")
            conn.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--batches", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    url = stamps_database(args.server, args.killmails)
    times = measure(url, args.batches, args.seed)
    without = statistics.median(times["without"])
    summary = {
        name: {
            "median_ms": round(statistics.median(t) * 1000, 3),
            "mean_ms": round(statistics.mean(t) * 1000, 3),
            "ratio": round(without / statistics.median(t), 3),
        }
        for name, t in times.items()
    }
    for name, row in summary.items():
        print(
            f"{name:16} median {row['median_ms']:6.2f} ms  mean {row['mean_ms']:6.2f} ms"
            f"  ratio {row['ratio']:.3f}"
        )
    out = args.out or RESULTS / "stamp_statement.json"
    result = {"killmails": args.killmails, "batches": args.batches, "summary": summary}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
