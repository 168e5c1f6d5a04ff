"""Each connection's TEMP table of unit cents: built once, rebuilt when it may be stale.

A batch joins the table instead of rounding every line's price in numeric and
joining three category tables per line (sql/unit_cents.sql). The table is the
prices as they were when it was built, so a long-running job rebuilds it every
`refresh` seconds; a job that must not see prices move under it (run) builds it
once per connection.
"""

from __future__ import annotations

import time
import weakref

import psycopg
from psycopg.pq import TransactionStatus

from bulk.engine import sqlfiles

# When each connection's table of each price column was last built (time.monotonic()
# read before the build began). A reconnect is a new connection and a new table.
_BUILT: weakref.WeakKeyDictionary[psycopg.Connection, dict[str, float]] = (
    weakref.WeakKeyDictionary()
)


def ensure(conn: psycopg.Connection, column: str, refresh: float | None) -> None:
    """Build the connection's unit-cents table of `column` if it is missing or stale.

    With `refresh` seconds, a batch that starts more than `refresh` seconds after
    a price change committed sees the new price: the clock is read before the
    build's snapshot is taken, so a table younger than `refresh` by that clock
    was built from a snapshot taken after the change.
    """
    built = _BUILT.setdefault(conn, {})
    at = built.get(column)
    now = time.monotonic()
    if at is not None and (refresh is None or now - at < refresh):
        return
    built.pop(column, None)  # a failed build leaves no table to trust
    statement = sqlfiles.unit_cents_sql(column)
    if conn.autocommit:
        try:
            conn.execute(statement, prepare=False)
        except psycopg.Error:
            # The statement opens its own transaction block; an error leaves it
            # aborted, and an autocommit connection would stay stuck in it.
            if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
    else:
        # Inside the caller's transaction handling: the body without its BEGIN/COMMIT.
        body = "\n".join(
            line for line in statement.splitlines() if line.strip() not in ("BEGIN;", "COMMIT;")
        )
        with conn.transaction():
            conn.execute(body, prepare=False)
    built[column] = now


def forget(conn: psycopg.Connection) -> None:
    """Rebuild before the next batch on this connection (after prices were changed on it)."""
    _BUILT.pop(conn, None)
