"""Valuation stamps (bulk_valuations) and `--mode stale`: every value records the
book that priced it, and a stale job revalues exactly the killmails whose stamp is
missing, of other rules, or older than a change of their prices.

The killmails a change should reach are worked out here in SQL of the test's own,
from the killboard's tables and the prices the test changed, never from the tool's
book or changes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import psycopg
import pytest

from bulk.engine import batch, scan, stale
from bulk.engine.session import Session
from bulk.errors import UserError
from tests.conftest import (
    REALDATA,
    child_pids,
    cli,
    cli_popen,
    make_demo_db,
    mismatches,
    summary_count,
    values,
    victimless,
)
from tests.realdata import load_types, needs_realdata
from tests.test_killreport_imports import _hashed_file
from tests.test_killreport_workflow import _load_types as _load_killreport_types

pytestmark = pytest.mark.both_schemas


def _rows(url: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _stamps(url: str) -> dict[int, tuple]:
    """killmail_id -> (book, version, valued_at, unpriced)."""
    rows = _rows(url, "SELECT killmail_id, book, version, valued_at, unpriced FROM bulk_valuations")
    return {r[0]: r[1:] for r in rows}


def _holders(url: str, type_ids: list[int]) -> set[int]:
    """The valued killmails with a victim that hold one of the types, as ship or item."""
    rows = _rows(
        url,
        "SELECT k.killmail_id FROM killmails AS k"
        " JOIN victims AS v ON v.killmail_id = k.killmail_id"
        " WHERE k.total_value IS NOT NULL AND (v.ship_type_id = ANY(%(t)s)"
        "   OR EXISTS (SELECT 1 FROM killmail_items AS i"
        "              WHERE i.killmail_id = k.killmail_id AND i.item_type_id = ANY(%(t)s)))",
        {"t": type_ids},
    )
    return {r[0] for r in rows}


def _types_for_share(url: str, share: float) -> list[int]:
    """Types priced above 100 ISK (a small move still moves their cents), rarest
    first, until about `share` of the killmails hold one."""
    pairs = _rows(
        url,
        "SELECT u.type_id, u.killmail_id FROM ("
        "  SELECT killmail_id, item_type_id AS type_id FROM killmail_items"
        "  UNION SELECT killmail_id, ship_type_id FROM victims) AS u"
        " JOIN market_prices AS m ON m.type_id = u.type_id AND m.sell > 100"
        " WHERE u.type_id <> 670",
    )
    (total,) = _rows(url, "SELECT count(*) FROM killmails")[0]
    holders: dict[int, set[int]] = {}
    for type_id, killmail_id in pairs:
        holders.setdefault(type_id, set()).add(killmail_id)
    chosen: list[int] = []
    reached: set[int] = set()
    for type_id in sorted(holders, key=lambda t: (len(holders[t]), t)):
        chosen.append(type_id)
        reached |= holders[type_id]
        if len(reached) >= share * total:
            break
    return chosen


def _import_prices(url: str, tmp_path, prices: dict[int, float], name: str = "p.csv") -> None:
    path = tmp_path / name
    path.write_text("type_id,sell\n" + "".join(f"{t},{p:.2f}\n" for t, p in prices.items()))
    out = cli("prices", "import", str(path), url=url)
    assert out.returncode == 0, out.stderr


def _sell_prices(url: str) -> dict[int, float]:
    return dict(_rows(url, "SELECT type_id, sell FROM market_prices WHERE sell IS NOT NULL"))


def _move_prices(url: str, tmp_path, share: float, factor: float) -> list[int]:
    """The types about `share` of the killmails hold (_types_for_share), their sell
    price times `factor` through `prices import`; the types."""
    chosen = _types_for_share(url, share)
    prices = _sell_prices(url)
    _import_prices(url, tmp_path, {t: prices[t] * factor for t in chosen})
    return chosen


def _rewritten_since(url: str, moment) -> set[int]:
    rows = _rows(url, "SELECT killmail_id FROM bulk_valuations WHERE valued_at > %s", [moment])
    return {r[0] for r in rows}


def _now(url: str):
    return _rows(url, "SELECT clock_timestamp()")[0][0]


def _run(url: str, *args: str):
    out = cli("run", *args, url=url)
    assert out.returncode == 0, out.stderr
    return out


def _consistent(url: str) -> None:
    """No value without a stamp and no stamp without a value."""
    bad = _rows(
        url,
        "SELECT k.killmail_id, k.total_value, s.killmail_id FROM killmails AS k"
        " FULL JOIN bulk_valuations AS s ON s.killmail_id = k.killmail_id"
        " WHERE (k.total_value IS NULL) <> (s.killmail_id IS NULL)",
    )
    assert bad == []


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_every_write_stamps_its_killmails_with_the_book(demo_db, engine):
    _run(demo_db, "--mode", "null", "--engine", engine)
    stamps = _stamps(demo_db)
    valued = {k for k, v in values(demo_db).items() if v[0] is not None}
    assert set(stamps) == valued and valued
    assert {s[0] for s in stamps.values()} == {"seed:sell"}
    # unpriced: a line whose type has no sell price (the demo leaves some unpriced).
    expected_unpriced = {
        r[0]
        for r in _rows(
            demo_db,
            "SELECT k.killmail_id FROM killmails AS k"
            " JOIN victims AS v ON v.killmail_id = k.killmail_id"
            " WHERE EXISTS (SELECT 1 FROM (SELECT v.ship_type_id AS t UNION ALL"
            "   SELECT i.item_type_id FROM killmail_items AS i"
            "   WHERE i.killmail_id = k.killmail_id) AS l"
            "   LEFT JOIN market_prices AS m ON m.type_id = l.t"
            "   LEFT JOIN types AS ty ON ty.id = l.t"
            "   WHERE m.sell IS NULL OR ty.id IS NULL)",
        )
    }
    assert {k for k, s in stamps.items() if s[3]} == expected_unpriced
    _run(demo_db, "--mode", "all", "--engine", engine, "--price-column", "buy")
    assert {s[0] for s in _stamps(demo_db).values()} == {"seed:buy"}
    _consistent(demo_db)


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_stale_rewrites_exactly_the_killmails_whose_prices_changed(demo_db, engine, tmp_path):
    _run(demo_db, "--mode", "null", "--engine", engine)
    chosen = _move_prices(demo_db, tmp_path, 0.10, 1.5)
    expected = _holders(demo_db, chosen)
    assert 0.05 * 3000 < len(expected) < 0.3 * 3000
    before = _now(demo_db)
    out = _run(demo_db, "--mode", "stale", "--engine", engine)
    assert _rewritten_since(demo_db, before) == expected
    assert summary_count(out.stdout, "updated") == len(expected)
    assert mismatches(demo_db) == []
    # A second stale job finds only the killmails that can never be valued (no victim).
    again = _run(demo_db, "--mode", "stale", "--engine", engine)
    assert summary_count(again.stdout, "updated") == 0
    assert summary_count(again.stdout, "selected") == len(victimless(demo_db))
    _consistent(demo_db)


def test_min_change_rewrites_only_the_killmails_of_the_prices_that_moved_enough(demo_db, tmp_path):
    _run(demo_db, "--mode", "null")
    chosen = _types_for_share(demo_db, 0.10)
    expected = _holders(demo_db, chosen)
    prices = _sell_prices(demo_db)
    # The daily refresh: every other price moves by less than 1%.
    moved = {t: p * 1.005 for t, p in prices.items() if p >= 10}
    moved.update({t: prices[t] * 1.02 for t in chosen})
    _import_prices(demo_db, tmp_path, moved)
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale", "--min-change", "1%")
    assert _rewritten_since(demo_db, before) == expected
    # Nothing moved by 1% since: no stale killmail at 1%; at any cent, the others.
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale", "--min-change", "1%")
    assert _rewritten_since(demo_db, before) == set()
    _run(demo_db, "--mode", "stale")
    touched = _holders(demo_db, [t for t in moved if t not in chosen])
    assert _rewritten_since(demo_db, before) == touched - expected
    assert mismatches(demo_db) == []


def test_small_moves_add_up_against_the_stamp(demo_db, tmp_path):
    """--min-change compares today's price with the one the stamp's values used:
    two moves of 0.6% make one of 1.2%."""
    _run(demo_db, "--mode", "null")
    chosen = _types_for_share(demo_db, 0.05)
    expected = _holders(demo_db, chosen)
    prices = _sell_prices(demo_db)
    for step in (1.006, 1.006 * 1.006):
        _import_prices(demo_db, tmp_path, {t: prices[t] * step for t in chosen})
        before = _now(demo_db)
        _run(demo_db, "--mode", "stale", "--min-change", "1%")
    assert _rewritten_since(demo_db, before) == expected


def test_a_killmail_valued_by_something_else_is_stale(demo_db):
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db) as conn:
        (kid,) = conn.execute(
            "SELECT min(k.killmail_id) FROM killmails AS k JOIN victims AS v USING (killmail_id)"
        ).fetchone()
        # The replaced system writes a value and leaves no stamp.
        conn.execute("DELETE FROM bulk_valuations WHERE killmail_id = %s", [kid])
        conn.execute("UPDATE killmails SET total_value = 1 WHERE killmail_id = %s", [kid])
    status = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    assert status["valuations"]["stale"]["no_stamp"] == 1
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale")
    assert _rewritten_since(demo_db, before) == {kid}
    assert mismatches(demo_db) == []


def test_another_rule_set_is_stale_and_verify_follows_the_stamps(fresh_db, tmp_path):
    url = make_demo_db(fresh_db, 2_000, history=True, days=10)
    _run(url, "--mode", "null", "--rules", "evekill")
    # Plain verify audits each killmail under the rules that valued it.
    out = cli("verify", "--all", "--json", url=url)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["mismatches"] == 0
    assert report["by_rules"] == {"evekill": report["checked"]} and report["unstamped"] == 0
    # Under --ignore-stamps every killmail is audited under seed: mismatches.
    assert cli("verify", "--all", "--ignore-stamps", url=url).returncode == 1
    status = json.loads(cli("status", "--no-queue", "--json", url=url).stdout)
    valued = report["checked"]
    assert status["valuations"]["by_rules"] == {"evekill": valued}
    assert status["valuations"]["stale"]["other_rules"] == valued
    out = _run(url, "--mode", "stale", "--limit", "500")
    assert summary_count(out.stdout, "selected") == 500
    moved = summary_count(out.stdout, "updated")
    assert moved > 450  # the rest of the 500 have no victim
    report = json.loads(cli("verify", "--all", "--json", url=url).stdout)
    assert report["mismatches"] == 0
    assert report["by_rules"] == {"evekill": valued - moved, "seed:sell": moved}
    # Under evekill itself nothing is stale but the ones seed valued.
    before = _now(url)
    _run(url, "--mode", "stale", "--rules", "evekill")
    assert len(_rewritten_since(url, before)) == moved


def test_the_guard_skips_a_killmail_revalued_since(demo_db):
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("UPDATE bulk_valuations SET book = 'evekill'")
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM victims ORDER BY 1 LIMIT 50")]
        # Another process revalues the first ten under today's seed book.
        assert batch.process_batch(Session(conn), ids[:10], "all").updated == 10
        result = batch.process_batch(Session(conn), ids, "stale")
        assert result.updated == 40
        assert batch.process_batch(Session(conn), ids, "stale").updated == 0


def test_stale_through_the_queue(demo_db, queue_name, tmp_path):
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.10, 3)
    expected = _holders(demo_db, chosen)
    before = _now(demo_db)
    out = cli("queue", "--mode", "stale", "--queue", queue_name, url=demo_db)
    assert out.returncode == 0, out.stderr
    work = cli("work", "--until-empty", "--queue", queue_name, url=demo_db, process=True)
    assert work.returncode == 0, work.stderr
    assert _rewritten_since(demo_db, before) == expected
    assert mismatches(demo_db) == []


def test_a_stale_batch_keeps_the_price_column_it_was_found_under(demo_db, queue_name):
    _run(demo_db, "--mode", "null")  # stamped seed:sell: every one is stale under buy
    out = cli(
        "queue", "--mode", "stale", "--price-column", "buy", "--queue", queue_name, url=demo_db
    )
    assert out.returncode == 0, out.stderr
    assert f"work --procs 2 --queue {queue_name} --price-column buy" in out.stdout
    # A worker of another column refuses every batch, with the reason.
    work = cli("work", "--until-empty", "--queue", queue_name, url=demo_db, process=True)
    assert "queued as stale under --price-column buy" in work.stderr + work.stdout
    assert {s[0] for s in _stamps(demo_db).values()} == {"seed:sell"}
    assert cli("dead", "requeue", "--queue", queue_name, url=demo_db).returncode == 0
    work = cli(
        "work",
        "--until-empty",
        "--price-column",
        "buy",
        "--queue",
        queue_name,
        url=demo_db,
        process=True,
    )
    assert work.returncode == 0, work.stderr
    assert {s[0] for s in _stamps(demo_db).values()} == {"seed:buy"}
    assert mismatches(demo_db, price_column="buy") == []


@needs_realdata
def test_values_made_before_the_prices_are_fixed_by_a_stale_job(schema_db, schema_kind, tmp_path):
    """The issue's scenario: value the real killmails before any price is loaded, load
    the prices, run --mode stale: every value is exact, pods included."""
    if schema_kind == "killreport":
        # killreport needs each killmail's hash: the 533 real ones that have one.
        path, docs, _ = _hashed_file(REALDATA, tmp_path)
        extra = ["--zkb", str(REALDATA / "zkb.jsonl"), "--top-level-only"]
    else:
        path, docs, extra = REALDATA / "killmails.jsonl", [None] * 534, []
    imported = cli("import-killmails", str(path), *extra, url=schema_db)
    assert imported.returncode == 0, imported.stderr
    if schema_kind == "killreport":
        _load_killreport_types(schema_db)
    else:
        load_types(schema_db)
    _run(schema_db, "--mode", "null", "--allow-empty-prices")
    out = cli(
        "prices",
        "import",
        str(REALDATA / "prices.json"),
        "--average-as",
        "sell",
        url=schema_db,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(cli("status", "--no-queue", "--json", url=schema_db).stdout)
    assert status["valuations"]["book_rows_pending"] > 0
    _run(schema_db, "--mode", "stale")
    assert mismatches(schema_db) == []
    report = json.loads(cli("verify", "--all", "--json", url=schema_db).stdout)
    assert report["checked"] == len(docs) and report["mismatches"] == 0
    # The issue's pod: a capsule hull (10 ISK) with its implants' value.
    stored = values(schema_db)
    assert stored[25290818][0] == 707692.44
    pods = _rows(
        schema_db,
        "SELECT k.killmail_id FROM killmails AS k JOIN victims AS v USING (killmail_id)"
        " WHERE v.ship_type_id = 670 AND k.total_value > 10",
    )
    assert pods
    status = json.loads(cli("status", "--no-queue", "--json", url=schema_db).stdout)
    assert status["valuations"]["stale_total"] == 0


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_no_value_without_its_stamp(fresh_db):
    """The UPDATE and its stamps are one statement: a worker killed while its batch's
    statement waits on a row lock (half its rows written) leaves neither."""
    url = make_demo_db(fresh_db, 6_000)
    with psycopg.connect(url) as locker:
        # Lock one killmail of the third batch: the batch's statement writes its
        # other rows, then waits here.
        (locked,) = locker.execute(
            "SELECT killmail_id FROM killmails ORDER BY killmail_id OFFSET 1200 LIMIT 1"
        ).fetchone()
        locker.execute("SELECT 1 FROM killmails WHERE killmail_id = %s FOR UPDATE", [locked])
        p = cli_popen("run", "--mode", "null", "--procs", "1", url=url, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            with psycopg.connect(url, autocommit=True) as watch:
                while time.monotonic() < deadline:
                    waiting = watch.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    ).fetchall()
                    if waiting:
                        break
                    time.sleep(0.05)
                assert waiting, "the batch never reached the locked row"
                for pid in child_pids(p.pid):
                    os.kill(pid, signal.SIGKILL)
                # The server ends the backend too, as a host that went away would.
                watch.execute("SELECT pg_terminate_backend(%s)", [waiting[0][0]])
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        locker.rollback()
    _consistent(url)
    written = _rows(url, "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL")[0][0]
    assert written <= 1000  # the two batches before the locked one, at most
    # The job run again values the rest, stamped.
    _run(url, "--mode", "null")
    _consistent(url)
    assert mismatches(url) == []


def test_stale_takes_the_selection_filters(demo_db, tmp_path):
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.20, 1.5)
    (since,) = _rows(
        demo_db, "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY killmail_time) FROM killmails"
    )[0]
    late = {
        r[0]
        for r in _rows(
            demo_db, "SELECT killmail_id FROM killmails WHERE killmail_time >= %s", [since]
        )
    }
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale", "--since", since.isoformat())
    assert _rewritten_since(demo_db, before) == _holders(demo_db, chosen) & late


def test_stale_resumes_after_an_id(demo_db, tmp_path):
    """--after-id alone reads no killmail row for the moved prices (the search's
    unfiltered way): the resume point must still hold there."""
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.20, 1.5)
    holders = sorted(_holders(demo_db, chosen))
    after = holders[len(holders) // 2]
    expected = [k for k in sorted(set(holders) | victimless(demo_db)) if k > after]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        found = stale.find(conn, "seed", "sell", scan.Selection(mode="stale", after_id=after))
    assert list(found) == expected
    before = _now(demo_db)
    out = _run(demo_db, "--mode", "stale", "--after-id", str(after))
    assert summary_count(out.stdout, "selected") == len(expected)
    assert _rewritten_since(demo_db, before) == {k for k in holders if k > after}


def test_the_search_reads_the_same_killmails_in_chunks_and_through_a_cursor(
    demo_db, tmp_path, monkeypatch
):
    """A libpq from 17 on streams the search's rows in chunks; an older one reads them
    through a server-side cursor. Both give the stale killmails in ID order, and
    a --limit keeps the lowest IDs."""
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.10, 1.5)
    expected = sorted(_holders(demo_db, chosen) | victimless(demo_db))
    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        found = []
        # This libpq's way, then the cursor (what a libpq before 17 takes).
        for libpq in (psycopg.pq.version(), 160000):
            monkeypatch.setattr(psycopg.pq, "version", lambda libpq=libpq: libpq)
            whole = stale.find(conn, "seed", "sell", scan.Selection(mode="stale"))
            first = stale.find(conn, "seed", "sell", scan.Selection(mode="stale", limit=7))
            found.append((list(whole), list(first)))
    assert found == [(expected, expected[:7])] * 2


def test_a_killmail_whose_value_was_removed_is_stale(demo_db):
    _run(demo_db, "--mode", "null")
    kid = _rows(demo_db, "SELECT min(killmail_id) FROM victims")[0][0]
    with psycopg.connect(demo_db) as conn:
        # Deleted and loaded again by the killboard: its stamp stays, its value is gone.
        conn.execute("UPDATE killmails SET total_value = NULL WHERE killmail_id = %s", [kid])
    status = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    no_victim = status["database"]["no_victim"]
    assert status["valuations"]["stale"]["never_valued"] == no_victim + 1
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale")
    assert _rewritten_since(demo_db, before) == {kid}
    assert mismatches(demo_db) == []


def test_a_killmail_both_unvalued_and_of_moved_prices_is_found_once(demo_db, tmp_path):
    """Its stamp is of a version its prices moved since, and its value is gone: one
    stale killmail, never valued, whether the search reads its killmail row for the
    moved prices (a filter) or not (the whole table)."""
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.10, 1.5)
    holders = _holders(demo_db, chosen)
    kid = min(holders)
    with psycopg.connect(demo_db) as conn:
        conn.execute("UPDATE killmails SET total_value = NULL WHERE killmail_id = %s", [kid])
    no_victim = victimless(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        whole = list(stale.find(conn, "seed", "sell", scan.Selection(mode="stale")))
        (late,) = conn.execute(
            "SELECT killmail_time FROM killmails WHERE killmail_id = %s", [kid]
        ).fetchone()
        since = scan.Selection(mode="stale", since=late)
        filtered = list(stale.find(conn, "seed", "sell", since))
        counts = stale.count(conn, "seed", "sell")
    assert whole == sorted(holders | no_victim)
    assert kid in filtered and len(filtered) == len(set(filtered))
    assert counts == {
        "never_valued": len(no_victim) + 1,
        "prices_changed": len(holders) - 1,
    }
    before = _now(demo_db)
    _run(demo_db, "--mode", "stale")
    assert _rewritten_since(demo_db, before) == holders
    assert mismatches(demo_db) == []


def test_the_search_apart_finds_what_the_one_statement_finds(demo_db, tmp_path):
    """run and queue search on two connections at once (stale.find's beside): the
    killmails without a stamp on the other, in this one's snapshot. The same IDs as
    the one statement, each once and in order, under a limit and filters too; a
    stamp dropped after the search began is seen by neither side; the other
    connection is closed after; where it cannot open, the one statement runs; its
    error is the search's."""
    _run(demo_db, "--mode", "null")
    chosen = _move_prices(demo_db, tmp_path, 0.10, 1.5)
    holders = sorted(_holders(demo_db, chosen))
    stamped = sorted(set(_stamps(demo_db)) - set(holders))
    with psycopg.connect(demo_db) as conn:
        # Both unvalued and of moved prices (found by both parts), and unvalued alone.
        conn.execute(
            "UPDATE killmails SET total_value = NULL WHERE killmail_id = ANY(%s)",
            [[holders[0], stamped[0]]],
        )
    (late,) = _rows(
        demo_db, "SELECT killmail_time FROM killmails WHERE killmail_id = %s", [holders[9]]
    )[0]
    dropped = stamped[1]
    opened = []

    def beside():
        other = psycopg.connect(demo_db, autocommit=True)
        opened.append(other)
        # Meanwhile another process drops a stamp: that killmail is unstamped now,
        # but not in the snapshot the search began with.
        with psycopg.connect(demo_db, autocommit=True) as third:
            third.execute("DELETE FROM bulk_valuations WHERE killmail_id = %s", [dropped])
        return other

    selections = [
        scan.Selection(mode="stale"),
        scan.Selection(mode="stale", limit=7),
        scan.Selection(mode="stale", after_id=holders[3]),
        scan.Selection(mode="stale", since=late),
    ]
    found = []
    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        for selection in selections:
            whole = list(stale.find(conn, "seed", "sell", selection))
            apart = list(stale.find(conn, "seed", "sell", selection, beside))
            assert apart == whole, selection
            found.append(apart)
            # The dropped stamp is missing now, and found; a job writes it again.
            assert dropped in stale.find(conn, "seed", "sell", scan.Selection(mode="stale"))
            _run(demo_db, "--mode", "all", "--after-id", str(dropped - 1), "--limit", "1")

        def nowhere():
            raise UserError("cannot connect")

        assert list(stale.find(conn, "seed", "sell", selections[0], nowhere)) == found[0]
        elsewhere = psycopg.conninfo.make_conninfo(demo_db, dbname="postgres")
        with pytest.raises(psycopg.Error, match="snapshot"):
            stale.find(
                conn,
                "seed",
                "sell",
                selections[0],
                lambda: opened.append(psycopg.connect(elsewhere)) or opened[-1],
            )
    assert len(opened) == len(selections) + 1 and all(c.closed for c in opened)
    expected = sorted(set(holders) | victimless(demo_db) | {stamped[0]})
    assert found[:3] == [expected, expected[:7], [k for k in expected if k > holders[3]]]
    assert holders[9] in found[3] and set(found[3]) <= set(expected)


def _in_thread(target, timeout: float = 60):
    """target() in a thread of its own: (what it returned or raised, whether it is
    still running after `timeout` s). A hang fails the test instead of hanging it."""
    out = {}

    def run():
        try:
            out["value"] = target()
        except BaseException as exc:
            out["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return out.get("value"), thread.is_alive()


def _interrupted_in_the_rows_loop(target, after: int = 50):
    """target, run with a KeyboardInterrupt raised where Ctrl+C would land it: in the
    frame of stale.py that takes the search's rows, at its `after`-th line."""
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == after:
                sys.settrace(None)
                raise KeyboardInterrupt
        return local

    def calls(frame, event, arg):
        code = frame.f_code
        taking_rows = code.co_name in ("_ids", "<genexpr>")
        return local if taking_rows and code.co_filename.endswith("stale.py") else None

    def run():
        sys.settrace(calls)
        try:
            return target()
        finally:
            sys.settrace(None)

    return run


@pytest.mark.parametrize("apart", [False, True], ids=["one-statement", "apart"])
def test_an_interrupt_during_the_search_leaves_the_connection_usable(
    demo_db, tmp_path, monkeypatch, apart
):
    """Ctrl+C lands while the search takes its rows: the interrupt comes out of find,
    the transaction is rolled back and the connection takes the next statement (a
    stream of rows left open held the connection's lock, and the rollback waited
    for it forever)."""
    _run(demo_db, "--mode", "null")
    _move_prices(demo_db, tmp_path, 0.10, 1.5)
    monkeypatch.setattr(stale, "_CHUNK", 2)
    conn = psycopg.connect(demo_db, autocommit=True)
    stale.build_first(conn, "seed", "sell")
    beside = (lambda: psycopg.connect(demo_db, autocommit=True)) if apart else None
    raised, hung = _in_thread(
        _interrupted_in_the_rows_loop(
            lambda: stale.find(conn, "seed", "sell", scan.Selection(mode="stale"), beside)
        ),
        timeout=30,
    )
    if hung:
        # Its lock is held for good: end the session from outside, or closing it
        # (and the test database's teardown) would wait too.
        with psycopg.connect(demo_db, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        pytest.fail("find hung after the interrupt")
    with conn:
        assert isinstance(raised, KeyboardInterrupt), raised
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_lock_queued_between_the_two_halves_does_not_hang_the_search(demo_db, tmp_path):
    """An ACCESS EXCLUSIVE request on the stamps (an ALTER, a VACUUM FULL) queued after
    the search read them waits for the search's transaction; the second connection
    would wait behind it, and the first for the second: a cycle through the client.
    The second gives up its wait, the first reads its half, the same IDs come out,
    and the request is granted once the search is done."""
    _run(demo_db, "--mode", "null")
    _move_prices(demo_db, tmp_path, 0.10, 1.5)
    ddl_done = threading.Event()

    def lock_stamps():
        with psycopg.connect(demo_db) as ddl:
            ddl.execute("SET lock_timeout = '60s'")
            ddl.execute("LOCK TABLE bulk_valuations IN ACCESS EXCLUSIVE MODE")
            ddl_done.set()

    def beside():
        threading.Thread(target=lock_stamps, daemon=True).start()
        with psycopg.connect(demo_db, autocommit=True) as watch:
            deadline = time.monotonic() + 20
            while not watch.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
                " AND relation = 'bulk_valuations'::regclass AND mode = 'AccessExclusiveLock')"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the lock request never queued"
                time.sleep(0.02)
        return psycopg.connect(demo_db, autocommit=True)

    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        whole = list(stale.find(conn, "seed", "sell", scan.Selection(mode="stale")))
        found, hung = _in_thread(
            lambda: stale.find(conn, "seed", "sell", scan.Selection(mode="stale"), beside)
        )
    assert not hung, "the search hung behind the queued lock"
    assert list(found) == whole and whole
    assert ddl_done.wait(20), "the lock was never granted after the search"


def _line_keys(conn) -> list[tuple[str, str]]:
    """(table, constraint) of the foreign keys from victims and killmail_items to killmails."""
    return conn.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint"
        " WHERE contype = 'f' AND confrelid = 'killmails'::regclass"
        "   AND conrelid IN ('victims'::regclass, 'killmail_items'::regclass)"
    ).fetchall()


def test_the_lines_keep_their_killmails_only_under_enforced_keys(demo_db):
    """The search leaves out its probe that a line's killmail exists only where the
    killboard's foreign keys guarantee it (both schemas have them): both tables'
    keys present, validated, their triggers firing in ordinary sessions (not
    disabled, not replica-only), no partitions or inheritance children, and
    sessions not replicas."""
    with psycopg.connect(demo_db, autocommit=True) as conn:
        assert stale.lines_keep_their_killmails(conn)
        conn.execute("ALTER TABLE killmails DISABLE TRIGGER ALL")
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute("ALTER TABLE killmails ENABLE TRIGGER ALL")
        assert stale.lines_keep_their_killmails(conn)
        (trigger,) = conn.execute(
            # The key's trigger on a killmail's delete (cascade or no action).
            "SELECT t.tgname FROM pg_trigger AS t"
            " JOIN pg_constraint AS c ON c.oid = t.tgconstraint"
            "  AND c.conrelid = 'victims'::regclass"
            " JOIN pg_proc AS p ON p.oid = t.tgfoid AND p.proname LIKE 'RI\\_FKey\\_%\\_del'"
            " WHERE t.tgrelid = 'killmails'::regclass"
        ).fetchone()
        conn.execute(f'ALTER TABLE killmails ENABLE REPLICA TRIGGER "{trigger}"')
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute(f'ALTER TABLE killmails ENABLE TRIGGER "{trigger}"')
        assert stale.lines_keep_their_killmails(conn)
        conn.execute("SET session_replication_role = replica")
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute("RESET session_replication_role")
        conn.execute("CREATE TABLE killmail_items_more () INHERITS (killmail_items)")
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute("DROP TABLE killmail_items_more")
        assert stale.lines_keep_their_killmails(conn)
        (table, name), _ = sorted(_line_keys(conn))
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (killmail_id)"
            " REFERENCES killmails (killmail_id) NOT VALID"
        )
        assert not stale.lines_keep_their_killmails(conn)
        conn.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        assert stale.lines_keep_their_killmails(conn)


@pytest.mark.parametrize("keys", ["none", "not-validated", "triggers-disabled"])
def test_a_killmail_deleted_without_its_lines_is_never_found_stale(demo_db, tmp_path, keys):
    """A killboard without foreign keys can delete a killmail and keep its victim,
    lines and stamp (as can one whose keys are not validated, or whose triggers
    are disabled): a stale search of the whole table must not find it (it cannot
    be valued, so every job would select it again)."""
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db) as conn:
        dropped = _line_keys(conn)
        if keys == "triggers-disabled":
            conn.execute("ALTER TABLE killmails DISABLE TRIGGER ALL")
        else:
            for table, name in dropped:
                conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        kid, ship = conn.execute(
            "SELECT v.killmail_id, v.ship_type_id FROM victims AS v"
            " JOIN market_prices AS m ON m.type_id = v.ship_type_id AND m.sell > 1000"
            " ORDER BY 1 LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM killmails WHERE killmail_id = %s", [kid])
        if keys == "not-validated":
            for table, name in dropped:
                conn.execute(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{name}" FOREIGN KEY (killmail_id)'
                    " REFERENCES killmails (killmail_id) NOT VALID"
                )
    _import_prices(demo_db, tmp_path, {ship: _sell_prices(demo_db)[ship] * 2})
    with psycopg.connect(demo_db, autocommit=True) as conn:
        stale.build_first(conn, "seed", "sell")
        whole = stale.find(conn, "seed", "sell", scan.Selection(mode="stale"))
        resumed = stale.find(conn, "seed", "sell", scan.Selection(mode="stale", after_id=kid - 1))
    assert kid not in whole and kid not in resumed
    _run(demo_db, "--mode", "stale")
    again = _run(demo_db, "--mode", "stale")
    assert summary_count(again.stdout, "selected") == len(victimless(demo_db))
    status = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    assert status["valuations"]["stale"].get("prices_changed", 0) == 0


