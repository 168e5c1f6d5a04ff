"""The failure contract, tested by breaking things while `work` and `queue` run.

Each test ends with every valid killmail equal to the SQL reference and no
message lost: the work queue is empty and the dead-letter queue holds exactly
what should be there. Faults are injected as progress passes thresholds read
from the database, so they land mid-run whatever the machine's speed.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest

from bulk.engine import scan
from tests import rabbit
from tests.conftest import (
    child_pids,
    cli,
    cli_popen,
    make_demo_db,
    mismatches,
    summary_count,
    victimless,
    wait_until_valued,
)

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
needs_rabbitmqctl = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl on this machine"
)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def _queue(url, queue_name, *args):
    out = cli("queue", "--queue", queue_name, *args, url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    return out


def _worker(url, queue_name, *args):
    command = ("work", "--queue", queue_name, "--until-empty", "--procs", "2", *args)
    return cli_popen(*command, url=url, env=_ENV)


def _slow_writes(url: str, seconds: float) -> None:
    """Stretch every UPDATE statement so a run lasts long enough to be broken mid-way."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow_write AFTER UPDATE ON killmails"
            " FOR EACH STATEMENT EXECUTE FUNCTION slow_write()"
        )


def _assert_all_done(url, queue_name, stdout, unreported=0):
    """Every valid killmail right, and no message left anywhere.

    unreported: rows a SIGKILLed process may have committed without living to
    report them (its redelivered batch then counts them as skipped).
    """
    assert mismatches(url) == []
    with psycopg.connect(url) as conn:
        (valued,) = conn.execute(
            "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
        ).fetchone()
        (total,) = conn.execute("SELECT count(*) FROM killmails").fetchone()
    assert valued == total - len(victimless(url))
    # Redelivered batches are written again only where still NULL: counted as skipped.
    assert valued - unreported <= summary_count(stdout, "updated") <= valued
    assert rabbit.counts(queue_name) == (0, 0)
    assert rabbit.counts(f"{queue_name}.dead") == (0, 0)


@pytest.fixture
def busy_db(fresh_db):
    """30,000 killmails whose writes take 20 ms a statement more than usual."""
    url = make_demo_db(fresh_db, 30_000)
    _slow_writes(url, 0.02)
    return url


@pytest.mark.slow
def test_children_killed_mid_run(busy_db, queue_name):
    _queue(busy_db, queue_name, "--batch-size", "50")
    worker = _worker(busy_db, queue_name)
    for round_ in range(3):
        wait_until_valued(busy_db, 4_000 * (round_ + 1))
        pids = child_pids(worker.pid)
        assert pids, "work should have child processes"
        os.kill(pids[-1], signal.SIGKILL)
    stdout, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr
    assert stderr.count("died") == 3
    assert "worker processes restarted: 3" in stdout
    # A kill lands just after a COMMIT more often than chance: the kills are
    # timed by watching the committed count grow. Each kill can leave at most
    # its one batch of 50 written but not reported.
    _assert_all_done(busy_db, queue_name, stdout, unreported=3 * 50)


@pytest.mark.serial  # closes or stops the shared broker
@pytest.mark.slow
@needs_rabbitmqctl
def test_broker_connections_closed_mid_run(busy_db, queue_name):
    _queue(busy_db, queue_name, "--batch-size", "50")
    worker = _worker(busy_db, queue_name)
    for round_ in range(2):
        wait_until_valued(busy_db, 5_000 * (round_ + 1))
        _rabbitmqctl("close_all_connections", "bulk-backfill fault test")
    stdout, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr
    assert "broker connection lost" in stderr
    _assert_all_done(busy_db, queue_name, stdout)


@pytest.mark.slow
def test_database_connections_terminated_mid_run(busy_db, queue_name):
    _queue(busy_db, queue_name, "--batch-size", "50")
    worker = _worker(busy_db, queue_name)
    with psycopg.connect(busy_db, autocommit=True) as conn:
        for round_ in range(3):
            wait_until_valued(busy_db, 4_000 * (round_ + 1))
            # MATERIALIZED: the filter must run before pg_terminate_backend, or the
            # planner may call it on this very connection.
            terminated = conn.execute(
                "WITH workers AS MATERIALIZED (SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND application_name = 'bulk-backfill work' AND pid <> pg_backend_pid())"
                " SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM workers"
            ).fetchone()[0]
            assert terminated >= 1
    stdout, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr
    assert "database unavailable" in stderr
    _assert_all_done(busy_db, queue_name, stdout)


