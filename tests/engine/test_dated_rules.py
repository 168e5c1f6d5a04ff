"""The rule sets' fixed prices, price overrides (precedence, inclusive and open ends, overlaps),
seed left as it was, unusable prices, and the per-connection cache: on both schemas, the engine
path (the price book + pricing) and each rule set's SQL reference against expectations
written here."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from bulk.audit import reference, verify
from bulk.engine import batch, book
from bulk.engine import rules as rule_sets
from bulk.engine.batch import Valuation
from bulk.engine.session import Session
from bulk.errors import UserError
from tests import dated as helpers
from tests.conftest import mismatches

MODULE, PRICELESS, SKIN, SKIN_OVERRIDDEN = 1001, 1002, 2001, 2002
CAPSULE, GENOLUTION_CAPSULE, ORE_A, ORE_B = 670, 33328, 3001, 3002
BLUEPRINT, FRIGATE, RANGED, TIES, SPOTTY = 4001, 5001, 1003, 1004, 1005
TYPES = [
    (SPOTTY, 500, 7, "Module"),
    (MODULE, 500, 7, "Module"),
    (PRICELESS, 500, 7, "Module"),
    (RANGED, 500, 7, "Module"),
    (TIES, 500, 7, "Module"),
    (SKIN, 1950, 91, "SKINs"),
    (SKIN_OVERRIDDEN, 1950, 91, "SKINs"),
    (CAPSULE, 29, 6, "Ship"),
    (GENOLUTION_CAPSULE, 29, 6, "Ship"),
    (ORE_A, 4513, 25, "Asteroid"),
    (ORE_B, 4759, 25, "Asteroid"),
    (BLUEPRINT, 600, 9, "Blueprint"),
    (FRIGATE, 25, 6, "Ship"),
]
YEAR = [date(2020, 1, 1) + timedelta(days=k) for k in range(366)]


def _average(type_id: int, day: date) -> float:
    """A daily average that moves, with odd decimals, so each rule set gives its own price."""
    return {MODULE: 100.0, RANGED: 40.0, TIES: 60.0, BLUEPRINT: 1e6, FRIGATE: 2.5e6}[type_id] + (
        day.toordinal() % 11
    ) * 1.005


HISTORY = {t: {d: _average(t, d) for d in YEAR} for t in (MODULE, RANGED, TIES, BLUEPRINT, FRIGATE)}
# Days without trades: an average of 0 or NULL is no price, but still a history row.
HISTORY[SPOTTY] = {
    d: 0.0 if d.day % 5 == 0 else None if d.day % 7 == 0 else 3.335 + d.day / 1000 for d in YEAR
}
# The fixed types have history too: a fixed price must win over it.
for _fixed in (SKIN, CAPSULE, ORE_A):
    HISTORY[_fixed] = {d: 123456.78 for d in YEAR}

# (type, valid_from, valid_to, price), inserted in this order (ids ascending)
OVERRIDES = [
    (MODULE, date(2020, 3, 1), date(2020, 3, 31), 500.0),
    (MODULE, date(2020, 3, 15), None, 700.0),
    (MODULE, None, date(2020, 2, 10), 300.0),
    (RANGED, None, None, 900.0),
    (RANGED, date(2020, 6, 1), date(2020, 6, 1), 950.0),
    (TIES, date(2020, 7, 1), None, 1000.0),
    (TIES, date(2020, 7, 1), None, 1100.0),
    (SKIN_OVERRIDDEN, None, None, 5000.0),
    (CAPSULE, date(2020, 12, 1), None, 20000.0),
    (BLUEPRINT, None, None, 7.0),
]


def _override(type_id: int, day: date) -> Decimal | None:
    """Written out by hand from OVERRIDES: the rule's expectations, not a copy of its code."""
    if type_id == MODULE:
        if day <= date(2020, 2, 10):
            return Decimal("300.00")
        if date(2020, 3, 1) <= day < date(2020, 3, 15):
            return Decimal("500.00")
        if day >= date(2020, 3, 15):
            return Decimal("700.00")  # from 3-15 both cover it: the later start wins
        return None
    if type_id == RANGED:
        return Decimal("950.00") if day == date(2020, 6, 1) else Decimal("900.00")
    if type_id == TIES:
        return Decimal("1100.00") if day >= date(2020, 7, 1) else None  # same start: higher id
    if type_id == SKIN_OVERRIDDEN:
        return Decimal("5000.00")
    if type_id == CAPSULE:
        return Decimal("20000.00") if day >= date(2020, 12, 1) else None
    if type_id == BLUEPRINT:
        return Decimal("7.00")
    return None


