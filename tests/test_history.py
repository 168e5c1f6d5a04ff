"""`prices history import`, `prices override` and the history tables, on the real PostgreSQL.

Expected rows are read from the same files here with csv/json and Decimal,
independently of the importer's numpy reader.
"""

import bz2
import csv
import json
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.conftest import REALDATA, cli, skip_or_fail

HISTORY = REALDATA / "history"
ORCA_JSON = HISTORY / "esi_history_10000002_28606_2019-01-17.json"
TRITANIUM_CSV = HISTORY / "esi_history_10000002_34_2025-01.csv"
HEADER = "average,date,highest,lowest,order_count,volume,http_last_modified,region_id,type_id"


@pytest.fixture
def history_files():
    if not ORCA_JSON.exists() or not TRITANIUM_CSV.exists():
        skip_or_fail(f"real history files in {HISTORY} are absent")


def _history(url) -> dict:
    """(region, type, date) -> (average, highest, lowest, volume, order_count), as stored
    ({} where the table is missing: a failed first import leaves no table behind)."""
    if not _table_exists(url, "market_price_history"):
        return {}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT region_id, type_id, date, average, highest, lowest, volume, order_count"
            " FROM market_price_history"
        ).fetchall()
    return {r[:3]: r[3:] for r in rows}


def _table_exists(url, name) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


def _init(url):
    out = cli("init-db", url=url)
    assert out.returncode == 0, out.stderr


def _everef(path, rows, compress=False):
    text = HEADER + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    if compress:
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _day_rows(day, types, region=10000002, base=10.0):
    return [
        (base + t / 100, day, base + t / 50, base, t, t * 1000, f"{day}T11:01:17Z", region, t)
        for t in types
    ]


def _expected(rows):
    """What the rows of an EVE Ref file should become, worked out with Decimal."""
    return {
        (r[7], r[8], date.fromisoformat(r[1])): (
            float(Decimal(str(r[0]))),
            float(Decimal(str(r[2]))),
            float(Decimal(str(r[3]))),
            int(r[5]),
            int(r[4]),
        )
        for r in rows
    }


