"""A connection that values batches, with what the engine keeps about it between them.

The engine learns a few things once and reuses them batch after batch: the type of
killmails.updated_at, the write statements prepared on the connection, and when it
last rechecked each book's prices. They live here, in the object the batch
functions take, rather than in module caches keyed by connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from bulk import sqlfiles


@dataclass(eq=False)
class Session:
    """One autocommit connection that values batches (bulk.engine.batch).

    `rechecked` maps a book's key (bulk.engine.rules.book_key) to when this process
    last rechecked its prices (time.monotonic()); the sessions of one
    ConnectionHolder share it, so a reconnect does not recheck before its time.
    """

    conn: psycopg.Connection
    rechecked: dict[str, float] = field(default_factory=dict)
    # The write statements prepared on this connection, by name (bulk.engine.batch).
    prepared: set[bytes] = field(default_factory=set)
    _updated_at: str | None = field(default=None, init=False)
    _updated_at_read: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # Every write is one statement, its own transaction: a batch commits whole
        # or not at all, with no BEGIN/COMMIT round trips.
        if not self.conn.autocommit:
            raise ValueError("batches are valued on an autocommit connection")

    def updated_at_type(self) -> str | None:
        """The type name of killmails.updated_at, or None without the column; read once
        (a connection's tables do not change under a job)."""
        if not self._updated_at_read:
            row = self.conn.execute(sqlfiles.load("updated_at_type")).fetchone()
            self._updated_at = row[0] if row and row[0] else None
            self._updated_at_read = True
        return self._updated_at