FIXED = {
    SKIN: Decimal("0.01"),
    SKIN_OVERRIDDEN: Decimal("0.01"),
    CAPSULE: Decimal("10000"),
    GENOLUTION_CAPSULE: Decimal("10000"),
    ORE_A: Decimal("200"),
    ORE_B: Decimal("200"),
}


def _expected_unit(rules: str, type_id: int, kill_time: datetime, *, flag=0, singleton=0):
    if singleton == 2:
        return Decimal("0.01")  # a blueprint copy, whatever its type's price
    if rules == "zkillboard" and flag == 179:
        return Decimal("0.01")  # in the frigate escape bay
    day = (
        (kill_time - timedelta(seconds=3601)).date() if rules == "zkillboard" else kill_time.date()
    )
    override = _override(type_id, day)
    if override is not None:
        return override
    if type_id in FIXED:
        return FIXED[type_id]
    averages = HISTORY.get(type_id, {})
    if rules == "evekill":
        before = [d for d, a in averages.items() if d <= day and a is not None and a > 0]
        return helpers.unit(averages[max(before)]) if before else Decimal("0.01")
    return helpers.zkillboard_price(averages, kill_time)[0]


def _noon(day: date, seconds: int = 12 * 3600) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(seconds=seconds)


def _killmails() -> list[tuple[datetime, int, list[tuple]]]:
    """(kill time, ship, items (type, flag, destroyed, dropped, singleton))."""
    out = []
    # overrides: every boundary of OVERRIDES, at noon, and just after midnight
    # (zkillboard's price date is then the day before)
    days = [
        date(2020, 1, 5),  # SPOTTY: 0 on the day itself
        date(2020, 1, 7),  # SPOTTY: NULL
        date(2020, 1, 10),
        date(2020, 1, 14),
        date(2020, 1, 21),
        date(2020, 1, 28),
        date(2019, 12, 31),  # before the history: an open start still covers it
        date(2020, 1, 15),
        date(2020, 2, 10),
        date(2020, 2, 11),
        date(2020, 3, 1),
        date(2020, 3, 14),
        date(2020, 3, 15),
        date(2020, 3, 31),
        date(2020, 4, 1),
        date(2020, 5, 31),
        date(2020, 6, 1),
        date(2020, 6, 2),
        date(2020, 6, 30),
        date(2020, 7, 1),
        date(2020, 12, 1),
    ]
    for day in days:
        for seconds in (12 * 3600, 1800):
            items = [
                (MODULE, 11, 2, 1, 0),
                (RANGED, 12, 1, 0, 0),
                (TIES, 13, 0, 3, 0),
                (SKIN, 5, 1, 0, 0),
                (SKIN_OVERRIDDEN, 5, 0, 1, 0),
                (ORE_A, 5, 1000, 0, 0),
                (ORE_B, 5, 0, 10, 0),
                (GENOLUTION_CAPSULE, 5, 1, 0, 0),
                (BLUEPRINT, 5, 1, 0, 0),  # an original: its price (here an override)
                (BLUEPRINT, 5, 3, 2, 2),  # copies
                (FRIGATE, 179, 1, 0, 0),  # in the escape bay
                (FRIGATE, 5, 0, 1, 0),
                (PRICELESS, 5, 4, 0, 0),  # nothing at all: the fallback
                (SPOTTY, 5, 1000, 7, 0),
                (MODULE, 0, None, None, 0),  # NULL quantities count 0
            ]
            out.append((_noon(day, seconds), CAPSULE, items))
    out.append((_noon(date(2020, 8, 1)), FRIGATE, [(FRIGATE, 5, 1, 0, 0)]))
    out.append((_noon(date(2020, 8, 1)), PRICELESS, []))
    out.append((_noon(date(2020, 12, 5)), CAPSULE, []))
    return out


def _expected(rules: str, kills) -> helpers.Values:
    out = {}
    for n, (kill_time, ship, items) in enumerate(kills, start=1):
        destroyed = _expected_unit(rules, ship, kill_time)
        dropped = Decimal(0)
        for type_id, flag, qd, qr, singleton in items:
            each = _expected_unit(rules, type_id, kill_time, flag=flag, singleton=singleton)
            destroyed += each * (qd or 0)
            dropped += each * (qr or 0)
        out[n] = (destroyed + dropped, destroyed, dropped)
    return out


