"""Comparison of stored values with the independent reference (sql/reference_values.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from bulk import sqlfiles


@dataclass(frozen=True)
class Mismatch:
    killmail_id: int
    stored: tuple[float | None, float | None, float | None]  # total, destroyed, dropped
    expected: tuple[float, float, float]


def mismatches(
    conn: psycopg.Connection, ids: Sequence[int] | None = None, price_column: str = "sell"
) -> list[Mismatch]:
    """Killmails (with a victim) whose stored values are not reference::float8, in id order."""
    rows = conn.execute(
        sqlfiles.reference_mismatches_sql(price_column),
        {"ids": None if ids is None else list(ids)},
    ).fetchall()
    return [Mismatch(r[0], (r[1], r[2], r[3]), (r[4], r[5], r[6])) for r in rows]


def reference_values(
    conn: psycopg.Connection, ids: Sequence[int] | None = None, price_column: str = "sell"
) -> dict[int, tuple]:
    """killmail_id -> (total, destroyed, dropped) as exact Decimals."""
    rows = conn.execute(
        sqlfiles.reference_sql(price_column), {"ids": None if ids is None else list(ids)}
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}
