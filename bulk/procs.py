"""One child-process supervisor for `run` and `work`: start, pipes, restarts, signals, stalls.

Each child is a process with a pipe of its own to the parent (rather than a
shared queue: a child killed at any moment cannot leave a lock held). A child
is spawned (a fresh interpreter), or, where its owner allows it and the parent
runs no other thread, forked: `run`'s children then start with the parent's
imports done instead of paying 0.27 s of CPU each for their own, on the stale
job's critical path.
The parent waits on every pipe and process sentinel at once, hands each
message to the policy that started the children (run feeds batches, work
consumes from the broker), restarts a child that dies within a budget of
procs × 3, and may kill a child that has said nothing for too long.
The first SIGINT/SIGTERM asks the parent for a clean stop; children ignore
both, so a Ctrl+C that reaches the whole process group never cuts a batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import wait

from bulk import redact
from bulk.errors import UserError
from bulk.progress import Progress

RESTARTS_PER_PROC = 3
# Blocked from just before a child starts until it ignores them: a forked child
# starts with the parent's handlers (which would print "stopping" from the child
# and stop nothing), a spawned one with Python's (a traceback during its imports).
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

# -- in the child ---------------------------------------------------------


def child_setup(*urls: str) -> int:
    """Signals and masking for a new child, forked or spawned; the parent's pid.

    The parent decides when to stop: a Ctrl+C reaching the whole process group
    must not interrupt a batch half way through its transaction. A spawned
    child starts with no passwords noted: its error texts must still mask the
    ones in the URLs it was given.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Ignored, a signal that arrived while blocked is dropped.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    redact.remember(*urls)
    return os.getppid()


def parent_gone(parent: int) -> bool:
    """Whether the parent that started this child has died (the child was re-parented)."""
    return os.getppid() != parent


def send(pipe, message: object) -> bool:
    """Send to the parent; False if it is gone (killed, say): nobody is left to report to."""
    try:
        pipe.send(message)
    except OSError:
        return False
    return True


# -- in the parent --------------------------------------------------------


class Stopper:
    """First SIGINT/SIGTERM asks for a clean stop; a second one quits at once."""

    def __init__(self, on_first: Callable[[], None]):
        self.requested = False
        self._on_first = on_first
        self._previous: dict = {}

    def __enter__(self) -> Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._on_first()


@dataclass
class Child:
    process: mp.Process
    pipe: object
    task: object = None  # what the parent handed it and has not had back (run's batch)
    idle: bool = False  # it said it has nothing to do (work's empty queue)
    started: bool = False  # it has said something: past its imports
    heard: float = field(default_factory=time.monotonic)  # its last message
    stalled: bool = False  # killed by the parent for saying nothing for too long


