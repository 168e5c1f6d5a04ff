"""Helpers for tests against the real RabbitMQ: a queue name per test, raw publishing, depths."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import uuid

import pika
import pika.frame
from pika import connection as pika_connection

# A passive declare of a queue not yet made is an expected answer, not a warning.
logging.getLogger("pika").setLevel(logging.ERROR)

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def connection() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))


def new_queue_name() -> str:
    return f"bbt_{uuid.uuid4().hex[:12]}"


def delete_queues(name: str) -> None:
    with connection() as conn:
        channel = conn.channel()
        for queue in (name, f"{name}.dead"):
            channel.queue_delete(queue)


def publish_raw(queue: str, bodies: list) -> None:
    """Publish bodies (bytes, or objects to be sent as JSON) the way another producer would."""
    with connection() as conn:
        channel = conn.channel()
        # Declared as bulk-backfill declares them: the work queue with priorities.
        arguments = None if queue.endswith(".dead") else {"x-max-priority": 10}
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.confirm_delivery()
        for body in bodies:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def ctl(*args: str) -> None:
    """rabbitmqctl, which these tests need on this machine (as `.ci/run` has it)."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def counts(queue: str) -> tuple[int, int]:
    """(ready, unacked) messages of a queue, from rabbitmqctl when it is on this machine.

    A passive declare sees only ready messages; rabbitmqctl also sees the
    unacknowledged ones held by consumers.
    """
    if shutil.which("rabbitmqctl"):
        out = subprocess.run(
            [
                "rabbitmqctl",
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"queue {queue} not listed by rabbitmqctl")
    with connection() as conn:
        ready = conn.channel().queue_declare(queue, passive=True).method.message_count
    return ready, 0


def ready(queue: str) -> int:
    """Ready messages (a passive declare: fast, unlike rabbitmqctl); 0 if there is no such queue."""
    try:
        with connection() as conn:
            return conn.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0


def take_all(queue: str) -> list[tuple]:
    """Take every ready message off a queue, in order: (method, properties, body) each
    (method.redelivered: whether it came back unacked)."""
    taken = []
    with connection() as conn:
        channel = conn.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((method, properties, body))


def drain(queue: str) -> list[tuple[bytes, dict]]:
    """Take every ready message off a queue: (body, headers) each."""
    return [(body, properties.headers or {}) for _, properties, body in take_all(queue)]


def interrupt_at_frame(monkeypatch, method: type, nth: int) -> list:
    """Raise KeyboardInterrupt in pika as it takes the frame after the `nth` frame of
    AMQP `method` (e.g. pika.spec.Basic.GetOk: the message's content header), where
    Ctrl+C can leave it between a message's frames. Returns the frames seen; the
    interrupt was raised once its length is nth + 1."""
    real = pika_connection.Connection._process_frame
    seen: list = []

    def interrupted(self, frame):
        if len(seen) == nth:
            seen.append(frame)
            raise KeyboardInterrupt
        if isinstance(frame, pika.frame.Method) and isinstance(frame.method, method):
            seen.append(frame)
        return real(self, frame)

    monkeypatch.setattr(pika_connection.Connection, "_process_frame", interrupted)
    return seen


def ends_interrupted(call, timeout: float = 20) -> str:
    """Run `call` in a thread: "interrupted" (KeyboardInterrupt), "returned", or "hung"."""
    outcome = []

    def run():
        try:
            call()
            outcome.append("returned")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else "hung"
