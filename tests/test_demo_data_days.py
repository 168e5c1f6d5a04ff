"""`demo-data --days N`: the kills packed into the last N days, with history covering them."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import psycopg
import pytest

from tests.conftest import cli, make_demo_db, mismatches, new_database

FIRST, LAST = date(2025, 12, 17), date(2025, 12, 26)  # the last 10 days up to 2025-12-26


def _load(url: str, *args: str):
    assert cli("init-db", url=url).returncode == 0
    out = cli("demo-data", "--killmails", "3000", *args, url=url)
    assert out.returncode == 0, out.stderr
    return out


def _digest(url: str, queries) -> str:
    digest = hashlib.sha256()
    with psycopg.connect(url) as conn:
        for query in queries:
            for row in conn.execute(query):
                digest.update(repr(row).encode())
    return digest.hexdigest()


_ALL = (
    "SELECT * FROM killmails ORDER BY killmail_id",
    "SELECT * FROM victims ORDER BY killmail_id",
    "SELECT * FROM killmail_items ORDER BY id",
    "SELECT * FROM market_prices ORDER BY type_id",
    "SELECT * FROM market_price_history ORDER BY region_id, type_id, date",
    "SELECT * FROM price_overrides ORDER BY id",
)


def test_days_packs_the_kills_and_writes_history_that_covers_them(fresh_db):
    out = _load(fresh_db, "--days", "10")
    line = out.stdout.strip()
    assert line.startswith(
        "loaded 3,000 killmails with 68,980 item rows "
        "(seed 1, over 10 days from 2025-12-17 to 2025-12-26), "
    ), line
    assert line.endswith(" market history rows and 2 price overrides"), line
    assert "demo-data: writing market history and price overrides (about 160,000 rows)" in (
        out.stderr
    )
    with psycopg.connect(fresh_db) as conn:
        first, last = conn.execute(
            "SELECT min(killmail_time), max(killmail_time) FROM killmails"
        ).fetchone()
        per_day = dict(
            conn.execute(
                "SELECT killmail_time::date, count(*) FROM killmails GROUP BY 1"
            ).fetchall()
        )
        # Every priced line and ship: an average on or before its kill date.
        (uncovered,) = conn.execute(
            "WITH used AS ("
            "  SELECT k.killmail_time::date AS day, i.item_type_id AS type_id"
            "  FROM killmails k JOIN killmail_items i USING (killmail_id)"
            "  UNION SELECT k.killmail_time::date, v.ship_type_id"
            "  FROM killmails k JOIN victims v USING (killmail_id))"
            " SELECT count(*) FROM used u JOIN market_prices p USING (type_id)"
            " WHERE NOT EXISTS (SELECT 1 FROM market_price_history h"
            "  WHERE h.type_id = u.type_id AND h.date <= u.day AND h.average > 0)"
        ).fetchone()
        history = conn.execute(
            "SELECT min(date), max(date), count(DISTINCT date), count(DISTINCT type_id),"
            " count(*), (SELECT count(*) FROM market_prices) FROM market_price_history"
        ).fetchone()
        # zkillboard's window: up to 34 daily averages back from the price date.
        before_first = conn.execute(
            "SELECT p.type_id, p.sell, count(h.date) FROM market_prices p"
            " LEFT JOIN market_price_history h ON h.type_id = p.type_id AND h.date < %s"
            " GROUP BY p.type_id, p.sell",
            [FIRST],
        ).fetchall()
        override_change = conn.execute("SELECT max(valid_from) FROM price_overrides").fetchone()[0]
    assert datetime(2025, 12, 17) == first and last < datetime(2025, 12, 27)
    assert sorted(per_day) == [FIRST + timedelta(days=d) for d in range(10)]
    assert all(240 <= n <= 360 for n in per_day.values()), per_day  # about 300 a day
    assert uncovered == 0
    low, high, n_days, n_types, rows, priced = history
    # Daily from 60 days before the first kill to the last: no years of history.
    assert (low, high, n_days) == (FIRST - timedelta(days=60), LAST, 70)
    assert n_types == priced and rows < priced * 70
    # A full window before the first kill for every type but the dearest, which trade
    # on about half the days (the generator's gaps).
    assert all(n >= 34 or sell > 1e10 or sell == 0 for _, sell, n in before_first)
    assert min(n for *_, n in before_first) >= 20
    assert FIRST < override_change <= LAST


def test_days_values_under_zkillboard_as_its_reference_does(fresh_db):
    _load(fresh_db, "--days", "10")
    run = cli("run", "--mode", "all", "--rules", "zkillboard", "--procs", "1", url=fresh_db)
    assert run.returncode == 0, run.stderr
    assert "failed=0" in run.stderr
    assert mismatches(fresh_db, rules="zkillboard") == []


@pytest.mark.slow
def test_days_same_seed_same_data_and_the_same_killmails_as_the_spread(fresh_db):
    _load(fresh_db, "--days", "10", "--seed", "3")
    with new_database() as again, new_database() as spread:
        _load(again, "--days", "10", "--seed", "3")
        assert _digest(again, _ALL) == _digest(fresh_db, _ALL)
        # Without --days: the same killmails, victims and items, other times.
        make_demo_db(spread, 3_000, seed=3)
        same = (
            "SELECT killmail_id FROM killmails ORDER BY 1",
            "SELECT * FROM victims ORDER BY killmail_id",
            "SELECT * FROM killmail_items ORDER BY id",
        )
        assert _digest(spread, same) == _digest(fresh_db, same)
        first = "SELECT min(killmail_time) FROM killmails"
        with psycopg.connect(spread) as a, psycopg.connect(fresh_db) as b:
            assert a.execute(first).fetchone()[0].year == 2008
            assert b.execute(first).fetchone()[0] == datetime(2025, 12, 17)


@pytest.mark.parametrize("days", ["0", "6571", "x"])
def test_days_out_of_range_is_refused(fresh_db, days):
    assert cli("init-db", url=fresh_db).returncode == 0
    out = cli("demo-data", "--killmails", "10", "--days", days, url=fresh_db)
    assert out.returncode == 2
    assert "Invalid value for '--days'" in out.stderr
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM killmails").fetchone()[0] == 0
