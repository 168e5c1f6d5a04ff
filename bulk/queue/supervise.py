"""`work --procs N`: the parent that runs N consuming children.

Each child consumes from RabbitMQ with its own AMQP and PostgreSQL
connection (bulk.queue.consume); the parent merges their counters into one progress
display, watches the queue depth, restarts a child that dies, decides when
an --until-empty run is done, and on SIGINT/SIGTERM asks every child to
finish the batch in hand and stop.
"""

from __future__ import annotations

import queue as queues
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bulk import db, events, readiness
from bulk.engine import book
from bulk.metrics import WorkMetrics, count_event
from bulk.procs import Child, Children, Stopper, child_setup, parent_gone, send
from bulk.progress import Progress
from bulk.queue import broker
from bulk.queue.consume import FatalError, Worker, WorkSettings
from bulk.queue.settings import DEFAULT_STALL_TIMEOUT

_POLL = 0.25
_DEPTH_EVERY = 0.5  # seconds between queue-depth checks
_DRAIN_CHECK = 0.05  # the same while every child is idle
# Seconds the parent waits for the broker to answer one depth check. Over a dead
# link a passive declare waits as long as pika does: a heartbeat or two, and
# forever with heartbeat=0; meanwhile nobody watched the children or Ctrl+C.
DEPTH_TIMEOUT = 10.0
_SAY_EVERY = 30.0  # seconds between two notes about the depth check
_UNACKED_EVERY = 5.0  # seconds between two reads of the unacked count (metrics only)
_EXIT_FATAL = 3


@dataclass
class WorkSummary:
    queue: str
    waiting_at_start: int = 0
    messages: int = 0  # acked: v1 batches and old single-killmail messages alike
    batches: int = 0  # batches valued or dead-lettered (old singles are gathered into batches)
    processed: int = 0
    updated: int = 0
    skipped: int = 0
    no_victim: int = 0
    dead: int = 0  # killmails sent to the dead-letter queue
    invalid: int = 0  # messages dead-lettered as invalid
    retried: int = 0  # killmails republished for another try
    redelivered: int = 0  # batches that came back unacked, republished as a failed try
    restarts: int = 0
    stall_restarts: int = 0  # children killed and restarted after reporting nothing
    fatal: str | None = None
    interrupted: bool = False
    elapsed: float = 0.0
    # With --allow-incomplete: killmails holding a type without type data or price.
    with_gaps: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


def _child(settings: WorkSettings, pipe) -> None:
    parent = child_setup(settings.db_url, settings.amqp_url)
    stop = False

    def should_stop() -> bool:
        nonlocal stop
        if not stop:
            try:
                stop = parent_gone(parent) or (pipe.poll() and isinstance(pipe.recv(), events.Stop))
            except (EOFError, OSError):
                stop = True
        return stop

    def report(event: object) -> None:
        send(pipe, event)  # a parent gone is seen by should_stop() next

    # Imports are done: from here on the parent's stall clock applies.
    report(events.Started())
    try:
        Worker(settings, report, should_stop).run()
    except FatalError as exc:
        report(events.Fatal(str(exc)))
        raise SystemExit(_EXIT_FATAL) from None


class _Fleet:
    """work's policy over the children: merge their counters; a fatal error ends the job."""

    def __init__(
        self,
        settings: WorkSettings,
        procs: int,
        summary: WorkSummary,
        bar: Progress,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        metrics: WorkMetrics | None = None,
    ):
        self.summary = summary
        self.bar = bar
        self.metrics = metrics
        self.events = 0  # batches finished or handed on, to tell "still idle" apart
        self.children = Children(
            _child,
            (settings,),
            procs,
            progress=bar,
            on_message=self._record,
            on_exit=lambda child, code: code not in (0, _EXIT_FATAL),
            say=self.say,
            noun="worker process",
            lost_work=" (its unacked batches go back to the queue)",
            stall_timeout=stall_timeout,
        )

    def busy(self) -> int:
        return sum(not c.idle for c in self.children.children)

    def all_idle(self) -> bool:
        return all(c.idle for c in self.children.children)

    def _record(self, child: Child, event: object) -> None:
        s = self.summary
        if isinstance(event, events.Idle):
            child.idle = event.idle
        count_event(self.metrics, event, self.busy)
        if isinstance(event, events.Written):
            self.events += 1
            s.batches += 1
            s.processed += event.killmails
            s.updated += event.updated
            s.skipped += event.skipped
            s.no_victim += event.no_victim
            s.dead += event.dead
            self.bar.add(
                0,
                killmails=event.killmails,
                updated=event.updated,
                skipped=event.skipped,
                failed=event.dead,
            )
        elif isinstance(event, events.Acked):
            self.events += 1
            s.messages += event.messages
            self.bar.add(event.messages)
        elif isinstance(event, events.Retried):
            self.events += 1
            s.retried += event.killmails
        elif isinstance(event, events.Invalid):
            self.events += 1
            s.invalid += event.messages
            self.bar.add(0, invalid=event.messages)
        elif isinstance(event, events.Redelivered):
            s.redelivered += event.batches
        elif isinstance(event, events.Note):
            self.say(event.text)
        elif isinstance(event, events.Fatal):
            s.fatal = event.reason

    def say(self, text: str) -> None:
        """A note for the operator, printed now and kept for the summary."""
        self.summary.notes.append(text)
        print(text, file=self.bar.stream, flush=True)


