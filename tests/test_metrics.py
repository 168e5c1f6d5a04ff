"""`work --metrics-port`: a real work run scraped while it runs, checked against its summary."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import rabbit
from tests.conftest import (
    child_pids,
    cli,
    cli_popen,
    free_port,
    make_demo_db,
    reaped,
    spawned,
    summary_count,
    victimless,
)

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _scrape(port: int, timeout: float = 60) -> dict[str, float]:
    """Every sample of /metrics by name (labels folded into the name), once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _valued(url: str) -> int:
    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
        return conn.execute(query).fetchone()[0]


@pytest.mark.slow
def test_metrics_of_a_work_run_match_its_summary(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 3_000)
    with psycopg.connect(url, autocommit=True) as conn:
        # Long enough batches to be seen at work mid-run.
        conn.execute(
            "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow_write AFTER UPDATE ON killmails"
            " FOR EACH STATEMENT EXECUTE FUNCTION slow_write()"
        )
    out = cli("queue", "--queue", queue_name, "--batch-size", "100", url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    port = free_port()
    worker = cli_popen(
        "work", "--queue", queue_name, "--procs", "2", "--metrics-port", str(port),
        "--metrics-address", "127.0.0.1", url=url, env=_ENV,
    )  # fmt: skip
    with reaped(worker):
        during = _scrape(port)
        deadline = time.monotonic() + 60
        while during["bulk_backfill_children_alive"] < 2:
            assert time.monotonic() < deadline, during
            time.sleep(0.2)
            during = _scrape(port)
        assert during["bulk_backfill_broker_reachable"] == 1
        assert during["bulk_backfill_database_reachable"] == 1
        expected = 3_000 - len(victimless(url))
        deadline = time.monotonic() + 120
        while _valued(url) < expected or rabbit.counts(queue_name) != (0, 0):
            assert time.monotonic() < deadline, "work did not finish"
            time.sleep(0.2)
        time.sleep(1.5)  # the parent's next depth check and the children's last reports
        after = _scrape(port)
        worker.send_signal(signal.SIGINT)
        stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stdout + stderr
    assert after["bulk_backfill_killmails_valued_total"] == summary_count(stdout, "processed")
    assert after["bulk_backfill_batches_acked_total"] == summary_count(stdout, "messages") == 30
    assert after["bulk_backfill_batch_seconds_count"] == summary_count(stdout, "batches")
    # Each batch waited 0.3 s in the trigger.
    assert after["bulk_backfill_batch_seconds_sum"] >= 0.3 * 30
    assert after["bulk_backfill_batches_dead_lettered_total"] == 0
    assert after["bulk_backfill_batches_redelivered_total"] == 0
    assert after["bulk_backfill_queue_ready_messages"] == 0
    assert after["bulk_backfill_batches_in_hand"] == 0
    assert 0 <= after["bulk_backfill_seconds_since_last_commit"] < 30


def test_a_metrics_port_in_use_is_one_clear_line(demo_db, queue_name):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "work", "--queue", queue_name, "--until-empty", "--metrics-port", str(port),
            "--metrics-address", "127.0.0.1", url=demo_db, env=_ENV,
        )  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr


def test_metrics_of_a_run_match_its_summary(fresh_db):
    url = make_demo_db(fresh_db, 2_000)
    with psycopg.connect(url, autocommit=True) as conn:
        # Slow enough to be scraped mid-run; the last batch waits for the test to let go.
        conn.execute("CREATE TABLE gate (open boolean NOT NULL)")
        conn.execute("INSERT INTO gate VALUES (false)")
        conn.execute(
            "CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " PERFORM pg_sleep(0.2);"
            " WHILE NOT (SELECT open FROM gate) AND EXISTS"
            " (SELECT 1 FROM new_rows WHERE killmail_id = (SELECT max(killmail_id) FROM killmails))"
            " LOOP PERFORM pg_sleep(0.1); END LOOP; RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER slow_write AFTER UPDATE ON killmails REFERENCING NEW TABLE AS new_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION slow_write()"
        )
    port = free_port()
    job = cli_popen(
        "run", "--procs", "2", "--batch-size", "100", "--metrics-port", str(port),
        "--metrics-address", "127.0.0.1", url=url,
    )  # fmt: skip
    with reaped(job):
        expected = 2_000 - len(victimless(url))
        deadline = time.monotonic() + 120
        # Every batch but the gated last one.
        while _valued(url) < expected - 100:
            assert time.monotonic() < deadline and job.poll() is None, job.communicate()
            time.sleep(0.2)
        time.sleep(0.5)
        during = _scrape(port)
        # The metrics server is a thread of the parent: a fork could copy a lock it holds.
        children = [spawned(pid) for pid in child_pids(job.pid)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE gate SET open = true")
        stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stdout + stderr
    assert during["bulk_backfill_children_alive"] == 2
    assert children == [True, True]
    assert during["bulk_backfill_batches_in_hand"] >= 1  # the gated batch
    assert during["bulk_backfill_batches_done_total"] == 19
    assert during["bulk_backfill_killmails_failed_total"] == 0
    assert during["bulk_backfill_database_reachable"] == 1
    # All but the gated batch's killmails, as the summary counts them at the end.
    valued_then = summary_count(stdout, "processed") - 100
    assert during["bulk_backfill_killmails_valued_total"] == valued_then
