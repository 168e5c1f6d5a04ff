"""The engine and the SQL reference on hand-made killmails whose values are worked out
here in Python Decimal arithmetic, straight from the valuation rules of docs/prices.md."""

from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from bulk.engine.batch import Valuation, process_batch
from bulk.engine.session import Session
from tests.conftest import mismatches, values

BLUEPRINT_CATEGORY = 9


def cents(price: float) -> Decimal:
    # PostgreSQL casts float8 to numeric with 15 significant digits, then rounds half away
    # from zero; Decimal(repr) of the 15-digit form does the same for these prices.
    return Decimal(f"{price:.15g}").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


PRICES = {
    100: 1234.565,  # its double is just above the half cent (1234.56500000000005457…)
    101: 0.125,
    102: 0.0,  # a zero price values at 0
    104: 99.994999,  # many decimals
    105: 1_000_000_000_000.0,  # a Keepstar-sized unit price
    670: 5_000_000.0,  # the capsule has a price row, but is worth 10 ISK as a ship
    200: 12_345_678.9,  # a blueprint type (original or copy)
    300: 55.5,
    # Doubles just below the half cent (1.005 is stored as 1.00499999999999989…):
    # exact rounding of the double would give the lower cent, but PostgreSQL casts
    # float8 to numeric with 15 significant digits (1.005), which rounds up.
    110: 1.005,
    111: 2.675,
    112: 0.015,
    113: 1.115,
    114: 12_345.675,
    115: 8.345,  # just above the half cent (8.34500000000000063…), for contrast
}
# 103 has no price row at all.
BELOW_HALF_CENT = {110: "1.01", 111: "2.68", 112: "0.02", 113: "1.12", 114: "12345.68"}
ABOVE_HALF_CENT = {100: "1234.57", 115: "8.35"}


def _setup(conn):
    conn.execute("INSERT INTO categories VALUES (6, 'Ship'), (7, 'Module'), (9, 'Blueprint')")
    conn.execute("INSERT INTO item_groups VALUES (1, 'g', 7), (2, 'bp', 9), (3, 'caps', 6)")
    conn.execute(
        "INSERT INTO types VALUES (100,'a',1),(101,'b',1),(102,'c',1),(103,'d',1),(104,'e',1),"
        "(105,'f',1),(670,'Capsule',3),(200,'bp',2),(300,'m',1),"
        "(110,'h1',1),(111,'h2',1),(112,'h3',1),(113,'h4',1),(114,'h5',1),(115,'h6',1)"
    )
    for type_id, price in PRICES.items():
        conn.execute(
            "INSERT INTO market_prices (type_id, buy, sell, average, volume, updated_at)"
            " VALUES (%s, %s, %s, %s, 1, now())",
            (type_id, price / 2, price, price * 0.75),
        )


# killmail_id -> (ship, [(type, qty_destroyed, qty_dropped, singleton)])
KILLMAILS = {
    1: (300, [(100, 1, None, 0), (101, None, 3, 0), (102, 5, None, 0), (103, 2, None, 0)]),
    2: (670, [(104, 3, 4, 0)]),  # a capsule loss
    3: (300, [(200, 7, None, 2), (200, None, 2, 0)]),  # a copy at 0.01, an original priced
    4: (300, [(300, None, None, 2)]),  # singleton 2 outside Blueprint: priced normally
    5: (105, [(105, 1000, 24, 0)]),  # far above 2^53 cents
    6: (103, []),  # unpriced ship, no items
    7: (300, [(100, 1, None, 0)]),  # no victim row: skipped, never guessed at
    # one unit of each half-cent price, destroyed or dropped, so a one-cent error shows
    9: (110, [(111, 1, None, 0), (112, None, 1, 0), (113, 1, None, 0), (114, None, 1, 0)]),
    10: (115, [(110, None, 1, 0)]),
}
# Sums beyond int64 cents: the batch is summed in Python integers and written
# through the numeric-text path instead of binary int8 parameters.
BEYOND_INT64 = {8: (300, [(105, 2_000_000_000, None, 0)])}


def _expected(ship, items):
    unit = {t: cents(p) for t, p in PRICES.items()}
    destroyed = Decimal("10.00") if ship == 670 else unit.get(ship, Decimal(0))
    dropped = Decimal(0)
    for type_id, qd, qr, singleton in items:
        price = Decimal("0.01") if (singleton == 2 and type_id == 200) else unit.get(type_id, 0)
        destroyed += price * (qd or 0)
        dropped += price * (qr or 0)
    return destroyed + dropped, destroyed, dropped


@pytest.fixture(params=["numpy", "sql"])
def engine(request):
    """Both engines follow the same rules to the cent."""
    return request.param


@pytest.fixture
def rules_db(schema_db):
    with psycopg.connect(schema_db) as conn:
        _setup(conn)
        for kid, (ship, items) in {**KILLMAILS, **BEYOND_INT64}.items():
            conn.execute(
                "INSERT INTO killmails (killmail_id, killmail_time) VALUES (%s, now())", [kid]
            )
            if kid != 7:
                conn.execute("INSERT INTO victims VALUES (%s, %s)", (kid, ship))
            for type_id, qd, qr, singleton in items:
                conn.execute(
                    "INSERT INTO killmail_items (killmail_id, item_type_id, flag,"
                    " quantity_destroyed, quantity_dropped, singleton) VALUES (%s,%s,5,%s,%s,%s)",
                    (kid, type_id, qd, qr, singleton),
                )
    return schema_db


