"""`queue` and `work` through the real RabbitMQ, checked against the SQL reference.

Each test has its own database and its own queue (fixture queue_name).
"""

import signal
import socket
import threading
import time

import pika
import pika.frame
import pika.spec
import psycopg
import pytest

from tests import rabbit
from tests.conftest import (
    cli,
    cli_popen,
    make_demo_db,
    mismatches,
    summary_count,
    values,
    victimless,
)

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def queue(url, queue_name, *args):
    return cli("queue", "--queue", queue_name, *args, url=url, env=_ENV)


def work(url, queue_name, *args):
    return cli("work", "--queue", queue_name, "--until-empty", *args, url=url, env=_ENV)


def _count(url, query, params=None) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def _valued(url) -> int:
    return _count(url, "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL")


def _queued(out) -> int:
    first = out.stdout.splitlines()[0].split()
    assert first[0] == "queued", out.stdout
    return int(first[1].replace(",", ""))


@pytest.mark.slow  # the suite's scale test: 100 batches of 500 through the broker
def test_queue_then_work_values_a_50k_demo(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 50_000)
    queued = queue(url, queue_name, "--mode", "null")
    assert queued.returncode == 0, queued.stderr
    assert _queued(queued) == 50_000
    assert f"queue {queue_name}, batch size 500" in queued.stderr
    assert f"bulk-backfill work --procs 2 --queue {queue_name}" in queued.stdout

    done = work(url, queue_name, "--procs", "2")
    assert done.returncode == 0, done.stderr
    stored = values(url)
    no_victim = victimless(url)
    assert all(v != (None, None, None) for k, v in stored.items() if k not in no_victim)
    assert mismatches(url) == []
    # Every row was NULL before: the rows changed are the rows valued now.
    assert summary_count(done.stdout, "updated") == _valued(url) == len(stored) - len(no_victim)
    assert summary_count(done.stdout, "processed") == 50_000
    assert rabbit.counts(queue_name) == (0, 0)
    assert rabbit.counts(f"{queue_name}.dead") == (0, 0)


@pytest.mark.both_schemas
def test_zero_mode_after_prices_arrive(demo_db, queue_name):
    with psycopg.connect(demo_db) as conn:
        conn.execute("CREATE TABLE saved_prices AS SELECT * FROM market_prices")
        conn.execute("DELETE FROM market_prices")
    out = cli("run", "--mode", "null", "--allow-empty-prices", url=demo_db)
    assert out.returncode == 0, out.stderr
    before = values(demo_db)
    zero = {k for k, v in before.items() if v[0] == 0}
    assert len(zero) > 1_000, "without prices most values are 0"
    with psycopg.connect(demo_db) as conn:
        conn.execute("INSERT INTO market_prices SELECT * FROM saved_prices")

    queued = queue(demo_db, queue_name, "--mode", "zero")
    assert queued.returncode == 0, queued.stderr
    assert _queued(queued) == len(zero)
    done = work(demo_db, queue_name)
    assert done.returncode == 0, done.stderr
    assert summary_count(done.stdout, "updated") == len(zero)

    after = values(demo_db)
    wrong = {m.killmail_id for m in mismatches(demo_db)}
    assert not wrong & zero, "every zero value is now the reference value"
    assert all(after[k] == before[k] for k in after if k not in zero), "only zero rows changed"
    # A few killmails are worth 0 even with prices (every type unpriced).
    assert sum(after[k][0] > 0 for k in zero) > 0.9 * len(zero)


