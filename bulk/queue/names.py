"""The broker's names and their checks, without pika: the defaults of the URL and the
queue, and BrokerError. Read by every command's options and summaries; only the
commands that talk to the broker import pika (bulk.queue.broker)."""

from __future__ import annotations

from bulk.errors import UserError

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_QUEUE = "backfill_killmail_values_queue"


class BrokerError(UserError):
    """The broker could not be reached or refused us; the message names the masked URL."""


def check_queue_name(queue: str) -> None:
    """A BrokerError if the name holds a control character (C0, DEL or C1) or is not UTF-8.

    RabbitMQ strips CR and LF from a declared name and answers with the
    stripped one; pika waits for an answer naming the queue it asked for, so a
    declare of 'name\\r' (a CRLF .env file's BACKFILL_QUEUE) hangs forever. The
    other control characters are kept, but no one can see or type them in a
    log line or a command.
    """
    try:
        queue.encode("utf-8")
    except UnicodeEncodeError as exc:  # bytes of the environment that are not UTF-8
        raise BrokerError(
            f"queue name {queue!r} is not valid UTF-8 (character {exc.start + 1})"
        ) from None
    for position, char in enumerate(queue, 1):
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            crlf = " (a .env file saved with Windows line ends leaves one)" if char == "\r" else ""
            raise BrokerError(
                f"queue name {queue!r} holds a control character, {char!r} at character "
                f"{position}{crlf}: use printable characters only"
            )


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"
