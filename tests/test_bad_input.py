"""No traceback from any input: hostile files and options give one line and a non-zero exit.

Or, where the input has a sensible meaning (a time with an offset, a date in
ISO basic format), it is accepted with that meaning, checked on killmails
placed either side of each boundary.
"""

import json

import psycopg
import pytest

from tests.conftest import cli


def _one_line_error(out) -> str:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def _count(url, table):
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _killmail(killmail_id=1001, time="2024-05-01T12:30:00Z", ship=587, items=()):
    return {
        "killmail_id": killmail_id,
        "killmail_time": time,
        "victim": {"ship_type_id": ship, "items": list(items)},
    }


_DEEP = "[" * 5000 + "]" * 5000
_DIGITS = "9" * 5000


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (_DEEP, "not JSON (nested too deep)"),
        (json.dumps(_killmail())[:-1] + ', "extra": ' + _DEEP + "}", "nested too deep"),
        ('{"killmail_id": ' + _DIGITS + "}", "more digits than can be read"),
        ('{"killmail_id": 1e999}', "killmail_id must be an integer, got inf"),
        (json.dumps(_killmail(2, "0001-01-01T00:00:00+01:00")), "out of range in UTC"),
        (json.dumps(_killmail(2, "9999-12-31T23:59:59-14:00")), "out of range in UTC"),
        (json.dumps(_killmail(2, ship=2**31)), "victim.ship_type_id 2147483648 is out of range"),
        (
            json.dumps(_killmail(2, items=[{"item_type_id": 34, "quantity_destroyed": 2**40}])),
            "quantity_destroyed 1099511627776 is out of range",
        ),
    ],
)
def test_import_killmails_refuses_hostile_lines_with_the_line_number(
    schema_db, tmp_path, line, reason
):
    path = tmp_path / "kills.jsonl"
    path.write_text(json.dumps(_killmail()) + "\n" + line + "\n")
    error = _one_line_error(cli("import-killmails", str(path), url=schema_db))
    assert error.startswith(f"bulk-backfill: error: {path}:2: "), error
    assert reason in error and error.endswith("; nothing was imported")
    assert _count(schema_db, "killmails") == 0


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (_DEEP, "not JSON (nested too deep)"),
        ('{"type_id": 35, "average_price": ' + _DEEP + "}", "not JSON (nested too deep)"),
        ('{"type_id": 35, "average_price": ' + _DIGITS + "}", "more digits than can be read"),
        ('{"type_id": ' + _DIGITS + ', "average_price": 1}', "more digits than can be read"),
        ('{"type_id": 35, "average_price": 1e999}', "average_price inf is not a price"),
    ],
)
def test_prices_import_refuses_hostile_json_with_the_line_number(
    schema_db, tmp_path, entry, reason
):
    path = tmp_path / "prices.json"
    path.write_text('[\n{"type_id": 34, "average_price": 1},\n' + entry + "\n]\n")
    error = _one_line_error(cli("prices", "import", str(path), url=schema_db))
    assert error.startswith(f"bulk-backfill: error: {path}:line 3: "), error
    assert reason in error and error.endswith("; nothing was imported")
    assert _count(schema_db, "market_prices") == 0


def test_prices_import_refuses_a_csv_type_id_of_thousands_of_digits(schema_db, tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(f"type_id,sell\n34,1\n{_DIGITS},2\n")
    error = _one_line_error(cli("prices", "import", str(path), url=schema_db))
    assert f"{path}:line 3: type_id '99999" in error and "not a positive whole number" in error
    assert _count(schema_db, "market_prices") == 0


# Killmails either side of the boundaries the time tests use (killmail_time is UTC).
_TIMES = {
    1: "2025-06-14 21:59:59",
    2: "2025-06-14 22:00:00",
    3: "2025-06-15 12:00:00",
    4: "2025-06-15 23:59:59",
    5: "2025-06-16 00:00:00",
    6: "2025-06-16 02:59:59",
    7: "2025-06-16 03:00:00",
    8: "2025-06-16 23:59:59",
    9: "2025-06-17 00:00:00",
}


@pytest.fixture
def timed_db(schema_db):
    with psycopg.connect(schema_db) as conn:
        for killmail_id, time in _TIMES.items():
            conn.execute(
                "INSERT INTO killmails (killmail_id, killmail_time) VALUES (%s, %s)",
                [killmail_id, time],
            )
            conn.execute(
                "INSERT INTO victims (killmail_id, ship_type_id) VALUES (%s, 587)", [killmail_id]
            )
        conn.execute("INSERT INTO market_prices (type_id, sell) VALUES (587, 1000)")
        # The ship's type data: run refuses killmails whose types it cannot see.
        conn.execute("INSERT INTO categories (id, name) VALUES (6, 'Ship')")
        conn.execute("INSERT INTO item_groups (id, name, category_id) VALUES (25, 'Frigate', 6)")
        conn.execute("INSERT INTO types (id, name, group_id) VALUES (587, 'Rifter', 25)")
    return schema_db


def _written(url) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT killmail_id FROM killmails WHERE total_value IS NOT NULL")
        return {r[0] for r in rows}


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        # An offset is converted to UTC; a naive time or a bare date is UTC.
        (["--since", "2025-06-15T00:00+02:00", "--until", "2025-06-16"], {2, 3, 4, 5, 6, 7, 8}),
        (["--since", "2025-06-14", "--until", "2025-06-15T23:00-04:00"], {1, 2, 3, 4, 5, 6}),
        (
            ["--since", "2025-06-15T00:00+02:00", "--until", "2025-06-15T23:00-04:00"],
            {2, 3, 4, 5, 6},
        ),
        # ISO basic and extended dates mean the same day: --until includes it.
        (["--until", "20250615"], {1, 2, 3, 4}),
        (["--until", "2025-06-15"], {1, 2, 3, 4}),
        (["--since", "20250615", "--until", "20250616"], {3, 4, 5, 6, 7, 8}),
    ],
)
def test_since_and_until_with_offsets_and_basic_dates_have_one_meaning(
    timed_db, selection, expected
):
    out = cli("run", *selection, url=timed_db)
    assert out.returncode == 0, out.stderr
    assert _written(timed_db) == expected


@pytest.mark.parametrize(
    "selection",
    [
        ["--since", "0001-01-01T00:00:00+01:00"],
        ["--until", "9999-12-31T23:59:59-14:00"],
        ["--until", "9999-12-31"],
        ["--id", "2147483648"],
        ["--id", "-2147483649"],
        ["--ship-type", str(2**40)],
        ["--after-id", "99999999999"],
    ],
)
def test_out_of_range_selections_are_usage_errors(timed_db, selection):
    error = _one_line_error(cli("run", *selection, url=timed_db))
    assert f"Invalid value for '{selection[0]}'" in error
    assert _written(timed_db) == set()


_TOO_LONG = [
    "",
    "q" * 251,  # its dead-letter queue, <queue>.dead, would pass AMQP's 255 bytes
    "é" * 126,  # 252 bytes in UTF-8
]


@pytest.mark.parametrize("name", _TOO_LONG, ids=["empty", "251-bytes", "252-bytes-utf8"])
@pytest.mark.parametrize(
    "command", [["queue"], ["work"], ["status"], ["dead", "list"], ["dead", "requeue"]]
)
def test_an_empty_or_too_long_queue_name_is_a_usage_error(schema_db, command, name):
    out = cli(*command, "--queue", name, url=schema_db)
    error = _one_line_error(out)
    assert out.returncode == 2
    assert "Invalid value for '--queue'" in error