@pytest.mark.slow
@pytest.mark.both_schemas
def test_all_and_null_modes_through_the_broker(demo_db, queue_name):
    assert queue(demo_db, queue_name, "--mode", "null").returncode == 0
    assert work(demo_db, queue_name).returncode == 0
    victims = _valued(demo_db)
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE killmails SET total_value = 1, destroyed_value = 2, dropped_value = 3"
            " WHERE killmail_id IN (SELECT killmail_id FROM killmails"
            " WHERE total_value IS NOT NULL ORDER BY killmail_id LIMIT 40)"
        )
        conn.execute(
            "UPDATE killmails SET total_value = NULL, destroyed_value = NULL, dropped_value = NULL"
            " WHERE killmail_id IN (SELECT killmail_id FROM killmails"
            " WHERE total_value IS NOT NULL ORDER BY killmail_id DESC LIMIT 25)"
        )
    assert len(mismatches(demo_db)) == 40 + 25

    queued = queue(demo_db, queue_name, "--mode", "null")
    assert _queued(queued) == 25 + len(victimless(demo_db))
    done = work(demo_db, queue_name)
    assert summary_count(done.stdout, "updated") == 25
    assert len(mismatches(demo_db)) == 40

    queued = queue(demo_db, queue_name, "--mode", "all")
    assert _queued(queued) == 3_000
    done = work(demo_db, queue_name)
    assert done.returncode == 0, done.stderr
    assert summary_count(done.stdout, "updated") == victims
    assert mismatches(demo_db) == []


@pytest.mark.slow  # thousands of single messages through the broker
def test_old_single_messages_are_gathered_into_few_updates(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 6_000)
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
        # The counter: a statement-level trigger counts every UPDATE statement on
        # killmails, whatever the worker reports.
        conn.execute("CREATE TABLE update_statements (n int NOT NULL)")
        conn.execute("INSERT INTO update_statements VALUES (0)")
        conn.execute(
            "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN UPDATE update_statements SET n = n + 1; RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER count_update AFTER UPDATE ON killmails"
            " FOR EACH STATEMENT EXECUTE FUNCTION count_update()"
        )
    chosen = [k for n, k in enumerate(ids) if n % 6]
    assert len(chosen) == 5_000
    messages = [
        {"killmailId": k, "queuedAt": "2024-05-01T12:00:00Z", "source": "killboard"}
        for k in chosen[:4_000]
    ] + [{"killmailId": k, "mode": "null", "source": "killboard"} for k in chosen[4_000:]]
    rabbit.publish_raw(queue_name, messages)

    done = work(url, queue_name, "--procs", "2")
    assert done.returncode == 0, done.stderr
    statements = _count(url, "SELECT n FROM update_statements")
    assert 0 < statements <= 100, f"{statements} UPDATE statements for 5,000 single messages"
    stored = values(url)
    no_victim = victimless(url)
    wanted = set(chosen) - no_victim
    assert all(stored[k] != (None, None, None) for k in wanted)
    assert all(stored[k] == (None, None, None) for k in set(ids) - set(chosen))
    assert {m.killmail_id for m in mismatches(url)} == set(ids) - set(chosen) - no_victim
    assert summary_count(done.stdout, "updated") == len(wanted)
    assert summary_count(done.stdout, "messages") == 5_000
    assert rabbit.counts(queue_name) == (0, 0)


