"""One `work` process: consume batches, value them, ack after COMMIT.

Failure handling (docs/failure.md), by SQLSTATE (bulk.engine.errors):
- a lost PostgreSQL connection retries the same batch once on a new
  connection; if that fails too, the database cannot be reached from this
  host (down, or the host cut off from it): the batch is given back, the
  broker connection is closed so that the prefetched batches go back too, and
  the worker takes no more until the database answers again;
- a serialization failure, deadlock or lock timeout retries a few times, then
  counts as a batch error;
- an environment error (missing table, privilege, read-only) stops the worker
  and leaves the batch in the queue;
- any other error (a statement timeout included) republishes the batch with its
  attempt count raised; a batch that has used its attempts is split in halves
  and republished, until the failing killmail stands alone and goes to
  `<queue>.dead`;
- a message that is not a valid batch goes to `<queue>.dead` with the reason;
- a lost broker connection is reopened with backoff; whatever was not acked
  comes back from the broker and is done again (the write is idempotent);
- a publish the broker refuses (a deleted dead-letter queue, a max-length
  policy) sends the original back to the queue, re-declares the queues and
  backs off; the worker goes on.
Every republish is confirmed before the original is acked, so a crash in
between can duplicate work but never lose it.
"""

from __future__ import annotations

import os
import reprlib
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import psycopg

from bulk import db, events, readiness
from bulk.backoff import Backoff, jitter
from bulk.engine.batch import BatchResult, Valuation, process_batch
from bulk.engine.errors import ErrorKind, classify
from bulk.engine.policy import Action, decide
from bulk.engine.retry import ConnectionHolder, Retrying, Stopped, value_with_retries
from bulk.engine.rules import DEFAULT_RULES
from bulk.errors import UserError, describe
from bulk.queue import broker, messages

_IDLE_AFTER = 0.05  # seconds without a message before the worker counts as idle
_GATHER = 0.5  # longest wait for more old single-killmail messages to fill a batch
_ALIVE_EVERY = 5.0  # seconds between signs of life while waiting
_SAY_EVERY = 30.0  # seconds between two notes of one worker about the same trouble
_RULES_RECHECK = 60.0  # seconds before a message's rule set is checked here again
_REDELIVERED = (
    "redelivered: the batch came back unacked (a worker died, froze or lost its broker"
    " connection while it held the batch)"
)
_HEADER_TEXT = 2000  # longest text kept in a header we write
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, 200, 200


@dataclass(frozen=True)
class WorkSettings:
    db_url: str
    amqp_url: str
    queue: str = broker.DEFAULT_QUEUE
    # Batch messages held beyond the one in hand. One: a worker that dies gives back
    # only its own batch, so a redelivery counts against the batch that was in hand.
    prefetch: int = 1
    singles_per_batch: int = 500  # old single-killmail messages gathered into one batch
    max_attempts: int = 3  # tries of a whole batch before it is split
    # How batches are valued; a message's rule set replaces its rules, and old
    # single-killmail messages, which name none, are valued under these.
    # price_refresh: seconds after which a worker re-reads the prices before its
    # next batch.
    valuation: Valuation = Valuation(price_refresh=10.0)


class FatalError(Exception):
    """An error no retry can fix (a missing table, a permission): the worker stops."""


class _Stop(Exception):
    """A stop was asked for while waiting out an outage; the batch goes back unacked."""


class _Refused(Exception):
    """The broker refused a republish or dead letter; the original goes back to the queue."""


class _DatabaseLost(Exception):
    """The database cannot be reached from here: what is in hand goes back to the queue."""


def _count_header(headers: dict, name: str) -> int:
    """A count from a header anyone may have written: an int in range, else 0."""
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), messages.MAX_ATTEMPTS)


def _headers_text(headers: dict) -> str:
    """Headers anyone may have written, as bounded text (reprlib stops at a depth)."""
    with messages.shallow_recursion():
        return _REPR.repr(headers)[:_HEADER_TEXT]


