"""Running a batch so that one bad killmail never costs its neighbours (`run`'s contract).

Errors are classified by SQLSTATE (bulk.engine.errors):
- a lost connection, or a server short of resources (a full disk, an I/O
  error: SQLSTATE classes 53 and 58), retries the part on a new connection
  with capped, jittered backoff until `patience` runs out, then DatabaseGone:
  nothing of the part is written or counted, so the job can resume before it;
- a serialization failure, deadlock or lock timeout retries a few times, then
  counts as a batch error;
- an environment error (missing table, privilege, read-only) raises
  EnvironmentFailure at once: splitting would fail every killmail alike;
- any other error (a statement timeout included) splits the part in halves
  until the failing killmail stands alone; it is reported as failed and every
  other killmail is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from bulk import db
from bulk.backoff import Backoff
from bulk.engine.errors import ErrorKind, classify
from bulk.engine.policy import Action, decide
from bulk.engine.session import Session
from bulk.engine.valuation import BatchResult, Valuation
from bulk.errors import describe


class EnvironmentFailure(Exception):
    """The database is wrong for the job (a missing table, no privilege): no retry helps."""


class DatabaseGone(Exception):
    """The database stayed lost, or short of resources, for longer than the patience allowed;
    the message says which."""


@dataclass
class Failure:
    killmail_id: int
    error: str


@dataclass
class Outcome:
    result: BatchResult = field(default_factory=BatchResult)
    failures: list[Failure] = field(default_factory=list)


class ConnectionHolder:
    """One PostgreSQL connection, reopened after it breaks, and its engine Session.

    The sessions of one holder share when each book was last rechecked: a
    reconnect starts a new session (nothing prepared on the new connection yet)
    but does not recheck the prices before their time.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection]):
        self._connect = connect
        self._session: Session | None = None
        self._rechecked: dict[str, float] = {}

    def get(self) -> psycopg.Connection:
        return self.session().conn

    def session(self) -> Session:
        conn = None if self._session is None else self._session.conn
        if conn is None or conn.closed or conn.broken:
            self.discard()
            self._session = Session(self._connect(), rechecked=self._rechecked)
        return self._session

    def discard(self) -> None:
        if self._session is not None:
            db.close_quietly(self._session.conn)
        self._session = None


@dataclass(frozen=True)
class Retrying:
    """How a caller of value_with_retries waits and hears about retries.

    `queue`: a broker holds the batch (work) or not (run), for bulk.engine.policy;
    `patience`: seconds a lost connection or a server short of resources is
    waited out before the loop stops (None: as long as it takes); `pause` waits
    between tries (and may raise to abandon the batch); `on_retry` hears each
    retry before its pause.
    """

    queue: bool
    patience: float | None = None
    pause: Callable[[float], None] = time.sleep
    on_retry: Callable[[ErrorKind, psycopg.Error], None] = lambda kind, exc: None


class Stopped(Exception):
    """The policy stopped the loop (Action.STOP or Action.GIVE_BACK): the batch is
    not done, and the caller decides what that means for its job."""

    def __init__(self, action: Action, kind: ErrorKind, error: psycopg.Error, waited: float):
        super().__init__(describe(error))
        self.action, self.kind, self.error, self.waited = action, kind, error, waited


def value_with_retries(
    holder: ConnectionHolder,
    value: Callable[[Session], BatchResult],
    size: int,
    retrying: Retrying,
) -> BatchResult | str:
    """value(session) on the holder's session until it succeeds: its result, or the
    text of a batch error (the caller splits, requeues or fails the batch).

    The one retry loop of run and work: each error is classified by SQLSTATE and
    bulk.engine.policy.decide says whether to retry (after a capped, jittered
    backoff, on a new connection where it was lost), to give up on the batch, or
    to stop (Stopped). Any other exception is a batch error.
    """
    backoff = Backoff(base=0.2, cap=10.0, patience=retrying.patience)
    contention = lost = 0
    while True:
        conn = None
        try:
            session = holder.session()
            conn = session.conn
            return value(session)
        except psycopg.Error as exc:
            kind = classify(exc, conn)
            contention += kind is ErrorKind.CONTENTION
            if kind in (ErrorKind.CONNECTION, ErrorKind.RESOURCES):
                holder.discard()
                backoff.start_clock()
                lost += kind is ErrorKind.CONNECTION
            action = decide(
                kind,
                size=size,
                contention=contention,
                lost=lost,
                expired=backoff.expired(),
                queue=retrying.queue,
            )
            if action in (Action.STOP, Action.GIVE_BACK):
                raise Stopped(action, kind, exc, backoff.waited()) from None
            if action is not Action.RETRY:
                return describe(exc)
            retrying.on_retry(kind, exc)
        except Exception as exc:  # noqa: BLE001 - a killmail no engine step can value
            return describe(exc)
        retrying.pause(backoff.delay())


def run_batch(
    holder: ConnectionHolder,
    ids: list[int],
    mode: str,
    valuation: Valuation | None = None,
    *,
    patience: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """process_batch with retries by error kind and bisection of batch errors.

    EnvironmentFailure and DatabaseGone leave the function; the parts already
    written stay written and are counted in neither exception (the caller treats
    the whole batch as not done: re-running it is idempotent).
    """
    # Here, not at the top: the parents that import this module hand out batches
    # and never value one, and bulk.engine.batch imports numpy (bulk.run).
    from bulk.engine.batch import process_batch

    valuation = valuation or Valuation()
    retrying = Retrying(queue=False, patience=patience, pause=sleep)
    outcome = Outcome()
    pending = [sorted(set(ids))]
    while pending:
        part = pending.pop()
        try:
            result = value_with_retries(
                holder,
                lambda session, part=part: process_batch(session, part, mode, valuation),
                len(part),
                retrying,
            )
        except Stopped as stop:
            raise _run_stop(stop) from None
        if isinstance(result, BatchResult):
            outcome.result.add(result)
        elif decide(ErrorKind.BATCH, size=len(part), queue=False) is Action.FAIL:
            outcome.failures.append(Failure(part[0], result))
            outcome.result.skipped += 1
        else:
            middle = len(part) // 2
            pending += [part[middle:], part[:middle]]
    return outcome


def _run_stop(stop: Stopped) -> Exception:
    """What a stop means for run: the database is gone (resume later) or wrong for the job."""
    if stop.kind is ErrorKind.RESOURCES:
        return DatabaseGone(
            f"the database stayed short of resources for {stop.waited:.0f} s: {stop}"
        )
    if stop.kind is ErrorKind.CONNECTION:
        return DatabaseGone(f"lost the database and could not reconnect: {stop}")
    return EnvironmentFailure(str(stop))
