"""`verify --rules`: the installed command audits a kill-date rule set with its own reference."""

import json

import psycopg
import pytest

from tests import dated
from tests.conftest import cli
from tests.engine.test_dated_rules import _killmails, _world


def _write(url: str, values: dated.Values) -> None:
    with psycopg.connect(url) as conn:
        for kid, (total, destroyed, dropped) in values.items():
            conn.execute(
                "UPDATE killmails SET total_value = %s, destroyed_value = %s, dropped_value = %s"
                " WHERE killmail_id = %s",
                [float(total), float(destroyed), float(dropped), kid],
            )


@pytest.mark.both_schemas
def test_verify_rules_audits_the_rule_set_the_values_were_written_under(schema_db, schema_kind):
    kills = _killmails()
    _world(schema_db, schema_kind, kills)
    _write(schema_db, dated.engine_values(schema_db, range(1, len(kills) + 1), "zkillboard"))

    ok = cli("verify", "--all", "--rules", "zkillboard", "--json", url=schema_db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert (report["checked"], report["mismatches"], report["rules"]) == (
        len(kills),
        0,
        "zkillboard",
    )

    other = cli("verify", "--all", "--rules", "evekill", url=schema_db)
    assert other.returncode == 1
    assert "reference rules: evekill" in other.stdout
    seed = cli("verify", "--all", url=schema_db)
    assert seed.returncode == 1 and "reference prices: sell" in seed.stdout


def test_verify_rules_without_the_history_tables_says_so(schema_db):
    with psycopg.connect(schema_db) as conn:  # init-db may have made them
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")
    out = cli("verify", "--rules", "evekill", url=schema_db)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "bulk-backfill: error: the database lacks market_price_history and price_overrides,"
        " which the kill-date rule sets read: create them with `bulk-backfill init-db` or"
        " load history with `bulk-backfill prices history import`"
    ]
    bogus = cli("verify", "--rules", "zkb", url=schema_db)
    assert bogus.returncode == 2 and "'zkb' is not one of 'seed', 'evekill', 'zkillboard'" in (
        bogus.stderr
    )
