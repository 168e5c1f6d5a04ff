"""Loads the sql/*.sql files shipped in the package and fills their fixed placeholders.

Only identifiers and predicates from the fixed tables of bulk.engine.modes are
ever pasted into SQL text; every user value is a bound parameter.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from bulk.engine import rules
from bulk.engine.modes import (
    LINE_PRODUCT_TYPES,
    fixed_name,
    mode_predicate,
    price_column,
    touch_clause,
    unit_cents_table,
)


def _sql_dir():
    try:
        return resources.files("bulk.sql")
    except ModuleNotFoundError:
        # Imported from a source checkout (tests run in the repo): sql/ sits beside bulk/.
        return Path(__file__).resolve().parents[2] / "sql"


@cache
def load(name: str) -> str:
    """The statement in sql/NAME.sql, without its whole-line comments.

    The comments document placeholders and parameters by name; dropping them
    keeps those names from being filled in or counted as parameters.
    """
    text = _sql_dir().joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


@cache
def unit_cents_sql(column: str) -> str:
    return load("unit_cents").format(
        table=unit_cents_table(column), price_column=price_column(column)
    )


@cache
def load_batch_sql(mode: str, column: str) -> str:
    return load("load_batch").format(
        mode_predicate=mode_predicate(mode), unit_cents=unit_cents_table(column)
    )


@cache
def value_batch_sql(mode: str, column: str, updated_at: str | None, product: str) -> str:
    """The set-based engine's one statement; `product` is int8, or numeric after an overflow."""
    return load("value_batch").format(
        mode_predicate=mode_predicate(mode),
        unit_cents=unit_cents_table(column),
        cents=fixed_name(LINE_PRODUCT_TYPES, product, "line product type"),
        touch=touch_clause(updated_at),
    )


@cache
def unusable_prices_sql(mode: str, column: str) -> str:
    return load("unusable_prices").format(
        mode_predicate=mode_predicate(mode), price_column=price_column(column)
    )


# Keyed by row count: a job uses one batch size and a smaller last batch or
# bisected halves, so a few entries cover it; unbounded, every size ever seen stays.
@lru_cache(maxsize=16)
def update_batch_sql(mode: str, n_rows: int, updated_at: str | None = None) -> str:
    """The write with psycopg placeholders, for cents beyond int8 (sent as numeric).

    `updated_at` is the type of the killmails.updated_at column to stamp, or None.
    """
    # Types on the first row fix the VALUES column types for every row.
    first = "(%s::int4, %s::numeric, %s::numeric, %s::numeric)"
    rows = ", ".join([first] + ["(%s, %s, %s, %s)"] * (n_rows - 1))
    return _update_batch(rows, mode, updated_at)


@lru_cache(maxsize=16)
def update_batch_raw(mode: str, n_rows: int, updated_at: str | None = None) -> bytes:
    """The write with libpq's $n placeholders, for binary int4/int8 parameters."""
    rows = ", ".join(
        f"(${4 * i + 1}, ${4 * i + 2}, ${4 * i + 3}, ${4 * i + 4})" for i in range(n_rows)
    )
    return _update_batch(rows, mode, updated_at).encode()


def _update_batch(rows: str, mode: str, updated_at: str | None) -> str:
    return load("update_batch").format(
        rows=rows, mode_predicate=mode_predicate(mode), touch=touch_clause(updated_at)
    )


@cache
def reference_sql(column: str, rules_name: str = "seed") -> str:
    """The independent reference of a rule set: reference_values.sql for seed,
    reference_<rules>.sql (which use no price column) for the dated ones."""
    if rules.rules_name(rules_name) == "seed":
        return load("reference_values").format(price_column=price_column(column))
    return dated_sql(f"reference_{rules.dated(rules_name).name}", rules_name)


@cache
def reference_mismatches_sql(column: str, rules_name: str = "seed") -> str:
    return load("reference_mismatches").format(reference=reference_sql(column, rules_name))


# The dated rule sets (bulk/engine/rules.py): every placeholder from its fixed data.
@cache
def dated_sql(name: str, rules_name: str, mode: str | None = None) -> str:
    """sql/NAME.sql filled for rule set `rules_name` (and `mode`, where NAME has a mode guard)."""
    fill = rules.placeholders(rules_name)
    if mode is not None:
        fill["mode_predicate"] = mode_predicate(mode)
    return load(name).format(**fill)


@cache
def resolve_dated_sql(rules_name: str) -> str:
    return dated_sql(f"resolve_dated_{rules.dated(rules_name).name}", rules_name)


@cache
def load_batch_dated_sql(mode: str, rules_name: str) -> str:
    return dated_sql("load_batch_dated", rules_name, mode)


@cache
def unusable_dated_sql(mode: str, rules_name: str) -> str:
    return dated_sql("unusable_dated", rules_name, mode)


@cache
def value_batch_dated_sql(mode: str, rules_name: str, updated_at: str | None, product: str) -> str:
    """The set-based engine for a dated rule set: the dated load's lines, summed and written."""
    load_sql = load_batch_dated_sql(mode, rules_name)
    head = load_sql[: load_sql.rindex("SELECT string_agg(")].rstrip()
    tail = load("value_tail").format(
        cents=fixed_name(LINE_PRODUCT_TYPES, product, "line product type"),
        touch=touch_clause(updated_at),
        mode_predicate=mode_predicate(mode),
    )
    return head + "\n" + tail
