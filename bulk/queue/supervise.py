"""`work --procs N`: the parent that runs N consuming children.

Each child consumes from RabbitMQ with its own AMQP and PostgreSQL
connection (bulk.queue.consume); the parent merges their counters into one progress
display, watches the queue depth, restarts a child that dies, decides when
an --until-empty run is done, and on SIGINT/SIGTERM asks every child to
finish the batch in hand and stop.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from bulk import db, redact
from bulk.errors import UserError
from bulk.progress import Progress
from bulk.queue import broker
from bulk.queue.consume import FatalError, Worker, WorkSettings
from bulk.stopper import Stopper

_POLL = 0.25
_DEPTH_EVERY = 0.5  # seconds between queue-depth checks
_DRAIN_CHECK = 0.05  # the same while every child is idle
_EXIT_FATAL = 3
# A child that says nothing for this long while it has work in hand is killed
# and restarted. A batch of 500 takes well under a second and one of 10,000 a
# few seconds; a child waiting out a lost database or broker reports each
# retry. Five minutes is far above any sane batch, yet bounds how long a hung
# child can hold its prefetched batches and keep --until-empty from ending.
DEFAULT_STALL_TIMEOUT = 300.0


@dataclass
class WorkSummary:
    queue: str
    waiting_at_start: int = 0
    batches: int = 0  # messages acked after their batch was written or dead-lettered
    processed: int = 0
    updated: int = 0
    skipped: int = 0
    no_victim: int = 0
    dead: int = 0  # killmails sent to the dead-letter queue
    invalid: int = 0  # messages dead-lettered as invalid
    retried: int = 0  # killmails republished for another try
    restarts: int = 0
    stall_restarts: int = 0  # children killed and restarted after reporting nothing
    fatal: str | None = None
    interrupted: bool = False
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


def _child(settings: WorkSettings, pipe) -> None:
    # The parent decides when to stop: a Ctrl+C reaching the whole process
    # group must not interrupt a batch half way through.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A spawned child starts with no passwords noted: its error texts (dead-letter
    # headers included) must still mask the ones in the URLs it was given.
    redact.remember(settings.db_url, settings.amqp_url)
    parent = os.getppid()
    stop = False

    def should_stop() -> bool:
        nonlocal stop
        if not stop:
            try:
                stop = os.getppid() != parent or (pipe.poll() and pipe.recv() == "stop")
            except (EOFError, OSError):
                stop = True
        return stop

    def report(event: tuple) -> None:
        try:
            pipe.send(event)
        except OSError:
            pass  # the parent is gone; should_stop() sees it next

    # Imports are done: from here on the parent's stall clock applies.
    report(("started",))
    try:
        Worker(settings, report, should_stop).run()
    except FatalError as exc:
        report(("fatal", str(exc)))
        raise SystemExit(_EXIT_FATAL) from None


@dataclass
class _Child:
    process: mp.Process
    pipe: object
    idle: bool = False
    started: bool = False  # past its imports: a child still starting holds no batch
    heard: float = field(default_factory=time.monotonic)  # its last event
    stalled: bool = False  # killed by the parent for saying nothing for too long


class _Children:
    def __init__(
        self,
        settings: WorkSettings,
        procs: int,
        summary: WorkSummary,
        bar: Progress,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ):
        self.settings = settings
        self.stall_timeout = stall_timeout
        self.ctx = mp.get_context("spawn")
        self.summary = summary
        self.bar = bar
        self.max_restarts = procs * 3
        self.children: list[_Child] = []
        self.events = 0  # batches finished or handed on, to tell "still idle" apart
        for _ in range(procs):
            self._start()

    def _start(self) -> None:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(target=_child, args=(self.settings, child_end), daemon=True)
        process.start()
        child_end.close()
        self.children.append(_Child(process, parent_end))

    def all_idle(self) -> bool:
        return all(c.idle for c in self.children)

    def alive(self) -> list[_Child]:
        return [c for c in self.children if c.process.is_alive()]

    def collect(self, timeout: float, restart: bool = True) -> None:
        waitables = [c.pipe for c in self.children] + [c.process.sentinel for c in self.children]
        ready = wait(waitables, timeout)
        for child in list(self.children):
            try:
                while child.pipe.poll():
                    child.heard = time.monotonic()
                    child.started = True
                    self._record(child, child.pipe.recv())
            except (EOFError, OSError):
                pass
            if child.process.sentinel in ready and not child.process.is_alive():
                self._gone(child, restart)

    def kill_stalled(self, stopping: bool = False) -> None:
        """SIGKILL a child that has said nothing for stall_timeout with work in hand.

        Any event counts as a sign of life. An idle child on an empty queue has
        nothing to say and is left alone, except while stopping, when every
        child should be on its way out. SIGKILL because a stopped (SIGSTOP)
        process does not act on SIGTERM until continued; the kernel then closes
        its sockets and the broker gives its unacked batches to the others.
        """
        now = time.monotonic()
        for child in self.children:
            if child.stalled or not child.started or (child.idle and not stopping):
                continue
            if now - child.heard >= self.stall_timeout and child.process.is_alive():
                child.stalled = True
                self._say(
                    f"worker process {child.process.pid} reported nothing for "
                    f"{now - child.heard:.0f} s with work in hand; killing "
                    f"{'it' if stopping else 'and restarting it'} "
                    "(its unacked batches go back to the queue)"
                )
                child.process.kill()

    def _record(self, child: _Child, event: tuple) -> None:
        kind, *rest = event
        s = self.summary
        if kind == "idle":
            child.idle = rest[0]
        elif kind == "written":
            killmails, updated, skipped, no_victim, dead = rest
            self.events += 1
            s.processed += killmails
            s.updated += updated
            s.skipped += skipped
            s.no_victim += no_victim
            s.dead += dead
            self.bar.add(0, killmails=killmails, updated=updated, skipped=skipped, failed=dead)
        elif kind == "acked":
            self.events += 1
            s.batches += rest[0]
            self.bar.add(rest[0])
        elif kind == "retried":
            self.events += 1
            s.retried += rest[0]
        elif kind == "invalid":
            self.events += 1
            s.invalid += rest[0]
            self.bar.add(0, invalid=rest[0])
        elif kind == "note":
            self._say(rest[0])
        elif kind == "fatal":
            s.fatal = rest[0]

    def _gone(self, child: _Child, restart: bool) -> None:
        self.children.remove(child)
        child.pipe.close()
        code = child.process.exitcode
        if code == 0 or code == _EXIT_FATAL or not restart:
            return
        if child.stalled:
            # Not a crash loop: a stall takes stall_timeout to show, so restarts
            # after stalls cannot race; they are counted apart and never give up.
            self.summary.stall_restarts += 1
            self._start()
            return
        if self.summary.restarts >= self.max_restarts:
            raise UserError(
                f"worker processes keep dying (last exit code {code}); "
                f"gave up after {self.summary.restarts} restarts"
            )
        self.summary.restarts += 1
        self._say(
            f"worker process {child.process.pid} died (exit code {code}); restarting it "
            "(its unacked batches go back to the queue)"
        )
        self._start()

    def _say(self, text: str) -> None:
        self.summary.notes.append(text)
        print(text, file=self.bar.stream, flush=True)

    def stop(self) -> None:
        for child in self.children:
            # A stopping child has until stall_timeout from now to finish its batch.
            child.heard = time.monotonic()
            try:
                child.pipe.send("stop")
            except OSError:
                pass

    def kill(self) -> None:
        for child in self.children:
            child.process.kill()


class _Depth:
    """The parent's own look at the queue; None while the broker is unreachable."""

    def __init__(self, url: str, queue: str):
        self.url = url
        self.queue = queue
        self.connection = None
        self.channel = None

    def ready(self) -> int | None:
        try:
            if self.connection is None or not self.connection.is_open:
                self.connection = broker.connect(self.url)
                self.channel = None
            # One channel for every poll: a channel opened per poll and never
            # closed reaches the connection's channel_max and takes it down.
            if self.channel is None or not self.channel.is_open:
                self.channel = self.connection.channel()
            return broker.depth(self.channel, self.queue).ready
        except broker.CONNECTION_ERRORS + (broker.BrokerError,):
            self.close()
            return None

    def close(self) -> None:
        broker.close_quietly(self.connection)
        self.connection = self.channel = None


