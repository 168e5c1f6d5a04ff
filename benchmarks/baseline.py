"""The replaced system's algorithm, reproduced: one killmail at a time, five round trips each.

Per killmail, as the per-killmail RabbitMQ worker did it (six queries and one
UPDATE per killmail):
1. a mode-check SELECT (is total_value still NULL?);
2. a SELECT of the killmail with its victim and items;
3. the prices of its distinct types;
4.-6. those types, their groups, and the groups' categories;
7. a one-row UPDATE.
Each statement is its own transaction (autocommit) and is sent as a plain
query: psycopg's automatic server-side preparation is a psycopg feature the
replaced worker does not have. The broker's per-message round trips are not
reproduced, so the baseline is if anything faster than the real thing.
The arithmetic is exact Decimal with the same rules as the engine, so its
values can be checked against the SQL reference like every other run's.
"""

from __future__ import annotations

import argparse
import sys
from decimal import ROUND_HALF_UP, Decimal

import psycopg

from benchmarks.processes import timed

_CAPSULE = 670
_CENT = Decimal("0.01")

MODE_CHECK = "SELECT total_value FROM killmails WHERE killmail_id = %s"
KILLMAIL = (
    "SELECT k.killmail_id, k.killmail_time, v.ship_type_id, i.item_type_id, i.flag,"
    " i.quantity_destroyed, i.quantity_dropped, i.singleton"
    " FROM killmails AS k"
    " LEFT JOIN victims AS v ON v.killmail_id = k.killmail_id"
    " LEFT JOIN killmail_items AS i ON i.killmail_id = k.killmail_id"
    " WHERE k.killmail_id = %s"
)
PRICES = "SELECT type_id, sell FROM market_prices WHERE type_id = ANY(%s)"
TYPES = "SELECT id, group_id FROM types WHERE id = ANY(%s)"
GROUPS = "SELECT id, category_id FROM item_groups WHERE id = ANY(%s)"
CATEGORIES = "SELECT id, name FROM categories WHERE id = ANY(%s)"
UPDATE = (
    "UPDATE killmails SET total_value = %s, destroyed_value = %s, dropped_value = %s"
    " WHERE killmail_id = %s"
)


def _unit(price: float | None) -> Decimal:
    # PostgreSQL's float8 -> numeric keeps 15 significant digits, then round(, 2).
    if price is None:
        return Decimal(0)
    return Decimal(f"{price:.15g}").quantize(_CENT, rounding=ROUND_HALF_UP)


def value_one(conn: psycopg.Connection, killmail_id: int) -> bool:
    """Value one killmail if it still has no value; True if it was written.

    Autocommit, like the replaced worker: seven statements, seven round trips.
    """
    row = conn.execute(MODE_CHECK, (killmail_id,)).fetchone()
    if row is None or row[0] is not None:
        return False
    rows = conn.execute(KILLMAIL, (killmail_id,)).fetchall()
    ship_type = rows[0][2]
    if ship_type is None:
        return False  # no victim: not valued
    items = [r for r in rows if r[3] is not None]
    type_ids = sorted({ship_type, *(r[3] for r in items)})
    prices = dict(conn.execute(PRICES, (type_ids,)).fetchall())
    group_of = dict(conn.execute(TYPES, (type_ids,)).fetchall())
    category_of = dict(conn.execute(GROUPS, (sorted(set(group_of.values())),)).fetchall())
    names = dict(conn.execute(CATEGORIES, (sorted(set(category_of.values())),)).fetchall())
    categories = {t: names.get(category_of.get(g)) for t, g in group_of.items()}
    ship = Decimal("10.00") if ship_type == _CAPSULE else _unit(prices.get(ship_type))
    destroyed = dropped = Decimal(0)
    for _, _, _, type_id, _, q_destroyed, q_dropped, singleton in items:
        if singleton == 2 and categories.get(type_id) == "Blueprint":
            unit = _CENT
        else:
            unit = _unit(prices.get(type_id))
        destroyed += unit * (q_destroyed or 0)
        dropped += unit * (q_dropped or 0)
    total = ship + destroyed + dropped
    conn.execute(UPDATE, (float(total), float(ship + destroyed), float(dropped), killmail_id))
    return True


def _worker(url: str, ids: list[int], results) -> None:
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        written = sum(value_one(conn, i) for i in ids)
    results.put(written)


def run_baseline(url: str, ids: list[int], procs: int) -> tuple[float, int]:
    """(seconds, killmails written) for the sample, split over `procs` processes."""
    return timed(_worker, [(url, ids[n::procs]) for n in range(procs)])


def main(argv: list[str] | None = None) -> int:
    """python -m benchmarks.baseline URL --procs 5 --sample 10000: prints the rows written.

    The sample is spread over the whole table (every k-th ID), as the suite takes it.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline")
    parser.add_argument("url")
    parser.add_argument("--procs", type=int, default=5)
    parser.add_argument("--sample", type=int, default=10_000)
    args = parser.parse_args(argv)
    with psycopg.connect(args.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
    _, written = run_baseline(args.url, spread_sample(ids, args.sample), args.procs)
    print(written)
    return 0


def spread_sample(ids: list[int], size: int) -> list[int]:
    step = max(1, len(ids) // size)
    return ids[::step][:size]


if __name__ == "__main__":
    sys.exit(main())
