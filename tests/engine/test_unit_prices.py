"""The per-connection unit-cents table: prices read once, and re-read once they may be stale."""

import time

import psycopg
import pytest

from bulk.engine import unit_prices
from bulk.engine.batch import process_batch
from tests.conftest import mismatches, values


def _two_batches(url: str) -> tuple[list[int], list[int]]:
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1 LIMIT 400")]
    return ids[:200], ids[200:]


def _double_every_price(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE market_prices SET sell = sell * 2 + 1")


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_a_batch_started_after_the_refresh_interval_uses_the_new_prices(demo_db, engine):
    first, second = _two_batches(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        process_batch(conn, first, "null", engine=engine, price_refresh=0.5)
        _double_every_price(demo_db)
        time.sleep(0.6)
        process_batch(conn, second, "null", engine=engine, price_refresh=0.5)
    assert mismatches(demo_db, ids=second) == []
    # The first batch was valued at the old prices, which the reference no longer holds.
    assert mismatches(demo_db, ids=first) != []


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_without_refresh_a_connection_keeps_the_prices_it_started_with(demo_db, engine):
    # What `run` does: a job values every killmail at the prices of its start,
    # which is also what makes the refresh test above able to fail.
    first, second = _two_batches(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        process_batch(conn, first, "null", engine=engine, price_refresh=None)
        _double_every_price(demo_db)
        time.sleep(0.6)
        process_batch(conn, second, "null", engine=engine, price_refresh=None)
    assert mismatches(demo_db, ids=second) != []
    stored = values(demo_db)
    assert all(stored[k][0] is not None for k in second if stored[k] != (None, None, None))


def test_a_failed_build_is_built_again_before_the_next_batch(demo_db):
    first, second = _two_batches(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '100ms'")
        with psycopg.connect(demo_db) as locker:
            locker.execute("LOCK TABLE market_prices IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                process_batch(conn, first, "null")
        process_batch(conn, first + second, "null")
    assert mismatches(demo_db, ids=first + second) == []


def test_a_statement_timeout_meant_for_batches_does_not_fail_the_build(demo_db):
    # Were the build cancelled, every batch of the job would fail with it and be
    # split down to dead letters; the build reads every price once and is exempt.
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '1ms'")
        unit_prices.ensure(conn, "sell", None)
        (timeout,) = conn.execute("SHOW statement_timeout").fetchone()
        (types,) = conn.execute("SELECT count(*) FROM pg_temp.bulk_unit_cents_sell").fetchone()
    assert timeout == "1ms"
    assert types > 0
