"""zKillboard's market window on the two long real ESI series (../shared/realdata/history: an
Orca, 28606, and Tritanium, 34), whole and cut into gaps, sparse and zero-average variants:
34 prices trimmed, 7-33, fewer than 7, none, the walk's day limit, the price date's own lower
average, and kills around midnight. On both schemas, the engine path and the rule set's SQL
reference are compared with a Decimal oracle that replays zKillboard's loop here."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta

import psycopg
import pytest

from tests import dated
from tests.conftest import REALDATA
from tests.realdata import needs_realdata

pytestmark = needs_realdata

HISTORY = REALDATA / "history"
ORCA, TRITANIUM = 28606, 34
GAPPY, SPARSE, ZEROS, NOTHING = 990001, 990002, 990003, 990004


def _orca() -> list[tuple]:
    rows = json.loads((HISTORY / "esi_history_10000002_28606_2019-01-17.json").read_text())
    return [
        (
            date.fromisoformat(r["date"]),
            r["average"],
            r["highest"],
            r["lowest"],
            r["volume"],
            r["order_count"],
        )
        for r in rows
    ]


def _tritanium() -> list[tuple]:
    with open(HISTORY / "esi_history_10000002_34_2025-01.csv", newline="") as fh:
        return [
            (
                date.fromisoformat(r["date"]),
                float(r["average"]),
                float(r["highest"]),
                float(r["lowest"]),
                int(r["volume"]),
                int(r["order_count"]),
            )
            for r in csv.DictReader(fh)
        ]


def _series() -> dict[int, list[tuple]]:
    orca, trit = _orca(), _tritanium()
    hole = (date(2018, 5, 10), date(2018, 5, 25))
    gappy = [r for r in orca if r[0].day % 3 and not hole[0] <= r[0] <= hole[1]]
    sparse = [r for r in trit if r[0] >= date(2024, 1, 1) and r[0].toordinal() % 7 == 0][:12]
    zeros = [
        (r[0], 0.0 if r[0].day <= 4 else None if r[0].day <= 6 else r[1], *r[2:]) for r in orca
    ]
    return {ORCA: orca, TRITANIUM: trit, GAPPY: gappy, SPARSE: sparse, ZEROS: zeros}


def _kills(series: dict[int, list[tuple]]) -> list[tuple[int, datetime]]:
    noon = timedelta(hours=12)

    def at(d: date, delta: timedelta = noon) -> datetime:
        return datetime.combine(d, datetime.min.time()) + delta

    o, t = date(2017, 12, 1), date(2023, 12, 1)  # first days of the two series
    kills = []
    for type_id, first in ((ORCA, o), (TRITANIUM, t), (GAPPY, o), (ZEROS, o)):
        for days in (-1, 0, 3, 5, 6, 7, 19, 31, 32, 33, 34, 40, 200, 460):
            kills.append((type_id, at(first + timedelta(days=days))))
    # around midnight: kill time - 3,601 s decides the price date
    for type_id, d in ((ORCA, date(2018, 6, 16)), (TRITANIUM, date(2024, 6, 16))):
        for delta in (
            timedelta(seconds=1),
            timedelta(hours=1),
            timedelta(hours=1, seconds=1),
            timedelta(hours=23, minutes=59, seconds=59),
        ):
            kills.append((type_id, at(d, delta)))
    for d in (date(2024, 1, 1), date(2024, 2, 20), date(2024, 3, 1), date(2024, 6, 1)):
        kills.append((SPARSE, at(d)))
    kills.append((NOTHING, at(date(2020, 1, 1))))
    # the lower-day clause: every day of a stretch, so both outcomes are met
    for type_id, first in ((ORCA, date(2018, 3, 1)), (TRITANIUM, date(2024, 3, 1))):
        kills += [(type_id, at(first + timedelta(days=k))) for k in range(60)]
    return kills


@pytest.mark.both_schemas
def test_the_zkillboard_window_on_long_real_series(schema_db, schema_kind):
    series = _series()
    kills = _kills(series)
    expected, seen = {}, []
    with psycopg.connect(schema_db) as conn:
        dated.create_history_tables(conn)
        for type_id, rows in series.items():
            dated.insert_history(conn, type_id, rows)
        for n, (type_id, kill_time) in enumerate(kills, start=1):
            # the hull, and the type again as an item: 2 destroyed, 1 dropped
            dated.insert_killmail(conn, schema_kind, n, kill_time, type_id, [(type_id, 5, 2, 1, 0)])
            price, how = dated.zkillboard_price(
                {r[0]: r[1] for r in series.get(type_id, [])}, kill_time
            )
            expected[n] = (price * 4, price * 3, price)
            seen.append(how)

    engine, reference = dated.both_ways(schema_db, sorted(expected), "zkillboard")
    assert reference == expected
    assert engine == expected

    # Every part of the rule was met, not just some.
    sizes = {h["n"] for h in seen}
    assert 34 in sizes and 0 in sizes
    assert any(7 <= s <= 33 for s in sizes) and any(1 <= s < 7 for s in sizes)
    assert {7, 33} <= sizes
    assert any(h["lower"] for h in seen) and any(not h["lower"] and h["n"] for h in seen)
    assert any(h["limited"] for h in seen)
