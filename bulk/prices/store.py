"""Writing market prices: one bulk upsert per call, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from bulk.engine import modes, sqlfiles
from bulk.prices.market import PRICE_FIELDS


def upsert(conn: psycopg.Connection, columns: Sequence[str], rows: Sequence[tuple]) -> int:
    """Write rows of (type_id, value per column); the number of rows written."""
    if not rows:
        return 0
    names = [modes.fixed_name(PRICE_FIELDS, c, "price column") for c in columns]
    statement = sqlfiles.load("upsert_prices").format(
        columns=", ".join(names),
        arrays=", ".join(f"%({n})s::float8[]" for n in names),
        updates=", ".join(f"{n} = excluded.{n}" for n in names),
    )
    params: dict = {"type_ids": [r[0] for r in rows]}
    for i, name in enumerate(names, start=1):
        params[name] = [r[i] for r in rows]
    return conn.execute(statement, params).rowcount


def used_types(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute(sqlfiles.load("used_types"))]
