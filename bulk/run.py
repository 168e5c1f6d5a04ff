"""`run`: the broker-less batch pipeline on one machine.

The parent scans IDs (keyset) and keeps up to IN_FLIGHT batches in the pipe of
each of N child processes (bulk.procs); each child has its own PostgreSQL
connection and runs each batch with bulk.engine.retry. A child that dies has
its batches fed to a new child. On SIGINT/SIGTERM the parent stops handing out
batches and lets every child finish the ones in hand.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import psycopg

from bulk import db, events, readiness
from bulk.engine import book, modes, scan, stale
from bulk.engine.retry import ConnectionHolder, DatabaseGone, EnvironmentFailure, Failure, run_batch
from bulk.engine.valuation import Valuation
from bulk.errors import describe, one_line
from bulk.procs import Child, Children, Stopper, child_setup, parent_gone, send
from bulk.progress import Progress
from bulk.redact import scrub

if TYPE_CHECKING:
    from bulk.metrics import RunMetrics

_POLL = 0.2
# Batches handed to a child ahead of its results: with one, its database
# connection idled while the result crossed the pipe and the parent scanned
# and sent the next batch (about a third of the wall time, issue 15).
IN_FLIGHT = 2
SCAN_APPLICATION = "bulk-backfill run scan"
_SAMPLE = 20  # how many no-victim IDs a summary names


@dataclass
class RunSummary:
    selected: int
    processed: int = 0
    updated: int = 0
    skipped: int = 0
    no_victim: int = 0
    no_victim_sample: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    stopped_early: str | None = None  # why the job stopped before the end
    resume_after: int | None = None
    restarts: int = 0
    scan_reconnects: int = 0
    # With --allow-incomplete: killmails holding a type without type data or price.
    with_gaps: int | None = None
    # The price book rows the job built (or rebuilt) before its first batch, and how long it took.
    book_rows: int = 0
    book_seconds: float = 0.0
    book_note: str | None = None  # why the job's prices were left to its batches

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class RunJob:
    """What `run` was asked to do, built once by the CLI (or the demo) and passed whole.

    The valuation's price_refresh is run's to set: where the parent built the
    book before the first batch, its children do not recheck it.
    """

    url: str
    selection: scan.Selection
    valuation: Valuation = Valuation()
    procs: int = 2
    batch_size: int = 500
    allow_empty_prices: bool = False
    allow_incomplete: bool = False
    # Seconds a lost database is waited out, by the scan and by each batch.
    db_patience: float = 60.0

    def __post_init__(self) -> None:
        if self.procs < 1:
            raise ValueError("procs must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        modes.engine(self.valuation.engine)


def _child(job: RunJob, pipe) -> None:
    parent = child_setup(job.url)
    stopped = None  # why this child's job must stop: the batches still in hand are not tried
    # The engine's imports (numpy, 70 ms) now, while the parent checks the
    # database and a stale job searches, not on this child's first batch. The
    # parent never imports them: a broken install stops the job with one line
    # here, not with a child dying and restarted until the parent gives up.
    try:
        import bulk.engine.batch  # noqa: F401
    except ImportError as exc:
        stopped = f"the valuation engine cannot be imported: {one_line(exc)}"

    holder = ConnectionHolder(
        lambda: db.open_connection(
            job.url, autocommit=True, application_name="bulk-backfill run", valuing=True
        )
    )
    try:
        while True:
            if not pipe.poll(_POLL):
                if parent_gone(parent):
                    return
                continue
            try:
                task = pipe.recv()
            except (EOFError, OSError):
                return
            if isinstance(task, events.Stop):
                return
            if stopped:
                result = events.JobStopped(stopped)
            else:
                result = _value(holder, task.ids, job)
            if isinstance(result, events.JobStopped):
                stopped = result.reason
            # A parent gone by now leaves the batch committed: the next run skips it.
            if not send(pipe, result):
                return
    finally:
        holder.discard()


def _value(
    holder: ConnectionHolder, ids: list[int], job: RunJob
) -> events.BatchDone | events.JobStopped:
    """One batch, done; or JobStopped when no retry can help and the job must stop before it."""
    try:
        outcome = run_batch(
            holder, ids, job.selection.mode, job.valuation, patience=job.db_patience
        )
    except EnvironmentFailure as exc:
        return events.JobStopped(f"the database cannot take this job: {exc}")
    except DatabaseGone as exc:
        return events.JobStopped(str(exc))
    r = outcome.result
    return events.BatchDone(
        killmails=len(set(ids)),
        updated=r.updated,
        skipped=r.skipped,
        no_victim=r.no_victim,
        no_victim_sample=r.no_victim_ids[:_SAMPLE],
        failures=[(f.killmail_id, f.error) for f in outcome.failures],
    )


class _Pool:
    """run's policy over the children: up to IN_FLIGHT batches each, a dead child's fed again.

    A child's task is the deque of (seq, ids) it was sent and has not answered,
    oldest first: a child answers its batches in the order it got them.
    """

    def __init__(
        self,
        job: RunJob,
        summary: RunSummary,
        bar: Progress,
        metrics: RunMetrics | None = None,
    ):
        self.url = job.url
        self.summary = summary
        self.progress = bar
        self.metrics = metrics
        self.requeue: deque = deque()  # batches of children that died with them
        self.last_id: dict[int, int] = {}  # seq -> last id of that batch
        self.finished: set[int] = set()
        self.children = Children(
            _child,
            (job,),
            job.procs,
            progress=bar,
            on_message=self._record,
            on_exit=self._exited,
            say=lambda text: print(text, file=self.progress.stream, flush=True),
            noun="child process",
            lost_work=" and feeding its batch again",
            fork=True,
        )

    def show(self, bar: Progress) -> None:
        """Display on `bar` from now on (the children may start before the job's size is known)."""
        self.progress = self.children.progress = bar

    @staticmethod
    def in_hand(child: Child) -> deque:
        if child.task is None:
            child.task = deque()
        return child.task

    def busy(self) -> list[Child]:
        return [c for c in self.children.children if self.in_hand(c)]

    def least_loaded(self) -> Child | None:
        """The child with the fewest batches in hand, if one can take another."""
        child = min(self.children.children, key=lambda c: len(self.in_hand(c)), default=None)
        return child if child is not None and len(self.in_hand(child)) < IN_FLIGHT else None

    def give(self, child: Child, seq: int, ids: list[int]) -> None:
        self.last_id[seq] = ids[-1]
        self.in_hand(child).append((seq, ids))
        try:
            child.pipe.send(events.ValueBatch(ids))
        except OSError:
            pass  # the child just died: collect() sees it and feeds the batch again

    def _record(self, child: Child, result: events.BatchDone | events.JobStopped) -> None:
        seq = self.in_hand(child).popleft()[0]
        if isinstance(result, events.JobStopped):
            # The batch stays unfinished, so the resume point stays before it.
            self.summary.stopped_early = self.summary.stopped_early or result.reason
            if self.metrics is not None:
                self.metrics.database_up.set(0)
            return
        self.finished.add(seq)
        s = self.summary
        s.processed += result.killmails
        s.updated += result.updated
        s.skipped += result.skipped
        s.no_victim += result.no_victim
        # The lowest IDs, whatever order the batches end in: the same run, the same list.
        s.no_victim_sample = sorted({*s.no_victim_sample, *result.no_victim_sample})[:_SAMPLE]
        failed = result.failures
        s.failures += [Failure(i, e) for i, e in failed]
        if self.metrics is not None:
            self.metrics.batch_done(result.killmails, len(failed))
        self.progress.add(
            result.killmails,
            updated=result.updated,
            skipped=result.skipped - len(failed),
            failed=len(failed),
        )

    def _exited(self, child: Child, code: int | None) -> bool:
        self.requeue.extend(self.in_hand(child))
        child.task = None
        return True  # any end of a child before the parent says so is a death

    def resume_point(self) -> int | None:
        """The highest id up to which every handed-out batch finished."""
        point = None
        for seq in sorted(self.last_id):
            if seq not in self.finished:
                break
            point = self.last_id[seq]
        return point


def _feed(pool: _Pool, batches: Iterator[list[int]], stopper: Stopper) -> None:
    requeue = pool.requeue
    seq = 0
    scanning = True
    while True:
        stopping = stopper.requested or pool.summary.stopped_early is not None
        while not stopping and (requeue or scanning):
            child = pool.least_loaded()
            if child is None:
                break
            if requeue:
                pool.give(child, *requeue.popleft())
                continue
            try:
                ids = next(batches, None)
            except scan.ScanStopped as exc:
                # What was handed out is finished first, so the resume point covers it.
                pool.summary.stopped_early = scrub(str(exc), pool.url)
                ids = None
            if ids is None:
                scanning = False
                break
            pool.give(child, seq, ids)
            seq += 1
        if not pool.busy() and (stopping or not (requeue or scanning)):
            return
        pool.children.collect(_POLL)
        if pool.metrics is not None:
            pool.metrics.children.set(len(pool.children.children))
            pool.metrics.in_hand.set(sum(len(pool.in_hand(c)) for c in pool.children.children))


def _prepare(job: RunJob, summary: RunSummary, bar: Progress, metrics) -> tuple:
    """Check the database, build the book and start the children: (the stale IDs or
    None, the pool). The children start before a stale job's search, so that their
    start-up (an interpreter, numpy, a connection each) overlaps it. On a database
    error summary.stopped_early says why (the pool may then be None)."""
    selection, v = job.selection, job.valuation
    pool = None
    try:
        with db.connect(job.url, autocommit=True) as conn:
            db.require_schema(conn)
            summary.with_gaps = readiness.require_gaps(
                conn,
                v.rules,
                v.price_column,
                job.allow_incomplete,
                allow_unpriced=job.allow_empty_prices,
            )
            readiness.require_rule_prices(conn, v.rules, job.allow_empty_prices)
            book.require_table(conn)
            found = None
            if not selection.found():
                summary.selected = scan.count(conn, selection)
            # Before the first batch: the children then find every price ready.
            book_started = time.monotonic()
            try:
                if selection.found():
                    summary.book_rows, summary.book_note = stale.build_first(
                        conn, v.rules, v.price_column
                    )
                else:
                    summary.book_rows, summary.book_note = book.build_before_batches(
                        conn, v.rules, v.price_column, *selection.killmails_sql()
                    )
                # Where the parent built the book, the children need no recheck.
                refresh = None if summary.book_note else book.BUILT_BY_JOB
                children = replace(job, valuation=replace(v, price_refresh=refresh))
                pool = _Pool(children, summary, bar, metrics)
                if selection.found():
                    found, more, summary.book_note = stale.find_and_build(
                        conn,
                        v.rules,
                        v.price_column,
                        selection,
                        summary.book_note,
                        beside=lambda: db.connect(job.url, autocommit=True),
                    )
                    summary.book_rows += more
                    summary.selected = len(found)
            except psycopg.Error as exc:
                summary.stopped_early = f"the database cannot take this job: {describe(exc)}"
            summary.book_seconds = time.monotonic() - book_started
    except BaseException as exc:
        # The children started before the search: whatever ends the job here (a
        # second Ctrl+C during the search, say) must end them too, or the parent
        # would wait for them forever.
        if pool is not None:
            pool.children.close(events.Stop(), kill=isinstance(exc, KeyboardInterrupt))
        raise
    return found, pool


def run_local(
    job: RunJob,
    *,
    progress: bool = True,
    announce: Callable[[int], None] | None = None,
    metrics_at: tuple[str, int] | None = None,
) -> RunSummary:
    """Value every killmail the job's selection covers, with its child processes.

    `announce` is called with the number of matching killmails once the
    database has been checked, before any work starts. A scan that loses its
    connection for longer than the job's db_patience ends the run early:
    summary.stopped_early says why and summary.resume_after where to go on.
    """
    started = time.monotonic()
    metrics = None
    if metrics_at is not None:
        from bulk.metrics import RunMetrics

        metrics = RunMetrics()
        metrics.serve(metrics_at[1], metrics_at[0])

    def on_first_signal() -> None:
        print(
            "\nstopping: finishing the batches in hand (press Ctrl+C again to quit at once)",
            file=bar.stream,
            flush=True,
        )

    def note(text: str) -> None:
        print(text, file=bar.stream, flush=True)

    # Nothing is shown until the job's size is known; the children start before that.
    bar = Progress(None, enabled=False)
    summary = RunSummary(selected=0)
    pool = None
    killed = False
    batches = None
    try:
        with Stopper(on_first_signal) as stopper:
            found, pool = _prepare(job, summary, bar, metrics)
            if summary.stopped_early is not None:
                summary.elapsed = time.monotonic() - started
                return summary
            if announce is not None:
                announce(summary.selected)
            bar = Progress(summary.selected, desc=f"run {job.selection.mode}", enabled=progress)
            pool.show(bar)
            # The scan has a connection of its own, named so an operator (or a
            # test) can tell it from the children's, and reopened when it is lost.
            if found is not None:
                batches = scan.ListScan(found, job.batch_size, job.selection.after_id)
            else:
                batches = scan.Scan(
                    lambda: db.open_connection(
                        job.url, autocommit=True, application_name=SCAN_APPLICATION
                    ),
                    job.selection,
                    job.batch_size,
                    patience=job.db_patience,
                    should_stop=lambda: stopper.requested,
                    note=note,
                )
            _feed(pool, iter(batches), stopper)
            summary.interrupted = stopper.requested
    except KeyboardInterrupt:
        summary.interrupted = killed = True
    finally:
        if batches is not None:
            batches.close()
            summary.scan_reconnects = batches.reconnects
        if pool is not None:
            pool.children.close(events.Stop(), kill=killed)
            summary.restarts = pool.children.restarts
        bar.close()
    if (summary.interrupted or summary.stopped_early) and pool is not None:
        summary.resume_after = pool.resume_point()
    summary.elapsed = time.monotonic() - started
    return summary
