"""The price book (bulk.engine.book): built once per job, shared, rebuilt where a price changed.

Every value is checked against the rule set's independent SQL reference; every
invalidation path is tested by a change the book would otherwise hide.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta

import psycopg
import pytest

from bulk import db
from bulk.engine import book, rules, scan
from bulk.engine.batch import Valuation, process_batch
from bulk.engine.session import Session
from bulk.prices import overrides
from bulk.prices import store as price_store
from bulk.typedata import store as type_store
from bulk.typedata.files import TypeData
from tests import dated
from tests.conftest import cli, make_demo_db, mismatches, values


def ok(*args: str, url: str):
    done = cli(*args, url=url)
    assert done.returncode == 0, done.stderr
    return done


def _ids(url: str, n: int | None = None) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT killmail_id FROM killmails ORDER BY 1").fetchall()
    ids = [r[0] for r in rows]
    return ids if n is None else ids[:n]


def _book_rows(url: str, key: str) -> set[tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT type_id, price_date FROM bulk_price_book WHERE book = %s", [key]
        ).fetchall()
    return set(rows)


def _job_pairs(url: str, rule_set: str) -> set[tuple]:
    """The (type, price date) pairs of every killmail, written here without the engine's SQL."""
    offset = rules.dated(rule_set).price_date_offset_s
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT t, (k.killmail_time - make_interval(secs => %(offset)s))::date
            FROM killmails AS k
            CROSS JOIN LATERAL (
                SELECT v.ship_type_id FROM victims AS v WHERE v.killmail_id = k.killmail_id
                UNION ALL
                SELECT i.item_type_id FROM killmail_items AS i
                WHERE i.killmail_id = k.killmail_id
            ) AS used (t)
            """,
            {"offset": offset},
        ).fetchall()
    return set(rows)


@pytest.fixture
def history_db(fresh_db):
    # 3,000 killmails over 10 days, with daily history from 60 days before:
    # a killboard's density, where killmails share their (type, price date) pairs.
    make_demo_db(fresh_db, 3000, history=True, days=10)
    return fresh_db


# --- built once per job -------------------------------------------------------------


@pytest.mark.parametrize("rule_set", ["evekill", "zkillboard"])
def test_run_builds_exactly_the_jobs_pairs_before_its_batches(history_db, rule_set):
    ok("run", "--mode", "all", "--rules", rule_set, url=history_db)
    assert _book_rows(history_db, rule_set) == _job_pairs(history_db, rule_set)
    assert mismatches(history_db, rules=rule_set) == []


def test_a_second_job_builds_nothing_and_writes_the_same_values(history_db):
    ok("run", "--mode", "all", "--rules", "evekill", url=history_db)
    first = values(history_db)
    with psycopg.connect(history_db, autocommit=True) as conn:
        cond, params = scan.Selection(mode="all").killmails_sql()
        assert book.build_for_job(conn, "evekill", "sell", cond, params) == 0
    ok("run", "--mode", "all", "--rules", "evekill", url=history_db)
    assert values(history_db) == first


def test_a_job_without_the_book_table_names_the_command_that_creates_it(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("DROP TABLE bulk_price_book")
    done = cli("run", url=demo_db)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "bulk_price_book" in line and "bulk-backfill init-db" in line
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT to_regclass('bulk_price_book')").fetchone()[0] is None
        assert (
            conn.execute("SELECT count(*) FROM killmails WHERE total_value IS NOT NULL").fetchone()[
                0
            ]
            == 0
        )


# --- shared by concurrent builders --------------------------------------------------


@pytest.mark.parametrize("rule_set", ["evekill", "zkillboard"])
def test_concurrent_builders_build_each_price_once_and_all_succeed(history_db, rule_set):
    cond, params = scan.Selection(mode="all").killmails_sql()
    errors, built = [], []
    start = threading.Barrier(4)

    def builder() -> None:
        try:
            with psycopg.connect(history_db, autocommit=True) as conn:
                start.wait()
                built.append(book.build_for_job(conn, rule_set, "sell", cond, params))
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    pairs = _job_pairs(history_db, rule_set)
    # One builder built them all; the others waited, then found nothing to build.
    assert sorted(built) == [0, 0, 0, len(pairs)]
    with psycopg.connect(history_db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM bulk_price_book WHERE book = %s", [rule_set]
        ).fetchone()
    assert n == len(pairs)
    ok("run", "--mode", "all", "--rules", rule_set, url=history_db)
    assert mismatches(history_db, rules=rule_set) == []


def test_queue_builds_the_book_and_several_workers_share_it(history_db, queue_name):
    ok("queue", "--rules", "zkillboard", "--queue", queue_name, url=history_db)
    built = _book_rows(history_db, "zkillboard")
    assert built == _job_pairs(history_db, "zkillboard")
    with psycopg.connect(history_db) as conn:
        before = conn.execute(
            "SELECT max(changed_at) FROM bulk_price_book WHERE book = 'zkillboard'"
        ).fetchone()[0]
    ok("work", "--procs", "3", "--until-empty", "--queue", queue_name, url=history_db)
    with psycopg.connect(history_db) as conn:
        after = conn.execute(
            "SELECT count(*), max(changed_at) FROM bulk_price_book WHERE book = 'zkillboard'"
        ).fetchone()
    assert after == (len(built), before)  # the workers found it ready: nothing rebuilt
    assert mismatches(history_db, rules="zkillboard") == []


# --- invalidation: each path, with a change the book would otherwise hide ------------


def _value_then(url: str, rule_set: str, change, engine: str = "numpy") -> None:
    """Value everything, change a price source through the tool's own code, value again
    in the same process with no recheck: only the book's invalidation can show the change."""
    ids = _ids(url)
    with psycopg.connect(url, autocommit=True) as conn:
        session = Session(conn)
        job = Valuation(rules=rule_set, engine=engine, price_refresh=3600)
        process_batch(session, ids, "all", job)
        before = mismatches(url, rules=rule_set)
        assert before == []
        change(conn)
        assert mismatches(url, rules=rule_set) != []  # the change moved some reference value
        process_batch(session, ids, "all", job)
    assert mismatches(url, rules=rule_set) == []


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_a_price_import_makes_seeds_rows_stale(demo_db, engine):
    def change(conn):
        rows = conn.execute("SELECT type_id, sell FROM market_prices WHERE sell > 0").fetchall()
        doubled = [(t, s * 2 + 1) for t, s in rows]
        with conn.transaction():
            price_store.upsert(conn, price_store.target(conn), ("sell",), doubled)

    _value_then(demo_db, "seed", change, engine)


