"""import-killmails on small files written by the tests."""

import json

import psycopg

from tests.conftest import cli

KM = {
    "killmail_id": 1001,
    "killmail_time": "2024-05-01T12:30:00Z",
    "solar_system_id": 30000142,
    "victim": {
        "ship_type_id": 587,
        "items": [
            {"item_type_id": 2205, "flag": 27, "quantity_destroyed": 1, "singleton": 0},
            {
                "item_type_id": 3467,
                "flag": 5,
                "quantity_dropped": 1,
                "singleton": 1,
                "items": [
                    {"item_type_id": 34, "flag": 0, "quantity_dropped": 500, "singleton": 0},
                    {"item_type_id": 35, "flag": 0, "quantity_destroyed": 20, "singleton": 0},
                ],
            },
        ],
    },
}


def _write(tmp_path, lines):
    path = tmp_path / "kills.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _count(url, table):
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_bare_and_wrapped_killmails_with_nested_items(schema_db, tmp_path):
    wrapped = {"killID": 1002, "killmail": {**KM, "killmail_id": 1002}, "zkb": {"totalValue": 1}}
    path = _write(tmp_path, [json.dumps(KM), json.dumps(wrapped)])
    out = cli("import-killmails", path, url=schema_db)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(schema_db) as conn:
        rows = conn.execute(
            "SELECT killmail_id, item_type_id, quantity_destroyed, quantity_dropped, singleton"
            " FROM killmail_items ORDER BY killmail_id, item_type_id"
        ).fetchall()
        time = conn.execute("SELECT killmail_time FROM killmails WHERE killmail_id = 1001")
        assert str(time.fetchone()[0]) == "2024-05-01 12:30:00"
    assert rows[:4] == [
        (1001, 34, None, 500, 0),
        (1001, 35, 20, None, 0),
        (1001, 2205, 1, None, 0),
        (1001, 3467, None, 1, 1),
    ]
    assert len(rows) == 8
    assert _count(schema_db, "victims") == 2


def test_a_malformed_line_writes_nothing_and_names_the_line(schema_db, tmp_path):
    bad = dict(KM, killmail_id=1003)
    bad["victim"] = {"ship_type_id": "not a number"}
    lines = [json.dumps(KM), json.dumps(dict(KM, killmail_id=1002)), json.dumps(bad)]
    for broken, needle in ((lines[2], "ship_type_id"), ("{not json", "not JSON")):
        path = _write(tmp_path, [lines[0], lines[1], broken, json.dumps(dict(KM, killmail_id=9))])
        out = cli("import-killmails", path, url=schema_db)
        assert out.returncode != 0
        assert f"{path}:3:" in out.stderr and needle in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
        assert _count(schema_db, "killmails") == 0
        assert _count(schema_db, "killmail_items") == 0


def test_duplicates_in_the_file_and_in_the_database_are_skipped(schema_db, tmp_path):
    path = _write(tmp_path, [json.dumps(KM), json.dumps(KM)])
    out = cli("import-killmails", path, url=schema_db)
    assert "imported 1 " in out.stdout and "repeated in the file: 1001" in out.stdout
    out = cli("import-killmails", path, url=schema_db)
    assert "imported 0 " in out.stdout and "already present: 1001" in out.stdout
    assert _count(schema_db, "killmail_items") == 4


def test_missing_file_is_one_clear_line(schema_db, tmp_path):
    out = cli("import-killmails", str(tmp_path / "nope.jsonl"), url=schema_db)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "nope.jsonl" in out.stderr
