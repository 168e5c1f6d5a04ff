"""Kill-date rule sets through the commands a user runs: run, queue + work, dead letters.

The rule set travels in every message beside the mode; a retried, split or
dead-lettered batch keeps it. Values are checked against the reference of
the rule set (sql/reference_<rules>.sql), and against seed's to show the
rule set made a difference.
"""

import json

import psycopg
import pytest

from tests import rabbit
from tests.conftest import cli, failed_killmails, make_demo_db, mismatches, new_database

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


@pytest.fixture(scope="module")
def history_db():
    """One 2,000-killmail killboard with demo-data's 3 years of history, for the module."""
    with new_database() as url:
        make_demo_db(url, 2_000, history=True)
        yield url


@pytest.fixture
def unvalued(history_db):
    with psycopg.connect(history_db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS conflict ON killmails")
        conn.execute("DROP FUNCTION IF EXISTS conflict()")
        conn.execute(
            "UPDATE killmails SET total_value = NULL, destroyed_value = NULL, dropped_value = NULL"
        )
    return history_db


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["numpy", "sql"])
@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_run_values_every_killmail_under_the_rule_set(unvalued, rules, engine):
    out = cli("run", "--rules", rules, "--engine", engine, url=unvalued)
    assert out.returncode == 0, out.stderr
    assert f"rules {rules}" in out.stderr
    assert mismatches(unvalued, rules=rules) == []
    assert mismatches(unvalued, rules="seed") != []


def test_the_rule_set_travels_in_the_message_and_work_values_by_it(unvalued, queue_name):
    out = cli("queue", "--queue", queue_name, "--rules", "zkillboard", url=unvalued, env=_ENV)
    assert out.returncode == 0, out.stderr
    bodies = [body for body, _ in rabbit.drain(queue_name)]
    assert bodies and all(json.loads(b)["rules"] == "zkillboard" for b in bodies)
    rabbit.publish_raw(queue_name, bodies)
    # work's own --rules is only for old single messages: the batches name theirs.
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--rules", "evekill", url=unvalued, env=_ENV
    )
    assert done.returncode == 0, done.stderr
    assert mismatches(unvalued, rules="zkillboard") == []
    assert mismatches(unvalued, rules="evekill") != []


@pytest.mark.slow  # a job through the broker, dead letters and a requeue
@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_a_dead_letter_keeps_its_rule_set_and_requeues_under_it(unvalued, queue_name, engine):
    with psycopg.connect(unvalued) as conn:
        (bad,) = conn.execute(
            "SELECT k.killmail_id FROM killmails k JOIN victims v USING (killmail_id)"
            " ORDER BY 1 OFFSET 42 LIMIT 1"
        ).fetchone()
        conn.execute(
            "CREATE FUNCTION conflict() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.killmail_id = {bad} THEN RAISE 'no' USING ERRCODE = '40001'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER conflict BEFORE UPDATE ON killmails FOR EACH ROW"
            " EXECUTE FUNCTION conflict()"
        )
    assert (
        cli("queue", "--queue", queue_name, "--rules", "evekill", url=unvalued, env=_ENV).returncode
        == 0
    )
    out = cli(
        "work", "--queue", queue_name, "--until-empty", "--engine", engine, url=unvalued, env=_ENV
    )
    assert out.returncode == 1, out.stderr
    assert {m.killmail_id for m in mismatches(unvalued, rules="evekill")} == {bad}
    requeued = cli("dead", "requeue", "--queue", queue_name, url=unvalued, env=_ENV)
    assert requeued.returncode == 0, requeued.stderr
    back = rabbit.drain(queue_name)
    assert [json.loads(body)["ids"] for body, _ in back] == [[bad]]
    assert [json.loads(body)["rules"] for body, _ in back] == ["evekill"]


def test_run_without_the_history_tables_says_how_to_make_them(fresh_db):
    make_demo_db(fresh_db, 200)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")
    out = cli("run", "--rules", "evekill", url=fresh_db)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "market_price_history" in out.stderr and "init-db" in out.stderr
    assert failed_killmails(out.stdout) == {}
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('market_price_history')").fetchone()[0] is None
