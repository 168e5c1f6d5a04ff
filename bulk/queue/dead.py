"""`dead list` and `dead requeue`: look at and retry what the workers dead-lettered."""

from __future__ import annotations

import reprlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pika

from bulk.engine.rules import DEFAULT_RULES
from bulk.queue import broker, messages


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    ids: int | None  # None when the message is not a valid batch
    attempts: int | None
    first_failure: str | None
    last_failure: str | None
    host: str | None
    preview: str  # the first IDs, or the start of an invalid body


# A cause that fails every batch alike (issue 25: a full disk) leaves one dead
# letter per killmail: republished one by one, 19,950 took 71 s and `work` then
# ran one statement per killmail. Merged, they go back as the batches `queue` makes.
DEFAULT_BATCH_SIZE = 500


@dataclass
class RequeueSummary:
    requeued_messages: int = 0  # dead letters taken off <queue>.dead
    requeued_ids: int = 0  # killmails in the batches published (each once)
    batches: int = 0  # batch messages published to the work queue
    left_invalid: int = 0
    remaining: int = 0


@dataclass
class _Gathering:
    """Dead letters of one mode and rule set on their way into one batch."""

    tags: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def _text(value, limit: int = 100) -> str | None:
    """A header as one printable line: anyone may have written it."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if value is None:
        return None
    if not isinstance(value, str):  # a table or list may be nested thousands deep
        with messages.shallow_recursion():
            value = reprlib.repr(value)
    text = " ".join(value.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def describe(body: bytes, headers: dict) -> DeadLetter:
    try:
        message = messages.decode(body)
    except messages.InvalidMessage:
        message = None
    if isinstance(message, messages.Batch):
        ids = list(message.ids)
    elif isinstance(message, messages.Single):
        ids = [message.killmail_id]
    else:
        ids = None
    if ids is None:
        preview = repr(body[:60]) + ("..." if len(body) > 60 else "")
    else:
        preview = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
    attempts = headers.get("x-attempts")
    return DeadLetter(
        reason=_text(headers.get("x-reason"), 2000) or "(no reason recorded)",
        ids=None if ids is None else len(ids),
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
        first_failure=_text(headers.get("x-first-failure")),
        last_failure=_text(headers.get("x-last-failure")),
        host=_text(headers.get("x-host")),
        preview=preview,
    )


def _existing_depth(channel, queue: str) -> int:
    """Ready messages of a queue that must already exist: looking never creates one."""
    try:
        return broker.depth(channel, queue).ready
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise broker.BrokerError(
                f"no queue named {queue!r} on this broker: check --queue"
            ) from None
        raise broker.BrokerError(f"cannot use queue {queue!r}: {exc.reply_text}") from None


def list_dead(amqp_url: str, queue: str, limit: int | None = None) -> tuple[int, list[DeadLetter]]:
    """(messages in the dead-letter queue, the first `limit` of them), leaving them in place."""
    dead = broker.dead_letter_queue(queue)
    broker.allow_deep_header_tables()  # it reads messages anyone may have written
    connection = broker.connect(amqp_url)
    with broker.closed_after(connection):
        channel = connection.channel()
        total = _existing_depth(channel, dead)
        shown = []
        # Unacked gets are returned to the queue when the channel closes: a browse.
        while limit is None or len(shown) < limit:
            method, properties, body = channel.basic_get(dead, auto_ack=False)
            if method is None:
                break
            shown.append(describe(body, properties.headers or {}))
        channel.close()
    return total, shown


@contextmanager
def _stopped_as_broker_error() -> Iterator[None]:
    """A broker failure during `dead requeue` as the one line the CLI prints."""
    try:
        yield
    except pika.exceptions.AMQPError as exc:
        raise broker.BrokerError(f"dead requeue stopped: {type(exc).__name__}: {exc}") from None


def requeue_dead(
    amqp_url: str,
    queue: str,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RequeueSummary:
    """Move dead batches back to the work queue with their attempts reset.

    Dead letters of the same mode and rule set are merged into batches of up to
    `batch_size` IDs (a letter is never split; one bigger than that goes back as it
    is); a killmail dead-lettered twice goes back once. `limit` counts dead letters.
    Invalid messages stay where they are: they would only fail again. Each batch is
    confirmed by the broker before the dead letters it holds are acked, so a crash
    can duplicate a batch but never lose one.
    """
    if not 1 <= batch_size <= messages.MAX_IDS:
        raise ValueError(f"batch size must be between 1 and {messages.MAX_IDS}")
    dead = broker.dead_letter_queue(queue)
    broker.allow_deep_header_tables()  # it reads messages anyone may have written
    connection = broker.connect(amqp_url)
    summary = RequeueSummary()
    with broker.closed_after(connection), _stopped_as_broker_error():
        channel = connection.channel()
        _existing_depth(connection.channel(), queue)
        waiting = _existing_depth(channel, dead)
        publisher = broker.Publisher(connection)
        kept: list[int] = []
        gathering: dict[tuple[str, str], _Gathering] = {}
        sent: dict[tuple[str, str], set[int]] = {}  # IDs already in a batch, to send each once
        source = f"bulk-backfill dead requeue@{socket.gethostname()}"

        def release() -> None:
            """Hand every dead letter not yet acked back to <queue>.dead."""
            for group in gathering.values():
                for tag in group.tags:
                    channel.basic_nack(tag, requeue=True)
            for tag in kept:
                channel.basic_nack(tag, requeue=True)

        def send(key: tuple[str, str]) -> None:
            group = gathering.pop(key)
            if group.ids:
                body = messages.encode_batch(sorted(group.ids), key[0], source, rules=key[1])
                try:
                    publisher.publish(queue, body)
                except broker.PublishFailed as exc:
                    gathering[key] = group
                    release()
                    raise broker.BrokerError(
                        f"the broker refused to put a batch of {len(group.ids):,} killmails "
                        f"back on {queue} ({exc}); its dead letters and those not yet requeued "
                        f"stay in {dead}; {summary.requeued_messages:,} requeued before it"
                    ) from None
                summary.batches += 1
            # Only now that the batch is confirmed: acked before, a crash in between
            # would lose them.
            held = [t for other in gathering.values() for t in other.tags] + kept
            if group.tags and not any(t < group.tags[-1] for t in held):
                # Every letter up to the last is this batch's: pika writes each ack
                # out at once, and one for all of them saves thousands.
                channel.basic_ack(group.tags[-1], multiple=True)
            else:
                for tag in group.tags:
                    channel.basic_ack(tag)
            summary.requeued_messages += len(group.tags)
            summary.requeued_ids += len(group.ids)

        taken = 0
        # What was dead when we started, no more: with workers running and the cause
        # still there, the batches requeued here come back as new dead letters, and
        # taking those too would never end.
        while (limit is None or taken < limit) and taken + len(kept) < waiting:
            method, properties, body = channel.basic_get(dead, auto_ack=False)
            if method is None:
                break
            try:
                message = messages.decode(body)
            except messages.InvalidMessage:
                kept.append(method.delivery_tag)
                summary.left_invalid += 1
                continue
            taken += 1
            if isinstance(message, messages.Batch):
                ids = list(message.ids)
            else:
                ids = [message.killmail_id]
            # The rule set goes back with the batch (a single that names none: seed).
            key = (message.mode, message.rules or DEFAULT_RULES)
            seen = sent.setdefault(key, set())
            new = [i for i in dict.fromkeys(ids) if i not in seen]
            group = gathering.get(key)
            if group is not None and group.ids and len(group.ids) + len(new) > batch_size:
                send(key)
                group = None
            if group is None:
                group = gathering[key] = _Gathering()
            group.tags.append(method.delivery_tag)
            group.ids += new
            seen.update(new)
            if len(group.ids) >= batch_size:
                send(key)
        for key in list(gathering):
            send(key)
        for tag in kept:
            channel.basic_nack(tag, requeue=True)
        # Counted, not asked: the broker takes a moment to make nacked messages
        # ready again, and a depth read right after the nacks misses some.
        summary.remaining = max(waiting - summary.requeued_messages, summary.left_invalid)
        channel.close()
    return summary
