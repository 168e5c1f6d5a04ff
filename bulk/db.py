"""PostgreSQL connections with one-line errors, and checks of the killboard schema."""

from __future__ import annotations

import os

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bulk import redact, sqlfiles
from bulk.config import check_libpq_url
from bulk.errors import UserError, one_line
from bulk.redact import mask_url, scrub

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
# The price book (bulk.engine.book): the tool's own, made by init-db and the price commands.
BOOK_TABLE = "bulk_price_book"
# The tool's own tables beside the book (sql/book_schema.sql): its versions, the
# prices its rows held before each change, and the valuation stamps.
BOOK_VERSIONS_TABLE = "bulk_book_versions"
BOOK_CHANGES_TABLE = "bulk_price_book_changes"
STAMPS_TABLE = "bulk_valuations"
TOOL_TABLES = (BOOK_TABLE, BOOK_VERSIONS_TABLE, BOOK_CHANGES_TABLE, STAMPS_TABLE)


# libpq settings added to every connection whose URL (or keyword string) does not
# set them. libpq's own defaults leave a connection whose other end has vanished
# (a host cut off by a partition, a dropped NAT or firewall entry) to the
# kernel's: about two minutes for a connect, two hours of silence before the
# first keepalive probe, and some 15 minutes of retransmissions for a send nobody
# acknowledges. A worker stuck that way holds its batches and does nothing;
# with these it fails within a minute, and its batches go back to the queue.
# None of them can end a slow but healthy query: a live server's kernel answers
# the probes and acknowledges what is sent, however long the statement runs.
LIBPQ_DEFAULTS = {
    # Seconds for a connection to be made: a SYN to an unreachable host is
    # otherwise retried for over two minutes.
    "connect_timeout": "10",
    # TCP keepalives while waiting for a reply (an UPDATE whose answer is lost):
    # the first probe after 30 s of silence, then every 10 s, dead after 3
    # unanswered, so a dead link is noticed within about a minute.
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    # Milliseconds that sent data may stay unacknowledged (a query sent into a
    # dead link) before the connection is dropped; with keepalives on, Linux
    # also uses it in place of keepalives_count. The same minute as above.
    "tcp_user_timeout": "60000",
}
# The libpq environment variable that sets one of the above, where there is one.
_LIBPQ_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT"}


def libpq_defaults(url: str) -> dict[str, str]:
    """The LIBPQ_DEFAULTS that neither the URL nor the environment sets."""
    try:
        given = conninfo_to_dict(url)
    except Exception:  # unreadable: psycopg.connect reports it (check_libpq_url masks it)
        return {}
    return {
        key: value
        for key, value in LIBPQ_DEFAULTS.items()
        if key not in given and not os.environ.get(_LIBPQ_ENVIRONMENT.get(key, ""))
    }


# killmail_time holds UTC. Where a killboard made it a timestamptz, its ::date (the
# kill date the dated rule sets price by), its comparisons with --since/--until and
# the times read back all follow the session's TimeZone, which the server, the
# database, the role, PGTZ or the URL's options would otherwise set. A SET after
# connecting rather than a startup `options` parameter: PgBouncer before 1.20
# refuses that one, while it tracks a SET TimeZone across pooled server
# connections; and the URL's own options stay as given, only TimeZone is overridden.
_SESSION_SETUP = "SET TimeZone TO 'UTC'"

# The connections that value batches. A batch's price book rows are a CTE, which
# has no statistics: costing a hash join on it the planner assumes a few hundred
# distinct keys, so it sorts both sides of a (price date, type) join instead,
# which made a kill-date batch 1.5x as slow as with the hash join (18.5 against
# 12.6 ms a batch at 5,000 kills a day; benchmarks/book_plans.py). Merge joins
# are never the better plan for a batch of 500 killmails; the book's builders
# reset this (bulk/engine/book.py). Under PgBouncer's transaction pooling the
# setting may be lost (a slower plan) or reach another client's server
# connection (a planner preference only, never a different result). Where the
# operator turned hash joins off (role or database), merge joins stay: without
# either, a batch became a nested loop over the book, 80 times as slow.
_VALUATION_SETUP = (
    "SELECT set_config('enable_mergejoin', 'off', false)"
    " WHERE current_setting('enable_hashjoin')::bool"
)


def open_connection(
    url: str,
    *,
    autocommit: bool = False,
    application_name: str = "bulk-backfill",
    valuing: bool = False,
) -> psycopg.Connection:
    """psycopg.connect with LIBPQ_DEFAULTS for what the URL leaves unset, in UTC.

    Every connection the tool makes goes through here. psycopg's errors pass
    through unchanged, for callers that sort them by kind and retry. `valuing`:
    the connection values batches (planner settings for them).
    """
    conn = psycopg.connect(
        url, autocommit=autocommit, application_name=application_name, **libpq_defaults(url)
    )
    try:
        conn.execute(_SESSION_SETUP)
        if valuing:
            conn.execute(_VALUATION_SETUP)
        if not autocommit:
            conn.commit()  # a SET in a rolled-back transaction would be undone
    except BaseException:
        conn.close()
        raise
    return conn


