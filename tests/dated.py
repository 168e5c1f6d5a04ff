"""Helpers for the kill-date rule sets' tests: rows on either schema, and values three ways.

Values come from the engine path (the price book + pricing.price_batch, in
cents) and from the rule set's SQL reference (numeric ISK); the tests compare
both with a Decimal oracle of their own.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import psycopg

from bulk import sqlfiles
from bulk.engine import batch, pricing, statements
from bulk.prices import history

CENT = Decimal("0.01")


def unit(price: float | Decimal) -> Decimal:
    """A stored double as PostgreSQL's round(x::numeric, 2) reads it: 15 significant
    digits, then half away from zero to the cent."""
    exact = price if isinstance(price, Decimal) else Decimal(f"{price:.15g}")
    return exact.quantize(CENT, rounding=ROUND_HALF_UP)


def mean_to_cent(values: list[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        return (sum(values) / len(values)).quantize(CENT, rounding=ROUND_HALF_UP)


def zkillboard_price(
    averages: dict[date, float | None], kill_time: datetime
) -> tuple[Decimal, dict]:
    """zKillboard's Price::getItemPrice loop, replayed on one type's history (every row of
    the region, by date): the unit price, and how it came about (for coverage checks)."""
    price_date = (kill_time - timedelta(seconds=3601)).date()
    collected, day, walked = [], price_date, 0
    while True:  # do { ... } while (count < 34 && iterations < count(history))
        a = averages.get(day)
        if a is not None and a > 0:
            collected.append(a)
        day -= timedelta(days=1)
        walked += 1
        if not (len(collected) < 34 and walked < len(averages)):
            break
    values = sorted(Decimal(f"{a:.15g}") for a in collected)
    if len(values) == 34:
        values = values[2:32]
    elif len(values) >= 7:
        values = values[:-2]
    mean = mean_to_cent(values) if values else Decimal("0.01")
    own = averages.get(price_date)
    lower = own is not None and own > 0 and Decimal(f"{own:.15g}") < mean
    price = unit(own) if lower else mean
    # the day limit left out prices that a walk without it would have taken
    reachable = [d for d, a in averages.items() if d <= price_date and a is not None and a > 0]
    limited = len(collected) < min(len(reachable), 34)
    return price, {"n": len(collected), "lower": lower, "limited": limited}


def kind_of(url: str) -> str:
    """'killreport' where killmails has the replaced system's killmail_hash, else 'tool'."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'killmails' AND column_name = 'killmail_hash'"
        ).fetchone()
    return "killreport" if row else "tool"


def create_history_tables(conn: psycopg.Connection) -> None:
    conn.execute(sqlfiles.load("history_schema"))


def insert_types(conn: psycopg.Connection, kind: str, rows) -> None:
    """rows: (type_id, group_id, category_id, category_name); groups and categories once each."""
    rows = list(rows)
    stamp = ", updated_at" if kind == "killreport" else ""
    now = ", now()" if kind == "killreport" else ""
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO categories (id, name{stamp}) VALUES (%s, %s{now}) ON CONFLICT DO NOTHING",
            sorted({(c, name) for _, _, c, name in rows}),
        )
        cur.executemany(
            f"INSERT INTO item_groups (id, name, category_id{stamp})"
            f" VALUES (%s, 'group ' || %s, %s{now}) ON CONFLICT DO NOTHING",
            sorted({(g, g, c) for _, g, c, _ in rows}),
        )
        cur.executemany(
            f"INSERT INTO types (id, name, group_id{stamp})"
            f" VALUES (%s, 'type ' || %s, %s{now}) ON CONFLICT DO NOTHING",
            sorted({(t, t, g) for t, g, _, _ in rows}),
        )