def _world(url: str, kind: str, kills) -> None:
    with psycopg.connect(url) as conn:
        helpers.create_history_tables(conn)
        helpers.insert_types(conn, kind, TYPES)
        for type_id, averages in HISTORY.items():
            helpers.insert_history(conn, type_id, sorted(averages.items()))
        for type_id, valid_from, valid_to, price in OVERRIDES:
            helpers.insert_override(conn, type_id, price, valid_from, valid_to)
        for n, (kill_time, ship, items) in enumerate(kills, start=1):
            helpers.insert_killmail(conn, kind, n, kill_time, ship, items)


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_fixed_prices_and_overrides(schema_db, schema_kind, rules):
    kills = _killmails()
    _world(schema_db, schema_kind, kills)
    expected = _expected(rules, kills)
    engine, ref = helpers.both_ways(schema_db, sorted(expected), rules)
    assert ref == expected
    assert engine == expected
    # the two rule sets differ where they should: the escape bay, the window, midnight
    other = _expected("zkillboard" if rules == "evekill" else "evekill", kills)
    assert other != expected


@pytest.mark.both_schemas
def test_seed_ignores_history_and_overrides(schema_db, schema_kind):
    """seed is today's rule: market_prices (here none), a capsule ship 10 ISK, blueprint copies
    of category 'Blueprint' 0.01 ISK; the history and overrides change nothing."""
    kills = _killmails()
    _world(schema_db, schema_kind, kills)
    expected = {}
    for n, (_, ship, items) in enumerate(kills, start=1):
        destroyed = Decimal(10) if ship == CAPSULE else Decimal(0)
        dropped = Decimal(0)
        for type_id, _, qd, qr, singleton in items:
            each = Decimal("0.01") if singleton == 2 and type_id == BLUEPRINT else Decimal(0)
            destroyed += each * (qd or 0)
            dropped += each * (qr or 0)
        expected[n] = (destroyed + dropped, destroyed, dropped)
    assert helpers.reference_values(schema_db, None, "seed") == expected
    with psycopg.connect(schema_db, autocommit=True) as conn:
        batch.process_batch(Session(conn), list(expected), "all")
    assert mismatches(schema_db) == []
    assert mismatches(schema_db, rules="seed") == []


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_verify_audits_a_dated_rule_set_exactly(schema_db, schema_kind, rules):
    kills = _killmails()
    _world(schema_db, schema_kind, kills)
    values = helpers.engine_values(schema_db, range(1, len(kills) + 1), rules)
    with psycopg.connect(schema_db) as conn:
        for kid, (total, destroyed, dropped) in values.items():
            conn.execute(
                "UPDATE killmails SET total_value = %s, destroyed_value = %s, dropped_value = %s"
                " WHERE killmail_id = %s",
                [float(total), float(destroyed), float(dropped), kid],
            )
    assert mismatches(schema_db, rules=rules) == []
    other = "zkillboard" if rules == "evekill" else "evekill"
    assert mismatches(schema_db, rules=other) != []  # the audit tells the rule sets apart
    assert mismatches(schema_db) != []  # and from seed
    with psycopg.connect(schema_db, autocommit=True) as conn:
        report = verify.verify(conn, sample=None, rules=rules)
        assert report.ok and report.checked == len(kills) and report.rules == rules
        conn.execute(
            "UPDATE killmails SET dropped_value = dropped_value + 0.01 WHERE killmail_id = 3"
        )
        found = reference.mismatches(conn, None, rules=rules)
        assert [m.killmail_id for m in found] == [3]


