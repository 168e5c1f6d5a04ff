"""`prices fetch` and `prices import` on the replaced system's schema, and still on the tool's.

killreport's market_prices (tests/schemas/killreport.sql) has prices NOT NULL
DEFAULT 0, an updated_at with no default and a type_id that references types:
a NULL price or a type that `types` lacks is refused by the database there.
Expected numbers are worked out here from the canned books and from the real
snapshot file itself, never from what the tool printed.
"""

import json

import psycopg
import pytest

from tests.conftest import REALDATA, cli
from tests.realdata import read_types
from tests.test_prices import (  # noqa: F401 (canned_esi is a fixture)
    _BOOK,
    _db_now,
    _prices,
    canned_esi,
)

_BUY_ONLY = 99001  # a book with buy orders and no sell order, added to the canned ESI
_BUY_ONLY_BOOK = [
    [
        {"is_buy_order": True, "price": 6.0, "volume_remain": 2},
        {"is_buy_order": True, "price": 7.0, "volume_remain": 5},
    ]
]
_OLD = "2020-01-01 00:00:00"


def _replaced_system(type_id):
    """The replaced worker's rules: best bid, best ask, 0 for a missing side, (buy + sell) / 2."""
    orders = [o for page in _BOOK[type_id] for o in page]
    buys = [o["price"] for o in orders if o["is_buy_order"]]
    sells = [o["price"] for o in orders if not o["is_buy_order"]]
    buy = max(buys) if buys else 0
    sell = min(sells) if sells else 0
    return buy, sell, (buy + sell) / 2, sum(o["volume_remain"] for o in orders)