@pytest.mark.both_schemas
def test_queueing_twice_and_two_workers_end_the_same(demo_db, queue_name):
    for _ in range(2):
        assert queue(demo_db, queue_name, "--mode", "null", "--batch-size", "100").returncode == 0
    command = ("work", "--queue", queue_name, "--until-empty", "--procs", "1")
    workers = [cli_popen(*command, url=demo_db, env=_ENV) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    no_victim = victimless(demo_db)
    victims = 3_000 - len(no_victim)
    updated = sum(summary_count(out, "updated") for out, _ in outputs)
    skipped = sum(summary_count(out, "skipped") for out, _ in outputs)
    # Each killmail was queued twice: one pass writes it, the other finds it
    # no longer NULL and counts it as skipped.
    assert updated == victims
    assert skipped == 2 * 3_000 - victims
    assert mismatches(demo_db) == []
    assert _valued(demo_db) == victims
    assert rabbit.counts(queue_name) == (0, 0)


@pytest.mark.slow
def test_queue_misses_nothing_while_workers_write(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 20_000)
    matching = 20_000
    worker = cli_popen("work", "--queue", queue_name, "--procs", "2", url=url, env=_ENV)
    try:
        queued = queue(url, queue_name, "--mode", "null", "--batch-size", "50")
        assert queued.returncode == 0, queued.stderr
        assert _queued(queued) == matching
        no_victim = victimless(url)
        deadline = time.monotonic() + 120
        while _valued(url) < matching - len(no_victim) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "stopped on request" in out
    assert _valued(url) == matching - len(no_victim)
    assert mismatches(url) == []
    assert rabbit.counts(queue_name) == (0, 0)


def test_dry_run_publishes_nothing(demo_db, queue_name):
    out = queue(demo_db, queue_name, "--mode", "null", "--dry-run", "--limit", "1200")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("would queue 1,200 killmails in 3 batches")
    with rabbit.connection() as conn:
        ok = conn.channel().queue_declare(
            queue_name, durable=True, arguments={"x-max-priority": 10}
        )
        assert ok.method.message_count == 0


def test_an_existing_queue_of_the_replaced_system_is_used_as_it_is(demo_db, queue_name):
    rabbit.publish_raw(queue_name, [{"killmailId": min(values(demo_db))}])
    out = queue(demo_db, queue_name, "--mode", "null", "--limit", "500")
    assert out.returncode == 0, out.stderr
    assert rabbit.counts(queue_name) == (2, 0)


def test_a_queue_declared_otherwise_is_a_clear_error(demo_db, queue_name):
    with rabbit.connection() as conn:
        conn.channel().queue_declare(queue_name, durable=False)
    for command in (queue, work):
        out = command(demo_db, queue_name)
        assert out.returncode != 0
        assert out.stderr.count("\n") == 1, out.stderr
        assert "Traceback" not in out.stderr
        assert f"cannot use queue {queue_name!r}" in out.stderr


def _broker_that_hangs_up(after: str) -> tuple[int, threading.Event]:
    """A port where a fake broker answers the AMQP handshake up to `after` ("login":
    the client's credentials; "vhost": its choice of virtual host), then closes the
    connection without a word: a link lost there, not a refusal (which RabbitMQ says
    with a Connection.Close). Serves connections until the returned event is set."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(8)  # the protocol header
                start = pika.spec.Connection.Start(
                    server_properties={"capabilities": {"authentication_failure_close": True}},
                    mechanisms="PLAIN",
                    locales="en_US",
                )
                conn.sendall(pika.frame.Method(0, start).marshal())
                conn.recv(4096)  # StartOk: the user and password
                if after == "vhost":
                    tune = pika.spec.Connection.Tune(channel_max=2047, frame_max=131072)
                    conn.sendall(pika.frame.Method(0, tune).marshal())
                    conn.recv(4096)  # TuneOk and Open: the virtual host
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], done


@pytest.mark.parametrize(
    "after, stage", [("login", "the login"), ("vhost", "the choice of the virtual host")]
)
def test_a_link_lost_during_the_handshake_is_not_called_a_refusal(
    demo_db, queue_name, after, stage
):
    """pika calls a connection closed during the login a "probable authentication
    error" whether the broker refused the password or the link dropped: only the
    broker's own refusal is reported as one."""
    port, done = _broker_that_hangs_up(after)
    try:
        for command in ("queue", "work"):
            out = cli(
                command,
                "--queue",
                queue_name,
                "--rabbitmq-url",
                f"amqp://guest:s3cr%23tpw@127.0.0.1:{port}/%2F",
                url=demo_db,
            )
            assert out.returncode != 0
            assert out.stderr.count("\n") == 1, out.stderr
            assert f"the connection was lost during {stage}" in out.stderr, out.stderr
            assert "refused" not in out.stderr and "denied" not in out.stderr
            assert "s3cr" not in out.stderr + out.stdout
    finally:
        done.set()


def test_broker_errors_are_one_line_without_the_password(demo_db, queue_name):
    cases = {
        "amqp://guest:s3cretpw@127.0.0.1:5672/%2F": "refused the login",
        "amqp://guest:s3cretpw@127.0.0.1:1/%2F": "cannot reach RabbitMQ",
    }
    for broker_url, expected in cases.items():
        for command in ("queue", "work"):
            out = cli(command, "--queue", queue_name, "--rabbitmq-url", broker_url, url=demo_db)
            assert out.returncode != 0
            assert out.stderr.count("\n") == 1, out.stderr
            assert expected in out.stderr
            assert "s3cretpw" not in out.stderr + out.stdout
            assert "guest:***@" in out.stderr