def test_a_book_made_again_leaves_no_stamp_taken_for_current(demo_db):
    """The tool's tables dropped and made again: versions would start over below the
    stamps, which would then look current under prices that are gone."""
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db) as conn:
        conn.execute("DROP TABLE bulk_price_book, bulk_book_versions, bulk_price_book_changes")
        conn.execute("UPDATE market_prices SET sell = sell * 3")
    assert cli("init-db", url=demo_db).returncode == 0
    status = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    valued = status["database"]["valued"]
    out = _run(demo_db, "--mode", "stale")
    assert summary_count(out.stdout, "updated") == valued
    assert mismatches(demo_db) == []
    status = json.loads(cli("status", "--no-queue", "--json", url=demo_db).stdout)
    assert status["valuations"]["stale"]["book_rebuilt"] == 0


@pytest.mark.parametrize("text", ["1", "1%%", "abc", "-1%", "1e9%", "1_0%", "\u0663%", ""])
def test_min_change_refuses_what_is_not_a_plain_percentage(demo_db, text):
    out = cli("run", "--mode", "stale", "--min-change", text, url=demo_db)
    assert out.returncode != 0
    assert out.stderr.startswith("bulk-backfill: error: --min-change")
    assert "Traceback" not in out.stderr


def test_verify_says_which_stamps_it_cannot_read(demo_db):
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "UPDATE bulk_valuations SET book = 'seed:volume'"
            " WHERE killmail_id = (SELECT min(killmail_id) FROM bulk_valuations)"
        )
    out = cli("verify", "--all", "--json", url=demo_db)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["mismatches"] == 0
    assert report["unstamped"] == 1 and "seed:volume" in report["notes"][0]


