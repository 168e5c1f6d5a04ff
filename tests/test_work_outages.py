"""Issue 25's loops: faults under which `work` or `run` once looped, hung or dead-lettered a job.

Each test reproduces one finding against the real PostgreSQL and RabbitMQ and
checks the outcome an operator needs: every killmail valued (or dead-lettered
with its reason), nothing written more often than it must be, few notes, and
a process that ends when asked.
"""

from __future__ import annotations

import json
import signal
import time
import uuid

import pika.exceptions
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bulk.queue import messages
from tests import netlab, rabbit
from tests.conftest import (
    SERVER_URL,
    cli,
    cli_popen,
    failed_killmails,
    killmail_ids,
    make_demo_db,
    mismatches,
    reaped,
    summary_count,
    victimless,
)

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _valued(url: str) -> int:
    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
        return conn.execute(query).fetchone()[0]


def _queue(url: str, queue_name: str, *args: str) -> None:
    out = cli("queue", "--queue", queue_name, *args, url=url, env=_ENV)
    assert out.returncode == 0, out.stderr


def _wait_for_consumers(queue_name: str, n: int, timeout: float = 60) -> None:
    """Until n processes consume the queue: started, whatever the machine's load."""
    deadline = time.monotonic() + timeout
    with rabbit.connection() as conn:
        while time.monotonic() < deadline:
            try:
                declared = conn.channel().queue_declare(queue_name, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                declared = None  # not declared yet: the channel is closed, take another
            if declared is not None and declared.method.consumer_count >= n:
                return
            time.sleep(0.1)
    raise AssertionError(f"fewer than {n} consumers on {queue_name} after {timeout} s")


def _hits(url: str) -> int:
    """Writes the failing trigger has refused so far (its sequence survives the rollback)."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM disk_full_hits"
        return conn.execute(query).fetchone()[0]


def _wait_for_hits(url: str, n: int, timeout: float = 60) -> None:
    """Until the failing trigger has refused n writes in all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _hits(url) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"the disk-full trigger was not hit {n} times in {timeout} s")


def _notes(text: str, needle: str) -> int:
    return sum(needle in line for line in text.splitlines())


# -- 1. a batch longer than two heartbeats ------------------------------------