def _text_header(headers: dict, name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value[:64] if isinstance(value, str) else None


class Worker:
    """The consume loop of one process; `report` takes its events (bulk.events) to the parent."""

    def __init__(
        self,
        settings: WorkSettings,
        report: Callable[[object], None],
        should_stop: Callable[[], bool],
    ):
        self.s = settings
        self.report = report
        self.should_stop = should_stop
        self.host = socket.gethostname()
        self.db = ConnectionHolder(
            lambda: db.open_connection(
                settings.db_url,
                autocommit=True,
                application_name="bulk-backfill work",
                valuing=True,
            )
        )
        self.connection = None
        self.channel = None
        self.publisher: broker.Publisher | None = None
        self.prefetch = settings.prefetch
        self.singles: dict[str, list[tuple[int, int]]] = {}  # mode -> [(tag, id)]
        self.held: dict[int, tuple[bytes, dict]] = {}  # tag -> the batch message as it came
        self.consuming = False
        self.singles_since = 0.0
        self.idle = False
        self.refusals = 0  # publishes refused in a row
        self.handled = False  # a message was handled on this try of the loop
        self.said_at: dict[str, float] = {}  # when each kind of note was last said
        # Per rule set of a message: when this database was last checked for its
        # tables, and what was missing (None: nothing).
        self.rules_seen: dict[str, tuple[float, str | None]] = {}
        # The batch's statements run here while the main thread answers the
        # broker: pika's BlockingConnection does I/O only when called, and a batch
        # that outlasted two heartbeats lost its connection and came back, forever.
        self.valuer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-value")

    # -- the loop ---------------------------------------------------------

    def run(self) -> None:
        """Consume until asked to stop; reconnect to the broker whenever it goes away."""
        backoff = Backoff(base=0.5, cap=15.0)
        try:
            while not self.should_stop():
                # Only a message handled on this try counts as recovery: a database
                # refusing logins fails before a broker connection is even opened.
                self.handled = False
                try:
                    self._database_ready()
                    self._open()
                    self._consume()
                except broker.CONNECTION_ERRORS + (broker.BrokerError, _DatabaseLost) as exc:
                    # Closing gives back every delivery not acked (the prefetched ones).
                    self._close_broker()
                    # Only a message handled counts as recovery: a connection that
                    # opens and then breaks on the same message must keep backing off.
                    if self.handled:
                        backoff.reset()
                    if isinstance(exc, _DatabaseLost):
                        self.report(events.DatabaseUp(False))
                        self._say_now_and_then(
                            "database",
                            f"database unreachable ({exc}); taking no batch until it answers",
                        )
                    else:
                        self._say_now_and_then(
                            "broker", f"broker connection lost ({describe(exc)}); reconnecting"
                        )
                    self._pause(backoff.delay())
        except _Stop:
            pass  # asked to stop while waiting out an outage: nothing in hand is acked
        finally:
            self._close_broker()
            self.db.discard()
            self.valuer.shutdown(wait=True)

    def _database_ready(self) -> None:
        """Consume only while the database answers: a host cut off from it would hold batches."""
        try:
            self.db.get()
        except psycopg.Error as exc:
            if classify(exc) is not ErrorKind.CONNECTION:
                raise FatalError(describe(exc)) from None
            raise _DatabaseLost(describe(exc)) from None

    def _open(self) -> None:
        self.held = {}  # deliveries of a closed connection go back by themselves
        self.singles = {}  # unacked singles come back from the broker on reconnect
        broker.allow_deep_header_tables()  # it reads messages anyone may have written
        self.connection = broker.connect(self.s.amqp_url)
        self.channel = self.connection.channel()
        # The queues this worker publishes to may have been deleted since it
        # last looked: a republish or dead letter to a missing queue is refused.
        broker.declare(self.channel, self.s.queue)
        # Global QoS can be raised while consuming: old single messages need a
        # prefetch as big as a batch to be gathered, v1 batches only a few.
        self.prefetch = self.s.prefetch
        self.channel.basic_qos(prefetch_count=self.prefetch, global_qos=True)
        self.publisher = broker.Publisher(self.connection)

    def _consume(self) -> None:
        stream = self.channel.consume(self.s.queue, inactivity_timeout=_IDLE_AFTER)
        self.consuming = True
        for method, properties, body in stream:
            if self.should_stop():
                break
            if method is None:
                if self.singles:
                    self._guarded(self._flush_singles)
                self._set_idle(True)
                continue
            self._set_idle(False)
            headers = properties.headers if isinstance(properties.headers, dict) else {}
            self._guarded(self._handle, method.delivery_tag, headers, body, method.redelivered)
            self.handled = True
            if self.singles and (
                sum(map(len, self.singles.values())) >= self.s.singles_per_batch
                or time.monotonic() - self.singles_since >= _GATHER
            ):
                self._guarded(self._flush_singles)
        # Stopping: the singles in hand are finished; what was prefetched and not
        # yet handled goes back to the queue when the consumer is cancelled.
        if self.singles:
            self._guarded(self._flush_singles)
        self._stop_consuming()

    def _guarded(self, step: Callable[..., None], *args) -> None:
        """Run one step; a refused publish backs off instead of ending the worker."""
        try:
            step(*args)
        except _Refused as exc:
            self.refusals += 1
            self.report(events.Retry("refused"))
            self._say_now_and_then(
                "refused", f"{exc}; the message went back to the queue, retrying with backoff"
            )
            try:
                broker.declare(self.channel, self.s.queue)
            except broker.BrokerError as declare_error:
                self._note(f"cannot re-declare the queues: {declare_error}")
            self._pause(jitter(self.refusals, base=0.5, cap=30.0))
        else:
            self.refusals = 0

    def _set_idle(self, idle: bool) -> None:
        if idle != self.idle:
            self.idle = idle
            self.report(events.Idle(idle))

    def _handle(self, tag: int, headers: dict, body: bytes, redelivered: bool = False) -> None:
        try:
            message = messages.decode(body)
        except messages.InvalidMessage as exc:
            self._dead_letter(
                body,
                {"x-original-headers": _headers_text(headers)} if headers else {},
                reason=f"invalid message: {exc}",
                attempts=0,
                tags=[tag],
            )
            self.report(events.Invalid(1))
            self._ack([tag])
            return
        if isinstance(message, messages.Single):
            if not self.singles:
                self.singles_since = time.monotonic()
            self.singles.setdefault(message.mode, []).append((tag, message.killmail_id))
            self._set_prefetch(max(self.s.prefetch, self.s.singles_per_batch))
            return
        self._set_prefetch(self.s.prefetch)
        ids = list(message.ids)
        self.held[tag] = (body, headers)
        if redelivered:
            # The broker's flag is all a classic queue keeps, so the count travels in
            # the message: republished with one attempt more, a batch that keeps
            # coming back (it kills or freezes whoever takes it) is split, then
            # dead-lettered, like any batch that keeps failing.
            self.report(events.Redelivered(1))
            self._hand_on(
                _REDELIVERED, ids, message.mode, message.attempts, headers, [tag], message.rules
            )
            return
        self._do(
            ids,
            message.mode,
            message.attempts,
            headers,
            [tag],
            message.rules,
            found_under=message.price_column,
        )

    def _set_prefetch(self, count: int) -> None:
        if count != self.prefetch:
            self.prefetch = count
            self.channel.basic_qos(prefetch_count=count, global_qos=True)

    def _flush_singles(self) -> None:
        pending, self.singles = self.singles, {}
        modes = list(pending)
        for n, mode in enumerate(modes):
            entries = pending[mode]
            try:
                ids, tags = [i for _, i in entries], [tag for tag, _ in entries]
                self._do(ids, mode, 0, {}, tags, self.s.valuation.rules)
            except _Refused:
                # The other modes' messages go back too, not held until a reconnect.
                for later in modes[n + 1 :]:
                    self._nack([tag for tag, _ in pending[later]])
                raise

    # -- one batch --------------------------------------------------------

    def _do(
        self,
        ids: list[int],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str = DEFAULT_RULES,
        *,
        found_under: str | None = None,
    ) -> None:
        """Value one batch and ack its messages, or hand it on (retry, split, dead letter).

        The rule set travels on with the batch: a retry, a half or a dead letter
        is valued under the rules it was queued with. `found_under` is the price
        column a stale batch was selected under; a worker of another column
        dead-letters it rather than stamp it under its own, which the next
        `queue --mode stale` would find stale again.
        """
        unusable = self._rules_unusable(rules)
        reason = None
        if unusable is not None:
            reason = f"rule set {rules} cannot run on this database: {unusable}"
        elif found_under is not None and found_under != self.s.valuation.price_column:
            reason = (
                f"the batch was queued as stale under --price-column {found_under} and this"
                f" worker values with {self.s.valuation.price_column}: run work"
                f" --price-column {found_under}, then bulk-backfill dead requeue"
            )
        if reason is not None:
            # Stopping would stop every worker that takes this message, on every host,
            # and the message would go back to the head of the queue for the next one.
            body = messages.encode_batch(sorted(set(ids)), mode, self._source(), rules=rules)
            self._dead_letter(body, {}, reason=reason, attempts=attempts, tags=tags)
            count = len(set(ids))
            self.report(events.Written(count, 0, count, 0, count))
            self._say_now_and_then(f"rules {rules}", f"dead-lettered a batch of {count}: {reason}")
            self._ack(tags)
            return
        started = time.monotonic()
        outcome = self._value(ids, mode, tags, rules)
        if isinstance(outcome, BatchResult):
            self.report(events.Timed(time.monotonic() - started))
            # Reported at COMMIT, before the ack: if the ack is lost with the
            # connection, the redelivered batch finds its rows written and counts
            # them as skipped, so "updated" stays the number of rows changed.
            self.report(
                events.Written(
                    outcome.updated + outcome.skipped,
                    outcome.updated,
                    outcome.skipped,
                    outcome.no_victim,
                    0,
                )
            )
            self._ack(tags)
            return
        self._hand_on(outcome, ids, mode, attempts, headers, tags, rules)

    def _hand_on(
        self,
        error: str,
        ids: list[int],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str,
    ) -> None:
        """A batch that failed (or came back): republish it, its halves, or dead-letter it."""
        unique = sorted(set(ids))
        now = messages.now_iso()
        failure_headers = {
            "x-first-failure": _text_header(headers, "x-first-failure") or now,
            "x-last-failure": now,
            "x-error": error[:_HEADER_TEXT],
            "x-host": self.host,
            # every try of these IDs, across retries and splits
            "x-attempts": min(_count_header(headers, "x-attempts") + 1, messages.MAX_ATTEMPTS),
        }
        attempts += 1
        action = decide(
            ErrorKind.BATCH, size=len(unique), attempts=attempts, max_attempts=self.s.max_attempts
        )
        if action is Action.REQUEUE:
            self._republish([unique], mode, attempts, failure_headers, tags, rules)
            self.report(events.Retry(ErrorKind.BATCH.value))
        elif action is Action.SPLIT:
            self.report(events.Split())
            middle = len(unique) // 2
            halves = [unique[:middle], unique[middle:]]
            self._republish(halves, mode, self.s.max_attempts - 1, failure_headers, tags, rules)
        else:
            body = messages.encode_batch(
                unique,
                mode,
                self._source(),
                attempts=min(attempts, messages.MAX_ATTEMPTS),
                rules=rules,
            )
            self._dead_letter(
                body,
                failure_headers,
                reason=error,
                attempts=failure_headers["x-attempts"],
                tags=tags,
            )
            self.report(events.Written(1, 0, 1, 0, 1))
            self._ack(tags)
            return
        self.report(events.Retried(len(unique)))
        self._ack(tags)

    def _stop_consuming(self) -> None:
        if self.consuming:
            self.consuming = False
            try:
                self.channel.cancel()
            except broker.CONNECTION_ERRORS:
                pass  # the connection is gone: nothing more is delivered

    def _ack(self, tags: list[int]) -> None:
        for tag in tags:
            self.held.pop(tag, None)
            self.channel.basic_ack(tag)
        self.report(events.Acked(len(tags)))

    def _nack(self, tags: list[int]) -> None:
        for tag in tags:
            self.channel.basic_nack(tag, requeue=True)

    def _give_back(self, tags: list[int]) -> None:
        """Hand a batch back unharmed (a stop, an outage): republished as it came, then acked.

        A nack would come back flagged as redelivered, which counts as a failed
        try (_handle): a few restarts of a healthy fleet would split its batches.
        Where the copy cannot be published, a nack is all there is. Every give-back
        ends the consumer (a stop, an outage, a fatal error): it is cancelled first,
        or the ack would make room for the next delivery, which would then come
        back flagged as well.
        """
        self._stop_consuming()
        for tag in tags:
            held = self.held.pop(tag, None)
            try:
                if held is None:
                    raise broker.PublishFailed("no copy of this message")
                self.publisher.publish(self.s.queue, *held)
                self.channel.basic_ack(tag)
            except (broker.PublishFailed, *broker.CONNECTION_ERRORS):
                try:
                    self.channel.basic_nack(tag, requeue=True)
                except broker.CONNECTION_ERRORS:
                    pass  # the connection is gone: the broker requeues it anyway

    def _value(self, ids: list[int], mode: str, tags: list[int], rules: str) -> BatchResult | str:
        """The batch written, or the text of a batch error (bulk.engine.retry's loop)."""
        valuation = replace(self.s.valuation, rules=rules)

        def value(session) -> BatchResult:
            return self._serving_broker(process_batch, session, ids, mode, valuation)

        retrying = Retrying(queue=True, pause=self._pause, on_retry=self._retrying)
        try:
            return value_with_retries(self.db, value, len(ids), retrying)
        except Stopped as stop:
            self._give_back(tags)
            if stop.action is Action.GIVE_BACK:
                # A new connection failed as well. Holding the batches while the
                # database is out of reach would only keep them from other hosts.
                self.report(events.Retry(stop.kind.value))
                self.report(events.DatabaseUp(False))
                raise _DatabaseLost(str(stop)) from None
            raise FatalError(str(stop)) from None
        except _Stop:
            self._give_back(tags)
            raise

    def _retrying(self, kind: ErrorKind, exc: psycopg.Error) -> None:
        """What the operator hears of a retry of work's batch."""
        self.report(events.Retry(kind.value))
        if kind is ErrorKind.CONNECTION:
            self._note(f"database unavailable ({describe(exc)}); retrying")
        elif kind is ErrorKind.RESOURCES:
            # Every batch would fail alike: hold this one (and so take no other)
            # until the server has room again, instead of splitting a whole job
            # into dead letters. The broker connection is kept alive meanwhile.
            self._say_now_and_then(
                "resources",
                f"the database is short of resources ({describe(exc)});"
                " holding the batch and retrying until it has room",
            )

    def _serving_broker(self, step: Callable, *args):
        """step(*args) in the valuing thread, while this one answers the broker.

        The valuing thread wakes pika's loop when it is done
        (add_callback_threadsafe), so a short batch costs no polling delay.
        """
        future: Future = self.valuer.submit(step, *args)
        connection = self.connection
        if connection is None or not connection.is_open:
            return future.result()

        def wake(_: Future) -> None:
            try:
                connection.add_callback_threadsafe(lambda: None)
            except Exception:  # noqa: BLE001 - a closed connection: the loop below ends anyway
                pass

        future.add_done_callback(wake)
        try:
            while not future.done():
                connection.process_data_events(time_limit=1.0)
        except broker.CONNECTION_ERRORS:
            # The broker went away mid-batch. The batch's own outcome comes first: a
            # commit is reported as written, then its ack fails on the dead channel and
            # the batch, redelivered, finds its rows written and counts them skipped.
            pass
        except BaseException:
            future.exception()  # the statement in flight ends before anything else
            raise
        return future.result()

    def _publish(self, queue: str, body: bytes, headers: dict, tags: list[int]) -> None:
        try:
            self.publisher.publish(queue, body, headers)
        except broker.PublishFailed as exc:
            self._nack(tags)
            raise _Refused(f"the broker refused a message for {queue}: {exc}") from None

    def _republish(
        self,
        parts: list[list[int]],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str,
    ) -> None:
        for part in parts:
            body = messages.encode_batch(part, mode, self._source(), attempts=attempts, rules=rules)
            self._publish(self.s.queue, body, headers, tags)

    def _dead_letter(
        self, body: bytes, headers: dict, *, reason: str, attempts: int, tags: list[int]
    ) -> None:
        now = messages.now_iso()
        dead_headers = {
            "x-first-failure": now,
            "x-last-failure": now,
            "x-host": self.host,
            **headers,
            "x-reason": reason[:_HEADER_TEXT],
            "x-attempts": attempts,
            "x-queue": self.s.queue,
        }
        self._publish(broker.dead_letter_queue(self.s.queue), body, dead_headers, tags)

    def _note(self, text: str) -> None:
        self.report(events.Note(f"worker {os.getpid()}: {text}"))

    def _say_now_and_then(self, kind: str, text: str) -> None:
        """A note, unless one of this kind was said less than _SAY_EVERY seconds ago."""
        now = time.monotonic()
        if now - self.said_at.get(kind, -_SAY_EVERY) >= _SAY_EVERY:
            self.said_at[kind] = now
            self._note(text)

    def _rules_unusable(self, rules: str) -> str | None:
        """Why this database cannot run `rules` (its tables are missing), or None."""
        if rules == self.s.valuation.rules:
            return None  # work checked its own rule set before it started
        seen = self.rules_seen.get(rules)
        if seen is not None and time.monotonic() - seen[0] < _RULES_RECHECK:
            return seen[1]
        try:
            readiness.require_rule_prices(self.db.get(), rules, allow_empty=True)
            reason = None
        except UserError as exc:
            reason = str(exc)
        except psycopg.Error:
            return None  # the database's own trouble: valuing the batch meets it and says so
        self.rules_seen[rules] = (time.monotonic(), reason)
        return reason

    def _source(self) -> str:
        return f"bulk-backfill work@{self.host}"

    # -- waiting ----------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        """Sleep, keeping the broker connection alive; _Stop if a stop is asked for."""
        deadline = time.monotonic() + seconds
        alive_at = -_ALIVE_EVERY
        while True:
            if self.should_stop():
                raise _Stop
            now = time.monotonic()
            if now - alive_at >= _ALIVE_EVERY:
                alive_at = now
                self.report(events.Alive())  # waiting out an outage is not a stall
            left = deadline - now
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
