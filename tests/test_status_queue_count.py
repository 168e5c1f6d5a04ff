"""`status` counts the killmails waiting in a short queue without costing a batch a
try: what it reads goes back unflagged, what came back flagged keeps its flag, and
a priority queue is counted and kept in order (bulk/audit/status.py)."""

from __future__ import annotations

import json

import pika
import pika.spec

from tests import rabbit
from tests.conftest import cli, killmail_ids

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _queue(url: str, queue_name: str, env: dict = _ENV) -> dict:
    out = cli("status", "--queue", queue_name, "--json", url=url, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["queue"]


def _batch(ids: list[int]) -> bytes:
    return json.dumps({"v": 1, "mode": "null", "ids": ids}).encode()


def _publish(queue_name: str, messages: list[tuple[bytes, pika.BasicProperties]]) -> None:
    with rabbit.connection() as conn:
        channel = conn.channel()
        channel.queue_declare(queue_name, durable=True, arguments={"x-max-priority": 10})
        channel.confirm_delivery()
        for body, properties in messages:
            channel.basic_publish("", queue_name, body, properties)


def test_a_batch_a_worker_gave_back_keeps_its_flag(demo_db, queue_name):
    """A batch that came back unacked (its worker died) is flagged, and `work` counts
    that try; a copy would drop the flag. The others go back unflagged."""
    ids = killmail_ids(demo_db)
    rabbit.publish_raw(
        queue_name, [{"v": 1, "mode": "null", "ids": ids[i : i + 2]} for i in (0, 2, 4)]
    )
    with rabbit.connection() as conn:  # a worker takes the head and dies
        method, _, _ = conn.channel().basic_get(queue_name, auto_ack=False)
        assert method is not None
    queue = _queue(demo_db, queue_name)
    assert (queue["ready"], queue["killmails_waiting"], queue["killmails_waiting_exact"]) == (
        3, 6, True,
    )  # fmt: skip
    taken = rabbit.take_all(queue_name)
    assert [json.loads(b)["ids"][0] for _, _, b in taken] == [ids[0], ids[2], ids[4]]
    assert [m.redelivered for m, _, _ in taken] == [True, False, False]


def test_a_priority_queue_is_counted_exactly_and_keeps_its_order(demo_db, queue_name):
    """Batches with a priority are copied once all are read (a copy made at once
    would be read again before the rest): counted once each, in order, unflagged."""
    ids = killmail_ids(demo_db)
    a, b, c = ids[:1], ids[1:3], ids[3:53]
    _publish(
        queue_name,
        [
            (_batch(a), pika.BasicProperties(delivery_mode=2, priority=5)),
            (_batch(b), pika.BasicProperties(delivery_mode=2, priority=5)),
            (_batch(c), pika.BasicProperties(delivery_mode=2)),
        ],
    )
    queue = _queue(demo_db, queue_name)
    assert (queue["ready"], queue["killmails_waiting"], queue["killmails_waiting_exact"]) == (
        3, 53, True,
    )  # fmt: skip
    taken = rabbit.take_all(queue_name)
    assert [json.loads(body)["ids"] for _, _, body in taken] == [a, b, c]
    assert [p.priority for _, p, _ in taken] == [5, 5, None]
    assert [m.redelivered for m, _, _ in taken] == [False, False, False]


def test_what_a_copy_would_change_goes_back_as_it_came(demo_db, queue_name):
    """A batch with another producer's headers (pika decodes a float header as an
    integer), an expiry (a copy would start it again) or a named user is not
    copied: it goes back unacked, as before; a plain batch is copied, its own
    headers and properties kept. The count stays exact."""
    ids = killmail_ids(demo_db)
    ours = {
        "x-attempts": 2,
        "x-error": "a batch error",
        "x-host": "w1",
        "x-first-failure": "2026-12-07T09:00:00Z",
        "x-last-failure": "2026-12-07T09:01:00Z",
    }
    user = rabbit.RABBITMQ_URL.split("//")[1].split(":")[0]
    kept = pika.BasicProperties(
        delivery_mode=2, headers=ours, message_id="m-1", correlation_id="c-1",
        content_type="application/json", app_id="producer", timestamp=1765000000,
    )  # fmt: skip
    _publish(
        queue_name,
        [
            (
                _batch(ids[0:1]),
                pika.BasicProperties(delivery_mode=2, headers={"x-source": "killboard"}),
            ),
            (_batch(ids[1:2]), pika.BasicProperties(delivery_mode=2, expiration="600000")),
            (_batch(ids[2:3]), pika.BasicProperties(delivery_mode=2, user_id=user)),
            (json.dumps({"killmailId": ids[5]}).encode(), pika.BasicProperties(delivery_mode=2)),
            (_batch(ids[3:5]), kept),
        ],
    )
    queue = _queue(demo_db, queue_name)
    assert (queue["ready"], queue["killmails_waiting"], queue["killmails_waiting_exact"]) == (
        5, 6, True,
    )  # fmt: skip
    taken = rabbit.take_all(queue_name)
    # A single-killmail message goes back as it came too: `work` counts no try
    # against one that comes back flagged.
    assert [m.redelivered for m, _, _ in taken] == [True, True, True, True, False]
    _, copy, body = taken[4]
    assert json.loads(body)["ids"] == ids[3:5]
    assert copy.headers == ours
    assert (copy.message_id, copy.correlation_id, copy.content_type, copy.app_id) == (
        "m-1", "c-1", "application/json", "producer",
    )  # fmt: skip
    assert (copy.timestamp, copy.delivery_mode) == (1765000000, 2)


def test_status_reads_a_queue_its_user_may_not_publish_to(demo_db, queue_name):
    """A monitoring user that may only read: status cannot put a copy back, so the
    message it read goes back as before (flagged), the figure is an estimate, and
    nothing is lost or left unacked."""
    ids = killmail_ids(demo_db)
    bodies = [{"v": 1, "mode": "null", "ids": ids[i : i + 3]} for i in range(0, 15, 3)]
    rabbit.publish_raw(queue_name, bodies)
    user, password = f"ro_{queue_name}", "r#o/p@ss"
    rabbit.ctl("add_user", user, password)
    try:
        rabbit.ctl("set_permissions", user, "", "", ".*")
        url = f"amqp://{user}:r%23o%2Fp%40ss@127.0.0.1:5672/%2F"
        out = cli("status", "--queue", queue_name, "--json", url=demo_db, env={"RABBITMQ_URL": url})
        assert out.returncode == 0, out.stderr
        queue = json.loads(out.stdout)["queue"]
        assert (queue["ready"], queue["killmails_waiting"]) == (5, 15)
        assert queue["killmails_waiting_exact"] is False
        assert password not in out.stdout + out.stderr
    finally:
        rabbit.ctl("delete_user", user)
    assert rabbit.counts(queue_name) == (5, 0)
    got = rabbit.take_all(queue_name)
    assert sorted(json.loads(body)["ids"][0] for _, _, body in got) == ids[0:15:3]


def test_a_connection_lost_while_counting_is_the_error_reported(demo_db, queue_name, monkeypatch):
    """Closing a connection that is already gone raised its own error, which hid the
    real one (and turned a Ctrl+C into a traceback)."""
    from bulk.audit import status

    rabbit.publish_raw(queue_name, [{"v": 1, "mode": "null", "ids": killmail_ids(demo_db)[:2]}])

    def lost(channel, queue, count):
        channel.connection.close()  # as a broker gone away leaves it: closed
        raise pika.exceptions.StreamLostError("the link went down")

    monkeypatch.setattr(status, "_ids_in_messages", lost)
    try:
        status.queue_status(rabbit.RABBITMQ_URL, queue_name, None)
    except pika.exceptions.StreamLostError as exc:
        assert "the link went down" in str(exc)
    else:
        raise AssertionError("the lost connection was not reported")


def test_a_queue_deleted_while_counted_is_reported_gone(demo_db, queue_name, monkeypatch):
    """The queue deleted between two reads of the count: the next read's 404 was the
    error status ended with; it is a queue that no longer exists."""
    from bulk.audit import status

    ids = killmail_ids(demo_db)
    rabbit.publish_raw(
        queue_name, [{"v": 1, "mode": "null", "ids": ids[i : i + 2]} for i in (0, 2)]
    )
    put_back = status._put_back

    def then_deleted(channel, queue, *message):
        copied = put_back(channel, queue, *message)
        with rabbit.connection() as conn:
            conn.channel().queue_delete(queue_name)
        return copied

    monkeypatch.setattr(status, "_put_back", then_deleted)
    gone = status.queue_status(rabbit.RABBITMQ_URL, queue_name, None)
    assert not gone.exists and gone.killmails_waiting == 0
    assert gone.unacked_note == "no such queue (deleted while status read it)"


def test_an_interrupt_while_counting_does_not_hang_the_close(demo_db, queue_name, monkeypatch):
    """Ctrl+C can leave pika in the middle of a frame, where closing the channel or
    the connection waits for an answer forever (3 in 200 interrupts did): after an
    interrupt nothing is closed, the process ends and the broker takes back what
    it held."""
    from bulk.audit import status

    rabbit.publish_raw(
        queue_name, [{"v": 1, "mode": "null", "ids": [i]} for i in killmail_ids(demo_db)[:20]]
    )
    seen = rabbit.interrupt_at_frame(monkeypatch, pika.spec.Basic.GetOk, 2)
    outcome = rabbit.ends_interrupted(
        lambda: status.queue_status(rabbit.RABBITMQ_URL, queue_name, None)
    )
    assert outcome == "interrupted" and len(seen) == 3


def test_an_interrupt_while_listing_dead_letters_does_not_hang(queue_name, monkeypatch):
    from bulk.queue import dead

    rabbit.publish_raw(f"{queue_name}.dead", [b"one", b"two", b"three"])
    seen = rabbit.interrupt_at_frame(monkeypatch, pika.spec.Basic.GetOk, 2)
    outcome = rabbit.ends_interrupted(
        lambda: dead.list_dead(rabbit.RABBITMQ_URL, queue_name, limit=None)
    )
    assert outcome == "interrupted" and len(seen) == 3


def test_an_interrupt_while_requeueing_dead_letters_does_not_hang(demo_db, queue_name, monkeypatch):
    from bulk.queue import dead

    rabbit.publish_raw(queue_name, [])  # the work queue, declared
    letters = [{"v": 1, "mode": "null", "ids": [i]} for i in killmail_ids(demo_db)[:3]]
    rabbit.publish_raw(f"{queue_name}.dead", letters)
    seen = rabbit.interrupt_at_frame(monkeypatch, pika.spec.Basic.GetOk, 2)
    outcome = rabbit.ends_interrupted(lambda: dead.requeue_dead(rabbit.RABBITMQ_URL, queue_name))
    assert outcome == "interrupted" and len(seen) == 3