def test_a_poison_killmail_alone_goes_to_the_dead_letter_queue(demo_db, queue_name):
    with psycopg.connect(demo_db) as conn:
        first_batch = [
            r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1 LIMIT 500")
        ]
        poison = first_batch[317]
        conn.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.killmail_id = {poison} THEN RAISE EXCEPTION 'poison killmail %',"
            " NEW.killmail_id; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER poison BEFORE UPDATE ON killmails"
            " FOR EACH ROW EXECUTE FUNCTION poison()"
        )
    _queue(demo_db, queue_name, "--batch-size", "500")
    out = cli("work", "--queue", queue_name, "--until-empty", url=demo_db, env=_ENV)
    assert out.returncode == 1, out.stderr  # something was dead-lettered
    assert {m.killmail_id for m in mismatches(demo_db)} == {poison}
    with psycopg.connect(demo_db) as conn:
        written = conn.execute(
            "SELECT count(*) FROM killmails WHERE killmail_id = ANY(%s)"
            " AND total_value IS NOT NULL",
            (first_batch,),
        ).fetchone()[0]
    assert written == 499 - len(victimless(demo_db) & set(first_batch))
    dead = rabbit.drain(f"{queue_name}.dead")
    assert len(dead) == 1
    body, headers = dead[0]
    assert json.loads(body)["ids"] == [poison]
    assert f"poison killmail {poison}" in headers["x-reason"]
    assert headers["x-attempts"] >= 3
    assert headers["x-host"] and headers["x-first-failure"] <= headers["x-last-failure"]
    assert rabbit.counts(queue_name) == (0, 0)
    assert "dead-lettered 1" in out.stdout


_GARBAGE = [
    b"not json at all",
    b"",
    b"\xff\xfe binary",
    b"[1, 2, 3]",
    b'"a string"',
    b'{"v": 2, "ids": [1], "mode": "null"}',
    b'{"ids": [1, 2], "mode": "null"}',
    b'{"v": 1, "ids": [], "mode": "null"}',
    b'{"v": 1, "ids": "1,2,3", "mode": "null"}',
    b'{"v": 1, "ids": [1, "2"], "mode": "null"}',
    b'{"v": 1, "ids": [1.5], "mode": "null"}',
    b'{"v": 1, "ids": [-7], "mode": "null"}',
    b'{"v": 1, "ids": [1], "mode": "sometimes"}',
    b'{"v": 1, "ids": [1]}',
    b'{"killmailId": "12"}',
    b'{"killmailId": -1}',
    b'{"killmailId": 5, "mode": "everything"}',
    json.dumps({"v": 1, "ids": list(range(1, 10_002)), "mode": "null"}).encode(),
]


@pytest.mark.slow
def test_garbage_is_dead_lettered_and_real_batches_are_done(demo_db, queue_name):
    garbage = [_GARBAGE[n % len(_GARBAGE)] for n in range(1_000)]
    rabbit.publish_raw(queue_name, garbage[:500])
    _queue(demo_db, queue_name, "--batch-size", "100")
    rabbit.publish_raw(queue_name, garbage[500:])
    out = cli("work", "--queue", queue_name, "--until-empty", url=demo_db, env=_ENV)
    assert out.returncode == 0, out.stderr  # invalid messages are no killmails of the job
    assert summary_count(out.stdout, "invalid") == 1_000
    assert mismatches(demo_db) == []
    dead = rabbit.drain(f"{queue_name}.dead")
    assert Counter(body for body, _ in dead) == Counter(garbage)
    assert all(headers["x-reason"].startswith("invalid message: ") for _, headers in dead)
    assert rabbit.counts(queue_name) == (0, 0)


def _ids_in(messages) -> Counter:
    ids = Counter()
    for body, _ in messages:
        ids.update(json.loads(body)["ids"])
    return ids


_KILLMAILS, _BATCH = 20_000, 10
_PLANNED = _KILLMAILS // _BATCH  # messages a complete `queue` run publishes