def test_engine_values_follow_the_rules_to_the_cent(rules_db, engine):
    with psycopg.connect(rules_db, autocommit=True) as conn:
        result = process_batch(Session(conn), list(KILLMAILS), "null", Valuation(engine=engine))
    assert (result.updated, result.skipped, result.no_victim) == (8, 1, 1)
    assert result.no_victim_ids == [7]
    stored = values(rules_db)
    for kid, (ship, items) in KILLMAILS.items():
        if kid == 7:
            assert stored[kid] == (None, None, None)
            continue
        expected = tuple(float(v) for v in _expected(ship, items))
        assert stored[kid] == expected, kid
    assert mismatches(rules_db, ids=list(KILLMAILS)) == []


def test_half_cent_and_huge_values_are_exact(rules_db, engine):
    with psycopg.connect(rules_db, autocommit=True) as conn:
        process_batch(Session(conn), list(KILLMAILS), "null", Valuation(engine=engine))
    stored = values(rules_db)
    # 1234.565 -> 1234.57, 0.125 -> 0.13 (half away from zero)
    assert stored[1][0] == float(Decimal("55.50") + Decimal("1234.57") + 3 * Decimal("0.13"))
    total = Decimal("1000000000000.00") * 1025
    assert stored[5][0] == float(total) and total * 100 > 2**53


def test_doubles_just_below_the_half_cent_round_up_like_postgresql(rules_db, engine):
    half_cent = Decimal("0.005")
    for type_id, rounded in {**BELOW_HALF_CENT, **ABOVE_HALF_CENT}.items():
        price = PRICES[type_id]
        # What the double really holds, against the decimal the price was written as.
        below = Decimal(price) < Decimal(rounded) - half_cent
        assert below == (type_id in BELOW_HALF_CENT), (price, Decimal(price))
        assert cents(price) == Decimal(rounded)
    with psycopg.connect(rules_db, autocommit=True) as conn:
        in_sql = dict(
            conn.execute(
                "SELECT type_id, round(sell::numeric, 2) FROM market_prices"
                " WHERE type_id = ANY(%s)",
                [list(BELOW_HALF_CENT) + list(ABOVE_HALF_CENT)],
            ).fetchall()
        )
        assert in_sql == {t: Decimal(r) for t, r in {**BELOW_HALF_CENT, **ABOVE_HALF_CENT}.items()}
        process_batch(Session(conn), [9, 10], "null", Valuation(engine=engine))
    stored = values(rules_db)
    up = {t: Decimal(r) for t, r in BELOW_HALF_CENT.items()}
    destroyed, dropped = up[110] + up[111] + up[113], up[112] + up[114]
    assert stored[9] == (float(destroyed + dropped), float(destroyed), float(dropped))
    assert stored[10] == (float(Decimal("8.35") + up[110]), 8.35, float(up[110]))
    assert mismatches(rules_db, ids=[9, 10]) == []


def test_sums_beyond_int64_are_written_exactly(rules_db, engine):
    # One overflowing killmail among ordinary ones: the whole batch goes through the
    # numeric-text write, whose VALUES rows after the first carry no type casts and
    # mix small ints with numerics. Killmail 8 sits mid-batch, not in the typed row.
    batch = sorted({**KILLMAILS, **BEYOND_INT64})
    assert batch[0] != 8 and batch[-1] != 8
    with psycopg.connect(rules_db, autocommit=True) as conn:
        result = process_batch(Session(conn), batch, "null", Valuation(engine=engine))
    assert (result.updated, result.skipped) == (len(batch) - 1, 1)
    total, destroyed, dropped = _expected(*BEYOND_INT64[8])
    assert total * 100 > 2**63
    stored = values(rules_db)
    for kid, (ship, items) in {**KILLMAILS, **BEYOND_INT64}.items():
        if kid == 7:
            assert stored[kid] == (None, None, None)
            continue
        assert stored[kid] == tuple(float(v) for v in _expected(ship, items)), kid
    assert stored[8] == (float(total), float(destroyed), float(dropped))
    assert mismatches(rules_db, ids=batch) == []


def test_reference_catches_a_wrong_value(rules_db, engine):
    with psycopg.connect(rules_db, autocommit=True) as conn:
        process_batch(Session(conn), list(KILLMAILS), "null", Valuation(engine=engine))
        conn.execute(
            "UPDATE killmails SET dropped_value = dropped_value + 0.01 WHERE killmail_id = 1"
        )
    assert [m.killmail_id for m in mismatches(rules_db, ids=list(KILLMAILS))] == [1]


def test_price_column_choice(rules_db, engine):
    with psycopg.connect(rules_db, autocommit=True) as conn:
        process_batch(
            Session(conn), list(KILLMAILS), "null", Valuation(price_column="buy", engine=engine)
        )
    assert mismatches(rules_db, "buy", ids=list(KILLMAILS)) == []
    assert mismatches(rules_db, "sell", ids=list(KILLMAILS)) != []