class Children:
    """`procs` children of one target, kept at that number within a restart budget.

    With `fork`, a child is forked while the parent runs no other thread (a
    thread holding a lock at that moment, tqdm's monitor or the metrics server,
    would leave it held forever in the child), and spawned otherwise. The target
    must not use what the parent had open: a forked child holds copies of the
    parent's sockets, a connection among them, and leaves them untouched.
    `on_message(child, message)` takes every message a child sends;
    `on_exit(child, exitcode)` says whether a child that ended should be
    replaced (and may take back its task). `noun` and `lost_work` word the notes,
    which go to `say`.
    """

    def __init__(
        self,
        target: Callable,
        args: tuple,
        procs: int,
        *,
        progress: Progress,
        on_message: Callable[[Child, object], None],
        on_exit: Callable[[Child, int | None], bool],
        say: Callable[[str], None],
        noun: str,
        lost_work: str,
        stall_timeout: float | None = None,
        fork: bool = False,
    ):
        self.target = target
        self.args = args
        self.fork = fork
        self.progress = progress
        self.on_message = on_message
        self.on_exit = on_exit
        self.say = say
        self.noun = noun
        self.lost_work = lost_work
        self.stall_timeout = stall_timeout
        self.max_restarts = procs * RESTARTS_PER_PROC
        self.restarts = 0
        self.stall_restarts = 0  # not counted against the budget: a stall takes long to show
        self.children: list[Child] = []
        for _ in range(procs):
            self._start()

    def _start(self) -> None:
        forking = self.fork and threading.active_count() == 1
        ctx = mp.get_context("fork" if forking else "spawn")
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(target=self.target, args=(*self.args, child_end), daemon=True)
        if forking:
            # A forked child flushes its copy of the streams when it ends: what
            # the parent had not yet written would be written twice.
            sys.stdout.flush()
            sys.stderr.flush()
        else:
            # A process's first spawn starts multiprocessing's resource tracker,
            # which unblocks these signals once it has: started here, before
            # they are blocked, it leaves the spawned child starting with them
            # blocked (else a Ctrl+C during its imports killed it with a traceback).
            resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_end.close()
        self.children.append(Child(process, parent_end))

    def collect(self, timeout: float, restart: bool = True) -> None:
        """Wait up to `timeout` for messages or deaths, handle them, and update the display."""
        waitables = [c.pipe for c in self.children] + [c.process.sentinel for c in self.children]
        ready = wait(waitables, timeout)
        for child in list(self.children):
            try:
                while child.pipe.poll():
                    message = child.pipe.recv()
                    child.heard = time.monotonic()
                    child.started = True
                    self.on_message(child, message)
            except (EOFError, OSError):
                pass
            if child.process.sentinel in ready and not child.process.is_alive():
                self._gone(child, restart)
        self.progress.tick()

    def _gone(self, child: Child, restart: bool) -> None:
        self.children.remove(child)
        child.pipe.close()
        code = child.process.exitcode
        if not self.on_exit(child, code) or not restart:
            return
        if child.stalled:
            # Not a crash loop: a stall takes stall_timeout to show, so restarts
            # after stalls cannot race; they are counted apart and never give up.
            self.stall_restarts += 1
            self._start()
            return
        if self.restarts >= self.max_restarts:
            raise UserError(
                f"{self.noun}es keep dying (last exit code {code}); "
                f"gave up after {self.restarts} restarts"
            )
        self.restarts += 1
        pid = child.process.pid
        self.say(f"{self.noun} {pid} died (exit code {code}); restarting it{self.lost_work}")
        self._start()

    def kill_stalled(self, stopping: bool = False) -> None:
        """SIGKILL a child that has said nothing for stall_timeout with work in hand.

        Any message counts as a sign of life. An idle child has nothing to say
        and is left alone, except while stopping, when every child should be on
        its way out. SIGKILL because a stopped (SIGSTOP) process does not act on
        SIGTERM until continued; the kernel then closes its sockets.
        """
        if self.stall_timeout is None:
            return
        now = time.monotonic()
        for child in self.children:
            if child.stalled or not child.started or (child.idle and not stopping):
                continue
            if now - child.heard >= self.stall_timeout and child.process.is_alive():
                child.stalled = True
                self.say(
                    f"{self.noun} {child.process.pid} reported nothing for "
                    f"{now - child.heard:.0f} s with work in hand; killing "
                    f"{'it' if stopping else 'and restarting it'}{self.lost_work}"
                )
                child.process.kill()

    def stop(self, message: object) -> None:
        """Ask every child to finish what it has in hand and exit."""
        for child in self.children:
            # A stopping child has until stall_timeout from now to finish its batch.
            child.heard = time.monotonic()
            try:
                child.pipe.send(message)
            except OSError:
                pass

    def kill(self) -> None:
        for child in self.children:
            child.process.kill()

    def close(self, stop_message: object, kill: bool = False) -> None:
        """Stop (or kill) every child and wait for it, killing one that takes over 10 s."""
        if kill:
            self.kill()
        else:
            self.stop(stop_message)
        for child in self.children:
            child.process.join(timeout=10)
            if child.process.is_alive():
                child.process.kill()
            child.pipe.close()
