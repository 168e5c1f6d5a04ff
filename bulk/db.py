"""PostgreSQL connections with one-line errors, and checks of the killboard schema."""

from __future__ import annotations

import psycopg

from bulk import redact
from bulk.config import check_libpq_url, mask_url, scrub
from bulk.engine import sqlfiles
from bulk.errors import UserError, one_line

REQUIRED_TABLES = (
    "killmails",
    "victims",
    "killmail_items",
    "market_prices",
    "types",
    "item_groups",
    "categories",
)
# The tool's own tables for valuing a killmail at its kill date (sql/history_schema.sql).
# Only init-db and the `prices history` / `prices override` commands create them;
# run and work never do, and nothing here is one of the killboard's own tables.
HISTORY_TABLES = ("market_price_history", "price_overrides")


def connect(url: str, *, autocommit: bool = False, application: str = "bulk-backfill"):
    """A psycopg connection, or a UserError naming the (masked) URL and the reason."""
    redact.remember(url)
    # libpq's parse errors quote the whole URL: say it cannot be parsed, without it.
    check_libpq_url(url)
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name=application)
    except psycopg.Error as exc:
        reason = scrub(one_line(exc), url)
        raise UserError(f"cannot connect to PostgreSQL at {mask_url(url)}: {reason}") from None


def close_quietly(conn: psycopg.Connection | None) -> None:
    """Close a connection that may already be broken; its error, if any, is not news."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def missing_tables(
    conn: psycopg.Connection, tables: tuple[str, ...] = REQUIRED_TABLES
) -> list[str]:
    """The tables that do not exist; ends the read (a command's check, not a library's)."""
    missing = absent_tables(conn, tables)
    _end_read(conn)
    return missing


def absent_tables(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """The tables that do not exist, inside whatever transaction the caller has open."""
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u (t, n)"
        " WHERE to_regclass(t) IS NULL ORDER BY n",
        [list(tables)],
    ).fetchall()
    return [r[0] for r in rows]


def require_schema(conn: psycopg.Connection) -> None:
    missing = missing_tables(conn)
    if missing:
        raise UserError(
            f"the database lacks the killboard tables {', '.join(missing)}: "
            "run `bulk-backfill init-db` first"
        )


def require_prices(conn: psycopg.Connection) -> None:
    (has_price,) = conn.execute("SELECT EXISTS (SELECT 1 FROM market_prices)").fetchone()
    _end_read(conn)
    if not has_price:
        raise UserError(
            "market_prices is empty, so every value would be 0: load prices first "
            "(or pass --allow-empty-prices to value with no prices)"
        )


def _end_read(conn: psycopg.Connection) -> None:
    # A read-only check must not leave a transaction open (and its snapshot held).
    if not conn.autocommit:
        conn.rollback()


def init_db(conn: psycopg.Connection) -> list[str]:
    """Create the killboard and history tables that are missing; returns the ones it created.

    On the replaced system's schema the killboard tables are all there already,
    so only the tool's own history tables are added, beside them.
    """
    before = set(missing_tables(conn, REQUIRED_TABLES + HISTORY_TABLES))
    with conn.transaction():
        conn.execute(sqlfiles.load("schema"))
        conn.execute(sqlfiles.load("history_schema"))
    return [t for t in REQUIRED_TABLES + HISTORY_TABLES if t in before]


def ensure_history_tables(conn: psycopg.Connection) -> list[str]:
    """Create market_price_history and price_overrides if missing (IF NOT EXISTS).

    Only init-db and the `prices history` / `prices override` commands call
    this; returns the tables it created. Works inside the caller's transaction.
    """
    before = absent_tables(conn, HISTORY_TABLES)
    if before:
        with conn.transaction():
            conn.execute(sqlfiles.load("history_schema"))
    return before
