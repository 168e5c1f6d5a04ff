"""Running a batch so that one bad killmail never costs its neighbours.

Transient errors (lost connection, deadlock, serialization failure) retry the
whole batch on a fresh connection with capped, jittered backoff. Any other
error splits the batch in halves until the failing killmail stands alone; it
is reported as failed and every other killmail is written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pgerrors

from bulk.batch import BatchResult, process_batch
from bulk.errors import describe

TRANSIENT = (
    psycopg.OperationalError,
    pgerrors.DeadlockDetected,
    pgerrors.SerializationFailure,
    pgerrors.LockNotAvailable,
)


@dataclass
class Failure:
    killmail_id: int
    error: str


@dataclass
class Outcome:
    result: BatchResult = field(default_factory=BatchResult)
    failures: list[Failure] = field(default_factory=list)


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class ConnectionHolder:
    """One PostgreSQL connection, reopened after it breaks."""

    def __init__(self, connect: Callable[[], psycopg.Connection]):
        self._connect = connect
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.discard()
            self._conn = self._connect()
        return self._conn

    def discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


def run_batch(
    holder: ConnectionHolder,
    ids: list[int],
    mode: str,
    price_column: str = "sell",
    *,
    transient_attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """process_batch with transient retries and bisection of persistent failures."""
    outcome = Outcome()
    pending = [sorted(set(ids))]
    while pending:
        part = pending.pop()
        error = _attempt(holder, part, mode, price_column, transient_attempts, sleep, outcome)
        if error is None:
            continue
        if len(part) == 1:
            outcome.failures.append(Failure(part[0], error))
            outcome.result.skipped += 1
        else:
            middle = len(part) // 2
            pending += [part[middle:], part[:middle]]
    return outcome


def _attempt(holder, part, mode, price_column, attempts, sleep, outcome) -> str | None:
    """Run one part; its error text if it failed for a reason other than a transient one."""
    for attempt in range(attempts):
        try:
            outcome.result.add(process_batch(holder.get(), part, mode, price_column))
            return None
        except TRANSIENT:
            holder.discard()
            if attempt + 1 >= attempts:
                raise
            sleep(backoff_delay(attempt))
        except psycopg.Error as exc:
            return describe(exc)
    raise ValueError("transient_attempts must be at least 1")
