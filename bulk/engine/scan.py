"""Which killmails a job covers, and the keyset scan that yields them in batches."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg

from bulk import db, sqlfiles
from bulk.backoff import Backoff
from bulk.engine import modes
from bulk.engine.errors import ErrorKind, classify
from bulk.errors import describe, one_line

# Filter fragments on alias k; each names the parameters it binds.
_FILTERS = {
    "ids": "k.killmail_id = ANY(%(ids)s::int[])",
    "ship_types": (
        "EXISTS (SELECT 1 FROM victims AS sv WHERE sv.killmail_id = k.killmail_id"
        " AND sv.ship_type_id = ANY(%(ship_types)s::int[]))"
    ),
    "since": "k.killmail_time >= %(since)s",
    "until": "k.killmail_time < %(until)s",
}

_MIN_ID = -(2**31)

# One scan query reads this many batches' IDs (up to READ_AHEAD_IDS): a query
# per batch cost the scan's backend about 1 ms each, a twentieth of what the
# workers' backends spend on the batch (issue 15). A batch re-checks the mode
# itself, so IDs read a little ahead of the workers are as good as fresh ones.
READ_AHEAD = 8
READ_AHEAD_IDS = 20_000


@dataclass(frozen=True)
class Selection:
    """The killmails a job covers: the mode's predicate plus optional filters.

    until is exclusive; the CLI turns a bare date into the start of the next day.
    """

    mode: str = "null"
    limit: int | None = None
    ids: tuple[int, ...] = ()
    ship_types: tuple[int, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    after_id: int | None = None
    # --mode stale: how far (a fraction) a unit price must move to make a stamp
    # stale; 0 is any cent (bulk.engine.stale).
    min_change: Decimal = Decimal(0)

    def found(self) -> bool:
        """Whether the mode's killmails are found up front (bulk.engine.stale), not scanned."""
        return self.mode in modes.FOUND_MODES

    def filtered(self) -> bool:
        """Whether a filter beyond the mode and the resume point narrows the job."""
        return any(getattr(self, name) for name in _FILTERS)

    def _where(self) -> tuple[str, dict]:
        # A found mode's killmails are a list (ListScan); its filters still apply.
        clauses = [modes.mode_predicate("all" if self.found() else self.mode)]
        params: dict = {"after": _MIN_ID if self.after_id is None else self.after_id}
        for name in _FILTERS:
            value = getattr(self, name)
            if value:
                clauses.append(_FILTERS[name])
                params[name] = list(value) if isinstance(value, tuple) else value
        return " AND ".join(clauses), params

    def killmails_sql(self) -> tuple[str, dict]:
        """(condition on alias k, its parameters): the killmails the job covers now,
        its limit included, for a statement that reads them all at once."""
        filters, params = self._where()
        condition = f"k.killmail_id > %(after)s AND {filters}"
        if self.limit is not None:
            # The scan's own page query, one page of `limit` IDs: the same killmails.
            page = sqlfiles.load("scan_ids").format(filters=filters)
            condition = f"k.killmail_id IN ({page})"
            params["page"] = self.limit
        return condition, params


def count(conn: psycopg.Connection, selection: Selection) -> int:
    """How many killmails the selection covers now, capped by its limit."""
    filters, params = selection._where()
    (n,) = conn.execute(sqlfiles.load("count_ids").format(filters=filters), params).fetchone()
    return n if selection.limit is None else min(n, selection.limit)


class ListScan:
    """Batches of a list of IDs found up front (a found mode), ascending, with Scan's
    interface: nothing to reconnect, since the list is in memory."""

    def __init__(self, ids: Sequence[int], batch_size: int, after_id: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._ids = ids
        self._start = 0 if after_id is None else bisect.bisect_right(ids, after_id)
        self._batch_size = batch_size
        self.after = after_id
        self.reconnects = 0

    def __len__(self) -> int:
        return len(self._ids) - self._start

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(self._start, len(self._ids), self._batch_size):
            ids = list(self._ids[start : start + self._batch_size])
            self.after = ids[-1]
            yield ids

    def close(self) -> None:
        pass


class ScanStopped(Exception):
    """The scan cannot go on; the message is one line. `after` is the last ID handed out."""

    def __init__(self, message: str, after: int | None):
        super().__init__(message)
        self.after = after


class Scan:
    """A keyset scan that survives its connection: it reconnects and goes on from `after`.

    Only a lost connection (ErrorKind.CONNECTION) is waited out, with capped
    jittered backoff, for `patience` seconds of failing in a row; any other
    error, or a connection that stays away, raises ScanStopped. Each page is
    its own short query, so a reconnect loses nothing: the next page simply
    starts after the last ID handed out.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        selection: Selection,
        batch_size: int,
        *,
        patience: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        note: Callable[[str], None] = lambda text: None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        filters, self._params = selection._where()
        self._statement = sqlfiles.load("scan_ids").format(filters=filters)
        self._connect = connect
        self._batch_size = batch_size
        self._patience = patience
        self._sleep = sleep
        self._should_stop = should_stop
        self._note = note
        self._conn: psycopg.Connection | None = None
        self.after = selection.after_id  # the last ID handed out
        self.remaining = selection.limit
        self.reconnects = 0

    def __iter__(self) -> Iterator[list[int]]:
        fetched: list[int] = []  # IDs read ahead of the batches handed out
        while self.remaining is None or self.remaining > 0:
            page = self._batch_size
            if self.remaining is not None:
                page = min(page, self.remaining)
            if not fetched:
                ahead = max(page, min(self._batch_size * READ_AHEAD, READ_AHEAD_IDS))
                if self.remaining is not None:
                    ahead = min(ahead, self.remaining)
                fetched = self._page(ahead)
            ids, fetched = fetched[:page], fetched[page:]
            if not ids:
                return
            self.after = ids[-1]
            if self.remaining is not None:
                self.remaining -= len(ids)
            yield ids

    def _page(self, page: int) -> list[int]:
        # Read ahead from the last ID handed out, which is the last one read:
        # a page is read only when the one before it is all handed out.
        params = {**self._params, "page": page}
        if self.after is not None:
            params["after"] = self.after
        backoff = Backoff(base=0.5, cap=10.0, patience=self._patience)
        while True:
            conn = self._conn
            try:
                if conn is None:
                    conn = self._conn = self._connect()
                    if backoff.since is not None:
                        self.reconnects += 1
                return [r[0] for r in conn.execute(self._statement, params).fetchall()]
            except psycopg.Error as exc:
                kind = classify(exc, conn)
                self.close()
                if kind not in (ErrorKind.CONNECTION, ErrorKind.RESOURCES):
                    raise ScanStopped(f"the scan failed: {describe(exc)}", self.after) from None
                if backoff.since is None:
                    backoff.start_clock()
                    self._note(
                        f"lost the database connection of the scan ({one_line(exc)}); reconnecting"
                    )
                if backoff.expired() or self._should_stop():
                    raise ScanStopped(
                        f"lost the database connection of the scan for {backoff.waited():.0f} s"
                        f" ({one_line(exc)})",
                        self.after,
                    ) from None
                self._wait(backoff.delay())

    def _wait(self, seconds: float) -> None:
        # In short steps, so that a stop asked for meanwhile is not kept waiting.
        deadline = time.monotonic() + seconds
        while not self._should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(min(left, 0.2))

    def close(self) -> None:
        db.close_quietly(self._conn)
        self._conn = None
