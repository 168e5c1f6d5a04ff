"""The engine's statements: sql/*.sql files filled with their fixed placeholders.

Only identifiers and predicates from the fixed tables of bulk.engine.modes and
bulk.engine.rules are ever pasted into SQL text; every user value is a bound
parameter.
"""

from __future__ import annotations

from functools import cache, lru_cache

from bulk.engine import rules
from bulk.engine.modes import (
    LINE_PRODUCT_TYPES,
    fixed_name,
    load_predicate,
    mode_predicate,
    price_column,
    touch_clause,
)
from bulk.sqlfiles import load

# --- the price book (bulk/engine/book.py): every placeholder from rules.py's data ----

_WANTED = {"stale": "book_wanted_stale", "known": "book_wanted_known", "job": "book_wanted_job"}
_BATCH_KILLMAILS = "k.killmail_id = ANY(%(ids)b::int[])"


def book_build_sql(rules_name: str, column: str, wanted: str) -> str:
    """The rule set's builder for the pairs `wanted`: "batch" (the killmails %(ids)b),
    "job" (the pairs book_job_pairs_sql gathered), "stale" (the book's stale rows)
    or "known" (every type of market_prices and types)."""
    if wanted == "batch":
        return _book_build(rules_name, column, "book_wanted", _BATCH_KILLMAILS)
    return _book_build(rules_name, column, _WANTED[wanted], None)


@lru_cache(maxsize=32)
def _book_build(rules_name: str, column: str, wanted_file: str, killmails: str | None) -> str:
    fill = rules.book_placeholders(rules_name, column)
    wanted = load(wanted_file).format(**fill, killmails=killmails)
    needed = load("book_needed").format(**fill, wanted=wanted)
    store = load("book_store").format(**fill)
    # The override lookup, on alias n: every builder's pairs.
    override = load("book_override").format(pair="n")
    return load(rules.builder(rules_name)).format(
        **fill, needed=needed, store=store, override=override
    )


def book_job_pairs_sql(rules_name: str, killmails: str) -> str:
    """Gathers the pairs of the killmails of the condition `killmails` (on alias k) into
    a temporary table of the transaction, for book_build_sql(..., "job")."""
    fill = rules.book_placeholders(rules_name)
    new_dates = load("book_new_date").format(**fill)
    wanted = load("book_wanted").format(**fill, killmails=f"({killmails}) AND {new_dates}")
    return load("book_job_pairs").format(wanted=wanted)


def _book_batch(mode: str, rules_name: str, column: str, *, load_only: bool = False) -> dict:
    """The placeholders of sql/book_batch.sql; `load_only` for a statement that writes
    nothing, whose batch may leave the guard to the UPDATE (modes.load_predicate)."""
    fill = rules.book_placeholders(rules_name, column)
    fill["mode_predicate"] = mode_predicate(mode, fill["book"])
    batch_fill = dict(fill)
    if load_only:
        batch_fill["mode_predicate"] = load_predicate(mode, fill["book"])
    fill["batch"] = load("book_batch").format(**batch_fill)
    return fill


@cache
def load_book_sql(mode: str, rules_name: str, column: str) -> str:
    return load("load_book").format(**_book_batch(mode, rules_name, column, load_only=True))


@cache
def value_book_sql(
    mode: str, rules_name: str, column: str, updated_at: str | None, product: str
) -> str:
    """The set-based engine's one statement; `product` is int8, or numeric after an overflow."""
    return load("value_book").format(
        **_book_batch(mode, rules_name, column),
        cents=fixed_name(LINE_PRODUCT_TYPES, product, "line product type"),
        touch=touch_clause(updated_at),
    )


@cache
def book_unusable_sql(mode: str, rules_name: str, column: str) -> str:
    return load("book_unusable").format(**_book_batch(mode, rules_name, column))


# Keyed by row count: a job uses one batch size and a smaller last batch or
# bisected halves, so a few entries cover it; unbounded, every size ever seen stays.
@lru_cache(maxsize=16)
def update_batch_sql(
    mode: str, n_rows: int, updated_at: str | None, rules_name: str, column: str
) -> str:
    """The write with psycopg placeholders, for cents beyond int8 (sent as numeric):
    the book's version, then five per row.

    `updated_at` is the type of the killmails.updated_at column to stamp, or None.
    """
    # Types on the first row fix the VALUES column types for every row.
    first = "(%s::int4, %s::numeric, %s::numeric, %s::numeric, %s::bool)"
    rows = ", ".join([first] + ["(%s, %s, %s, %s, %s)"] * (n_rows - 1))
    return _update_batch(rows, "%s::int8", mode, updated_at, rules_name, column)


@lru_cache(maxsize=16)
def update_batch_raw(
    mode: str, n_rows: int, updated_at: str | None, rules_name: str, column: str
) -> bytes:
    """The write with libpq's $n placeholders: $1 the book's version (int8), then
    binary int4/int8/int8/int8/bool parameters, five a row."""
    rows = ", ".join(
        "(" + ", ".join(f"${5 * i + j}" for j in range(2, 7)) + ")" for i in range(n_rows)
    )
    return _update_batch(rows, "$1::int8", mode, updated_at, rules_name, column).encode()


def _update_batch(
    rows: str, version: str, mode: str, updated_at: str | None, rules_name: str, column: str
) -> str:
    book = rules.book_placeholders(rules_name, column)["book"]
    return load("update_batch").format(
        rows=rows,
        version=version,
        book=book,
        mode_predicate=mode_predicate(mode, book),
        touch=touch_clause(updated_at),
    )


@cache
def reference_sql(column: str, rules_name: str = rules.DEFAULT_RULES) -> str:
    """The independent reference of a rule set: reference_values.sql for seed (the one
    that reads a price column), reference_<rules>.sql for the dated ones."""
    if rules.uses_price_column(rules_name):
        return load("reference_values").format(price_column=price_column(column))
    fill = rules.placeholders(rules_name)
    name = f"reference_{rules.dated(rules_name).name}"
    return load(name).format(**fill, sums=load("reference_dated_sums"))


@cache
def reference_mismatches_sql(column: str, rules_name: str = rules.DEFAULT_RULES) -> str:
    return load("reference_mismatches").format(reference=reference_sql(column, rules_name))


# The dated rule sets (bulk/engine/rules.py): every placeholder from its fixed data.
@cache
def dated_sql(name: str, rules_name: str, mode: str | None = None) -> str:
    """sql/NAME.sql filled for rule set `rules_name` (and `mode`, where NAME has a mode guard)."""
    fill = rules.placeholders(rules_name)
    if mode is not None:
        fill["mode_predicate"] = mode_predicate(mode)
    return load(name).format(**fill)
