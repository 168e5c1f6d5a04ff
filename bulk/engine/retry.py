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
from bulk.engine.batch import BatchResult, Valuation, process_batch
from bulk.engine.errors import ErrorKind, classify
from bulk.engine.policy import Action, decide
from bulk.engine.session import Session
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
    valuation = valuation or Valuation()
    outcome = Outcome()
    pending = [sorted(set(ids))]
    while pending:
        part = pending.pop()
        error = _attempt(holder, part, mode, valuation, patience, sleep, outcome)
        if error is None:
            continue
        if decide(ErrorKind.BATCH, size=len(part), queue=False) is Action.FAIL:
            outcome.failures.append(Failure(part[0], error))
            outcome.result.skipped += 1
        else:
            middle = len(part) // 2
            pending += [part[middle:], part[:middle]]
    return outcome


def _attempt(holder, part, mode, valuation, patience, sleep, outcome) -> str | None:
    """Run one part; the error text if it failed as a batch error, else None."""
    backoff = Backoff(base=0.2, cap=10.0, patience=patience)
    contention = 0
    while True:
        conn = None
        try:
            session = holder.session()
            conn = session.conn
            outcome.result.add(process_batch(session, part, mode, valuation))
            return None
        except psycopg.Error as exc:
            kind = classify(exc, conn)
            if kind is ErrorKind.CONTENTION:
                contention += 1
            elif kind in (ErrorKind.CONNECTION, ErrorKind.RESOURCES):
                holder.discard()
                backoff.start_clock()
            action = decide(
                kind, size=len(part), contention=contention, expired=backoff.expired(), queue=False
            )
            if action is Action.STOP:
                if kind is ErrorKind.RESOURCES:
                    raise DatabaseGone(
                        f"the database stayed short of resources for {backoff.waited():.0f} s:"
                        f" {describe(exc)}"
                    ) from None
                if kind is ErrorKind.CONNECTION:
                    raise DatabaseGone(
                        f"lost the database and could not reconnect: {describe(exc)}"
                    ) from None
                raise EnvironmentFailure(describe(exc)) from None
            if action is not Action.RETRY:
                return describe(exc)
        except Exception as exc:  # noqa: BLE001 - a killmail no engine step can value
            return describe(exc)
        sleep(backoff.delay())