def work(
    settings: WorkSettings,
    *,
    procs: int = 2,
    until_empty: bool = False,
    allow_empty_prices: bool = False,
    progress: bool = True,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    announce: Callable[[int], None] | None = None,
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
        if not allow_empty_prices:
            db.require_prices(conn)
    connection = broker.connect(settings.amqp_url)
    try:
        channel = connection.channel()
        broker.declare(channel, settings.queue)
        summary = WorkSummary(settings.queue, broker.depth(channel, settings.queue).ready)
    finally:
        connection.close()
    if announce is not None:
        announce(summary.waiting_at_start)
    bar = Progress(
        summary.waiting_at_start,
        desc="work",
        noun="batches",
        unit="batch",
        counts=("killmails", "updated", "skipped", "failed"),
        enabled=progress,
    )

    def on_first_signal() -> None:
        print(
            "\nstopping: finishing the batches in hand (press Ctrl+C again to quit at once)",
            file=bar.stream,
            flush=True,
        )

    depth = _Depth(settings.amqp_url, settings.queue)
    children = None
    try:
        with Stopper(on_first_signal) as stopper:
            children = _Children(settings, procs, summary, bar, stall_timeout)
            _supervise(children, depth, stopper, until_empty, bar)
            summary.interrupted = stopper.requested
            children.stop()
            while children.children:
                children.collect(_POLL, restart=False)
                children.kill_stalled(stopping=True)
    except KeyboardInterrupt:
        summary.interrupted = True
        if children is not None:
            children.kill()
    finally:
        depth.close()
        bar.close()
    summary.elapsed = time.monotonic() - started
    return summary


def _supervise(children: _Children, depth: _Depth, stopper, until_empty: bool, bar) -> None:
    """Until a stop, a fatal error, or (until_empty) a drained queue with every child idle."""
    last_check = -_DEPTH_EVERY
    drained_seen: int | None = None  # children.events when the queue was last seen drained
    while not stopper.requested and children.summary.fatal is None and children.children:
        idle = children.all_idle()
        children.collect(_DRAIN_CHECK if idle else _POLL)
        children.kill_stalled()
        bar.tick()
        # Once every child is idle the end may be near: look more often.
        if time.monotonic() - last_check < (_DRAIN_CHECK if idle else _DEPTH_EVERY):
            continue
        last_check = time.monotonic()
        ready = depth.ready()
        if ready is None:
            drained_seen = None
            continue
        bar.set_total(max(bar.done + ready, bar.total or 0))
        if not until_empty:
            continue
        if ready == 0 and children.all_idle():
            # Seen twice in a row with nothing finished between: a message that was
            # on its way to a child would have made it busy by now.
            if drained_seen == children.events:
                return
            drained_seen = children.events
        else:
            drained_seen = None