def _add_types(url, type_ids):
    """Rows in killreport's types (name, group_id and updated_at are NOT NULL there)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY types (id, name, group_id, updated_at) FROM STDIN") as cp:
            for type_id in type_ids:
                cp.write_row((type_id, f"type {type_id}", 1, _OLD))


def _fetch(url, esi_url, type_ids):
    args = ["prices", "fetch", "--esi-url", esi_url, "--timeout", "5", "--concurrency", "4"]
    for type_id in type_ids:
        args += ["--type-id", str(type_id)]
    return cli(*args, url=url, timeout=60)


def test_fetch_on_killreport_stores_the_replaced_systems_numbers(
    killreport_db,
    canned_esi,  # noqa: F811
    monkeypatch,
):
    esi_url, _ = canned_esi
    monkeypatch.setitem(_BOOK, _BUY_ONLY, _BUY_ONLY_BOOK)
    # 670 is left out of types: its price row would break the foreign key.
    _add_types(killreport_db, [34, 35, 587, _BUY_ONLY])
    with psycopg.connect(killreport_db) as conn:
        conn.execute(f"INSERT INTO market_prices VALUES (587, 1, 2, 1.5, 9, '{_OLD}', '{_OLD}')")
    started = _db_now(killreport_db)
    out = _fetch(killreport_db, esi_url, [34, 35, 587, 670, _BUY_ONLY])
    finished = _db_now(killreport_db)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    stored = _prices(killreport_db)
    assert set(stored) == {34, 35, 587, _BUY_ONLY}
    for type_id in (34, 35, _BUY_ONLY):
        assert stored[type_id][:4] == pytest.approx(_replaced_system(type_id), abs=0), type_id
        assert started <= stored[type_id][4] <= finished
    assert stored[35][:3] == (0, 11.5, 5.75)  # no buy side: 0, average halves the sell
    assert stored[_BUY_ONLY][:3] == (7.0, 0, 3.5)  # no sell side
    assert stored[587] == (1, 2, 1.5, 9, stored[587][4]) and stored[587][4].year == 2020
    assert "no orders: 587" in out.stdout
    lines = out.stdout.splitlines()
    assert "not in types: 670" in lines
    assert any(line.split()[:4] == ["not", "in", "types", "1"] for line in lines)


def test_import_of_the_real_snapshot_on_killreport(killreport_db, realdata_present):
    entries = json.loads((REALDATA / "prices.json").read_text())
    priced = {e["type_id"]: e["average_price"] for e in entries if "average_price" in e}
    adjusted_only = sorted(e["type_id"] for e in entries if "average_price" not in e)
    assert len(adjusted_only) == len(entries) - len(priced) > 0
    # Leave 15 priced types out of `types`; keep an old price for an adjusted-only type.
    left_out = sorted(priced)[::100][:15]
    kept = adjusted_only[0]
    known = {int(t["type_id"]) for t in read_types()} - set(left_out)
    _add_types(killreport_db, sorted(known | {kept}))
    with psycopg.connect(killreport_db) as conn:
        conn.execute(
            f"INSERT INTO market_prices VALUES ({kept}, 5, 123.45, 60, 8, '{_OLD}', '{_OLD}')"
        )
    path = REALDATA / "prices.json"
    out = cli("prices", "import", str(path), "--average-as", "sell", url=killreport_db)
    assert out.returncode == 0, out.stderr
    written = {t: p for t, p in priced.items() if t in known}
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"imported {len(written):,} price rows from {path} into sell (updated_at set to now);"
        f" skipped {len(adjusted_only)} entries without average_price"
    )
    assert any(line.split()[:4] == ["not", "in", "types", "15"] for line in lines)
    shown = ", ".join(map(str, left_out[:10]))
    assert f"not in types: {shown}, ... (5 more)" in lines
    stored = _prices(killreport_db)
    assert set(stored) == set(written) | {kept}
    assert all(stored[t][:4] == (0, p, 0, 0) for t, p in written.items())
    assert stored[kept] == (5, 123.45, 60, 8, stored[kept][4]) and stored[kept][4].year == 2020


def test_a_csv_giving_only_sell_inserts_a_new_type_on_killreport(killreport_db, tmp_path):
    _add_types(killreport_db, [34, 999999])
    with psycopg.connect(killreport_db) as conn:
        conn.execute(f"INSERT INTO market_prices VALUES (34, 4, 5, 4.5, 100, '{_OLD}', '{_OLD}')")
    path = tmp_path / "prices.csv"
    # Empty volume cells: not given, so no NULL reaches the NOT NULL column.
    path.write_text("type_id,sell,volume\n999999,7.5,\n34,5.25,\n888888,1,1\n")
    started = _db_now(killreport_db)
    out = cli("prices", "import", str(path), url=killreport_db)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("imported 2 price rows")
    assert "not in types: 888888" in out.stdout.splitlines()
    with psycopg.connect(killreport_db) as conn:
        new = conn.execute(
            "SELECT buy, sell, average, volume, created_at >= %s, updated_at >= %s"
            " FROM market_prices WHERE type_id = 999999",
            [started, started],
        ).fetchone()
    assert new == (0, 7.5, 0, 0, True, True)
    stored = _prices(killreport_db)
    assert stored[34][:4] == (4, 5.25, 4.5, 100) and stored[34][4] >= started
    assert 888888 not in stored


def test_the_tools_own_schema_still_fetches_and_imports(
    schema_db,
    canned_esi,  # noqa: F811
    monkeypatch,
    tmp_path,
    realdata_present,
):
    """Nullable prices, no created_at, no foreign key: nothing is left out for want of a type."""
    esi_url, _ = canned_esi
    monkeypatch.setitem(_BOOK, _BUY_ONLY, _BUY_ONLY_BOOK)
    out = _fetch(schema_db, esi_url, [34, 35, _BUY_ONLY])
    assert out.returncode == 0, out.stderr
    stored = _prices(schema_db)
    assert {t: stored[t][:4] for t in stored} == {
        t: pytest.approx(_replaced_system(t), abs=0) for t in (34, 35, _BUY_ONLY)
    }
    assert "not in types" not in out.stdout

    entries = json.loads((REALDATA / "prices.json").read_text())
    priced = {e["type_id"]: e["average_price"] for e in entries if "average_price" in e}
    kept = next(e["type_id"] for e in entries if "average_price" not in e)
    with psycopg.connect(schema_db) as conn:
        conn.execute(f"INSERT INTO market_prices VALUES ({kept}, 1, 2, 1.5, 9, '{_OLD}')")
    path = REALDATA / "prices.json"
    out = cli("prices", "import", str(path), "--average-as", "sell", url=schema_db)
    assert out.returncode == 0, out.stderr
    skipped = len(entries) - len(priced)
    assert f"skipped {skipped} entries without average_price" in out.stdout
    stored = _prices(schema_db)
    assert all(stored[t][1] == p for t, p in priced.items())
    assert stored[kept][:4] == (1, 2, 1.5, 9)  # never overwritten with nothing

    csv = tmp_path / "prices.csv"
    csv.write_text("type_id,sell,volume\n999999,7.5,\n")
    out = cli("prices", "import", str(csv), url=schema_db)
    assert out.returncode == 0, out.stderr
    # Nullable columns without a default: a new row has NULL where nothing was given.
    assert _prices(schema_db)[999999][:4] == (None, 7.5, None, None)


def test_created_at_is_filled_where_it_has_no_default(schema_db, tmp_path):
    with psycopg.connect(schema_db) as conn:
        conn.execute("ALTER TABLE market_prices ADD COLUMN created_at timestamp NOT NULL")
    path = tmp_path / "prices.csv"
    path.write_text("type_id,sell\n34,4.5\n")
    out = cli("prices", "import", str(path), url=schema_db)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(schema_db) as conn:
        created, updated = conn.execute(
            "SELECT created_at, updated_at FROM market_prices WHERE type_id = 34"
        ).fetchone()
    assert created is not None and created == updated


def test_a_not_null_column_no_price_can_fill_is_one_line_and_nothing_written(schema_db, tmp_path):
    with psycopg.connect(schema_db) as conn:
        conn.execute("ALTER TABLE market_prices ADD COLUMN source text NOT NULL")
    path = tmp_path / "prices.csv"
    path.write_text("type_id,sell\n34,4.5\n")
    out = cli("prices", "import", str(path), url=schema_db)
    assert out.returncode != 0
    assert out.stderr.strip() == (
        "bulk-backfill: error: market_prices.source is NOT NULL with no default, and a new"
        " price row gives it no value; the write was rolled back"
    )
    assert _prices(schema_db) == {}
