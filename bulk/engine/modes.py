"""The job modes (which killmails a job may write) and the price columns, as fixed SQL text.

Only identifiers and predicates from the fixed tables below are ever pasted into
SQL text; every user value is a bound parameter.
"""

from __future__ import annotations

from bulk.errors import UserError

# The mode guard, on alias k (killmails). The same text is used by the
# scan that selects IDs and by the UPDATE that writes them.
MODE_PREDICATES: dict[str, str] = {
    "null": "k.total_value IS NULL",
    "zero": "k.total_value = 0",
    "all": "TRUE",
    # No value, or not already stamped with the job's book ({book}, a literal
    # from bulk.engine.rules) at its current version. Which killmails a stale job
    # selects is bulk.engine.stale's to find; in a batch this is the guard: a
    # killmail another process revalued since with today's book is skipped, and
    # a stale job run twice writes nothing the second time.
    "stale": (
        "(k.total_value IS NULL OR NOT EXISTS (SELECT 1 FROM bulk_valuations AS vs"
        " WHERE vs.killmail_id = k.killmail_id AND vs.book = {book}"
        " AND vs.version >= coalesce((SELECT bv.version FROM bulk_book_versions AS bv"
        " WHERE bv.book = {book}), 0)))"
    ),
}

# The modes whose killmails are found by bulk.engine.stale rather than by a scan
# of the mode's predicate.
FOUND_MODES: tuple[str, ...] = ("stale",)

# The modes whose guard the numpy engine's load leaves to its UPDATE, which
# repeats it anyway. The load's filter only spares the lines of a killmail another
# process wrote in between; stale's reads each killmail's row and probes its
# stamp, which cost a sixth of a stale batch's load (30 against 25 ms a batch on
# 300,000 killmails) to spare lines that are rarely there.
GUARDED_AT_WRITE: tuple[str, ...] = ("stale",)

PRICE_COLUMNS: dict[str, str] = {"sell": "sell", "buy": "buy", "average": "average"}

# The engines: "numpy" loads a batch's lines and sums them in numpy (the design
# the tool was specified with); "sql" values and writes a batch in one statement.
ENGINES: tuple[str, ...] = ("numpy", "sql")

# How the set-based engine multiplies a line out: int8 first, numeric after an
# int8 product overflowed.
LINE_PRODUCT_TYPES: tuple[str, ...] = ("int8", "numeric")


def _fixed(table: dict[str, str], key: str, what: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise UserError(f"unknown {what} {key!r}: choose one of {', '.join(table)}") from None


def fixed_name(names: tuple[str, ...], name: str, what: str) -> str:
    """`name` if the fixed tuple holds it: identifiers never come from user text."""
    return _fixed(dict(zip(names, names)), name, what)


def mode_predicate(mode: str, book: str | None = None) -> str:
    """The mode's guard on alias k; `book` is the job's book as a literal
    (rules.book_placeholders), which the stale guard names."""
    predicate = _fixed(MODE_PREDICATES, mode, "mode")
    if "{book}" in predicate:
        if book is None:
            raise ValueError(f"the {mode} mode's guard needs the job's book")
        predicate = predicate.replace("{book}", book)
    return predicate


def load_predicate(mode: str, book: str | None = None) -> str:
    """The filter of the numpy engine's load on alias k: the mode's guard, or TRUE
    where the UPDATE alone applies it (GUARDED_AT_WRITE)."""
    if mode in GUARDED_AT_WRITE:
        return "TRUE"
    return mode_predicate(mode, book)


def price_column(column: str) -> str:
    return _fixed(PRICE_COLUMNS, column, "price column")


def engine(name: str) -> str:
    return fixed_name(ENGINES, name, "engine")


# The statement's time in the type of killmails.updated_at, keyed by pg_type.typname.
# A timestamp without time zone gets UTC, as the ORM of the replaced system
# writes it (it stores JavaScript Dates as UTC), whatever the session's TimeZone.
TOUCH_UPDATED_AT: dict[str, str] = {
    "timestamp": "statement_timestamp() AT TIME ZONE 'UTC'",
    "timestamptz": "statement_timestamp()",
    "date": "(statement_timestamp() AT TIME ZONE 'UTC')::date",
}


def touch_clause(column_type: str | None) -> str:
    """The SET item that stamps updated_at, or "" for no column or a type we do not stamp."""
    expression = TOUCH_UPDATED_AT.get(column_type or "")
    return f",\n    updated_at = {expression}" if expression else ""
