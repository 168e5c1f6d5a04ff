"""`dead requeue` merges small dead letters back into batches (issue 25).

A full disk once dead-lettered a whole job, one killmail a message: 19,950
messages took 71 s to requeue one by one, and `work` then valued them at 312
killmails/s. Requeued, dead letters of one mode and rule set now share
batches of up to 500 IDs, each confirmed before the letters it holds are acked.
"""

import json
import subprocess
import time

import pika
import psycopg

from tests import rabbit
from tests.conftest import cli, make_demo_db, mismatches, summary_count, victimless

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _batch(ids: list[int], mode: str = "null", rules: str | None = None) -> bytes:
    body: dict = {"v": 1, "ids": ids, "mode": mode, "attempts": 12}
    if rules is not None:
        body["rules"] = rules
    return json.dumps(body).encode()


def _dead_letters(queue: str, bodies: list[bytes]) -> None:
    """Bodies into <queue>.dead as a worker leaves them (one transaction: fast), and an
    empty work queue."""
    with rabbit.connection() as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-max-priority": 10})
        channel.queue_declare(f"{queue}.dead", durable=True)
        channel.tx_select()
        headers = {"x-reason": "DiskFull: no space left on device", "x-attempts": 12}
        for body in bodies:
            properties = pika.BasicProperties(delivery_mode=2, headers=headers)
            channel.basic_publish("", f"{queue}.dead", body, properties)
        channel.tx_commit()


def _taken(queue: str) -> list[dict]:
    return [json.loads(body) for body, _ in rabbit.drain(queue)]


def _wait_ready(queue: str, n: int) -> None:
    """Nacked messages take a moment to be ready again."""
    deadline = time.monotonic() + 10
    while rabbit.ready(queue) != n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_single_dead_letters_go_back_as_batches_of_one_mode_and_rule_set(queue_name):
    null_seed = list(range(1, 1101))
    bodies = [_batch([5001, 5002])]  # a small batch merges too
    bodies += [_batch([i]) for i in null_seed]
    bodies += [_batch([1])]  # dead-lettered twice: requeued once
    bodies += [_batch([2000 + i], "zero") for i in range(30)]
    bodies += [_batch([3000 + i], rules="evekill") for i in range(20)]
    bodies += [json.dumps({"killmailId": 4000 + i}).encode() for i in range(5)]  # old format
    bodies += [b"not a batch", b'{"v": 1, "ids": [1], "mode": "sometimes"}']
    _dead_letters(queue_name, bodies)

    out = cli("dead", "requeue", "--queue", queue_name, env=_ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"requeued 1,157 messages (1,157 killmails) to {queue_name} as 5 batches; "
        f"2 messages left in {queue_name}.dead (2 invalid)\n"
    )
    back = _taken(queue_name)
    assert len(back) == 5
    groups: dict[tuple, list[int]] = {}
    for message in back:
        assert 1 <= len(message["ids"]) <= 500
        assert "attempts" not in message  # the attempts start again
        groups.setdefault((message["mode"], message["rules"]), []).extend(message["ids"])
    assert {key: sorted(ids) for key, ids in groups.items()} == {
        ("null", "seed"): sorted([5001, 5002, *null_seed, *range(4000, 4005)]),
        ("zero", "seed"): list(range(2000, 2030)),
        ("null", "evekill"): list(range(3000, 3020)),
    }
    _wait_ready(f"{queue_name}.dead", 2)
    kept = sorted(body for body, _ in rabbit.drain(f"{queue_name}.dead"))
    assert kept == sorted(bodies[-2:])


def test_limit_and_batch_size_choose_how_many_letters_and_how_big_a_batch(queue_name):
    _dead_letters(queue_name, [_batch([i]) for i in range(1, 1001)])
    out = cli(
        "dead", "requeue", "--queue", queue_name, "--limit", "700", "--batch-size", "300", env=_ENV
    )
    assert out.returncode == 0, out.stderr
    assert "requeued 700 messages (700 killmails)" in out.stdout and "as 3 batches" in out.stdout
    assert "300 messages left" in out.stdout
    back = _taken(queue_name)
    assert [len(m["ids"]) for m in back] == [300, 300, 100]
    assert sorted(i for m in back for i in m["ids"]) == list(range(1, 701))  # oldest first
    assert rabbit.ready(f"{queue_name}.dead") == 300


def test_a_refused_batch_leaves_its_letters_dead_and_loses_nothing(queue_name):
    _dead_letters(queue_name, [_batch([i]) for i in range(1, 601)])
    policy = f"one_{queue_name}"
    # The work queue takes one message and refuses the next: the second batch.
    _policy(policy, rf"^{queue_name}$", {"max-length": 1, "overflow": "reject-publish"})
    try:
        out = cli("dead", "requeue", "--queue", queue_name, env=_ENV)
    finally:
        _policy(policy, "", None)
    assert out.returncode != 0
    (line,) = out.stderr.splitlines()
    assert line.startswith("bulk-backfill: error: ") and "refused" in line, out.stderr
    assert "500 requeued before it" in line
    (batch,) = _taken(queue_name)
    assert batch["ids"] == list(range(1, 501))
    _wait_ready(f"{queue_name}.dead", 100)
    left = sorted(
        i for body, _ in rabbit.drain(f"{queue_name}.dead") for i in json.loads(body)["ids"]
    )
    assert left == list(range(501, 601))


def test_work_values_the_merged_batches(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 600)
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
    _dead_letters(queue_name, [_batch([i]) for i in ids])
    out = cli("dead", "requeue", "--queue", queue_name, env=_ENV)
    assert out.returncode == 0, out.stderr
    assert rabbit.ready(queue_name) == 2
    out = cli("work", "--queue", queue_name, "--until-empty", url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    assert summary_count(out.stdout, "batches") == 2
    assert summary_count(out.stdout, "updated") == len(ids) - len(victimless(url))
    assert mismatches(url) == []
    assert rabbit.counts(queue_name) == (0, 0)


def _policy(name: str, pattern: str, definition: dict | None) -> None:
    if definition is None:
        command = ["rabbitmqctl", "-q", "clear_policy", name]
    else:
        command = ["rabbitmqctl", "-q", "set_policy", "--apply-to", "queues"]
        command += ["--priority", "100", name, pattern, json.dumps(definition)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
