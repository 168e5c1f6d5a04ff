"""`prices history fetch`: market_price_history from ESI, incremental and resumable.

A type whose stored history already reaches the newest day ESI can have
(yesterday, UTC: ESI publishes a day once it is over) is not asked for again.
The others are asked through the same polite client as `prices fetch`, and
their days are upserted in small groups as they arrive, each group its own
transaction: an interrupted fetch keeps every group written, and running it
again asks only for the types still behind. A day stored with the same values
is not written again. A day dated after tomorrow (UTC) is not stored: no
market has it yet, and it would make the type look up to date for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from bulk import db
from bulk.prices import esi, history, store
from bulk.prices import history_files as hf
from bulk.prices.fetch import for_each_type
from bulk.progress import Progress

# Types per upsert, and the longest a fetched type waits to be written: small,
# so Ctrl+C or a crash loses at most a few seconds of answers.
_FLUSH_TYPES = 25
_FLUSH_SECONDS = 2.0


@dataclass
class HistoryFetchSummary:
    types: int  # types considered
    up_to_date: list[int] = field(default_factory=list)  # not asked: nothing newer to have
    asked: int = 0
    fetched: int = 0  # types whose answer had at least one day
    no_history: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    # Days that could not be real (a negative or non-numeric price, no date, ...):
    # skipped, and the types they were in.
    bad_days: int = 0
    bad_day_types: list[int] = field(default_factory=list)
    # Days dated after tomorrow (UTC): skipped, and the types they were in.
    future_days: int = 0
    future_day_types: list[int] = field(default_factory=list)
    written: history.Written = field(default_factory=history.Written)
    latest: date | None = None  # the newest day ESI can have
    newest_allowed: date | None = None  # tomorrow: a day after it is not stored
    interrupted: bool = False
    elapsed: float = 0.0
    stats: esi.FetchStats = field(default_factory=esi.FetchStats)
    tables_created: list[str] = field(default_factory=list)


def newest_day(today: date | None = None) -> date:
    """The newest day ESI's history can hold: yesterday in UTC."""
    return (today or datetime.now(timezone.utc).date()) - timedelta(days=1)


def fetch_history(
    url: str,
    client: esi.Client,
    *,
    type_ids: list[int] | None = None,
    used_types: bool = False,
    concurrency: int = 20,
    progress: bool = True,
    today: date | None = None,
    announce: Callable[[HistoryFetchSummary], None] | None = None,
) -> HistoryFetchSummary:
    """Fetch and store the history of the given types (or every type the killmails
    use) in the client's region, skipping the types already up to date."""
    started = time.monotonic()
    with db.connect(url, autocommit=True) as conn:
        if used_types:
            db.require_schema(conn)
            types = store.used_types(conn)
        else:
            types = sorted(set(type_ids or []))
        created = db.ensure_history_tables(conn)
        latest = newest_day(today)
        newest = history.newest_allowed(today)
        known = history.known_through(conn, client.region, types, newest)
        summary = HistoryFetchSummary(
            types=len(types), latest=latest, newest_allowed=newest, tables_created=created
        )
        summary.up_to_date = [t for t in types if t in known and known[t] >= latest]
        behind = [t for t in types if not (t in known and known[t] >= latest)]
        summary.asked = len(behind)
        if announce is not None:
            announce(summary)
        bar = Progress(
            len(behind),
            desc="history fetch",
            noun="types",
            unit="type",
            counts=("fetched", "no_history", "failed"),
            enabled=progress,
        )
        pending = _Pending()

        def record(type_id: int, future: Future) -> None:
            _record(summary, type_id, future, pending, bar)

        def flush_if_due() -> None:
            if pending.due():
                _flush(conn, pending, summary)

        try:
            summary.interrupted = for_each_type(
                behind,
                lambda type_id: hf.esi_days(
                    client.history(type_id), region=client.region, type_id=type_id, newest=newest
                ),
                record,
                concurrency=concurrency,
                after_each=flush_if_due,
                client=client,
                say=bar.note,
            )
        finally:
            # Whatever was fetched is written, even on Ctrl+C: each group is whole.
            _flush(conn, pending, summary)
            bar.close()
    summary.stats = client.stats
    summary.stats.pauses = client.budget.pauses
    summary.elapsed = time.monotonic() - started
    return summary


class _Pending:
    """Fetched types not written yet."""

    def __init__(self) -> None:
        self.rows: list[hf.HistoryRows] = []
        self.since = time.monotonic()

    def add(self, rows: hf.HistoryRows) -> None:
        if not self.rows:
            self.since = time.monotonic()
        self.rows.append(rows)

    def due(self) -> bool:
        return len(self.rows) >= _FLUSH_TYPES or (
            bool(self.rows) and time.monotonic() - self.since >= _FLUSH_SECONDS
        )


def _record(
    summary: HistoryFetchSummary, type_id: int, future: Future, pending: _Pending, bar
) -> None:
    try:
        rows, bad, future_days = future.result()
    except esi.TypeFailed as exc:
        summary.failed.append((type_id, str(exc)))
        bar.add(1, failed=1)
        return
    if bad:
        summary.bad_days += bad
        summary.bad_day_types.append(type_id)
    if future_days:
        summary.future_days += future_days
        summary.future_day_types.append(type_id)
    if not len(rows):
        summary.no_history.append(type_id)
        bar.add(1, no_history=1)
        return
    summary.fetched += 1
    pending.add(rows)
    bar.add(1, fetched=1)


def _flush(conn: psycopg.Connection, pending: _Pending, summary: HistoryFetchSummary) -> None:
    if not pending.rows:
        return
    rows = hf.HistoryRows.concat(pending.rows)
    with conn.transaction():
        written = history.upsert_rows(conn, rows)
    pending.rows.clear()
    summary.written.new += written.new
    summary.written.changed += written.changed
    summary.written.unchanged += written.unchanged
