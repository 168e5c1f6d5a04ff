"""History in the shapes people have that carry the daily average only (issue 24).

zKillboard's /api/prices/{type_id}/ answer ({"<date>": average, ...,
"currentPrice": ..., "typeID": ...}), evetreemap's market_prices.json and a plain
type_id,date,average[,region_id] CSV: each imports, the columns it lacks stay
NULL (and keep what a fuller source stored), and a bad entry names the shape
expected and the one found. Before, all three were refused.
"""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from bulk.prices.files import PriceFileError
from bulk.prices.history_files import parse_average_csv, parse_average_json
from tests.conftest import cli
from tests.realdata import REALDATA, needs_realdata
from tests.test_history import _history

FORGE = 10000002


def _import(url: str, path, *args: str):
    return cli("prices", "history", "import", str(path), *args, url=url)


def test_zkillboard_prices_answer_imports_its_days(schema_db, tmp_path):
    path = tmp_path / "34.json"
    path.write_text(
        json.dumps({"2024-01-01": 4.03, "2024-01-02": 4, "currentPrice": "4.2", "typeID": 34})
    )
    out = _import(schema_db, path)
    assert out.returncode == 0, out.stderr
    assert _history(schema_db) == {
        (FORGE, 34, date(2024, 1, 1)): (4.03, None, None, None, None),
        (FORGE, 34, date(2024, 1, 2)): (4.0, None, None, None, None),
    }


def test_a_fuller_row_keeps_its_other_columns_when_an_average_only_source_updates_it(
    schema_db, tmp_path
):
    full = tmp_path / "esi.json"
    full.write_text(
        '[{"average":5,"date":"2024-01-01","highest":6,"lowest":4,"order_count":7,"volume":8}]'
    )
    assert _import(schema_db, full, "--type-id", "34").returncode == 0
    average_only = tmp_path / "avg.csv"
    average_only.write_text("type_id,date,average\n34,2024-01-01,5.5\n35,2024-01-01,9\n")
    out = _import(schema_db, average_only)
    assert out.returncode == 0, out.stderr
    assert "1 new, 1 changed" in out.stdout, out.stdout
    assert _history(schema_db) == {
        (FORGE, 34, date(2024, 1, 1)): (5.5, 6.0, 4.0, 8, 7),
        (FORGE, 35, date(2024, 1, 1)): (9.0, None, None, None, None),
    }


def test_the_average_csv_takes_its_region_from_a_column(schema_db, tmp_path):
    path = tmp_path / "avg.csv"
    path.write_text("type_id,date,average,region_id\n35,2024-01-01,9.5,10000043\n")
    assert _import(schema_db, path).returncode == 0
    assert list(_history(schema_db)) == [(10000043, 35, date(2024, 1, 1))]


@needs_realdata
def test_the_real_evetreemap_file_imports_every_value(schema_db):
    path = REALDATA / "history" / "evetreemap_forge_average_2026-06-29_2026-07-31.json"
    out = _import(schema_db, path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(path.read_text())
    expected = {
        (int(doc["region"]), int(t), date.fromisoformat(d)): a
        for t, days in doc["prices"].items()
        for d, a in days.items()
    }
    assert len(expected) == 54_446  # SOURCES.md: 1,665 types, 54,446 (type, date) values
    stored = _history(schema_db)
    assert {k: v[0] for k, v in stored.items()} == expected
    assert all(v[1:] == (None, None, None, None) for v in stored.values())


@pytest.mark.parametrize(
    "text,line,reason",
    [
        ('{"foo": 1}', 1, "found an object with no YYYY-MM-DD keys"),
        ('{"2024-01-01": 4.03}', 1, "without a typeID: give the file's --type-id"),
        ('{"2024-01-01": -1, "typeID": 34}', 1, "'2024-01-01': average -1 is not a price"),
        ('{"2024-01-01": "x", "typeID": 34}', 1, "average 'x' is not a number"),
        ('{"prices": [1, 2]}', 1, "evetreemap's prices should map type IDs to days; found a list"),
        ('{"prices": {"34": [4.0]}}', 1, "prices['34'] should map dates to averages"),
        ('{"prices": {"x": {}}}', 1, "type ID 'x' is not a positive whole number"),
        ('{"prices": {"34": {"2024-13-01": 4}}}', 1, "date '2024-13-01' is not a date"),
        ("[1]", 1, "found a list"),
        ('{"2024-01-01": 1,\n "typeID": 34,,}', 2, "not JSON"),
    ],
)
def test_an_average_json_that_cannot_be_read_says_what_it_expected(text, line, reason):
    with pytest.raises(PriceFileError) as caught:
        parse_average_json(text, region=FORGE, type_id=None)
    assert caught.value.line == line and reason in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    "text,line,reason",
    [
        ("type_id,date,average,volume\n34,2024-01-01,4,1\n", 1, "expected the header"),
        ("type_id,date,average\n34,2024-01-01,4\n34,2024-01-02\n", 3, "2 cells"),
        ("type_id,date,average\n34,2024-01-01,nan\n", 2, "not a price"),
        ("type_id,date,average\n0,2024-01-01,4\n", 2, "type_id '0' is not"),
    ],
)
def test_an_average_csv_line_that_cannot_be_read_is_named(text, line, reason):
    with pytest.raises(PriceFileError) as caught:
        parse_average_csv(text, region=FORGE)
    assert caught.value.line == line and reason in str(caught.value), str(caught.value)


def test_average_only_rows_stage_no_other_column():
    rows = parse_average_csv("type_id,date,average\n34,2024-01-01,4\n", region=FORGE).rows
    assert math.isnan(rows.highest[0]) and math.isnan(rows.lowest[0])
    assert rows.volume[0] == rows.order_count[0] == -1  # NULL once written
