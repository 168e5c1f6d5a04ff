"""`queue`: a keyset scan of the matching killmails, published as v1 batch messages.

Every message is persistent and confirmed by the broker before the next one
is sent, so the summary's "last confirmed killmail_id" is a true resume
point: every matching killmail up to it is in the queue.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bulk import db, readiness
from bulk.backoff import Backoff
from bulk.engine import book, scan, stale
from bulk.engine import rules as rule_sets
from bulk.errors import one_line
from bulk.progress import Progress
from bulk.queue import broker, messages
from bulk.redact import scrub

SCAN_APPLICATION = "bulk-backfill queue scan"


@dataclass
class QueueSummary:
    selected: int
    batches_planned: int
    queued: int = 0
    batches: int = 0
    unconfirmed: list[tuple[int, int]] = field(default_factory=list)  # (first, last) ID
    last_confirmed_id: int | None = None  # every match up to here is queued
    stopped_early: str | None = None  # why publishing stopped before the end
    reconnects: int = 0
    scan_reconnects: int = 0  # the database connection of the scan, reopened
    elapsed: float = 0.0
    # With --allow-incomplete: killmails holding a type without type data or price.
    with_gaps: int | None = None

    @property
    def complete(self) -> bool:
        return not self.unconfirmed and self.stopped_early is None


def _source() -> str:
    return f"bulk-backfill queue@{socket.gethostname()}"


class _Link:
    """A confirming publisher that reconnects when the broker goes away."""

    def __init__(self, url: str, queue: str, patience: float):
        self.url = url
        self.queue = queue
        self.patience = patience
        self.reconnects = 0
        self._publisher: broker.Publisher | None = None
        self._open()

    def _open(self) -> None:
        connection = broker.connect(self.url)
        broker.declare(connection.channel(), self.queue)
        self._publisher = broker.Publisher(connection)

    def publish(self, body: bytes, sleep: Callable[[float], None]) -> None:
        """Publish until confirmed; PublishFailed on a nack, BrokerError when it stays gone.

        A broker that goes away is waited for, with backoff, for `patience` seconds.
        """
        backoff = Backoff(base=0.5, cap=10.0, patience=self.patience)
        while True:
            try:
                if self._publisher is None:
                    self._open()
                    self.reconnects += 1
                self._publisher.publish(self.queue, body)
                return
            except broker.CONNECTION_ERRORS + (broker.BrokerError,):
                # The confirm may have been lost with the connection: publishing
                # again can queue this batch twice, which is harmless (the write is
                # idempotent), whereas not publishing it could lose it.
                self.close()
                backoff.start_clock()
                if backoff.expired():
                    raise
                sleep(backoff.delay())

    def close(self) -> None:
        if self._publisher is not None:
            broker.close_quietly(self._publisher.connection)
        self._publisher = None


def queue_killmails(
    db_url: str,
    amqp_url: str,
    selection: scan.Selection,
    *,
    queue: str = broker.DEFAULT_QUEUE,
    batch_size: int = 500,
    dry_run: bool = False,
    allow_incomplete: bool = False,
    rules: str = rule_sets.DEFAULT_RULES,
    price_column: str = "sell",
    allow_empty_prices: bool = False,
    broker_patience: float = 60.0,
    db_patience: float = 60.0,
    progress: bool = True,
    announce: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> QueueSummary:
    """Publish every killmail the selection covers, batch_size IDs a message.

    `announce(selected, batches)` is called once the database has been
    checked and, unless dry_run, the broker reached. A scan that loses its
    database connection for longer than `db_patience` seconds stops early,
    with last_confirmed_id as the resume point.
    """
    if not 1 <= batch_size <= messages.MAX_IDS:
        raise ValueError(f"batch size must be between 1 and {messages.MAX_IDS}")
    started = time.monotonic()
    with db.connect(db_url, autocommit=True) as conn:
        db.require_schema(conn)
        # Seed's price column is the workers' (--price-column of work): they check it.
        gaps = readiness.require_gaps(
            conn,
            rules,
            price_column,
            allow_incomplete,
            allow_unpriced=allow_empty_prices or rule_sets.uses_price_column(rules),
        )
        readiness.require_rule_prices(conn, rules, allow_empty_prices)
        book.require_table(conn)
        found = None
        if selection.found():
            # The stale killmails of the workers' book: found once, here, with the
            # book rebuilt where its sources changed (a dry run builds it too).
            found, _, _ = stale.build_and_find(
                conn,
                rules,
                price_column,
                selection,
                beside=lambda: db.connect(db_url, autocommit=True),
            )
            selected = len(found)
        else:
            selected = scan.count(conn, selection)
        if not dry_run and not selection.found() and not rule_sets.uses_price_column(rules):
            # The job's kill-date prices, built once before the workers ask for
            # them; seed's depend on the workers' price column, and they build it.
            # Where some killmail cannot be priced, the workers build each batch's.
            book.build_before_batches(conn, rules, "sell", *selection.killmails_sql())
    summary = QueueSummary(selected, batches_planned=-(-selected // batch_size), with_gaps=gaps)
    link = None if dry_run else _Link(amqp_url, queue, broker_patience)
    if announce is not None:
        announce(summary.selected, summary.batches_planned)
    bar = Progress(
        summary.batches_planned,
        desc="queue" if not dry_run else "dry run",
        noun="batches",
        unit="batch",
        counts=("killmails",),
        enabled=progress,
    )
    source = _source()
    # The scan's own connection, named so it can be told apart, reopened when lost.
    # It goes on after the last batch it handed out, which was published (or
    # counted as unconfirmed) before the next page is read.
    # A stale batch of seed's carries the column it was found stale under.
    found_under = price_column if found is not None and rule_sets.uses_price_column(rules) else None
    if found is not None:
        batches = scan.ListScan(found, batch_size, selection.after_id)
    else:
        batches = scan.Scan(
            lambda: db.open_connection(db_url, autocommit=True, application_name=SCAN_APPLICATION),
            selection,
            batch_size,
            patience=db_patience,
            sleep=sleep,
            note=lambda text: print(text, file=bar.stream, flush=True),
        )
    try:
        for ids in batches:
            if link is not None:
                body = messages.encode_batch(
                    ids, selection.mode, source, rules=rules, price_column=found_under
                )
                try:
                    link.publish(body, sleep)
                except broker.PublishFailed:
                    summary.unconfirmed.append((ids[0], ids[-1]))
                    continue
                except broker.CONNECTION_ERRORS + (broker.BrokerError,) as exc:
                    summary.unconfirmed.append((ids[0], ids[-1]))
                    summary.stopped_early = f"lost the broker: {one_line(exc)}"
                    break
            summary.queued += len(ids)
            summary.batches += 1
            if not summary.unconfirmed:
                summary.last_confirmed_id = ids[-1]
            bar.add(1, killmails=len(ids))
    except scan.ScanStopped as exc:
        summary.stopped_early = scrub(str(exc), db_url)
    finally:
        batches.close()
        summary.scan_reconnects = batches.reconnects
        bar.close()
        if link is not None:
            summary.reconnects = link.reconnects
            link.close()
    summary.elapsed = time.monotonic() - started
    return summary
