"""One `work` process: consume batches, value them, ack after COMMIT.

Failure handling follows DESIGN.md's contract:
- transient errors (a lost PostgreSQL connection, a deadlock) retry the same
  batch on a new connection, with backoff, for as long as it takes;
- any other error republishes the batch with its attempt count raised; a batch
  that has used its attempts is split in halves and republished, until the
  failing killmail stands alone and goes to `<queue>.dead`;
- a message that is not a valid batch goes to `<queue>.dead` with the reason;
- a lost broker connection is reopened with backoff; whatever was not acked
  comes back from the broker and is done again (the write is idempotent).
Every republish is confirmed before the original is acked, so a crash in
between can duplicate work but never lose it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bulk import broker, messages
from bulk.batch import BatchResult, process_batch
from bulk.errors import describe
from bulk.retry import TRANSIENT, ConnectionHolder, backoff_delay

_IDLE_AFTER = 0.05  # seconds without a message before the worker counts as idle
_GATHER = 0.5  # longest wait for more old single-killmail messages to fill a batch


@dataclass(frozen=True)
class WorkSettings:
    db_url: str
    amqp_url: str
    queue: str = broker.DEFAULT_QUEUE
    prefetch: int = 2
    batch_size: int = 500
    price_column: str = "sell"
    max_attempts: int = 3  # tries of a whole batch before it is split


class FatalError(Exception):
    """An error no retry can fix (a missing table, a permission): the worker stops."""


class _Stop(Exception):
    """A stop was asked for while waiting out an outage; the batch goes back unacked."""


# SQLSTATEs that say the database itself is wrong (missing table or column, no
# privilege, a read-only replica), not the batch: splitting would dead-letter
# every killmail, so the worker stops and the batch goes back to the queue.
_ENVIRONMENT_SQLSTATES = ("42", "3D", "3F", "25006")


def _is_environment_error(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    return state.startswith(_ENVIRONMENT_SQLSTATES)


def _count_header(headers: dict, name: str) -> int:
    value = headers.get(name)
    return value if isinstance(value, int) and value >= 0 else 0


class Worker:
    """The consume loop of one process. `report` receives counters for the parent."""

    def __init__(
        self,
        settings: WorkSettings,
        report: Callable[[tuple], None],
        should_stop: Callable[[], bool],
    ):
        self.s = settings
        self.report = report
        self.should_stop = should_stop
        self.host = socket.gethostname()
        self.db = ConnectionHolder(
            lambda: psycopg.connect(
                settings.db_url, autocommit=True, application_name="bulk-backfill work"
            )
        )
        self.connection = None
        self.channel = None
        self.publisher: broker.Publisher | None = None
        self.prefetch = settings.prefetch
        self.singles: dict[str, list[tuple[int, int]]] = {}  # mode -> [(tag, id)]
        self.singles_since = 0.0
        self.idle = False

    # -- the loop ---------------------------------------------------------

    def run(self) -> None:
        """Consume until asked to stop; reconnect to the broker whenever it goes away."""
        attempt = 0
        try:
            while not self.should_stop():
                try:
                    self._open()
                    attempt = 0
                    self._consume()
                except broker.CONNECTION_ERRORS + (broker.BrokerError,) as exc:
                    self._close_broker()
                    self._note(f"broker connection lost ({describe(exc)}); reconnecting")
                    self._pause(backoff_delay(attempt, base=0.5, cap=15.0))
                    attempt += 1
        except _Stop:
            pass  # asked to stop while waiting out an outage: nothing in hand is acked
        finally:
            self._close_broker()
            self.db.discard()

    def _open(self) -> None:
        self.singles = {}  # unacked singles come back from the broker on reconnect
        self.connection = broker.connect(self.s.amqp_url)
        self.channel = self.connection.channel()
        # Global QoS can be raised while consuming: old single messages need a
        # prefetch as big as a batch to be gathered, v1 batches only a few.
        self.prefetch = self.s.prefetch
        self.channel.basic_qos(prefetch_count=self.prefetch, global_qos=True)
        self.publisher = broker.Publisher(self.connection)

    def _consume(self) -> None:
        stream = self.channel.consume(self.s.queue, inactivity_timeout=_IDLE_AFTER)
        for method, properties, body in stream:
            if self.should_stop():
                break
            if method is None:
                if self.singles:
                    self._flush_singles()
                self._set_idle(True)
                continue
            self._set_idle(False)
            self._handle(method.delivery_tag, (properties.headers or {}), body)
            if self.singles and (
                sum(map(len, self.singles.values())) >= self.s.batch_size
                or time.monotonic() - self.singles_since >= _GATHER
            ):
                self._flush_singles()
        # Stopping: the singles in hand are finished; what was prefetched and not
        # yet handled goes back to the queue when the consumer is cancelled.
        if self.singles:
            self._flush_singles()
        self.channel.cancel()

    def _set_idle(self, idle: bool) -> None:
        if idle != self.idle:
            self.idle = idle
            self.report(("idle", idle))

    def _handle(self, tag: int, headers: dict, body: bytes) -> None:
        try:
            message = messages.decode(body)
        except messages.InvalidMessage as exc:
            self._dead_letter(body, headers, reason=f"invalid message: {exc}", attempts=0)
            self.report(("invalid", 1))
            self._ack([tag])
            return
        if isinstance(message, messages.Single):
            if not self.singles:
                self.singles_since = time.monotonic()
            self.singles.setdefault(message.mode, []).append((tag, message.killmail_id))
            self._set_prefetch(max(self.s.prefetch, self.s.batch_size))
            return
        self._set_prefetch(self.s.prefetch)
        self._do(list(message.ids), message.mode, message.attempts, headers, [tag])

    def _set_prefetch(self, count: int) -> None:
        if count != self.prefetch:
            self.prefetch = count
            self.channel.basic_qos(prefetch_count=count, global_qos=True)

    def _flush_singles(self) -> None:
        pending, self.singles = self.singles, {}
        for mode, entries in pending.items():
            tags = [tag for tag, _ in entries]
            self._do([i for _, i in entries], mode, 0, {}, tags)

    # -- one batch --------------------------------------------------------

    def _do(self, ids: list[int], mode: str, attempts: int, headers: dict, tags: list[int]) -> None:
        """Value one batch and ack its messages, or hand it on (retry, split, dead letter)."""
        outcome = self._value(ids, mode, tags)
        if isinstance(outcome, BatchResult):
            # Reported at COMMIT, before the ack: if the ack is lost with the
            # connection, the redelivered batch finds its rows written and counts
            # them as skipped, so "updated" stays the number of rows changed.
            self.report(
                (
                    "written",
                    outcome.updated + outcome.skipped,
                    outcome.updated,
                    outcome.skipped,
                    outcome.no_victim,
                    0,
                )
            )
            self._ack(tags)
            return
        error = outcome
        unique = sorted(set(ids))
        now = messages.now_iso()
        failure_headers = {
            "x-first-failure": headers.get("x-first-failure", now),
            "x-last-failure": now,
            "x-error": error[:2000],
            "x-host": self.host,
            # every try of these IDs, across retries and splits
            "x-attempts": _count_header(headers, "x-attempts") + 1,
        }
        attempts += 1
        if attempts < self.s.max_attempts:
            self._republish([unique], mode, attempts, failure_headers)
        elif len(unique) > 1:
            # The whole batch has had its retries, so a failure is not a passing
            # fluke: each half gets one try, and a half that fails splits again.
            middle = len(unique) // 2
            halves = [unique[:middle], unique[middle:]]
            self._republish(halves, mode, self.s.max_attempts - 1, failure_headers)
        else:
            body = messages.encode_batch(unique, mode, self._source(), attempts=attempts)
            self._dead_letter(
                body, failure_headers, reason=error, attempts=failure_headers["x-attempts"]
            )
            self.report(("written", 1, 0, 1, 0, 1))
            self._ack(tags)
            return
        self.report(("retried", len(unique)))
        self._ack(tags)

    def _ack(self, tags: list[int]) -> None:
        for tag in tags:
            self.channel.basic_ack(tag)
        self.report(("acked", len(tags)))

    def _value(self, ids: list[int], mode: str, tags: list[int]) -> BatchResult | str:
        """The batch written, or the text of a non-transient error."""
        attempt = 0
        while True:
            try:
                return process_batch(self.db.get(), ids, mode, self.s.price_column)
            except TRANSIENT as exc:
                self.db.discard()
                if attempt == 0 or attempt % 5 == 0:
                    self._note(f"database unavailable ({describe(exc)}); retrying")
                try:
                    self._pause(backoff_delay(attempt, cap=10.0))
                except _Stop:
                    for tag in tags:
                        self.channel.basic_nack(tag, requeue=True)
                    raise
                attempt += 1
            except psycopg.Error as exc:
                if not _is_environment_error(exc):
                    return describe(exc)
                for tag in tags:
                    self.channel.basic_nack(tag, requeue=True)
                raise FatalError(describe(exc)) from None

    def _republish(self, parts: list[list[int]], mode: str, attempts: int, headers: dict) -> None:
        for part in parts:
            body = messages.encode_batch(part, mode, self._source(), attempts=attempts)
            self.publisher.publish(self.s.queue, body, headers)

    def _dead_letter(self, body: bytes, headers: dict, *, reason: str, attempts: int) -> None:
        now = messages.now_iso()
        dead_headers = {
            "x-first-failure": now,
            "x-last-failure": now,
            "x-host": self.host,
            **headers,
            "x-reason": reason[:2000],
            "x-attempts": attempts,
            "x-queue": self.s.queue,
        }
        self.publisher.publish(broker.dead_letter_queue(self.s.queue), body, dead_headers)

    def _note(self, text: str) -> None:
        self.report(("note", f"worker {os.getpid()}: {text}"))

    def _source(self) -> str:
        return f"bulk-backfill work@{self.host}"

    # -- waiting ----------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Sleep, keeping the broker connection alive; _Stop if a stop is asked for."""
        deadline = time.monotonic() + seconds
        while True:
            if self.should_stop():
                raise _Stop
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, 0.2)
            if self.connection is not None and self.connection.is_open:
                self.connection.sleep(step)
            else:
                time.sleep(step)

    def _close_broker(self) -> None:
        broker.close_quietly(self.connection)
        self.connection = self.channel = self.publisher = None
