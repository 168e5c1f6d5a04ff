"""Small things a new user met on the way (issue 24, point 6)."""

from __future__ import annotations

import json

import psycopg

from tests.conftest import cli, victimless


def _header(out) -> str:
    return next(line for line in out.stderr.splitlines() if line.startswith(("run:", "queue:")))


def test_one_killmail_matches_and_queue_names_a_kill_date_rule_set(demo_db):
    with psycopg.connect(demo_db) as conn:
        (first,) = conn.execute("SELECT min(killmail_id) FROM victims").fetchone()
    run = cli("run", "--id", str(first), url=demo_db)
    assert run.returncode == 0, run.stderr
    assert _header(run).startswith("run: mode null, 1 killmail matches, "), _header(run)
    queued = cli("queue", "--rules", "evekill", "--dry-run", "--allow-incomplete", url=demo_db)
    assert queued.returncode == 0, queued.stderr
    assert _header(queued).startswith("queue: mode null, rules evekill, 2,999 killmails match")
    seed = cli("queue", "--dry-run", url=demo_db)
    assert _header(seed).startswith("queue: mode null, 2,999 killmails match")


def test_the_no_victim_list_is_the_lowest_ids_in_order(demo_db):
    out = cli("run", "--procs", "2", "--batch-size", "100", url=demo_db)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("no victim: "))
    listed = [int(x) for x in line.removeprefix("no victim: ").split(" ...")[0].split(", ")]
    assert listed == sorted(victimless(demo_db))[:10]


def test_verify_after_a_kill_date_job_names_the_rule_set_and_json_has_no_price_column(demo_db):
    out = cli("run", "--rules", "evekill", "--allow-incomplete", url=demo_db)
    assert out.returncode == 0, out.stderr
    # A plain verify follows the stamps (issue 27); with --ignore-stamps it audits
    # every killmail under seed, and names the rules the values match.
    assert cli("verify", url=demo_db).returncode == 0
    plain = cli("verify", "--ignore-stamps", url=demo_db)
    assert plain.returncode == 1
    assert (
        "note: the mismatching values shown match the evekill rules: a job under --rules"
        " evekill wrote them? bulk-backfill verify --rules evekill audits them"
    ) in plain.stdout, plain.stdout
    audited = cli("verify", "--rules", "evekill", "--json", url=demo_db)
    assert audited.returncode == 0, audited.stdout
    report = json.loads(audited.stdout)
    assert report["price_column"] is None and report["mismatches"] == 0


# demo-data's note before it writes history: tests/test_history.py
# (test_demo_data_writes_history_covering_every_kill_date_and_overrides).
