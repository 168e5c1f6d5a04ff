"""`dead list` and `dead requeue`: look at and retry what the workers dead-lettered."""

from __future__ import annotations

import reprlib
import socket
from dataclasses import dataclass

import pika

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


@dataclass
class RequeueSummary:
    requeued_messages: int = 0
    requeued_ids: int = 0
    left_invalid: int = 0
    remaining: int = 0


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
    connection = broker.connect(amqp_url)
    try:
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
    finally:
        connection.close()
    return total, shown


def requeue_dead(amqp_url: str, queue: str, limit: int | None = None) -> RequeueSummary:
    """Move dead batches back to the work queue with their attempts reset.

    Invalid messages stay where they are: they would only fail again. Each
    message is republished and confirmed before it is acked off the
    dead-letter queue, so a crash can duplicate one but never lose it.
    """
    dead = broker.dead_letter_queue(queue)
    connection = broker.connect(amqp_url)
    summary = RequeueSummary()
    try:
        channel = connection.channel()
        _existing_depth(connection.channel(), queue)
        waiting = _existing_depth(channel, dead)
        publisher = broker.Publisher(connection)
        kept: list[int] = []
        source = f"bulk-backfill dead requeue@{socket.gethostname()}"
        while limit is None or summary.requeued_messages < limit:
            method, properties, body = channel.basic_get(dead, auto_ack=False)
            if method is None:
                break
            try:
                message = messages.decode(body)
            except messages.InvalidMessage:
                kept.append(method.delivery_tag)
                summary.left_invalid += 1
                continue
            if isinstance(message, messages.Batch):
                ids, mode = list(message.ids), message.mode
            else:
                ids, mode = [message.killmail_id], message.mode
            # The rule set goes back with the batch (a single names none: seed).
            body = messages.encode_batch(ids, mode, source, rules=message.rules)
            try:
                publisher.publish(queue, body)
            except broker.PublishFailed as exc:
                channel.basic_nack(method.delivery_tag, requeue=True)
                for tag in kept:
                    channel.basic_nack(tag, requeue=True)
                raise broker.BrokerError(
                    f"the broker refused to put a message back on {queue} ({exc}); it stays "
                    f"in {dead}; {summary.requeued_messages:,} requeued before it"
                ) from None
            channel.basic_ack(method.delivery_tag)
            summary.requeued_messages += 1
            summary.requeued_ids += len(ids)
        for tag in kept:
            channel.basic_nack(tag, requeue=True)
        # Counted, not asked: the broker takes a moment to make nacked messages
        # ready again, and a depth read right after the nacks misses some.
        summary.remaining = max(waiting - summary.requeued_messages, summary.left_invalid)
        channel.close()
    except pika.exceptions.AMQPError as exc:
        raise broker.BrokerError(f"dead requeue stopped: {type(exc).__name__}: {exc}") from None
    finally:
        if connection.is_open:
            connection.close()
    return summary
