"""`status` and `verify` against the real services; every figure checked by its own SQL."""

import json

import psycopg
import pytest

from tests import rabbit
from tests.conftest import cli

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _scalar(url, query, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def _verify(url, *args):
    return cli("verify", *args, url=url)


def _corrupt(url, n=3) -> list[int]:
    with psycopg.connect(url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM killmails WHERE total_value IS NOT NULL"
                " ORDER BY killmail_id DESC LIMIT 1000"
            )
        ][::300][:n]
        conn.execute(
            "UPDATE killmails SET total_value = total_value + 0.01 WHERE killmail_id = ANY(%s)",
            (ids[:1],),
        )
        conn.execute(
            "UPDATE killmails SET dropped_value = dropped_value * 2 + 1"
            " WHERE killmail_id = ANY(%s)",
            (ids[1:],),
        )
    return sorted(ids)


@pytest.mark.both_schemas
def test_verify_all_passes_after_a_run_and_names_corrupted_killmails(demo_db):
    assert cli("run", url=demo_db).returncode == 0
    ok = _verify(demo_db, "--all")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    valued = _scalar(demo_db, "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL")
    assert f"checked     {valued:>12,}" in ok.stdout
    assert "mismatches             0" in ok.stdout

    corrupted = _corrupt(demo_db)
    bad = _verify(demo_db, "--all", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["mismatches"] == 3 and report["ok"] is False
    assert sorted(m["killmail_id"] for m in report["first_mismatches"]) == corrupted
    for m in report["first_mismatches"]:
        assert m["stored"] != m["expected"]
    text = _verify(demo_db, "--all")
    assert text.returncode == 1
    listed = [line.split(":")[0].strip() for line in text.stdout.splitlines() if "expected" in line]
    assert sorted(int(i) for i in listed) == corrupted


def test_verify_sample_is_reproducible_with_a_seed(demo_db):
    assert cli("run", url=demo_db).returncode == 0
    corrupted = _corrupt(demo_db)
    runs = [
        json.loads(_verify(demo_db, "--sample", "700", "--seed", s, "--json").stdout)
        for s in ("5", "5", "6")
    ]
    assert runs[0] == runs[1]
    assert runs[0]["sample"]["digest"] != runs[2]["sample"]["digest"]
    assert runs[0]["checked"] == 700
    for run in runs:
        found = {m["killmail_id"] for m in run["first_mismatches"]}
        assert found <= set(corrupted)
    # A sample as big as the table checks everything, so finds all three.
    whole = json.loads(_verify(demo_db, "--sample", "100000", "--seed", "5", "--json").stdout)
    assert sorted(m["killmail_id"] for m in whole["first_mismatches"]) == corrupted
    assert whole["notes"]


# Every band of verify's distribution, written here independently of
# sql/value_distribution.sql. Bounds are ISK: lower bound inclusive, upper exclusive.
_BANDS = {
    "under_1m": "total_value < 1000000",
    "m1_10m": "total_value >= 1000000 AND total_value < 10000000",
    "m10_100m": "total_value >= 10000000 AND total_value < 100000000",
    "m100m_1b": "total_value >= 100000000 AND total_value < 1000000000",
    "over_1b": "total_value >= 1000000000",
    "no_value": "total_value IS NULL",
}


@pytest.mark.both_schemas
def test_verify_distribution_matches_sql(demo_db):
    assert cli("run", url=demo_db).returncode == 0
    # Values on and next to every band edge, so a bound on the wrong side of an edge
    # moves a killmail into the neighbouring band; plus zeros and unvalued rows.
    edges = [0, 999_999.99, 1e6, 9_999_999.99, 1e7, 99_999_999.99, 1e8, 999_999_999.99, 1e9]
    with psycopg.connect(demo_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1 LIMIT 40")]
        for kid, value in zip(ids, edges):
            conn.execute(
                "UPDATE killmails SET total_value = %s WHERE killmail_id = %s", (value, kid)
            )
        conn.execute(
            "UPDATE killmails SET total_value = NULL WHERE killmail_id = ANY(%s)", (ids[20:],)
        )
    out = _verify(demo_db, "--sample", "5", "--json")
    report = json.loads(out.stdout)
    assert set(report["distribution"]) == set(_BANDS), report["distribution"]
    for key, where in _BANDS.items():
        expected = _scalar(demo_db, f"SELECT count(*) FROM killmails WHERE {where}")
        assert expected > 0, key  # every band holds killmails, so every band is checked
        assert report["distribution"][key] == expected, key
    assert sum(report["distribution"].values()) == _scalar(
        demo_db, "SELECT count(*) FROM killmails"
    )
    assert report["biggest"] == _scalar(demo_db, "SELECT max(total_value) FROM killmails")
    assert report["checked"] == 5


@pytest.mark.both_schemas
def test_status_counts_equal_sql_counts(demo_db, queue_name):
    assert cli("run", url=demo_db).returncode == 0
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE killmails SET total_value = NULL WHERE killmail_id IN"
            " (SELECT killmail_id FROM killmails ORDER BY 1 LIMIT 123)"
        )
        conn.execute(
            "UPDATE killmails SET total_value = 0 WHERE killmail_id IN"
            " (SELECT killmail_id FROM killmails ORDER BY 1 DESC LIMIT 45)"
        )
        conn.execute("UPDATE market_prices SET updated_at = now() - interval '2 days'")
    queued = cli("queue", "--queue", queue_name, "--batch-size", "50", url=demo_db, env=_ENV)
    assert queued.returncode == 0, queued.stderr
    rabbit.publish_raw(f"{queue_name}.dead", [b"x", b"y"])

    out = cli("status", "--queue", queue_name, "--json", url=demo_db, env=_ENV)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    sql = {
        "killmails": "SELECT count(*) FROM killmails",
        "valued": "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL",
        "null_value": "SELECT count(*) FROM killmails WHERE total_value IS NULL",
        "zero_value": "SELECT count(*) FROM killmails WHERE total_value = 0",
        "no_victim": "SELECT count(*) FROM killmails k WHERE NOT EXISTS"
        " (SELECT 1 FROM victims v WHERE v.killmail_id = k.killmail_id)",
    }
    for key, query in sql.items():
        assert status["database"][key] == _scalar(demo_db, query), key
    used = (
        "SELECT count(*) FROM (SELECT ship_type_id FROM victims"
        " UNION SELECT item_type_id FROM killmail_items) AS u(t)"
    )
    priced = used.replace(
        "AS u(t)",
        "AS u(t) WHERE EXISTS (SELECT 1 FROM market_prices p WHERE p.type_id = u.t AND p.sell > 0)",
    )
    assert status["prices"]["rows"] == _scalar(demo_db, "SELECT count(*) FROM market_prices")
    assert status["prices"]["types_used"] == _scalar(demo_db, used)
    assert status["prices"]["types_priced"] == _scalar(demo_db, priced)
    oldest = _scalar(demo_db, "SELECT min(updated_at) FROM market_prices")
    assert status["prices"]["oldest_update"] == oldest.isoformat(sep=" ", timespec="seconds")
    assert status["warnings"] == ["2 messages in the dead-letter queue (bulk-backfill dead list)"]

    queue = status["queue"]
    matching = 123 + _scalar(demo_db, sql["no_victim"])
    assert queue["ready"] == -(-matching // 50)
    assert queue["dead_letters"] == 2 and queue["consumers"] == 0
    # A short queue is counted, not estimated, and every message is left in it.
    assert queue["killmails_waiting"] == matching and queue["killmails_waiting_exact"]
    assert "queue.killmails_waiting" not in status["estimates"]
    assert rabbit.ready(queue_name) == queue["ready"]
    if queue["unacked"] is None:
        assert "not reachable" in queue["unacked_note"]
    else:
        assert queue["unacked"] == rabbit.counts(queue_name)[1]

    text = cli("status", "--queue", queue_name, url=demo_db, env=_ENV)
    assert f"  ready messages      {queue['ready']:>12,}" in text.stdout
    assert f"  killmails waiting   {matching:>12,}  (exact" in text.stdout


@pytest.mark.both_schemas
def test_status_warns_about_empty_or_stale_prices(demo_db):
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE market_prices SET updated_at = now() - interval '30 days'")
    stale = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    assert any("older than 7 days" in w for w in stale["warnings"])
    fresh = json.loads(
        cli("status", "--no-queue", "--json", "--stale-days", "40", url=demo_db).stdout
    )
    assert fresh["warnings"] == [] and fresh["queue"] is None
    with psycopg.connect(demo_db) as conn:
        conn.execute("DELETE FROM market_prices")
    empty = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    assert any("market_prices is empty" in w for w in empty["warnings"])


def test_unreachable_services_are_one_line_errors(demo_db):
    dead_db = "postgresql://postgres:s3cret@127.0.0.1:1/nothing"
    for args in (["status", "--no-queue"], ["verify", "--all"]):
        out = cli(*args, url=dead_db)
        assert out.returncode != 0
        assert out.stderr.count("\n") == 1 and "s3cret" not in out.stderr, out.stderr
        assert "cannot connect to PostgreSQL" in out.stderr
    broker = "amqp://guest:s3cret@127.0.0.1:1/%2F"
    out = cli("status", "--rabbitmq-url", broker, url=demo_db)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "s3cret" not in out.stderr, out.stderr
    assert "cannot reach RabbitMQ" in out.stderr