def insert_killmail(
    conn: psycopg.Connection,
    kind: str,
    killmail_id: int,
    time: datetime,
    ship: int | None,
    items=(),
) -> None:
    """items: (item_type_id, flag, quantity_destroyed, quantity_dropped, singleton)."""
    if kind == "killreport":
        conn.execute(
            "INSERT INTO killmails (killmail_id, killmail_hash, killmail_time, solar_system_id,"
            " updated_at) VALUES (%s, md5(%s::text), %s, 30000142, now())",
            [killmail_id, killmail_id, time],
        )
        if ship is not None:
            conn.execute(
                "INSERT INTO victims (killmail_id, corporation_id, ship_type_id, damage_taken)"
                " VALUES (%s, 1000001, %s, 100)",
                [killmail_id, ship],
            )
    else:
        conn.execute(
            "INSERT INTO killmails (killmail_id, killmail_time) VALUES (%s, %s)",
            [killmail_id, time],
        )
        if ship is not None:
            conn.execute(
                "INSERT INTO victims (killmail_id, ship_type_id) VALUES (%s, %s)",
                [killmail_id, ship],
            )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO killmail_items (killmail_id, item_type_id, flag, quantity_destroyed,"
            " quantity_dropped, singleton) VALUES (%s, %s, %s, %s, %s, %s)",
            [(killmail_id, *item) for item in items],
        )


def insert_history(conn: psycopg.Connection, type_id: int, rows, region: int = 10000002) -> None:
    """rows: (date, average) or (date, average, highest, lowest, volume, order_count)."""
    with conn.cursor() as cur:
        with cur.copy(
            "COPY market_price_history (region_id, type_id, date, average, highest, lowest,"
            " volume, order_count) FROM STDIN"
        ) as copy:
            for row in rows:
                full = tuple(row) + (None,) * (6 - len(row))
                copy.write_row((region, type_id, *full))


_EVEREF_HEADER = (
    "average,date,highest,lowest,order_count,volume,http_last_modified,region_id,type_id"
)


def import_history_rows(conn: psycopg.Connection, rows) -> None:
    """Rows (region_id, type_id, date, average, highest, lowest, volume, order_count)
    imported as an operator would, from an EVE Ref file (every region), in the
    caller's transaction."""
    lines = [
        f"{avg},{day.isoformat()},{high},{low},{orders},{volume},,{region},{type_id}\n"
        for region, type_id, day, avg, high, low, volume, orders in rows
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        path.write_text(_EVEREF_HEADER + "\n" + "".join(lines))
        history.import_history_files(conn, [path], all_regions=True)


def insert_override(
    conn: psycopg.Connection,
    type_id: int,
    price: float,
    valid_from: date | None = None,
    valid_to: date | None = None,
) -> None:
    conn.execute(
        "INSERT INTO price_overrides (type_id, valid_from, valid_to, price)"
        " VALUES (%s, %s, %s, %s)",
        [type_id, valid_from, valid_to, price],
    )


Values = dict[int, tuple[Decimal, Decimal, Decimal]]  # total, destroyed, dropped in ISK


def engine_values(url: str, ids, rules: str, mode: str = "all") -> Values:
    """What the engine path computes: batch.load_lines (from the price book), then
    pricing.price_batch (cents)."""
    with psycopg.connect(url, autocommit=True) as conn:
        lines = batch.load_lines(conn, ids, mode, rules)
    cents, _ = pricing.price_batch(lines)
    out = {}
    for kid, total, destroyed, dropped in zip(
        cents.killmail_ids.tolist(),
        cents.total.tolist(),
        cents.destroyed.tolist(),
        cents.dropped.tolist(),
    ):
        out[kid] = tuple(Decimal(c) / 100 for c in (total, destroyed, dropped))
    return out


def reference_values(url: str, ids, rules: str) -> Values:
    """What the rule set's independent SQL reference computes (numeric ISK)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            statements.reference_sql("sell", rules), {"ids": None if ids is None else list(ids)}
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def both_ways(url: str, ids, rules: str) -> tuple[Values, Values]:
    return engine_values(url, ids, rules), reference_values(url, ids, rules)
