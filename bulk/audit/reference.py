"""Comparison of stored values with the independent reference of a rule set.

sql/reference_values.sql for seed, sql/reference_evekill.sql and
sql/reference_zkillboard.sql for the kill-date rule sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from bulk import sqlfiles
from bulk.engine import rules as rule_sets
from bulk.engine import statements


@dataclass(frozen=True)
class Mismatch:
    killmail_id: int
    stored: tuple[float | None, float | None, float | None]  # total, destroyed, dropped
    expected: tuple[float, float, float]


def mismatches(
    conn: psycopg.Connection,
    ids: Sequence[int] | None = None,
    price_column: str = "sell",
    *,
    written_only: bool = False,
    rules: str = rule_sets.DEFAULT_RULES,
) -> list[Mismatch]:
    """Killmails (with a victim) whose stored values are not reference::float8, in id order.

    written_only leaves out killmails with no value yet (NULL is otherwise a mismatch).
    `rules` is the rule set the values were computed under (price_column is seed's only).
    """
    statement = statements.reference_mismatches_sql(price_column, rules)
    params = {"ids": None if ids is None else list(ids), "written_only": written_only}
    if not rule_sets.reads_history(rules):
        rows = conn.execute(statement, params).fetchall()
    else:
        # The kill-date references' cost estimates pass jit_above_cost, and
        # compiling them takes seconds, far more than running them.
        with conn.transaction():
            conn.execute("SET LOCAL jit = off")
            rows = conn.execute(statement, params).fetchall()
    return [Mismatch(r[0], (r[1], r[2], r[3]), (r[4], r[5], r[6])) for r in rows]


# The usual killboard bands of total_value, in the order of value_distribution.sql.
BANDS = ("under_1m", "m1_10m", "m10_100m", "m100m_1b", "over_1b", "no_value")
BAND_LABELS = ("< 1M", "1-10M", "10-100M", "100M-1B", "> 1B", "no value")


def value_distribution(conn: psycopg.Connection) -> dict:
    """Killmails per band of total_value, those with no value, and the biggest value."""
    row = conn.execute(sqlfiles.load("value_distribution")).fetchone()
    return dict(zip((*BANDS, "biggest"), row))