@contextmanager
def _scan_held(url: str):
    """Hold `queue` between two scan pages: its next keyset page waits on this table lock.

    A page holds scan.READ_AHEAD batches, and `queue` confirms each message
    before it reads the next page, so while the lock is held at most one page
    is published or about to be, and the rest of the table is still to come:
    an outage started now lands mid-run for certain, however fast the machine.
    Leaving the block releases the lock.
    """
    with psycopg.connect(url) as conn:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute("LOCK TABLE killmails IN ACCESS EXCLUSIVE MODE")
        yield


def _stop_broker_mid_run(url: str, queue_name: str, producer) -> int:
    """Stop the broker while `queue` is held mid-run; the messages confirmed by then."""
    _wait_for_messages(queue_name, 300)
    with _scan_held(url):
        confirmed = rabbit.ready(queue_name)
        assert producer.poll() is None, "queue finished before the outage"
        # At most the batches of the page read before the lock are still being published.
        assert confirmed + scan.READ_AHEAD < _PLANNED, confirmed
        _rabbitmqctl("stop_app")
    return confirmed


def _all_ids(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT killmail_id FROM killmails")}


def _queued_batches(stdout: str) -> int:
    line = next(line for line in stdout.splitlines() if line.startswith("queued "))
    return int(line.split(" in ")[1].split()[0].replace(",", ""))


@pytest.mark.serial  # closes or stops the shared broker
@pytest.mark.slow
@needs_rabbitmqctl
def test_queue_survives_a_broker_restart(fresh_db, queue_name):
    url = make_demo_db(fresh_db, _KILLMAILS)
    command = ("queue", "--queue", queue_name, "--batch-size", str(_BATCH))
    producer = cli_popen(*command, url=url, env=_ENV)
    try:
        _stop_broker_mid_run(url, queue_name, producer)
    finally:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
    stdout, stderr = producer.communicate(timeout=300)
    assert producer.returncode == 0, stderr
    # The outage landed mid-run: the producer met it and reconnected.
    assert "lost the broker and reconnected" in stdout
    assert _queued_batches(stdout) == _PLANNED
    queued = _ids_in(rabbit.drain(queue_name))
    all_ids = _all_ids(url)
    assert set(queued) == all_ids
    # Only the batch whose confirm was lost with the connection may be there twice.
    assert sum(queued.values()) - len(all_ids) <= _BATCH
    _queue(url, queue_name)
    out = cli("work", "--queue", queue_name, "--until-empty", url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    _assert_all_done(url, queue_name, out.stdout)


@pytest.mark.serial  # closes or stops the shared broker
@pytest.mark.slow
@needs_rabbitmqctl
def test_queue_stopped_by_a_long_outage_resumes_with_after_id(fresh_db, queue_name):
    url = make_demo_db(fresh_db, _KILLMAILS)
    command = ("queue", "--queue", queue_name, "--batch-size", str(_BATCH))
    producer = cli_popen(*command, "--broker-patience", "1", url=url, env=_ENV)
    try:
        at_stop = _stop_broker_mid_run(url, queue_name, producer)
        stdout, stderr = producer.communicate(timeout=120)
    finally:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
    assert producer.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("bulk-backfill: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    # The outage landed mid-run: what was confirmed is what the broker held when it
    # stopped (give or take the rest of the page read before the lock), far short
    # of the whole table.
    assert at_stop <= _queued_batches(stdout) <= at_stop + scan.READ_AHEAD < _PLANNED
    confirmed = [line for line in stdout.splitlines() if "last confirmed killmail_id" in line]
    after_id = int(confirmed[0].split()[-1])
    assert f"--after-id {after_id}" in errors[0]
    before_resume = _ids_in(rabbit.drain(queue_name))
    assert after_id in before_resume and max(before_resume) < max(_all_ids(url))
    _queue(url, queue_name, "--batch-size", str(_BATCH), "--after-id", str(after_id))
    queued = before_resume + _ids_in(rabbit.drain(queue_name))
    all_ids = _all_ids(url)
    assert set(queued) == all_ids
    assert sum(queued.values()) - len(all_ids) <= _BATCH


def _wait_for_messages(queue_name: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rabbit.ready(queue_name) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} messages in {queue_name} after {timeout}s")