@pytest.mark.both_schemas
def test_init_db_creates_the_history_tables_and_leaves_the_killboard_alone(schema_db):
    def columns():
        with psycopg.connect(schema_db) as conn:
            return conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name NOT IN ('market_price_history', 'price_overrides')"
                " ORDER BY 1, 2"
            ).fetchall()

    with psycopg.connect(schema_db) as conn:
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")
    before = columns()
    out = cli("init-db", url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "created tables: market_price_history, price_overrides in" in out.stdout
    assert _table_exists(schema_db, "market_price_history")
    assert _table_exists(schema_db, "price_overrides")
    assert columns() == before
    again = cli("init-db", url=schema_db)
    assert again.returncode == 0 and "nothing changed" in again.stdout


@pytest.mark.both_schemas
def test_run_and_verify_never_create_the_history_tables(demo_db):
    with psycopg.connect(demo_db) as conn:
        conn.execute("DROP TABLE IF EXISTS market_price_history, price_overrides")
    for args in (["run", "--limit", "200"], ["verify", "--sample", "50"], ["status", "--no-queue"]):
        out = cli(*args, url=demo_db)
        assert out.returncode == 0, (args, out.stderr)
    assert not _table_exists(demo_db, "market_price_history")
    assert not _table_exists(demo_db, "price_overrides")


@pytest.mark.both_schemas
def test_everef_files_plain_and_bz2_are_imported(schema_db, tmp_path):
    first = _day_rows("2025-01-01", [34, 35, 36]) + _day_rows("2025-01-01", [34], region=10000043)
    second = _day_rows("2025-01-02", [34, 35], base=11.5)
    a = _everef(tmp_path / "market-history-2025-01-01.csv", first)
    b = _everef(tmp_path / "market-history-2025-01-02.csv.bz2", second, compress=True)
    out = cli("prices", "history", "import", str(a), str(b), url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "imported 5 history rows from 2 files: 5 new, 0 changed, 0 unchanged" in out.stdout
    assert "skipped 1 row of other regions than 10000002" in out.stdout
    kept = [r for r in first + second if r[7] == 10000002]
    assert _history(schema_db) == _expected(kept)
    # Every region, on request; the rows already there are not written again.
    out = cli("prices", "history", "import", "--all-regions", str(a), url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "4 history rows from 1 file: 1 new, 0 changed, 3 unchanged" in out.stdout
    assert _history(schema_db) == _expected(kept + first[3:])


def test_a_bad_line_in_the_second_file_writes_nothing_and_is_named(schema_db, tmp_path):
    good = _everef(tmp_path / "a.csv", _day_rows("2025-01-01", [34, 35]))
    assert cli("prices", "history", "import", str(good), url=schema_db).returncode == 0
    before = _history(schema_db)
    changed = _everef(tmp_path / "b.csv", _day_rows("2025-01-01", [34, 35], base=99))
    rows = _day_rows("2025-01-02", [34, 35, 36, 37])
    rows[2] = (*rows[2][:2], "12,oops", *rows[2][3:])  # line 4: a cell too many
    bad = _everef(tmp_path / "c.csv.bz2", rows, compress=True)
    out = cli("prices", "history", "import", str(changed), str(bad), url=schema_db)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"bulk-backfill: error: {bad}:line 4: 10 cells where the header has 9; nothing was imported"
    ]
    assert _history(schema_db) == before


def test_reimport_is_idempotent_and_a_changed_day_is_updated(schema_db, tmp_path):
    rows = _day_rows("2025-01-01", [34, 35, 36])
    path = _everef(tmp_path / "a.csv", rows)
    assert cli("prices", "history", "import", str(path), url=schema_db).returncode == 0
    with psycopg.connect(schema_db) as conn:
        versions = dict(conn.execute("SELECT type_id, xmin::text FROM market_price_history"))
    out = cli("prices", "history", "import", str(path), url=schema_db)
    assert "3 history rows from 1 file: 0 new, 0 changed, 3 unchanged" in out.stdout
    rows[1] = (42.5, *rows[1][1:])
    _everef(path, rows)
    out = cli("prices", "history", "import", str(path), url=schema_db)
    assert "0 new, 1 changed, 2 unchanged" in out.stdout
    assert _history(schema_db) == _expected(rows)
    with psycopg.connect(schema_db) as conn:
        after = dict(conn.execute("SELECT type_id, xmin::text FROM market_price_history"))
    # Unchanged days were not rewritten: same row versions.
    assert after[34] == versions[34] and after[36] == versions[36] and after[35] != versions[35]


def test_a_day_given_twice_is_refused_naming_both_places(schema_db, tmp_path):
    a = _everef(tmp_path / "a.csv", _day_rows("2025-01-01", [34, 35]))
    b = _everef(tmp_path / "b.csv", _day_rows("2025-01-01", [36, 35]))
    out = cli("prices", "history", "import", str(a), str(b), url=schema_db)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"bulk-backfill: error: {b}:line 3: region 10000002 type 35 date 2025-01-01 again "
        f"(first at {a}:line 3); nothing was imported"
    )
    assert _history(schema_db) == {}


def test_esi_history_needs_a_type_id(schema_db, tmp_path):
    path = tmp_path / "orca.json"
    path.write_text(
        '[{"average":1,"date":"2025-01-01","highest":1,"lowest":1,"order_count":1,"volume":1}]'
    )
    out = cli("prices", "history", "import", str(path), url=schema_db)
    assert out.returncode == 2
    assert "give its --type-id" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli(
        "prices",
        "history",
        "import",
        str(path),
        "--type-id",
        "28606",
        "--region",
        "10000043",
        url=schema_db,
    )
    assert out.returncode == 0, out.stderr
    assert _history(schema_db) == {(10000043, 28606, date(2025, 1, 1)): (1.0, 1.0, 1.0, 1, 1)}


@pytest.mark.both_schemas
def test_the_real_esi_json_and_tritanium_csv(schema_db, history_files):
    out = cli("prices", "history", "import", str(ORCA_JSON), "--type-id", "28606", url=schema_db)
    assert out.returncode == 0, out.stderr
    out = cli("prices", "history", "import", str(TRITANIUM_CSV), "--type-id", "34", url=schema_db)
    assert out.returncode == 0, out.stderr
    stored = _history(schema_db)
    orca = json.loads(ORCA_JSON.read_text(), parse_float=Decimal)
    with TRITANIUM_CSV.open(newline="") as handle:
        tritanium = list(csv.DictReader(handle))
    assert (len(orca), len(tritanium)) == (412, 411)
    expected = {}
    for type_id, days in ((28606, orca), (34, tritanium)):
        for day in days:
            expected[(10000002, type_id, date.fromisoformat(day["date"]))] = (
                float(Decimal(str(day["average"]))),
                float(Decimal(str(day["highest"]))),
                float(Decimal(str(day["lowest"]))),
                int(day["volume"]),
                int(day["order_count"]),
            )
    assert stored == expected
    # A few values as the files write them.
    assert stored[(10000002, 28606, date(2017, 12, 1))][0] == 745052179.61
    assert stored[(10000002, 34, date(2023, 12, 1))] == (4.21, 4.23, 4.19, 5376548540, 2167)


@pytest.mark.both_schemas
def test_overrides_set_list_and_import(schema_db, tmp_path):
    out = cli(
        "prices",
        "override",
        "set",
        "--type-id",
        "3514",
        "--price",
        "1.5e11",
        "--to",
        "2024-12-31",
        "--note",
        "Revenant before",
        url=schema_db,
    )
    assert out.returncode == 0, out.stderr
    assert "type 3514 at 150,000,000,000.00 ISK, from open to 2024-12-31" in out.stdout
    for price in ("2.5e11", "2.75e11"):  # the same range again: replaced
        out = cli(
            "prices",
            "override",
            "set",
            "--type-id",
            "3514",
            "--price",
            price,
            "--from",
            "2025-01-01",
            url=schema_db,
        )
        assert out.returncode == 0, out.stderr
    assert "(replaced 1 override of the same range)" in out.stdout
    csv_file = tmp_path / "overrides.csv"
    csv_file.write_text(
        "type_id,valid_from,valid_to,price,note\n"
        "671,,,100000000000,Erebus build price\n"
        "3764,2020-01-01,2020-12-31,55000000000.5,\n"
    )
    out = cli("prices", "override", "import", str(csv_file), url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "imported 2 overrides from" in out.stdout
    listed = json.loads(cli("prices", "override", "list", "--json", url=schema_db).stdout)
    assert [{k: v for k, v in o.items() if k != "id"} for o in listed] == [
        {
            "type_id": 671,
            "valid_from": None,
            "valid_to": None,
            "price": 1e11,
            "note": "Erebus build price",
        },
        {
            "type_id": 3514,
            "valid_from": None,
            "valid_to": "2024-12-31",
            "price": 1.5e11,
            "note": "Revenant before",
        },
        {
            "type_id": 3514,
            "valid_from": "2025-01-01",
            "valid_to": None,
            "price": 2.75e11,
            "note": None,
        },
        {
            "type_id": 3764,
            "valid_from": "2020-01-01",
            "valid_to": "2020-12-31",
            "price": 55000000000.5,
            "note": None,
        },
    ]
    with psycopg.connect(schema_db) as conn:
        stored = conn.execute(
            "SELECT type_id, valid_from, valid_to, price, note FROM price_overrides ORDER BY id"
        ).fetchall()
    assert stored == [
        (3514, None, date(2024, 12, 31), 1.5e11, "Revenant before"),
        (3514, date(2025, 1, 1), None, 2.75e11, None),
        (671, None, None, 1e11, "Erebus build price"),
        (3764, date(2020, 1, 1), date(2020, 12, 31), 55000000000.5, None),
    ]
    table = cli("prices", "override", "list", "--type-id", "3764", url=schema_db).stdout
    assert table.splitlines()[1].split() == [
        str(listed[3]["id"]),
        "3764",
        "2020-01-01",
        "2020-12-31",
        "55,000,000,000.50",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--price", "-1"], "price -1.0 is not a price (finite, 0 or more)"),
        (["--price", "nan"], "price nan is not a price (finite, 0 or more)"),
        (["--price", "1e16"], "price 1e+16 is beyond 1e+15 ISK"),
        (
            ["--price", "1", "--from", "2025-02-01", "--to", "2025-01-31"],
            "valid_from 2025-02-01 is after valid_to 2025-01-31",
        ),
        (["--price", "1", "--from", "2025-02-30"], "'2025-02-30' is not a date like 2024-01-31"),
        (["--price", "abc"], "'abc' is not a valid float"),
    ],
)
def test_a_bad_override_is_one_line_and_stores_nothing(schema_db, args, error):
    out = cli("prices", "override", "set", "--type-id", "3514", *args, url=schema_db)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulk-backfill: error:"), out.stderr
    assert error in lines[0]
    assert cli("prices", "override", "list", url=schema_db).stdout.strip() == "no price overrides"


def test_a_bad_override_file_imports_nothing_and_names_the_line(schema_db, tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text(
        "type_id,valid_from,valid_to,price,note\n"
        "671,,,1e11,fine\n"
        "672,2025-01-01,2024-01-01,5,backwards\n"
    )
    out = cli("prices", "override", "import", str(path), url=schema_db)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"bulk-backfill: error: {path}:line 3: valid_from 2025-01-01 is after valid_to "
        "2024-01-01; nothing was imported"
    )
    assert cli("prices", "override", "list", "--json", url=schema_db).stdout.strip() == "[]"


@pytest.mark.slow  # generates a demo with its whole market history
@pytest.mark.both_schemas
def test_demo_data_writes_history_covering_every_kill_date_and_overrides(schema_db):
    # On the killreport schema the history tables come from init-db, as a user adds them.
    _init(schema_db)
    out = cli("demo-data", "--killmails", "2000", "--seed", "3", url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "market history rows and 2 price overrides" in out.stdout
    # The seconds spent on history after the killmails' bar reached 100% are announced.
    assert "demo-data: writing market history and price overrides" in out.stderr
    with psycopg.connect(schema_db) as conn:
        (first_kill, last_kill) = conn.execute(
            "SELECT min(killmail_time)::date, max(killmail_time)::date FROM killmails"
        ).fetchone()
        per_type = conn.execute(
            "SELECT p.type_id, p.sell, min(h.date), max(h.date), count(h.date),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY h.average),"
            " bool_and(h.lowest <= h.average AND h.average <= h.highest AND h.lowest > 0),"
            " bool_and(h.region_id = 10000002)"
            " FROM market_prices p LEFT JOIN market_price_history h USING (type_id)"
            " GROUP BY p.type_id, p.sell"
        ).fetchall()
        (other,) = conn.execute(
            "SELECT count(*) FROM market_price_history"
            " WHERE type_id NOT IN (SELECT type_id FROM market_prices)"
        ).fetchone()
        daily = conn.execute(
            "SELECT count(DISTINCT date) FROM market_price_history WHERE date > %s::date - 1095",
            [last_kill],
        ).fetchone()[0]
        overrides = conn.execute(
            "SELECT o.type_id, o.valid_from, o.valid_to, o.price, c.name FROM price_overrides o"
            " JOIN types t ON t.id = o.type_id JOIN item_groups g ON g.id = t.group_id"
            " JOIN categories c ON c.id = g.category_id ORDER BY o.id"
        ).fetchall()
    assert other == 0 and len(per_type) > 2000
    for type_id, sell, first, last, _days, median, ordered, forge in per_type:
        # Every priced type has history from the first kill date on, in The Forge.
        assert first == first_kill and last <= last_kill and ordered and forge, type_id
        # Its averages wander around its price (sell is the price, rounded; 0 for a few).
        if sell > 0:
            assert 0.5 < median / sell < 2, (type_id, median, sell)
    assert max(p[3] for p in per_type) == last_kill
    # Daily for the last three years, with gaps: not every type trades every day.
    assert daily == 1095
    total = sum(p[4] for p in per_type)
    assert total < len(per_type) * (1095 + (last_kill - first_kill).days // 30 + 1)
    (hull, _, change, before, category), (hull2, start, end, after, _) = overrides
    assert hull == hull2 and category == "Ship" and end is None
    assert start == change + timedelta(days=1) and first_kill < start < last_kill
    assert after == before * 1.5


def test_demo_data_without_history_tables_says_so_and_creates_none(killreport_db):
    out = cli("demo-data", "--killmails", "50", url=killreport_db)
    assert out.returncode == 0, out.stderr
    assert "no market history written: the database lacks market_price_history" in out.stdout
    assert not _table_exists(killreport_db, "market_price_history")
    assert not _table_exists(killreport_db, "price_overrides")


def test_demo_data_no_history(fresh_db):
    _init(fresh_db)
    out = cli("demo-data", "--killmails", "50", "--no-history", url=fresh_db)
    assert out.returncode == 0, out.stderr
    assert "history" not in out.stdout
    assert _history(fresh_db) == {}


@pytest.mark.both_schemas
def test_the_library_functions_work_in_the_callers_transaction(schema_db, tmp_path):
    from bulk.errors import UserError
    from bulk.prices.history import import_history_files
    from bulk.prices.overrides import list_overrides, set_override

    files = [_everef(tmp_path / "a.csv", _day_rows("2025-01-02", [34, 35]))]
    bad = _everef(tmp_path / "bad.csv", [("x", "2025-01-03", 1, 1, 1, 1, "", 10000002, 34)])
    for keep in (False, True):
        with psycopg.connect(schema_db) as conn:
            conn.execute("SELECT 1")  # the caller's transaction is open
            assert import_history_files(conn, files).written.new == 2
            # Twice in one transaction, and a failure leaves the transaction usable.
            assert import_history_files(conn, files).written.unchanged == 2
            with pytest.raises(UserError, match="bad.csv:line 2: average 'x'"):
                import_history_files(conn, [bad])
            set_override(conn, 3514, 1.5e11, None, date(2024, 12, 31), "before")
            assert [o.price for o in list_overrides(conn)] == [1.5e11]
            if not keep:
                conn.rollback()
        if not keep:
            # Everything was in the caller's transaction: rolled back, nothing is left.
            assert not _table_exists(schema_db, "price_overrides") or not _history(schema_db)
    assert _history(schema_db) == _expected(_day_rows("2025-01-02", [34, 35]))