class _Depth:
    """The parent's own look at the queue; None while the broker does not answer.

    The broker is asked from a thread of its own and waited for at most
    `timeout` seconds: a thread stuck on a dead link is left behind (it ends
    with the process), so the parent never waits on the broker, nor on closing
    a connection the broker will never answer.
    """

    def __init__(
        self, url: str, queue: str, timeout: float = DEPTH_TIMEOUT, with_unacked: bool = False
    ):
        self.url = url
        self.queue = queue
        self.timeout = timeout
        self.with_unacked = with_unacked
        self.asker: _Asker | None = None
        self.unanswered_since: float | None = None  # when the broker stopped answering

    def ready(self) -> int | None:
        if self.asker is None:
            self.asker = _Asker(self.url, self.queue, self.with_unacked)
        asked = time.monotonic()
        answer = self.asker.ask(self.timeout)
        if answer is None:
            self.close()  # the next check starts over on a new connection
            if self.unanswered_since is None:
                self.unanswered_since = asked
        else:
            self.unanswered_since = None
        return answer

    def unacked(self) -> float:
        """The queue's unacked messages as last read (NaN: not read, or cannot be)."""
        return float("nan") if self.asker is None else self.asker.unacked

    def close(self) -> None:
        if self.asker is not None:
            self.asker.leave()
            self.asker = None


class _Asker:
    """A thread that holds one broker connection and answers depth checks, one at a time."""

    def __init__(self, url: str, queue: str, with_unacked: bool = False):
        self.url = url
        self.queue = queue
        self.with_unacked = with_unacked
        self.unacked = float("nan")
        self.unacked_at = -_UNACKED_EVERY
        self.requests: queues.SimpleQueue = queues.SimpleQueue()
        self.answers: queues.SimpleQueue = queues.SimpleQueue()
        threading.Thread(target=self._serve, name="bulk-depth", daemon=True).start()

    def ask(self, timeout: float) -> int | None:
        self.requests.put(True)
        try:
            return self.answers.get(timeout=timeout)
        except queues.Empty:
            return None

    def leave(self) -> None:
        """Stop after the check in hand, if any; never waits."""
        self.requests.put(False)

    def _serve(self) -> None:
        # The connection is this thread's alone; its attributes are for tests to inspect.
        self.connection = self.channel = None
        try:
            while self.requests.get():
                try:
                    if self.connection is None or not self.connection.is_open:
                        self.connection, self.channel = broker.connect(self.url), None
                    # One channel for every check: a channel opened per check and
                    # never closed reaches the connection's channel_max.
                    if self.channel is None or not self.channel.is_open:
                        self.channel = self.connection.channel()
                    self.answers.put(broker.depth(self.channel, self.queue).ready)
                    self._read_unacked()
                except broker.CONNECTION_ERRORS + (broker.BrokerError,):
                    broker.close_quietly(self.connection)
                    self.connection = self.channel = None
                    self.answers.put(None)
        finally:
            broker.close_quietly(self.connection)

    def _read_unacked(self) -> None:
        # Only the management API knows the unacked count; asked here, after the
        # answer, so that a slow API never delays a depth check.
        now = time.monotonic()
        if not self.with_unacked or now - self.unacked_at < _UNACKED_EVERY:
            return
        self.unacked_at = now
        from bulk.audit.status import unacked_count

        count = unacked_count(self.url, self.queue)
        self.unacked = float("nan") if count is None else float(count)


