"""`run`: the broker-less batch pipeline on one machine.

The parent scans IDs (keyset) and hands one batch at a time to each of N
child processes over a pipe of its own; each child has its own PostgreSQL
connection and runs each batch with bulk.engine.retry. A pipe per child, rather than
a shared queue, means a child killed at any moment cannot leave a lock held:
the parent sees its pipe close, feeds its batch to a new child, and goes on.
On SIGINT/SIGTERM the parent stops handing out batches and lets every child
finish the one in hand.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import psycopg

from bulk import db, redact
from bulk.config import scrub
from bulk.engine import scan
from bulk.engine.retry import ConnectionHolder, DatabaseGone, EnvironmentFailure, Failure, run_batch
from bulk.errors import UserError
from bulk.progress import Progress
from bulk.stopper import Stopper

_POLL = 0.2
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

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


def _child(url: str, mode: str, price_column: str, patience: float, pipe) -> None:
    # The parent decides when to stop; a Ctrl+C reaching the whole process
    # group must not interrupt a batch half way through its transaction.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A spawned child starts with no passwords noted: its failure texts must mask them.
    redact.remember(url)
    parent = os.getppid()
    holder = ConnectionHolder(
        lambda: psycopg.connect(url, autocommit=True, application_name="bulk-backfill run")
    )
    try:
        while True:
            if not pipe.poll(_POLL):
                if os.getppid() != parent:
                    return
                continue
            try:
                task = pipe.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            result = _value(holder, task, mode, price_column, patience)
            try:
                pipe.send(result)
            except OSError:
                # The parent is gone (killed, say): nobody is left to report to.
                # The batch is committed; the next run skips it as already written.
                return
    finally:
        holder.discard()


def _value(
    holder: ConnectionHolder, ids: list[int], mode: str, price_column: str, patience: float
) -> tuple:
    """One batch as ("done", ids, updated, skipped, no_victim, sample, failures),
    or ("stop", reason) when no retry can help and the job must stop before it."""
    try:
        outcome = run_batch(holder, ids, mode, price_column, patience=patience)
    except EnvironmentFailure as exc:
        return ("stop", f"the database cannot take this job: {exc}")
    except DatabaseGone as exc:
        return ("stop", f"lost the database and could not reconnect: {exc}")
    r = outcome.result
    failures = [(f.killmail_id, f.error) for f in outcome.failures]
    return (
        "done",
        len(set(ids)),
        r.updated,
        r.skipped,
        r.no_victim,
        r.no_victim_ids[:_SAMPLE],
        failures,
    )


@dataclass
class _Child:
    process: mp.Process
    pipe: object
    batch: tuple[int, list[int]] | None = None  # (seq, ids) in hand


class _Pool:
    def __init__(
        self, url, mode, price_column, patience, procs, summary: RunSummary, progress: Progress
    ):
        self.args = (url, mode, price_column, patience)
        self.ctx = mp.get_context("spawn")
        self.summary = summary
        self.progress = progress
        self.children: list[_Child] = []
        self.max_restarts = procs * 3
        self.last_id: dict[int, int] = {}  # seq -> last id of that batch
        self.finished: set[int] = set()
        for _ in range(procs):
            self._start()

    def _start(self) -> None:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(target=_child, args=(*self.args, child_end), daemon=True)
        process.start()
        child_end.close()
        self.children.append(_Child(process, parent_end))

    def busy(self) -> list[_Child]:
        return [c for c in self.children if c.batch is not None]

    def idle(self) -> list[_Child]:
        return [c for c in self.children if c.batch is None]

    def give(self, child: _Child, seq: int, ids: list[int]) -> None:
        self.last_id[seq] = ids[-1]
        child.batch = (seq, ids)
        try:
            child.pipe.send(ids)
        except OSError:
            pass  # the child just died: collect() sees it and feeds the batch again

    def collect(self, timeout: float, requeue: deque) -> None:
        """Take finished batches; replace dead children (busy or idle), feed their batch again."""
        busy = self.busy()
        waitables = [c.pipe for c in busy] + [c.process.sentinel for c in self.children]
        ready = wait(waitables, timeout)
        for child in list(self.children):
            if child.pipe not in ready and child.process.sentinel not in ready:
                continue
            if child.batch is not None:
                try:
                    if child.pipe.poll():
                        self._record(child.batch[0], child.pipe.recv())
                        child.batch = None
                except (EOFError, OSError):
                    pass
            if child.process.sentinel in ready and not child.process.is_alive():
                self._replace(child, requeue)

    def _record(self, seq: int, result: tuple) -> None:
        if result[0] == "stop":
            # The batch stays unfinished, so the resume point stays before it.
            self.summary.stopped_early = self.summary.stopped_early or result[1]
            return
        _, n, updated, skipped, no_victim, sample, failed = result
        self.finished.add(seq)
        s = self.summary
        s.processed += n
        s.updated += updated
        s.skipped += skipped
        s.no_victim += no_victim
        s.no_victim_sample += sample[: _SAMPLE - len(s.no_victim_sample)]
        s.failures += [Failure(i, e) for i, e in failed]
        self.progress.add(n, updated=updated, skipped=skipped - len(failed), failed=len(failed))

    def _replace(self, child: _Child, requeue: deque) -> None:
        self.children.remove(child)
        child.pipe.close()
        if child.batch is not None:
            requeue.append(child.batch)
        if self.summary.restarts >= self.max_restarts:
            raise UserError(
                f"child processes keep dying (last exit code {child.process.exitcode}); "
                f"gave up after {self.summary.restarts} restarts"
            )
        self.summary.restarts += 1
        print(
            f"child process {child.process.pid} died (exit code {child.process.exitcode});"
            " restarting it and feeding its batch again",
            file=self.progress.stream,
            flush=True,
        )
        self._start()

    def close(self, kill: bool = False) -> None:
        for child in self.children:
            if kill:
                child.process.kill()
            else:
                try:
                    child.pipe.send(None)
                except OSError:
                    pass
        for child in self.children:
            child.process.join(timeout=10)
            if child.process.is_alive():
                child.process.kill()
            child.pipe.close()

    def resume_point(self) -> int | None:
        """The highest id up to which every handed-out batch finished."""
        point = None
        for seq in sorted(self.last_id):
            if seq not in self.finished:
                break
            point = self.last_id[seq]
        return point


def _feed(pool: _Pool, batches: Iterator[list[int]], stopper: Stopper) -> None:
    requeue: deque = deque()
    seq = 0
    scanning = True
    while True:
        stopping = stopper.requested or pool.summary.stopped_early is not None
        while not stopping and pool.idle() and (requeue or scanning):
            if requeue:
                pool.give(pool.idle()[0], *requeue.popleft())
                continue
            try:
                ids = next(batches, None)
            except scan.ScanStopped as exc:
                # What was handed out is finished first, so the resume point covers it.
                pool.summary.stopped_early = scrub(str(exc), pool.args[0])
                ids = None
            if ids is None:
                scanning = False
                break
            pool.give(pool.idle()[0], seq, ids)
            seq += 1
        if not pool.busy() and (stopping or not (requeue or scanning)):
            return
        pool.collect(_POLL, requeue)
        pool.progress.tick()


def run_local(
    url: str,
    selection: scan.Selection,
    *,
    procs: int = 2,
    batch_size: int = 500,
    price_column: str = "sell",
    allow_empty_prices: bool = False,
    progress: bool = True,
    db_patience: float = 60.0,
    announce: Callable[[int], None] | None = None,
) -> RunSummary:
    """Value every killmail the selection covers, with `procs` child processes.

    `announce` is called with the number of matching killmails once the
    database has been checked, before any work starts. A scan that loses its
    connection for longer than `db_patience` seconds ends the run early:
    summary.stopped_early says why and summary.resume_after where to go on.
    """
    if procs < 1:
        raise ValueError("procs must be at least 1")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    started = time.monotonic()
    with db.connect(url, autocommit=True) as conn:
        db.require_schema(conn)
        if not allow_empty_prices:
            db.require_prices(conn)
        summary = RunSummary(selected=scan.count(conn, selection))
    if announce is not None:
        announce(summary.selected)
    bar = Progress(summary.selected, desc=f"run {selection.mode}", enabled=progress)

    def on_first_signal() -> None:
        print(
            "\nstopping: finishing the batches in hand (press Ctrl+C again to quit at once)",
            file=bar.stream,
            flush=True,
        )

    def note(text: str) -> None:
        print(text, file=bar.stream, flush=True)

    pool = None
    killed = False
    batches = None
    try:
        with Stopper(on_first_signal) as stopper:
            # The scan has a connection of its own, named so an operator (or a
            # test) can tell it from the children's, and reopened when it is lost.
            batches = scan.Scan(
                lambda: psycopg.connect(url, autocommit=True, application_name=SCAN_APPLICATION),
                selection,
                batch_size,
                patience=db_patience,
                should_stop=lambda: stopper.requested,
                note=note,
            )
            pool = _Pool(url, selection.mode, price_column, db_patience, procs, summary, bar)
            _feed(pool, iter(batches), stopper)
            summary.interrupted = stopper.requested
    except KeyboardInterrupt:
        summary.interrupted = killed = True
    finally:
        if batches is not None:
            batches.close()
            summary.scan_reconnects = batches.reconnects
        if pool is not None:
            pool.close(kill=killed)
        bar.close()
    if (summary.interrupted or summary.stopped_early) and pool is not None:
        summary.resume_after = pool.resume_point()
    summary.elapsed = time.monotonic() - started
    return summary