@pytest.mark.parametrize("rule_set", ["evekill", "zkillboard"])
def test_a_history_import_makes_the_rows_it_reaches_stale(history_db, rule_set):
    def change(conn):
        rows = conn.execute(
            "SELECT region_id, type_id, date, average * 3 + 1, highest, lowest, volume,"
            " order_count FROM market_price_history WHERE date >= (SELECT max(date) - 15"
            " FROM market_price_history) AND average > 0"
        ).fetchall()
        dated.import_history_rows(conn, rows)

    _value_then(history_db, rule_set, change)


@pytest.mark.parametrize("rule_set", ["evekill", "zkillboard"])
def test_a_price_override_makes_its_types_rows_stale(history_db, rule_set):
    def change(conn):
        (type_id,) = conn.execute(
            "SELECT i.item_type_id FROM killmail_items AS i"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        overrides.set_override(conn, type_id, 123456.78, note="test")

    _value_then(history_db, rule_set, change)


def test_a_type_data_change_makes_its_types_rows_stale(history_db):
    # A type moved into the capsule group (29) is worth 10,000 ISK under zkillboard.
    def change(conn):
        (type_id, name) = conn.execute(
            "SELECT t.id, t.name FROM killmail_items AS i JOIN types AS t ON t.id = i.item_type_id"
            " GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO item_groups (id, name, category_id) SELECT 29, 'Capsule', 6"
            " WHERE NOT EXISTS (SELECT 1 FROM item_groups WHERE id = 29)"
        )
        with conn.transaction():
            type_store.upsert(conn, TypeData(types={type_id: (name, 29)}))

    _value_then(history_db, "zkillboard", change)


def test_without_the_tools_commands_a_change_waits_for_the_recheck(demo_db):
    # seed is rechecked (every --price-refresh seconds in work); a job started
    # with no recheck keeps the prices of its start, which makes the tests above able to fail.
    ids = _ids(demo_db)
    first, second = ids[:200], ids[200:400]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        session = Session(conn)
        process_batch(session, first, "null", Valuation(price_refresh=None))
        conn.execute("UPDATE market_prices SET sell = sell * 2 + 1")
        process_batch(session, second, "null", Valuation(price_refresh=None))
        assert mismatches(demo_db, ids=second) != []
        time.sleep(0.3)
        process_batch(session, second, "all", Valuation(price_refresh=0.2))
    assert mismatches(demo_db, ids=second) == []


def test_runs_children_leave_the_recheck_to_the_jobs_build(demo_db):
    # run builds seed's book before its first batch; its children do not recheck
    # it again, each in turn under the book's lock. A batch valued in a process
    # that never checked the book yet then uses the book as it stands...
    ids = _ids(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        cond, params = scan.Selection(mode="all").killmails_sql()
        book.build_for_job(conn, "seed", "sell", cond, params)
        conn.execute("UPDATE market_prices SET sell = sell * 2 + 1")
        # A fresh session: this process has not rechecked the book yet.
        process_batch(Session(conn), ids[:200], "all", Valuation(price_refresh=book.BUILT_BY_JOB))
        assert mismatches(demo_db, ids=ids[:200]) != []
        # ...where once per process (None, as work does) checks it at its first batch.
        process_batch(Session(conn), ids[:200], "all", Valuation(price_refresh=None))
    assert mismatches(demo_db, ids=ids[:200]) == []
    # And a run, whose parent builds the book, values by the prices of its start.
    assert cli("run", "--mode", "all", url=demo_db).returncode == 0
    assert mismatches(demo_db) == []


def test_a_statement_timeout_meant_for_batches_does_not_fail_the_build(history_db):
    with psycopg.connect(history_db, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '1ms'")
        cond, params = scan.Selection(mode="all").killmails_sql()
        assert book.build_for_job(conn, "zkillboard", "sell", cond, params) > 0
        (timeout,) = conn.execute("SHOW statement_timeout").fetchone()
    assert timeout == "1ms"


def test_a_jobs_rows_are_written_in_the_order_batches_read_them(history_db):
    # A batch reads the rows of its price dates: a job's build writes them in
    # (price date, type) order, so one date's rows share pages.
    with psycopg.connect(history_db, autocommit=True) as conn:
        cond, params = scan.Selection(mode="all").killmails_sql()
        assert book.build_for_job(conn, "evekill", "sell", cond, params) > 0
        rows = conn.execute(
            "SELECT price_date, type_id FROM bulk_price_book WHERE book = 'evekill' ORDER BY ctid"
        ).fetchall()
    assert len(rows) > 1000
    assert rows == sorted(rows)


def test_valuing_connections_plan_without_merge_joins_and_builds_with_the_default(
    history_db,
):
    # A batch's book rows are a CTE without statistics: costed with them, a
    # (price date, type) join sorted both sides instead of hashing one.
    conn = db.open_connection(history_db, autocommit=True, valuing=True)
    try:
        assert conn.execute("SHOW enable_mergejoin").fetchone() == ("off",)
        seen = []
        with book._writing(conn):
            seen.append(conn.execute("SHOW enable_mergejoin").fetchone())
        assert seen == [("on",)]
        assert conn.execute("SHOW enable_mergejoin").fetchone() == ("off",)
    finally:
        conn.close()
    plain = db.open_connection(history_db, autocommit=True)
    try:
        assert plain.execute("SHOW enable_mergejoin").fetchone() == ("on",)
        # An operator who turned hash joins off keeps merge joins: without
        # either, a kill-date batch is a nested loop over the book.
        dbname = plain.info.dbname
        plain.execute(f'ALTER DATABASE "{dbname}" SET enable_hashjoin = off')
    finally:
        plain.close()
    conn = db.open_connection(history_db, autocommit=True, valuing=True)
    try:
        assert conn.execute("SHOW enable_hashjoin").fetchone() == ("off",)
        assert conn.execute("SHOW enable_mergejoin").fetchone() == ("on",)
    finally:
        conn.close()


# --- a price is one state of the history ---------------------------------------------


GUN = 2_929


def _gun_killmails(url: str) -> tuple[int, int]:
    kill_day = date(2025, 6, 20)
    with psycopg.connect(url, autocommit=True) as conn:
        kind = dated.kind_of(url)
        dated.insert_types(conn, kind, [(GUN, 53, 7, "Module"), (587, 25, 6, "Ship")])
        dated.insert_history(
            conn, GUN, [(kill_day - timedelta(days=40 + d), 0.02) for d in range(3)]
        )
        dated.insert_killmail(conn, kind, 1, datetime(2025, 6, 10, 12), 587, [(GUN, 5, 1, None, 0)])
        dated.insert_killmail(conn, kind, 2, datetime(2025, 6, 20, 12), 587, [(GUN, 5, 1, None, 0)])
    return 1, 2


def test_a_price_is_one_state_of_the_history_never_a_mix(schema_db):
    url = schema_db
    with psycopg.connect(url, autocommit=True) as conn:
        db.ensure_history_tables(conn)
    first, second = _gun_killmails(url)
    old = dated.reference_values(url, [second], "zkillboard")[second][0]
    with psycopg.connect(url, autocommit=True) as conn:
        # The first batch is held for 8 s, after the job built its book.
        conn.execute(
            f"""
            CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.killmail_id = {first} THEN PERFORM pg_sleep(8); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER hold BEFORE UPDATE ON killmails FOR EACH ROW EXECUTE FUNCTION hold();
            """
        )
    from tests.conftest import cli_popen, reaped

    job = cli_popen("run", "--procs", "1", "--batch-size", "1", "--rules", "zkillboard", url=url)
    with reaped(job):
        time.sleep(3)
        assert job.poll() is None
        with psycopg.connect(url) as conn:
            rows = [
                (10000002, GUN, date(2025, 6, 1) + timedelta(days=d), 109.51 + d % 3, 1, 1, 1, 1)
                for d in range(20)
            ]
            dated.import_history_rows(conn, rows)
        assert job.wait(60) == 0
    new = dated.reference_values(url, [second], "zkillboard")[second][0]
    assert old != new
    stored = values(url)[second][0]
    assert stored in (float(old), float(new))
    assert mismatches(url, rules="zkillboard", ids=[second]) == []


# --- found by a hostile review ----------------------------------------------------------


def test_a_bad_price_fails_only_its_killmails_and_the_job_keeps_its_pace(demo_db):
    # Naming the bad price once joined every book row to every killmail of the same
    # price date: 2.6 s per bisected part, a job of 20,000 killmails past 12 minutes.
    with psycopg.connect(demo_db, autocommit=True) as conn:
        (ship,) = conn.execute(
            "SELECT ship_type_id FROM victims WHERE ship_type_id <> 670"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE market_prices SET sell = 'NaN' WHERE type_id = %s", [ship])
        using = {
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM victims WHERE ship_type_id = %(t)s"
                " UNION SELECT killmail_id FROM killmail_items WHERE item_type_id = %(t)s",
                {"t": ship},
            )
        }
    started = time.monotonic()
    done = cli("run", "--json", url=demo_db, timeout=120)
    assert time.monotonic() - started < 60
    failed = {f["killmail_id"]: f["error"] for f in json.loads(done.stdout)["failures"]}
    assert set(failed) == using
    assert all(f"type {ship} is nan, not a price" in e for e in failed.values())
    others = [k for k in _ids(demo_db) if k not in using]
    assert mismatches(demo_db, ids=others) == []


def test_seed_forgets_a_deleted_price_even_of_a_type_without_type_data(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        (type_id,) = conn.execute(
            "SELECT i.item_type_id FROM killmail_items AS i JOIN market_prices AS p"
            " ON p.type_id = i.item_type_id AND p.sell > 1000 GROUP BY 1 ORDER BY count(*) DESC"
            " LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM types WHERE id = %s", [type_id])
    ok("run", "--mode", "all", "--allow-incomplete", url=demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("DELETE FROM market_prices WHERE type_id = %s", [type_id])
    assert mismatches(demo_db) != []
    ok("run", "--mode", "all", "--allow-incomplete", url=demo_db)
    assert mismatches(demo_db) == []


@pytest.mark.parametrize("rule_set", ["evekill", "zkillboard"])
def test_kills_at_infinity_are_valued_as_the_reference_values_them(history_db, rule_set):
    with psycopg.connect(history_db, autocommit=True) as conn:
        kind = dated.kind_of(history_db)
        # Types with history, so the window (and its walk limit) is worked out.
        (ship,) = conn.execute(
            "SELECT v.ship_type_id FROM victims AS v WHERE EXISTS (SELECT 1 FROM"
            " market_price_history AS h WHERE h.type_id = v.ship_type_id AND h.average > 0)"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        (item,) = conn.execute(
            "SELECT i.item_type_id FROM killmail_items AS i WHERE EXISTS (SELECT 1 FROM"
            " market_price_history AS h WHERE h.type_id = i.item_type_id AND h.average > 0)"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        for n, when in ((2, "infinity"), (3, "-infinity")):
            dated.insert_killmail(conn, kind, n, when, ship, [(item, 5, 3, None, 0)])
    ok("run", "--mode", "all", "--rules", rule_set, url=history_db)
    assert values(history_db)[2][0] is not None
    assert mismatches(history_db, rules=rule_set) == []


def test_a_role_lock_timeout_does_not_refuse_a_job_while_another_builds(history_db):
    name = psycopg.conninfo.conninfo_to_dict(history_db)["dbname"]
    with psycopg.connect(history_db, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '500ms'")
    held = threading.Event()

    def another_builder() -> None:
        with psycopg.connect(history_db) as conn:
            conn.execute("LOCK TABLE bulk_price_book IN SHARE ROW EXCLUSIVE MODE")
            held.set()
            time.sleep(3)

    t = threading.Thread(target=another_builder)
    t.start()
    assert held.wait(10)
    ok("run", "--mode", "all", "--rules", "evekill", url=history_db)
    t.join()
    assert mismatches(history_db, rules="evekill") == []


def test_history_of_a_region_no_rule_set_reads_marks_nothing_stale(history_db):
    ok("run", "--mode", "all", "--rules", "zkillboard", url=history_db)
    with psycopg.connect(history_db) as conn:
        rows = conn.execute(
            "SELECT 10000043, type_id, date, average * 2, highest, lowest, volume, order_count"
            " FROM market_price_history WHERE average > 0 LIMIT 500"
        ).fetchall()
        dated.import_history_rows(conn, rows)
        (stale,) = conn.execute("SELECT count(*) FROM bulk_price_book WHERE stale").fetchone()
    assert stale == 0
