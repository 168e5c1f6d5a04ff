"""`status` and RabbitMQ's management API: the unacked figure for real, and where credentials go.

Needs the rabbitmq_management plugin (.ci/run enables it). Under CI=true a
missing plugin fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from urllib.parse import urlsplit

import pika
import pytest

from bulk.audit import status
from tests import rabbit
from tests.conftest import cli

_HOST = urlsplit(rabbit.RABBITMQ_URL).hostname or "127.0.0.1"


def _management_up() -> bool:
    try:
        with socket.create_connection((_HOST, 15672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _management_api():
    if not _management_up():
        if os.environ.get("CI") == "true":
            pytest.fail("the RabbitMQ management API is not on port 15672 (.ci/run enables it)")
        pytest.skip("the RabbitMQ management API is not on port 15672")


def _hold_unacked(queue: str, n: int) -> pika.BlockingConnection:
    """A consumer holding n messages of the queue unacknowledged, until its connection closes."""
    connection = rabbit.connection()
    channel = connection.channel()
    channel.basic_qos(prefetch_count=n)
    held = []
    channel.basic_consume(queue, lambda ch, method, props, body: held.append(method))
    deadline = time.monotonic() + 20
    while len(held) < n and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    assert len(held) == n, f"the consumer got {len(held)} of {n} messages"
    return connection


def _poll_unacked(queue: str, want: int, seconds: float = 40) -> status.QueueStatus:
    # The management API's figures are sampled every few seconds: wait, bounded.
    deadline = time.monotonic() + seconds
    while True:
        result = status.queue_status(rabbit.RABBITMQ_URL, queue, None)
        if result.unacked == want or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_status_reports_the_messages_a_consumer_holds_unacked(schema_db, queue_name):
    rabbit.publish_raw(queue_name, [{"v": 1, "ids": [i], "mode": "null"} for i in range(1, 6)])
    holder = _hold_unacked(queue_name, 3)
    try:
        result = _poll_unacked(queue_name, 3)
        assert result.unacked == 3, result.unacked_note
        assert result.ready == 2 and result.consumers == 1
        assert result.unacked_note.startswith("from the management API")
        out = cli(
            "status", "--queue", queue_name, "--json", url=schema_db,
            env={"RABBITMQ_URL": rabbit.RABBITMQ_URL},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        queue = json.loads(out.stdout)["queue"]
        assert (queue["unacked"], queue["ready"]) == (3, 2)
    finally:
        holder.close()


def _outward_address() -> str | None:
    """This machine's address on its outward interface (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_credentials_are_not_sent_over_plain_http_to_a_guessed_remote_host():
    address = _outward_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    with socket.create_connection((address, 15672), timeout=2):
        pass  # the management API answers there too: only the fence stops the request
    amqp_url = f"amqp://guest:guest@{address}:5672/%2F"
    unacked, note = status._unacked(amqp_url, "any_queue", None)
    assert unacked is None
    assert "not sent over plain HTTP" in note and "--management-url" in note
    # Named explicitly, the same host is asked (RabbitMQ lets guest in from loopback only,
    # so the answer is 401 or, where guest may log in remotely, a figure).
    unacked, note = status._unacked(amqp_url, "no_such_queue_here", f"http://{address}:15672")
    assert "not sent" not in note
    assert note.startswith("from the management API") or "answered HTTP 401" in note, note


def test_amqps_defaults_to_the_management_api_over_https():
    target = status.management_target("amqps://guest:S3cret@broker.example:5671/%2F", None)
    assert target.base == "https://broker.example:15671"
    assert target.refusal is None
    plain = status.management_target("amqp://guest:S3cret@broker.example:5672/%2F", None)
    assert plain.refusal is not None and "S3cret" not in plain.refusal


def test_management_url_credentials_are_used_and_never_shown(schema_db, queue_name):
    url = "http://admin:x#S3cret@127.0.0.1:15672/"
    target = status.management_target(rabbit.RABBITMQ_URL, url)
    assert (target.username, target.password) == ("admin", "x#S3cret")
    assert target.base == "http://127.0.0.1:15672"
    rabbit.publish_raw(queue_name, [])  # the API is asked only about a queue that exists
    out = cli(
        "status", "--queue", queue_name, "--management-url", url, url=schema_db,
        env={"RABBITMQ_URL": rabbit.RABBITMQ_URL},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "answered HTTP 401" in out.stdout  # no such user: the API refused it
    assert "S3cret" not in out.stdout + out.stderr