def work(
    settings: WorkSettings,
    *,
    procs: int = 2,
    until_empty: bool = False,
    allow_empty_prices: bool = False,
    allow_incomplete: bool = False,
    progress: bool = True,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    announce: Callable[[int], None] | None = None,
    metrics_at: tuple[str, int] | None = None,
) -> WorkSummary:
    """Consume the queue with `procs` children until stopped (or drained, with until_empty).

    `announce(ready)` is called once the database and broker have been checked.
    A child that reports nothing for `stall_timeout` seconds with work in hand
    is killed and restarted.
    """
    if procs < 1:
        raise ValueError("procs must be at least 1")
    started = time.monotonic()
    with db.connect(settings.db_url, autocommit=True) as conn:
        db.require_schema(conn)
        # Under work's rule set (the one of old single messages; a batch names its own).
        gaps = readiness.require_gaps(
            conn,
            settings.valuation.rules,
            settings.valuation.price_column,
            allow_incomplete,
            allow_unpriced=allow_empty_prices,
        )
        readiness.require_rule_prices(conn, settings.valuation.rules, allow_empty_prices)
        book.require_table(conn)
    connection = broker.connect(settings.amqp_url)
    try:
        channel = connection.channel()
        broker.declare(channel, settings.queue)
        summary = WorkSummary(settings.queue, broker.depth(channel, settings.queue).ready)
        summary.with_gaps = gaps
    finally:
        connection.close()
    metrics = None
    if metrics_at is not None:
        metrics = WorkMetrics()
        # What the checks just above found, until the first depth check says more.
        metrics.broker_up.set(1)
        metrics.ready.set(summary.waiting_at_start)
        metrics.serve(metrics_at[1], metrics_at[0])
    if announce is not None:
        announce(summary.waiting_at_start)
    bar = Progress(
        summary.waiting_at_start,
        desc="work",
        noun="messages",
        unit="message",
        counts=("killmails", "updated", "skipped", "failed"),
        enabled=progress,
    )

    def on_first_signal() -> None:
        print(
            "\nstopping: finishing the batches in hand (press Ctrl+C again to quit at once)",
            file=bar.stream,
            flush=True,
        )

    depth = _Depth(settings.amqp_url, settings.queue, with_unacked=metrics is not None)
    fleet = None
    try:
        with Stopper(on_first_signal) as stopper:
            fleet = _Fleet(settings, procs, summary, bar, stall_timeout, metrics)
            _supervise(fleet, depth, stopper, until_empty, bar)
            summary.interrupted = stopper.requested
            children = fleet.children
            children.stop(events.Stop())
            while children.children:
                children.collect(_POLL, restart=False)
                children.kill_stalled(stopping=True)
    except KeyboardInterrupt:
        summary.interrupted = True
        if fleet is not None:
            fleet.children.kill()
    finally:
        if fleet is not None:
            summary.restarts = fleet.children.restarts
            summary.stall_restarts = fleet.children.stall_restarts
        depth.close()
        bar.close()
    summary.elapsed = time.monotonic() - started
    return summary


def _supervise(fleet: _Fleet, depth: _Depth, stopper, until_empty: bool, bar) -> None:
    """Until a stop, a fatal error, or (until_empty) a drained queue with every child idle."""
    last_check = -_DEPTH_EVERY
    said_at = -_SAY_EVERY
    drained_seen: int | None = None  # fleet.events when the queue was last seen drained
    children = fleet.children
    while not stopper.requested and fleet.summary.fatal is None and children.children:
        idle = fleet.all_idle()
        children.collect(_DRAIN_CHECK if idle else _POLL)
        children.kill_stalled()
        if fleet.metrics is not None:
            fleet.metrics.children.set(len(children.children))
            fleet.metrics.in_hand.set(fleet.busy())
        # Once every child is idle the end may be near: look more often.
        if time.monotonic() - last_check < (_DRAIN_CHECK if idle else _DEPTH_EVERY):
            continue
        last_check = time.monotonic()
        ready = depth.ready()
        if fleet.metrics is not None:
            fleet.metrics.broker_up.set(0 if ready is None else 1)
            if ready is not None:
                fleet.metrics.ready.set(ready)
                fleet.metrics.unacked.set(depth.unacked())
        if ready is None:
            drained_seen = None
            now = time.monotonic()
            # A broker restarting is the workers' to report; one that stays silent
            # for a whole check is worth a note of the parent's own.
            if now - depth.unanswered_since >= depth.timeout and now - said_at >= _SAY_EVERY:
                said_at = now
                fleet.say(
                    "the broker does not answer the queue-depth check"
                    f" (for {now - depth.unanswered_since:.0f} s); the workers go on"
                )
            continue
        bar.set_total(max(bar.done + ready, bar.total or 0))
        if not until_empty:
            continue
        if ready == 0 and fleet.all_idle():
            # Seen twice in a row with nothing finished between: a message that was
            # on its way to a child would have made it busy by now.
            if drained_seen == fleet.events:
                return
            drained_seen = fleet.events
        else:
            drained_seen = None
