"""RabbitMQ through pika: connecting, declaring the queues, publishing with confirms.

The queue is declared exactly as the system being replaced declares it
(durable, x-max-priority 10), so an existing deployment's queue is accepted
as it is and its old single-killmail messages are consumed in place.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from bulk import redact
from bulk.errors import one_line
from bulk.queue.names import (  # noqa: F401 (part of this module's interface)
    DEFAULT_QUEUE,
    DEFAULT_URL,
    BrokerError,
    check_queue_name,
    dead_letter_queue,
)
from bulk.redact import mask_url, scrub

QUEUE_ARGUMENTS = {"x-max-priority": 10}
PERSISTENT = 2
_DEEP_RECURSION = 100_000  # frames pika may need for the deepest header table a frame holds
# Seconds. The broker closes a connection it has heard nothing from for two
# to three intervals (RabbitMQ checks once an interval), so a dead or cut-off
# host's unacked batches come back within 60 to 90 s; pika, checking every
# interval + 5 s, notices the same from the worker's side within 35 to 70 s. A
# worker answers heartbeats only between batches (pika's BlockingConnection
# does I/O only when called), so a batch must finish well within that: a batch
# of 500 takes well under a second, 10,000 a few seconds.
DEFAULT_HEARTBEAT = 30
# What the tool sets unless the URL's query sets it (pika's URL parameters).
CONNECTION_DEFAULTS = {
    # Seconds for the TCP connect: a SYN to an unreachable host is otherwise
    # retried for about two minutes.
    "socket_timeout": 10.0,
    # Seconds for the whole bring-up (TCP, TLS, AMQP handshake): a broker that
    # accepts the connection and then says nothing must not hang a worker.
    "stack_timeout": 15.0,
    # Seconds a connection may stay blocked by the broker (a memory or disk
    # alarm) before pika drops it and the worker or `queue` reconnects: a
    # publish on a blocked connection otherwise waits for as long as the alarm
    # lasts, and says nothing.
    "blocked_connection_timeout": 60.0,
}

# What a lost or refused broker connection raises: worth a reconnect. pika's
# connector errors (a broker that accepts TCP and never finishes the handshake:
# AMQPConnectorStackTimeout) derive from Exception alone.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    AMQPConnectorException,
    OSError,
)


class PublishFailed(Exception):
    """The broker did not confirm a message (nacked, unroutable, or the connection dropped)."""


def allow_deep_header_tables() -> None:
    """Let pika read any header table a frame can hold: called by the code that reads
    messages (work, dead, status), before its connection reads one.

    pika decodes a header table recursively in Python; one nested a few
    thousand levels deep (about 19,000 fit in a 128 KB frame) raised
    RecursionError inside pika, which dropped the connection, and the message
    came back at the head of the queue for every worker, forever. From Python
    3.11 on, Python-to-Python calls use no C stack, so a high limit is safe for
    that pure-Python decoder; code that recurses in C on message content
    (json, repr) keeps a low limit of its own (jsontext.shallow_recursion).
    """
    if sys.version_info >= (3, 11):
        sys.setrecursionlimit(max(sys.getrecursionlimit(), _DEEP_RECURSION))


def connect(url: str) -> pika.BlockingConnection:
    """A blocking connection, or a BrokerError of one line that never shows the password.

    The heartbeat is the URL's `?heartbeat=`, else DEFAULT_HEARTBEAT; the
    timeouts of CONNECTION_DEFAULTS likewise (`?socket_timeout=5`...).
    """
    redact.remember(url)
    try:
        params = pika.URLParameters(url)
    except Exception:  # pika raises several types for a malformed URL
        # pika's message may quote part of the URL (a password with '#' or '/' reads
        # as the port: "as 'Xy'" for "guest:Xy#..."), too short a piece for masking to
        # know it, and a URL it cannot read may be masked wrongly: show neither.
        raise BrokerError(
            "bad RabbitMQ URL (not shown: it may hold a password); "
            "percent-encode special characters in the password, e.g. # as %23, / as %2F"
        ) from None
    given = parse_qs(urlsplit(url).query)
    if "heartbeat" not in given:
        params.heartbeat = DEFAULT_HEARTBEAT
    for name, value in CONNECTION_DEFAULTS.items():
        if name not in given:
            setattr(params, name, value)
    params.client_properties = {"connection_name": f"bulk-backfill@{socket.gethostname()}"}
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.ProbableAuthenticationError as exc:
        if _refused_by_broker(exc):
            raise BrokerError(
                f"RabbitMQ at {mask_url(url)} refused the login: check the user and password"
            ) from None
        raise _lost_during(url, "the login", exc) from None
    except pika.exceptions.ProbableAccessDeniedError as exc:
        if _refused_by_broker(exc):
            raise BrokerError(
                f"RabbitMQ at {mask_url(url)} denied access to the virtual host:"
                " check the URL's vhost"
            ) from None
        raise _lost_during(url, "the choice of the virtual host", exc) from None
    except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
        reason = scrub(one_line(exc), url)
        raise BrokerError(f"cannot reach RabbitMQ at {mask_url(url)}: {reason}") from None


def _refused_by_broker(exc: pika.exceptions.AMQPConnectionError) -> bool:
    """Whether pika's "probable" handshake error holds the broker's own refusal (a
    Connection.Close it sent, 403 or 530), rather than a link lost at that stage:
    pika names both alike, with the error it saw as its argument's text."""
    return "ConnectionClosedByBroker" in str(exc)


