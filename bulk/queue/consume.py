"""One `work` process: the consumer. It takes messages from RabbitMQ, gathers old
single-killmail messages (bulk.queue.gather), hands each batch to its handler
(bulk.queue.handle), and acks after COMMIT.

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
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg

from bulk import db, events
from bulk.backoff import Backoff, jitter
from bulk.engine.errors import ErrorKind, classify
from bulk.engine.retry import ConnectionHolder
from bulk.errors import describe
from bulk.queue import broker, messages
from bulk.queue.gather import Singles
from bulk.queue.handle import (
    HEADER_TEXT,
    BatchHandler,
    DatabaseLost,
    FatalError,
    Refused,
    StopAsked,
    headers_text,
)
from bulk.queue.settings import WorkSettings

__all__ = ["FatalError", "WorkSettings", "Worker"]

_IDLE_AFTER = 0.05  # seconds without a message before the worker counts as idle
_ALIVE_EVERY = 5.0  # seconds between signs of life while waiting
_SAY_EVERY = 30.0  # seconds between two notes of one worker about the same trouble
_REDELIVERED = (
    "redelivered: the batch came back unacked (a worker died, froze or lost its broker"
    " connection while it held the batch)"
)


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
        self.singles = Singles(settings.singles_per_batch)
        self.held: dict[int, tuple[bytes, dict]] = {}  # tag -> the batch message as it came
        self.consuming = False
        self.idle = False
        self.refusals = 0  # publishes refused in a row
        self.handled = False  # a message was handled on this try of the loop
        self.said_at: dict[str, float] = {}  # when each kind of note was last said
        # The batch's statements run here while the main thread answers the
        # broker: pika's BlockingConnection does I/O only when called, and a batch
        # that outlasted two heartbeats lost its connection and came back, forever.
        self.valuer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-value")
        self.handler = BatchHandler(settings, self.db, self)

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
                except broker.CONNECTION_ERRORS + (broker.BrokerError, DatabaseLost) as exc:
                    # Closing gives back every delivery not acked (the prefetched ones).
                    self._close_broker()
                    # Only a message handled counts as recovery: a connection that
                    # opens and then breaks on the same message must keep backing off.
                    if self.handled:
                        backoff.reset()
                    if isinstance(exc, DatabaseLost):
                        self.report(events.DatabaseUp(False))
                        self.say_now_and_then(
                            "database",
                            f"database unreachable ({exc}); taking no batch until it answers",
                        )
                    else:
                        self.say_now_and_then(
                            "broker", f"broker connection lost ({describe(exc)}); reconnecting"
                        )
                    self.pause(backoff.delay())
        except StopAsked:
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
            raise DatabaseLost(describe(exc)) from None

    def _open(self) -> None:
        self.held = {}  # deliveries of a closed connection go back by themselves
        self.singles.forget()  # unacked singles come back from the broker on reconnect
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
            if self.singles.due():
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
        except Refused as exc:
            self.refusals += 1
            self.report(events.Retry("refused"))
            self.say_now_and_then(
                "refused", f"{exc}; the message went back to the queue, retrying with backoff"
            )
            try:
                broker.declare(self.channel, self.s.queue)
            except broker.BrokerError as declare_error:
                self.note(f"cannot re-declare the queues: {declare_error}")
            self.pause(jitter(self.refusals, base=0.5, cap=30.0))
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
            self.dead_letter(
                body,
                {"x-original-headers": headers_text(headers)} if headers else {},
                reason=f"invalid message: {exc}",
                attempts=0,
                tags=[tag],
            )
            self.report(events.Invalid(1))
            self.ack([tag])
            return
        if isinstance(message, messages.Single):
            # A single that names no rule set is valued under this worker's --rules.
            rules = message.rules or self.s.valuation.rules
            self.singles.add(message.mode, rules, tag, message.killmail_id)
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
            self.handler.hand_on(
                _REDELIVERED, ids, message.mode, message.attempts, headers, [tag], message.rules
            )
            return
        self.handler.do(
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
        pending = self.singles.take()
        keys = list(pending)
        for n, (mode, rules) in enumerate(keys):
            entries = pending[(mode, rules)]
            try:
                ids, tags = [i for _, i in entries], [tag for tag, _ in entries]
                self.handler.do(ids, mode, 0, {}, tags, rules)
            except Refused:
                # The other batches' messages go back too, not held until a reconnect.
                for later in keys[n + 1 :]:
                    self._nack([tag for tag, _ in pending[later]])
                raise

    # -- one batch --------------------------------------------------------

    def _stop_consuming(self) -> None:
        if self.consuming:
            self.consuming = False
            try:
                self.channel.cancel()
            except broker.CONNECTION_ERRORS:
                pass  # the connection is gone: nothing more is delivered

    def ack(self, tags: list[int]) -> None:
        for tag in tags:
            self.held.pop(tag, None)
            self.channel.basic_ack(tag)
        self.report(events.Acked(len(tags)))

    def _nack(self, tags: list[int]) -> None:
        for tag in tags:
            self.channel.basic_nack(tag, requeue=True)

    def give_back(self, tags: list[int]) -> None:
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

    def serving_broker(self, step: Callable, *args):
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
            raise Refused(f"the broker refused a message for {queue}: {exc}") from None

    def republish(
        self,
        parts: list[list[int]],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str,
    ) -> None:
        for part in parts:
            body = messages.encode_batch(part, mode, self.source(), attempts=attempts, rules=rules)
            self._publish(self.s.queue, body, headers, tags)

    def dead_letter(
        self, body: bytes, headers: dict, *, reason: str, attempts: int, tags: list[int]
    ) -> None:
        now = messages.now_iso()
        dead_headers = {
            "x-first-failure": now,
            "x-last-failure": now,
            "x-host": self.host,
            **headers,
            "x-reason": reason[:HEADER_TEXT],
            "x-attempts": attempts,
            "x-queue": self.s.queue,
        }
        self._publish(broker.dead_letter_queue(self.s.queue), body, dead_headers, tags)

    def note(self, text: str) -> None:
        self.report(events.Note(f"worker {os.getpid()}: {text}"))

    def say_now_and_then(self, kind: str, text: str) -> None:
        """A note, unless one of this kind was said less than _SAY_EVERY seconds ago."""
        now = time.monotonic()
        if now - self.said_at.get(kind, -_SAY_EVERY) >= _SAY_EVERY:
            self.said_at[kind] = now
            self.note(text)

    def source(self) -> str:
        return f"bulk-backfill work@{self.host}"

    # -- waiting ----------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Sleep, keeping the broker connection alive; StopAsked if a stop is asked for."""
        deadline = time.monotonic() + seconds
        alive_at = -_ALIVE_EVERY
        while True:
            if self.should_stop():
                raise StopAsked
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