def connect(url: str, *, autocommit: bool = False, application: str = "bulk-backfill"):
    """A psycopg connection, or a UserError naming the (masked) URL and the reason."""
    redact.remember(url)
    # libpq's parse errors quote the whole URL: say it cannot be parsed, without it.
    check_libpq_url(url)
    try:
        return open_connection(url, autocommit=autocommit, application_name=application)
    except psycopg.Error as exc:
        reason = scrub(one_line(exc), url)
        raise UserError(f"cannot connect to PostgreSQL at {mask_url(url)}: {reason}") from None
    except UnicodeError:
        # The host name resolver's IDNA step: a label empty or over 63 characters
        # (a raw '@' or '.' of a password read as part of the host).
        raise UserError(
            f"cannot connect to PostgreSQL at {mask_url(url)}: the host name is not valid"
            " (percent-encode '@', '/', '#' and '?' in the password)"
        ) from None


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
    end_read(conn)
    return missing


def absent_tables(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """The tables that do not exist, inside whatever transaction the caller has open."""
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u (t, n)"
        " WHERE to_regclass(t) IS NULL ORDER BY n",
        [list(tables)],
    ).fetchall()
    return [r[0] for r in rows]


def tool_tables_outdated(conn: psycopg.Connection) -> bool:
    """Whether a tool table lacks a column this version added (an older init-db)."""
    (outdated,) = conn.execute(sqlfiles.load("tool_tables_outdated")).fetchone()
    return bool(outdated)


def require_schema(conn: psycopg.Connection) -> None:
    missing = missing_tables(conn)
    if missing:
        raise UserError(
            f"the database lacks the killboard tables {', '.join(missing)}: "
            "run `bulk-backfill init-db` first"
        )


def require_history_tables(conn: psycopg.Connection) -> None:
    """A UserError where the kill-date price tables are missing (they are never created here)."""
    missing = [r[0] for r in conn.execute(sqlfiles.load("missing_history_tables"))]
    if missing:
        raise UserError(
            f"the database lacks {' and '.join(missing)}, which the kill-date rule sets read:"
            " create them with `bulk-backfill init-db` or load history with"
            " `bulk-backfill prices history import`"
        )


def require_prices(conn: psycopg.Connection) -> None:
    (has_price,) = conn.execute("SELECT EXISTS (SELECT 1 FROM market_prices)").fetchone()
    end_read(conn)
    if not has_price:
        raise UserError(
            "market_prices is empty, so every value would be 0: load prices first "
            "(or pass --allow-empty-prices to value with no prices)"
        )


def end_read(conn: psycopg.Connection) -> None:
    # A read-only check must not leave a transaction open (and its snapshot held).
    if not conn.autocommit:
        conn.rollback()


def init_db(conn: psycopg.Connection) -> list[str]:
    """Create the killboard and history tables that are missing; returns the ones it created.

    On the replaced system's schema the killboard tables are all there already,
    so only the tool's own history tables are added, beside them.
    """
    tables = REQUIRED_TABLES + HISTORY_TABLES + TOOL_TABLES
    before = set(missing_tables(conn, tables))
    with conn.transaction():
        conn.execute(sqlfiles.load("schema"))
        conn.execute(sqlfiles.load("history_schema"))
        conn.execute(sqlfiles.load("book_schema"))
        if "killmail_items" in before:
            conn.execute(sqlfiles.load("item_types_index"))
    return [t for t in tables if t in before]


def ensure_history_tables(conn: psycopg.Connection) -> list[str]:
    """Create market_price_history and price_overrides if missing (IF NOT EXISTS).

    Only init-db and the `prices history` / `prices override` commands call
    this; returns the tables it created. Works inside the caller's transaction.
    """
    before = absent_tables(conn, HISTORY_TABLES)
    if before:
        with conn.transaction():
            conn.execute(sqlfiles.load("history_schema"))
    return before + ensure_book_table(conn)


def ensure_book_table(conn: psycopg.Connection) -> list[str]:
    """Create the price book's table if missing (init-db and the price commands only);
    returns [its name] if it created it. Works inside the caller's transaction."""
    before = absent_tables(conn, TOOL_TABLES)
    if before or tool_tables_outdated(conn):
        with conn.transaction():
            conn.execute(sqlfiles.load("book_schema"))
    return before