@pytest.mark.slow  # a fault held for seconds
def test_a_batch_longer_than_two_heartbeats_is_written_once(fresh_db, queue_name):
    """Found: with heartbeat=5 and a 20 s statement, a batch was written 7 times in 153 s
    and --until-empty never ended. The worker now answers heartbeats while it values."""
    url = make_demo_db(fresh_db, 500)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE writes (at timestamptz DEFAULT now())")
        conn.execute(
            "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO writes DEFAULT VALUES; PERFORM pg_sleep(7); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow_write AFTER UPDATE ON killmails"
            " FOR EACH STATEMENT EXECUTE FUNCTION slow_write()"
        )
    _queue(url, queue_name, "--mode", "all", "--batch-size", "500")
    # The broker closes a connection it has not heard from for about two intervals.
    env = {"RABBITMQ_URL": _with_query(rabbit.RABBITMQ_URL, "heartbeat=2")}
    out = cli(
        "work", "--queue", queue_name, "--procs", "1", "--until-empty",
        url=url, env=env, timeout=90,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    with psycopg.connect(url) as conn:
        (writes,) = conn.execute("SELECT count(*) FROM writes").fetchone()
    assert writes == 1, out.stdout + out.stderr
    assert summary_count(out.stdout, "batches") == 1
    assert "broker connection lost" not in out.stdout + out.stderr
    assert mismatches(url) == []
    assert rabbit.counts(queue_name) == (0, 0)


def test_a_redelivered_batch_counts_as_a_try(demo_db, queue_name):
    """A batch the broker hands out again (its last holder died or froze) is republished
    with one attempt more, so one that keeps coming back is split and dead-lettered."""
    ids = killmail_ids(demo_db)[:40]
    _queue(demo_db, queue_name, *[f"--id={i}" for i in ids], "--batch-size", "40")
    # Another consumer takes the batch and goes away without an ack.
    with rabbit.connection() as conn:
        method, _, _ = conn.channel().basic_get(queue_name, auto_ack=False)
        assert method is not None and not method.redelivered
    out = cli("work", "--queue", queue_name, "--procs", "1", "--until-empty", url=demo_db, env=_ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary_count(out.stdout, "redelivered") == 1
    assert summary_count(out.stdout, "retried") == 40
    # Valued once, from the republished copy.
    assert summary_count(out.stdout, "batches") == 1
    assert mismatches(demo_db, ids=ids) == []


@pytest.mark.slow  # five stalls of a few seconds each
def test_a_batch_that_freezes_every_worker_is_split_then_dead_lettered(fresh_db, queue_name):
    """A killmail whose write hangs: the stall timeout kills each worker that takes it, the
    batch comes back each time, and is split down to the killmail, then dead-lettered."""
    url = make_demo_db(fresh_db, 200)
    ids = killmail_ids(url)[:8]
    frozen = ids[5]
    with psycopg.connect(url, autocommit=True) as conn:
        # The worker's read of the frozen killmail's victim hangs. A read takes no row
        # locks, so the hung sessions the killed workers leave behind block nobody.
        conn.execute(
            "CREATE FUNCTION thaws(id int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN"
            f" IF id = {frozen} AND current_setting('application_name') = 'bulk-backfill work'"
            " THEN PERFORM pg_sleep(20); END IF; RETURN true; END $$"
        )
        conn.execute("ALTER TABLE victims RENAME TO victims_stored")
        conn.execute("CREATE VIEW victims AS SELECT * FROM victims_stored WHERE thaws(killmail_id)")
    _queue(url, queue_name, *[f"--id={i}" for i in ids], "--batch-size", "8")
    out = cli(
        "work", "--queue", queue_name, "--procs", "1", "--until-empty", "--stall-timeout", "2",
        url=url, env=_ENV, timeout=240,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr  # something was dead-lettered
    dead = rabbit.drain(f"{queue_name}.dead")
    dead_ids = {i for body, _ in dead for i in json.loads(body)["ids"]}
    assert all("redelivered" in headers["x-reason"] for _, headers in dead)
    # The frozen killmail alone, give or take a batch prefetched beside it when its
    # worker was killed (that comes back too, and counts the try as well).
    assert frozen in dead_ids and len(dead_ids) <= 2, dead
    assert rabbit.counts(queue_name) == (0, 0)
    others = [i for i in ids if i not in dead_ids]
    assert mismatches(url, ids=others) == []
    assert _valued(url) >= len(others) - len(victimless(url))


# -- 2. a full disk ------------------------------------------------------------


def _disk_full_switch(url: str, on: bool = True) -> None:
    """A trigger that fails every write with SQLSTATE 53100 (disk_full) while the switch is on."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE disk_full_hits")
        conn.execute("CREATE TABLE outage (disk_full boolean NOT NULL)")
        conn.execute("INSERT INTO outage VALUES (%s)", (on,))
        conn.execute(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF (SELECT disk_full FROM outage) THEN PERFORM nextval('disk_full_hits');"
            " RAISE EXCEPTION"
            " 'could not extend file: No space left on device' USING ERRCODE = '53100';"
            " END IF; RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER disk_full BEFORE UPDATE ON killmails"
            " FOR EACH STATEMENT EXECUTE FUNCTION disk_full()"
        )


def _clear_disk(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE outage SET disk_full = false")


def _work_through_a_full_disk(url: str, queue_name: str, outage: float):
    """work --procs 2 over a disk that is full for `outage` seconds: its output."""
    _disk_full_switch(url)
    _queue(url, queue_name)
    worker = cli_popen(
        "work", "--queue", queue_name, "--procs", "2", "--until-empty", url=url, env=_ENV,
    )  # fmt: skip
    with reaped(worker):
        _wait_for_hits(url, 2)  # both workers hold a batch
        time.sleep(outage)
        assert worker.poll() is None, worker.communicate()
        _clear_disk(url)
        stdout, stderr = worker.communicate(timeout=180)
    return worker.returncode, stdout, stderr


@pytest.mark.slow  # a fault held for seconds
@pytest.mark.both_schemas  # the values written once the disk has room are checked
def test_a_full_disk_holds_the_batches_and_dead_letters_nothing(fresh_db, schema_kind, queue_name):
    """Found: 20,000 killmails under disk_full were dead-lettered one by one, 219,520 retries,
    no note. Now each worker holds its batch, says so now and then, and goes on after."""
    url = make_demo_db(fresh_db, 2_000, schema=schema_kind)
    code, stdout, stderr = _work_through_a_full_disk(url, queue_name, outage=8)
    assert code == 0, stdout + stderr
    assert "retried" not in stdout  # held, not republished
    assert rabbit.counts(f"{queue_name}.dead") == (0, 0)
    assert rabbit.counts(queue_name) == (0, 0)
    assert mismatches(url) == []
    assert _valued(url) == 2_000 - len(victimless(url))
    # At most one note per worker per 30 s.
    assert 1 <= _notes(stdout + stderr, "short of resources") <= 2, stdout + stderr


@pytest.mark.slow
def test_a_long_full_disk_on_a_big_job_ends_with_nothing_lost(fresh_db, queue_name):
    """The issue's check, smaller: 10,000 killmails (20 batches), a disk full for 12 s, 0 dead
    letters and 0 mismatches once it clears (20,000 and 60 s: see issue 25's closing note)."""
    url = make_demo_db(fresh_db, 10_000)
    code, stdout, stderr = _work_through_a_full_disk(url, queue_name, outage=12)
    assert code == 0, stdout + stderr
    assert rabbit.counts(f"{queue_name}.dead") == (0, 0)
    assert rabbit.counts(queue_name) == (0, 0)
    assert mismatches(url) == []
    assert _valued(url) == 10_000 - len(victimless(url))


@pytest.mark.both_schemas
def test_run_stops_with_a_resume_point_when_the_disk_stays_full(fresh_db, schema_kind):
    """Found: `run` under SQLSTATE 58030 listed every killmail as failed. A full disk or an
    I/O error is the server's, not a killmail's: run stops after --db-patience, resumable."""
    url = make_demo_db(fresh_db, 1_000, schema=schema_kind)
    _disk_full_switch(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'could not write block: Input/output error' USING ERRCODE = '58030';"
            " END $$"
        )
    out = cli("run", "--procs", "2", "--db-patience", "2", url=url)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "short of resources" in out.stdout + out.stderr
    # Nothing was written, so the resume point is the start.
    assert "nothing was valued for sure: run again with the same command" in out.stderr
    assert failed_killmails(out.stdout + out.stderr) == {}
    assert _valued(url) == 0


# -- 3. a refused login ----------------------------------------------------------


@pytest.mark.slow  # a fault held for seconds
def test_a_refused_login_backs_off_and_says_so_rarely(demo_db, queue_name):
    """Found: NOLOGIN made `work` print 850 notes in 105 s, with no backoff."""
    role = f"bbt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    try:
        url = make_conninfo(demo_db, user=role)
        worker = cli_popen(
            "work", "--queue", queue_name, "--procs", "1", url=url, env=_ENV,
        )  # fmt: skip
        with reaped(worker):
            _wait_for_consumers(queue_name, 1)
            with psycopg.connect(SERVER_URL, autocommit=True) as admin:
                admin.execute(f"ALTER ROLE {role} NOLOGIN")
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
            _queue(demo_db, queue_name, "--limit", "500")
            time.sleep(12)
            worker.send_signal(signal.SIGINT)
            stdout, stderr = worker.communicate(timeout=60)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            admin.execute(f"DROP ROLE {role}")
    text = stdout + stderr
    assert "Traceback" not in text
    # One note on the lost connection, then at most one per 30 s about the refusal.
    assert 1 <= _notes(text, "database unreachable") <= 1, text
    assert _notes(text, "worker ") <= 3, text


# -- 5. a dead broker link ---------------------------------------------------------


@pytest.mark.slow  # a fault held for seconds
def test_the_parent_never_waits_on_a_dead_broker_link(demo_db, queue_name):
    """Found: the parent's depth check waited forever on a dead link with heartbeat=0, and a
    second Ctrl+C blocked in closing it. The link here is a relay that stops relaying."""
    relay = netlab.Forwarder("127.0.0.1", 5672)
    try:
        url = f"amqp://guest:guest@127.0.0.1:{relay.port}/%2F?heartbeat=0"
        worker = cli_popen(
            "work", "--queue", queue_name, "--procs", "1", url=demo_db, env={"RABBITMQ_URL": url},
        )  # fmt: skip
        with reaped(worker):
            _wait_for_consumers(queue_name, 1)
            time.sleep(1)  # the parent checks the depth every 0.5 s
            relay.freeze()
            time.sleep(13)  # longer than the depth check's timeout
            worker.send_signal(signal.SIGINT)
            time.sleep(1)
            worker.send_signal(signal.SIGINT)
            stopped_at = time.monotonic()
            stdout, stderr = worker.communicate(timeout=30)
            took = time.monotonic() - stopped_at
    finally:
        relay.close()
    assert "does not answer the queue-depth check" in stdout + stderr, stdout + stderr
    assert took < 3, (took, stdout + stderr)


# -- 6. a message whose rule set cannot run here --------------------------------------


def test_a_message_whose_rules_cannot_run_here_is_dead_lettered_not_fatal(demo_db, queue_name):
    """Found: one valid `"rules": "evekill"` message on a database without the history tables
    stopped every worker, on every restart. Now it alone is dead-lettered, with the reason."""
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")
    ids = killmail_ids(demo_db)
    rabbit.publish_raw(
        queue_name,
        [messages.encode_batch(ids[:10], "null", "test", rules="evekill")],
    )
    _queue(demo_db, queue_name)
    out = cli("work", "--queue", queue_name, "--procs", "1", "--until-empty", url=demo_db, env=_ENV)
    assert out.returncode == 1, out.stdout + out.stderr  # something was dead-lettered
    assert "cannot run" in out.stdout + out.stderr
    dead = rabbit.drain(f"{queue_name}.dead")
    assert len(dead) == 1
    body, headers = dead[0]
    assert json.loads(body)["ids"] == ids[:10] and json.loads(body)["rules"] == "evekill"
    assert "rule set evekill cannot run on this database" in headers["x-reason"]
    assert "market_price_history" in headers["x-reason"]
    assert rabbit.counts(queue_name) == (0, 0)
    assert mismatches(demo_db) == []


def test_a_broker_that_never_finishes_the_handshake_is_one_line(demo_db, queue_name):
    """Found by a hostile review: pika's connector errors (AMQPConnectorStackTimeout) escaped
    as tracebacks from queue, work and status."""
    relay = netlab.Forwarder("127.0.0.1", 5672)
    relay.freeze()
    try:
        url = f"amqp://guest:guest@127.0.0.1:{relay.port}/%2F?stack_timeout=1"
        for command in (["queue"], ["status"]):
            out = cli(*command, "--queue", queue_name, url=demo_db, env={"RABBITMQ_URL": url})
            assert out.returncode != 0
            assert "Traceback" not in out.stderr and "cannot reach RabbitMQ" in out.stderr
    finally:
        relay.close()


@pytest.mark.slow  # a 20 s freeze
def test_workers_wait_out_a_broker_that_stops_answering(demo_db, queue_name):
    """Found by a hostile review: while the broker accepted TCP and answered nothing, every
    reconnect crashed its worker, and work gave up after 3 restarts."""
    relay = netlab.Forwarder("127.0.0.1", 5672)
    try:
        url = f"amqp://guest:guest@127.0.0.1:{relay.port}/%2F?heartbeat=2&stack_timeout=2"
        worker = cli_popen(
            "work", "--queue", queue_name, "--procs", "1", url=demo_db, env={"RABBITMQ_URL": url},
        )  # fmt: skip
        with reaped(worker):
            _wait_for_consumers(queue_name, 1)
            relay.freeze()
            time.sleep(20)
            assert worker.poll() is None, worker.communicate()
            relay.thaw()
            _queue(demo_db, queue_name, "--limit", "500")
            deadline = time.monotonic() + 90
            while rabbit.counts(queue_name) != (0, 0) or _valued(demo_db) == 0:
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.5)
            worker.send_signal(signal.SIGINT)
            stdout, stderr = worker.communicate(timeout=60)
    finally:
        relay.close()
    assert worker.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr and "gave up" not in stderr, stderr
    assert "restarted" not in stdout, stdout


@pytest.mark.slow  # a fault held for seconds
def test_a_batch_given_back_on_a_stop_counts_no_try(fresh_db, queue_name):
    """Found by a hostile review: a Ctrl+C during a disk-full hold nacked the batch, the
    broker flagged it redelivered, and the next worker counted a failed try; 14 restarts
    split one healthy batch into 25. A batch given back is now republished as it came."""
    url = make_demo_db(fresh_db, 1_000)
    _disk_full_switch(url)
    _queue(url, queue_name)
    for _ in range(2):
        before = _hits(url)
        with reaped(
            cli_popen("work", "--queue", queue_name, "--procs", "1", url=url, env=_ENV)
        ) as worker:
            _wait_for_hits(url, before + 1)  # this worker holds its batch
            worker.send_signal(signal.SIGINT)
            stdout, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stdout + stderr
    _clear_disk(url)
    out = cli("work", "--queue", queue_name, "--procs", "1", "--until-empty", url=url, env=_ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "redelivered" not in out.stdout and "retried" not in out.stdout, out.stdout
    assert summary_count(out.stdout, "batches") == 2
    assert mismatches(url) == []