_REPR_PUNCTUATION = " (),'\""


def _lost_during(url: str, stage: str, exc: Exception) -> BrokerError:
    # pika's argument is the repr of what it saw: "StreamLostError: ('Transport indicated EOF',)".
    seen = str(exc.args[0]) if exc.args else str(exc)
    name, colon, rest = seen.partition(": ")
    seen = f"{name}: {rest.strip(_REPR_PUNCTUATION)}" if colon else seen
    reason = scrub(one_line(seen), url)
    return BrokerError(
        f"cannot reach RabbitMQ at {mask_url(url)}: the connection was lost during {stage}"
        f" ({reason})"
    )


def declare(channel: BlockingChannel, queue: str) -> None:
    """The work queue and its dead-letter queue, both durable."""
    check_queue_name(queue)  # a name the broker would change is waited for forever
    try:
        channel.queue_declare(queue, durable=True, arguments=QUEUE_ARGUMENTS)
        channel.queue_declare(dead_letter_queue(queue), durable=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise BrokerError(f"cannot use queue {queue!r}: {exc.reply_text}") from None


@dataclass
class Depth:
    ready: int
    consumers: int


def depth(channel: BlockingChannel, queue: str) -> Depth:
    """Ready messages and consumers of an existing queue (a passive declare)."""
    check_queue_name(queue)
    result = channel.queue_declare(queue, passive=True)
    return Depth(result.method.message_count, result.method.consumer_count)


def close_quietly(connection: pika.BlockingConnection | BlockingChannel | None) -> None:
    """Close a connection (or channel) that may already be broken; there is nothing
    to report if so."""
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # already gone: nothing left to release
        pass


@contextmanager
def closed_after(resource: pika.BlockingConnection | BlockingChannel) -> Iterator[None]:
    """Closes a connection or channel after the block, quietly (a close error would
    hide the one that ended the block); not after an interrupt, which can leave
    pika in the middle of a frame, where a close waits for an answer forever: the
    process is ending, and the broker takes back what the connection held."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        close_quietly(resource)
        raise
    close_quietly(resource)


class Publisher:
    """Publishes persistent messages and waits for each one's confirm."""

    def __init__(self, connection: pika.BlockingConnection):
        self.connection = connection
        self.channel = connection.channel()
        self.channel.confirm_delivery()

    def publish(self, queue: str, body: bytes, headers: dict | None = None) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            headers=headers,
        )
        try:
            # mandatory: a message with no queue to land in is reported, not dropped.
            self.channel.basic_publish("", queue, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            raise PublishFailed(f"not confirmed by the broker: {type(exc).__name__}") from None