def test_the_prepared_write_and_a_server_connection_without_it(demo_db):
    """The numpy write is prepared once per connection, its VALUES padded to a
    multiple of 50 rows with ids that match nothing. Behind a pooler a later batch
    may reach a server connection that lacks it (DEALLOCATE ALL stands in for
    that): the batch is written anyway, unprepared. Every batch writes its own
    killmails and stamps, and no other."""
    ids = [r[0] for r in _rows(demo_db, "SELECT killmail_id FROM victims ORDER BY 1 LIMIT 150")]
    parts = [ids[:37], ids[37:120], ids[120:]]  # 37 and 30 share the 50-row statement
    with psycopg.connect(demo_db, autocommit=True) as conn:
        session = Session(conn)
        written = [batch.process_batch(session, parts[0], "null").updated]
        conn.execute("DEALLOCATE ALL")
        written.append(batch.process_batch(session, parts[1], "null").updated)
        conn.execute("DEALLOCATE ALL")
        written.append(batch.process_batch(session, parts[2], "null").updated)
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
    assert written == [len(p) for p in parts]
    assert prepared == 0  # the last batch ran unprepared, as it had to
    valued = {k for k, v in values(demo_db).items() if v[0] is not None}
    assert valued == set(ids)
    assert set(_stamps(demo_db)) == set(ids)
    assert mismatches(demo_db, ids=ids) == []


