"""`run`: the broker-less batch pipeline on one machine.

The parent scans IDs (keyset) and feeds batches to N child processes through a
bounded local queue; each child has its own PostgreSQL connection and runs
each batch with bulk.retry. The parent merges the children's counts into one
progress display, restarts a child that dies (its batch in hand is fed again),
and on SIGINT/SIGTERM stops feeding and lets every child finish its batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from bulk import db, scan
from bulk.progress import Progress
from bulk.retry import ConnectionHolder, Failure, run_batch

_POLL = 0.2
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
    resume_after: int | None = None
    restarts: int = 0

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0


def _child(url: str, mode: str, price_column: str, tasks, results, stop) -> None:
    # The parent decides when to stop; a Ctrl+C reaching the whole process
    # group must not interrupt a batch half way through its transaction.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    holder = ConnectionHolder(lambda: psycopg.connect(url, application_name="bulk-backfill run"))
    try:
        while not stop.is_set():
            try:
                task = tasks.get(timeout=_POLL)
            except queue.Empty:
                if os.getppid() != parent:
                    return
                continue
            if task is None:
                return
            seq, ids = task
            results.put(("start", seq, os.getpid()))
            try:
                outcome = run_batch(holder, ids, mode, price_column)
            except Exception as exc:  # transient retries exhausted: report, never drop silently
                message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                results.put(("failed", seq, len(ids), [(i, message) for i in ids]))
                continue
            r = outcome.result
            results.put(
                (
                    "done",
                    seq,
                    len(set(ids)),
                    r.updated,
                    r.skipped,
                    r.no_victim,
                    r.no_victim_ids[:_SAMPLE],
                    [(f.killmail_id, f.error) for f in outcome.failures],
                )
            )
    finally:
        holder.discard()


class _Stopper:
    """First SIGINT/SIGTERM asks for a clean stop; a second one quits at once."""

    def __init__(self, on_first):
        self.requested = False
        self._on_first = on_first
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._on_first()


class _Run:
    def __init__(self, url, selection, procs, batch_size, price_column, progress):
        self.url = url
        self.selection = selection
        self.procs = procs
        self.batch_size = batch_size
        self.price_column = price_column
        self.progress = progress
        self.ctx = mp.get_context("spawn")
        self.tasks = self.ctx.Queue(maxsize=max(2, procs * 2))
        self.results = self.ctx.Queue()
        self.stop = self.ctx.Event()
        self.children: list = []
        self.batches: dict[int, list[int]] = {}  # dispatched, not yet finished
        self.last_id: dict[int, int] = {}
        self.in_hand: dict[int, int] = {}  # child pid -> seq
        self.finished: set[int] = set()
        self.requeue: list[tuple[int, list[int]]] = []
        self.max_restarts = procs * 3

    def start_child(self):
        p = self.ctx.Process(
            target=_child,
            args=(
                self.url,
                self.selection.mode,
                self.price_column,
                self.tasks,
                self.results,
                self.stop,
            ),
            daemon=True,
        )
        p.start()
        self.children.append(p)

    def drain(self, summary: RunSummary, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            kind, seq = msg[0], msg[1]
            if kind == "start":
                self.in_hand[msg[2]] = seq
                continue
            if seq in self.finished:  # a batch fed again after its child died
                continue
            self.finished.add(seq)
            self.batches.pop(seq, None)
            if kind == "failed":
                _, _, n, failed = msg
                summary.failures += [Failure(i, e) for i, e in failed]
                summary.processed += n
                summary.skipped += n
                self.progress.add(n, failed=n)
            else:
                _, _, n, updated, skipped, no_victim, sample, failed = msg
                summary.processed += n
                summary.updated += updated
                summary.skipped += skipped
                summary.no_victim += no_victim
                summary.no_victim_sample += sample[: _SAMPLE - len(summary.no_victim_sample)]
                summary.failures += [Failure(i, e) for i, e in failed]
                self.progress.add(
                    n, updated=updated, skipped=skipped - len(failed), failed=len(failed)
                )

    def reap(self, summary: RunSummary) -> None:
        """Replace children that died; their batch in hand is fed again."""
        for p in list(self.children):
            if p.is_alive() or p.exitcode == 0:
                continue
            self.children.remove(p)
            self.drain(summary)
            seq = self.in_hand.pop(p.pid, None)
            if seq is not None and seq not in self.finished:
                self.requeue.append((seq, self.batches[seq]))
            if summary.restarts >= self.max_restarts:
                raise RuntimeError(
                    f"child processes keep dying (exit code {p.exitcode}); "
                    f"gave up after {summary.restarts} restarts"
                )
            summary.restarts += 1
            print(
                f"child process {p.pid} died (exit code {p.exitcode}); restarting it",
                file=self.progress.stream,
                flush=True,
            )
            self.start_child()

    def put(self, summary: RunSummary, item, stopper: _Stopper) -> bool:
        while not stopper.requested:
            try:
                self.tasks.put(item, timeout=_POLL)
                return True
            except queue.Full:
                self.drain(summary)
                self.reap(summary)
        return False

    def dispatch(self, summary: RunSummary, seq: int, ids: list[int], stopper) -> bool:
        self.batches[seq] = ids
        self.last_id[seq] = ids[-1]
        if not self.put(summary, (seq, ids), stopper):
            return False
        self.drain(summary)
        while self.requeue and not stopper.requested:
            again = self.requeue.pop()
            self.put(summary, again, stopper)
        return True

    def finish(self, summary: RunSummary, stopper: _Stopper) -> None:
        """Wait for every batch; feed again any whose child died after the scan ended."""
        for _ in range(self.procs):
            self.put(summary, None, stopper)
        while True:
            self.drain(summary, timeout=_POLL)
            if not stopper.requested:
                self.reap(summary)
            if any(p.is_alive() for p in self.children):
                continue
            self.drain(summary)
            if stopper.requested or not self.batches:
                return
            # Every child has exited but batches are unfinished: the queue may
            # still hold some of them, so empty it and feed them all once more.
            self.requeue.clear()
            while True:
                try:
                    self.tasks.get(timeout=_POLL)
                except queue.Empty:
                    break
            self.start_child()
            for item in sorted(self.batches.items()):
                self.put(summary, item, stopper)
            self.put(summary, None, stopper)

    def resume_point(self) -> int | None:
        """The highest id up to which every dispatched batch finished."""
        point = None
        for seq in sorted(self.last_id):
            if seq not in self.finished:
                break
            point = self.last_id[seq]
        return point


def run_local(
    url: str,
    selection: scan.Selection,
    *,
    procs: int = 2,
    batch_size: int = 500,
    price_column: str = "sell",
    allow_empty_prices: bool = False,
    progress: bool = True,
    announce: Callable[[int], None] | None = None,
) -> RunSummary:
    """Value every killmail the selection covers, with `procs` child processes.

    `announce` is called with the number of matching killmails once the
    database has been checked, before any work starts.
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
        run = _Run(url, selection, procs, batch_size, price_column, bar)

        def on_first_signal():
            run.stop.set()
            print(
                "\nstopping: finishing the batches in hand (press Ctrl+C again to quit at once)",
                file=bar.stream,
                flush=True,
            )

        try:
            with _Stopper(on_first_signal) as stopper:
                for _ in range(procs):
                    run.start_child()
                seq = 0
                for ids in scan.scan_batches(conn, selection, batch_size):
                    if stopper.requested or not run.dispatch(summary, seq, ids, stopper):
                        break
                    seq += 1
                run.finish(summary, stopper)
                run.drain(summary)
                summary.interrupted = stopper.requested
        except KeyboardInterrupt:
            summary.interrupted = True
            for p in run.children:
                p.kill()
        finally:
            run.stop.set()
            for p in run.children:
                p.join(timeout=5)
            bar.close()
        summary.resume_after = run.resume_point() if summary.interrupted else None
    summary.elapsed = time.monotonic() - started
    return summary
