"""Which killmails a job covers, and the keyset scan that yields them in batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import psycopg

from bulk import sqlfiles

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

    def _where(self) -> tuple[str, dict]:
        clauses = [sqlfiles.mode_predicate(self.mode)]
        params: dict = {"after": _MIN_ID if self.after_id is None else self.after_id}
        for name in _FILTERS:
            value = getattr(self, name)
            if value:
                clauses.append(_FILTERS[name])
                params[name] = list(value) if isinstance(value, tuple) else value
        return " AND ".join(clauses), params


def count(conn: psycopg.Connection, selection: Selection) -> int:
    """How many killmails the selection covers now, capped by its limit."""
    filters, params = selection._where()
    (n,) = conn.execute(sqlfiles.load("count_ids").format(filters=filters), params).fetchone()
    return n if selection.limit is None else min(n, selection.limit)


def scan_batches(
    conn: psycopg.Connection, selection: Selection, batch_size: int
) -> Iterator[list[int]]:
    """Batches of matching IDs in id order, each read with its own short query."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    filters, params = selection._where()
    statement = sqlfiles.load("scan_ids").format(filters=filters)
    remaining = selection.limit
    while remaining is None or remaining > 0:
        page = batch_size if remaining is None else min(batch_size, remaining)
        ids = [r[0] for r in conn.execute(statement, {**params, "page": page}).fetchall()]
        if not ids:
            return
        yield ids
        params["after"] = ids[-1]
        if remaining is not None:
            remaining -= len(ids)