def test_verify_of_a_dated_rule_set_needs_the_history_tables(schema_db):
    with psycopg.connect(schema_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")  # init-db's
        with pytest.raises(UserError, match="lacks market_price_history and price_overrides"):
            verify.verify(conn, rules="evekill")
        with pytest.raises(UserError, match="unknown rules 'zkb'"):
            verify.verify(conn, rules="zkb")


BAD_NAN, BAD_HUGE, BAD_INFINITE, GOOD = 6001, 6002, 6003, 6004


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_an_unusable_price_fails_only_the_loads_that_use_it(schema_db, schema_kind, rules):
    day = date(2021, 5, 5)
    noon = _noon(day)
    with psycopg.connect(schema_db) as conn:
        helpers.create_history_tables(conn)
        helpers.insert_history(conn, BAD_NAN, [(day, float("nan"))])
        helpers.insert_history(conn, BAD_HUGE, [(day, 1e300)])
        helpers.insert_history(conn, GOOD, [(day, 12.345)])
        helpers.insert_override(conn, BAD_INFINITE, float("inf"))
        helpers.insert_killmail(conn, schema_kind, 1, noon, GOOD, [(BAD_NAN, 5, 1, 0, 0)])
        helpers.insert_killmail(conn, schema_kind, 2, noon, BAD_HUGE, [])
        helpers.insert_killmail(conn, schema_kind, 3, noon, GOOD, [(BAD_INFINITE, 5, 0, 1, 0)])
        helpers.insert_killmail(conn, schema_kind, 4, noon, GOOD, [(GOOD, 5, 2, 0, 0)])
        # a blueprint copy of a type whose price is unusable uses no price
        helpers.insert_killmail(conn, schema_kind, 5, noon, GOOD, [(BAD_HUGE, 5, 1, 0, 2)])
    price_day = (noon - timedelta(seconds=3601)).date() if rules == "zkillboard" else day
    with psycopg.connect(schema_db, autocommit=True) as conn:
        # building never fails: the bad prices are kept as bad
        assert book.build_for_batch(conn, rules, "sell", [1, 2, 3, 4, 5]) > 0
        for ids in ([1, 4], [2], [3, 5]):
            with pytest.raises(
                (psycopg.errors.NumericValueOutOfRange, psycopg.errors.FeatureNotSupported)
            ):
                batch.load_lines(conn, ids, "all", rules)
        lines = batch.load_lines(conn, [4, 5], "all", rules)
        assert sorted(lines[:, 2].tolist()) == [1, 1235, 1235, 1235]  # 12.345 -> 12.35 ISK
        bad = batch._unusable_prices(conn, [1, 2, 3, 4, 5], "all", rules, "sell")
        assert [(t, d) for t, d, _ in bad] == [
            (BAD_NAN, price_day),
            (BAD_HUGE, price_day),
            (BAD_INFINITE, price_day),
        ]
        assert bad[0][2].is_nan() and bad[1][2] == Decimal("1e300")
        assert bad[2][2] == Decimal("Infinity")
        assert "is not a number" in rule_sets.describe_unusable(rules, None, *bad[0])
        assert batch._unusable_prices(conn, [4, 5], "all", rules, "sell") == []


def test_each_price_is_built_once_shared_and_built_again_when_stale(schema_db, schema_kind):
    day = date(2021, 5, 5)
    with psycopg.connect(schema_db) as conn:
        helpers.create_history_tables(conn)
        helpers.insert_history(conn, GOOD, [(day, 10.0)])
        helpers.insert_killmail(conn, schema_kind, 1, _noon(day), GOOD, [(GOOD, 5, 1, 0, 0)])
        helpers.insert_killmail(conn, schema_kind, 2, _noon(day), GOOD, [])
    with psycopg.connect(schema_db, autocommit=True) as conn:
        # a load that finds a price missing says so, and never prices it 0
        assert batch._load(conn, [1], "all", "evekill", "sell") == (None, 2)
        assert book.build_for_batch(conn, "evekill", "sell", [1, 2]) == 1  # one (type, date)
        assert book.build_for_batch(conn, "evekill", "sell", [1, 2]) == 0
        assert book.build_for_batch(conn, "zkillboard", "sell", [1, 2]) == 1  # its own rows
        # a change behind the price commands is not seen ...
        conn.execute("UPDATE market_price_history SET average = 20")
        assert batch.load_lines(conn, [1], "all", "evekill")[:, 2].tolist() == [1000, 1000]
    with psycopg.connect(schema_db, autocommit=True) as other:
        # ... by any connection: the book is shared
        assert book.build_for_batch(other, "evekill", "sell", [1, 2]) == 0
        assert batch.load_lines(other, [1], "all", "evekill")[:, 2].tolist() == [1000, 1000]
        # until a change marks the rows it reaches stale, as the price commands do
        with other.transaction():
            assert book.invalidate_history(other, {GOOD: day}) == 2  # evekill's and zkillboard's
        assert batch.load_lines(other, [1], "all", "evekill")[:, 2].tolist() == [2000, 2000]


def test_zkillboards_walk_limit_counts_the_history_of_the_build(schema_db, schema_kind):
    """The walk's day limit (as many days as the type has history rows) is counted in the
    statement that builds the price, so a history change reaches it once it marks it stale."""
    day = date(2021, 5, 5)
    with psycopg.connect(schema_db) as conn:
        helpers.create_history_tables(conn)
        # two rows ten days apart: the walk stops after two days, with the newest alone
        helpers.insert_history(conn, GOOD, [(day - timedelta(days=10), 50.0), (day, 100.0)])
        helpers.insert_killmail(conn, schema_kind, 1, _noon(day), GOOD, [])
    with psycopg.connect(schema_db, autocommit=True) as conn:
        assert batch.load_lines(conn, [1], "all", "zkillboard")[:, 2].tolist() == [100_00]
        # nine rows long before: eleven days of walk reach the older price, (50 + 100) / 2
        old = [(date(2019, 1, 1) + timedelta(days=k), 1.0) for k in range(9)]
        helpers.insert_history(conn, GOOD, old)
        assert batch.load_lines(conn, [1], "all", "zkillboard")[:, 2].tolist() == [100_00]
        with conn.transaction():
            book.invalidate_history(conn, {GOOD: old[0][0]})
        assert batch.load_lines(conn, [1], "all", "zkillboard")[:, 2].tolist() == [75_00]
    averages = {day - timedelta(days=10): 50.0, day: 100.0, **dict(old)}
    assert helpers.zkillboard_price(averages, _noon(day))[0] == Decimal("75.00")
    assert helpers.reference_values(schema_db, [1], "zkillboard")[1][0] == Decimal("75.00")


@pytest.mark.both_schemas
def test_only_killmails_matching_the_mode_are_loaded(schema_db, schema_kind):
    day = date(2021, 5, 5)
    with psycopg.connect(schema_db) as conn:
        helpers.create_history_tables(conn)
        helpers.insert_history(conn, GOOD, [(day, 10.0)])
        for n in (1, 2, 3):
            helpers.insert_killmail(conn, schema_kind, n, _noon(day), GOOD, [(GOOD, 5, 1, 0, 0)])
        helpers.insert_killmail(conn, schema_kind, 4, _noon(day), None, [])  # no victim
        conn.execute("UPDATE killmails SET total_value = 0 WHERE killmail_id = 2")
        conn.execute("UPDATE killmails SET total_value = 5 WHERE killmail_id = 3")
    with psycopg.connect(schema_db, autocommit=True) as conn:
        for mode, ids in (("null", {1, 4}), ("zero", {2}), ("all", {1, 2, 3, 4})):
            lines = batch.load_lines(conn, [1, 2, 3, 4], mode, "zkillboard")
            assert set(lines[:, 0].tolist()) == ids, mode
        lines = batch.load_lines(conn, [4], "all", "evekill")
        assert lines.tolist() == [[4, 2, 0, 1, 0]]  # line 2: no victim


@pytest.mark.both_schemas
def test_a_bad_price_fails_its_batch_and_the_session_values_the_next(schema_db, schema_kind):
    """A batch whose price cannot be cents fails naming it, and the session values the
    next batch; the book's rows were built in transactions of their own. The engine
    values on autocommit connections only: each write is its own transaction."""
    day = date(2021, 5, 5)
    with psycopg.connect(schema_db) as conn:
        helpers.create_history_tables(conn)
        helpers.insert_history(conn, BAD_HUGE, [(day, 1e300)])
        helpers.insert_history(conn, GOOD, [(day, 12.345)])
        helpers.insert_killmail(conn, schema_kind, 1, _noon(day), GOOD, [(BAD_HUGE, 5, 1, 0, 0)])
        helpers.insert_killmail(conn, schema_kind, 2, _noon(day), GOOD, [])
    with psycopg.connect(schema_db) as conn:  # not autocommit
        with pytest.raises(ValueError, match="autocommit"):
            Session(conn)
    with psycopg.connect(schema_db, autocommit=True) as conn:
        session, job = Session(conn), Valuation(rules="evekill")
        with pytest.raises(
            batch.PriceOutOfRange, match=f"type {BAD_HUGE} on {day} is 1.00000e\\+300 ISK"
        ):
            batch.process_batch(session, [1, 2], "all", job)
        assert batch.process_batch(session, [2], "all", job).updated == 1
    assert helpers.reference_values(schema_db, [2], "evekill")[2][0] == Decimal("12.35")
    with psycopg.connect(schema_db) as conn:
        assert (
            conn.execute("SELECT total_value FROM killmails WHERE killmail_id = 2").fetchone()[0]
            == 12.35
        )
