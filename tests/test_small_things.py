"""Small things of the summaries and banners (issue 13, point 5)."""

from __future__ import annotations

import json

import psycopg

from tests import rabbit
from tests.conftest import cli, killmail_ids, make_demo_db, mismatches, summary_count, victimless

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _status(url: str, queue_name: str) -> dict:
    out = cli("status", "--queue", queue_name, "--json", url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_counts_a_short_queue_exactly(demo_db, queue_name):
    # 534 killmails in batches of 500: 2 messages, which a guess from the head
    # message would call 1,000 killmails.
    queued = cli(
        "queue", "--queue", queue_name, "--limit", "534", "--batch-size", "500",
        url=demo_db, env=_ENV,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    queue = _status(demo_db, queue_name)["queue"]
    assert (queue["ready"], queue["killmails_waiting"]) == (2, 534)
    assert queue["killmails_waiting_exact"] is True
    assert rabbit.ready(queue_name) == 2  # every message read was given back
    text = cli("status", "--queue", queue_name, url=demo_db, env=_ENV).stdout
    assert "  killmails waiting            534  (exact: counted in the ready messages)" in text
    # Given back unflagged: a message that came back as redelivered would cost its
    # batch a try in `work`, a republish and a "redelivered" line.
    done = cli("work", "--queue", queue_name, "--until-empty", url=demo_db, env=_ENV)
    assert done.returncode == 0, done.stderr
    assert summary_count(done.stdout, "processed") == 534
    assert summary_count(done.stdout, "messages") == 2
    assert "redelivered" not in done.stdout and "retried" not in done.stdout


def test_status_does_not_browse_a_queue_that_workers_consume(demo_db, queue_name):
    # Browsing holds the messages unacked for a moment: with a worker consuming,
    # `work --until-empty` could see the queue empty then and stop early.
    ids = killmail_ids(demo_db)
    rabbit.publish_raw(queue_name, [{"v": 1, "mode": "null", "ids": ids[:3]}] * 5)
    with rabbit.connection() as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(queue_name, lambda *args: None)  # holds one, acks none
        conn.process_data_events(time_limit=1)
        queue = _status(demo_db, queue_name)["queue"]
        assert queue["consumers"] == 1 and queue["ready"] == 4
        assert queue["killmails_waiting_exact"] is False
        assert queue["killmails_waiting"] == 4 * 3  # the estimate, from the head message
        # The head message read went back unflagged, as a copy at the tail.
        assert [m.redelivered for m, _, _ in rabbit.take_all(queue_name)] == [False] * 4


def test_status_estimates_a_long_queue(demo_db, queue_name):
    ids = killmail_ids(demo_db)
    head = {"v": 1, "mode": "null", "ids": ids[:3], "source": "test"}
    rabbit.publish_raw(queue_name, [head] + [{"killmailId": k} for k in ids[3:150]])
    status = _status(demo_db, queue_name)
    queue = status["queue"]
    assert (queue["ready"], queue["killmails_waiting"]) == (148, 148 * 3)
    assert queue["killmails_waiting_exact"] is False
    assert "queue.killmails_waiting" in status["estimates"]


def test_work_counts_messages_and_batches_apart(demo_db, queue_name):
    ids = killmail_ids(demo_db)[:300]
    rabbit.publish_raw(queue_name, [{"killmailId": k} for k in ids])
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--procs", "1",
        "--singles-per-batch", "100",
        url=demo_db, env=_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert summary_count(done.stdout, "messages") == 300
    assert 3 <= summary_count(done.stdout, "batches") < 300
    assert summary_count(done.stdout, "processed") == 300


def test_work_still_takes_its_old_name_for_the_singles_per_batch(demo_db, queue_name):
    ids = killmail_ids(demo_db)[:40]
    rabbit.publish_raw(queue_name, [{"killmailId": k} for k in ids])
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--procs", "1", "--batch-size", "10",
        url=demo_db, env=_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "work's --batch-size is now --singles-per-batch" in done.stderr
    assert summary_count(done.stdout, "processed") == 40
    assert summary_count(done.stdout, "batches") >= 4  # at most 10 killmails a batch
    both = cli(
        "work", "--queue", queue_name, "--until-empty", "--singles-per-batch", "3",
        "--batch-size", "7", url=demo_db, env=_ENV,
    )  # fmt: skip
    assert both.returncode == 2
    assert "give --singles-per-batch only" in both.stderr and "Traceback" not in both.stderr


def test_the_no_victim_line_gives_the_real_count(fresh_db):
    make_demo_db(fresh_db, 600)
    with psycopg.connect(fresh_db) as conn:
        conn.execute(
            "DELETE FROM victims WHERE killmail_id IN"
            " (SELECT killmail_id FROM killmails ORDER BY 1 LIMIT 57)"
        )
    assert len(victimless(fresh_db)) == 57
    out = cli("run", url=fresh_db)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("no victim: "))
    assert line.endswith(", ... (47 more)"), line
    assert len(line.split(", ... ")[0].split(", ")) == 10


def test_banners_say_one_process(demo_db, queue_name):
    ran = cli("run", "--procs", "1", "--limit", "5", url=demo_db)
    assert ran.returncode == 0, ran.stderr
    assert ", 1 process, " in ran.stderr
    rabbit.publish_raw(queue_name, [{"killmailId": killmail_ids(demo_db)[10]}])
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--procs", "1", url=demo_db, env=_ENV
    )
    assert done.returncode == 0, done.stderr
    assert f"work: 1 process on queue {queue_name} (1 message ready)" in done.stderr


def test_a_single_message_that_names_its_rules_is_valued_under_them(demo_db, queue_name):
    """The replaced system's single-killmail messages mean work's --rules, unless they
    name a rule set: then it is theirs, as for a batch (they were valued under work's
    --rules whatever they said)."""
    ids = killmail_ids(demo_db)[:2]
    rabbit.publish_raw(
        queue_name, [{"killmailId": ids[0], "rules": "evekill"}, {"killmailId": ids[1]}]
    )
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--procs", "1", url=demo_db, env=_ENV
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(demo_db) as conn:
        books = dict(conn.execute("SELECT killmail_id, book FROM bulk_valuations").fetchall())
    assert books == {ids[0]: "evekill", ids[1]: "seed:sell"}
    assert mismatches(demo_db, ids=[ids[0]], rules="evekill") == []
    assert mismatches(demo_db, ids=[ids[1]]) == []
    assert rabbit.drain(f"{queue_name}.dead") == []