def test_a_second_ctrl_c_during_the_stale_search_ends_the_children_too(demo_db):
    """run starts its children before a stale job's search; a second Ctrl+C while the
    search waits must still end the job, and its children with it. The search waits
    here on a lock another session holds on killmails, which nothing before the
    search reads."""
    _run(demo_db, "--mode", "null")
    with psycopg.connect(demo_db) as locker:
        locker.execute("LOCK TABLE killmails IN ACCESS EXCLUSIVE MODE")
        job = cli_popen("run", "--mode", "stale", "--procs", "2", url=demo_db)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                len(child_pids(job.pid)) == 2 and _waiting_on_a_lock(demo_db)
            ):
                time.sleep(0.2)
            children = child_pids(job.pid)
            assert len(children) == 2, "the children did not start before the search"
            assert _waiting_on_a_lock(demo_db), "the search is not waiting on the lock"
            job.send_signal(signal.SIGINT)
            time.sleep(0.5)
            job.send_signal(signal.SIGINT)
            out, err = job.communicate(timeout=30)
        finally:
            if job.poll() is None:
                job.kill()
                job.communicate()
    assert "Traceback" not in err, err
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]


def _waiting_on_a_lock(url: str) -> bool:
    rows = _rows(
        url,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        "   AND application_name LIKE 'bulk-backfill%%'",
    )
    return rows[0][0] > 0
