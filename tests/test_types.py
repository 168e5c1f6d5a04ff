"""Type data in, and the readiness check that refuses to value without it (issue 24).

A new user imports killmails and prices and runs: without types, item_groups and
categories the capsule, SKIN, ore and blueprint-copy rules cannot see their
types, and with prices in another column than the one read, every value is 0.
Both used to give exact-looking wrong values that verify passed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from tests.conftest import cli, cli_popen, mismatches, summary_count, values
from tests.realdata import REALDATA, needs_realdata, read_killmails
from tests.test_realdata import _expected_from_json
from tests.typedata.test_files import (
    CATEGORIES_JSONL,
    EXPECTED_CATEGORIES,
    EXPECTED_GROUPS,
    EXPECTED_TYPES,
    GROUPS_JSONL,
    PLAIN,
    TYPES_JSONL,
)


def _rows(url: str) -> tuple[dict, dict, dict]:
    with psycopg.connect(url) as conn:
        types = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, name, group_id FROM types")}
        groups = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT id, name, category_id FROM item_groups")
        }
        categories = dict(conn.execute("SELECT id, name FROM categories").fetchall())
    return types, groups, categories


def _files(tmp_path, **texts) -> list[str]:
    paths = []
    for name, text in texts.items():
        path = tmp_path / name.replace("_", ".")
        path.write_text(text)
        paths.append(str(path))
    return paths


@pytest.mark.both_schemas
def test_types_import_upserts_all_three_tables(schema_db, schema_kind, tmp_path):
    sde = _files(
        tmp_path,
        types_jsonl=TYPES_JSONL,
        groups_jsonl=GROUPS_JSONL,
        categories_jsonl=CATEGORIES_JSONL,
    )
    out = cli("types", "import", *sde, url=schema_db)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == [
        "types",
        "2",
        "read:",
        "2",
        "new,",
        "0",
        "changed",
    ]
    assert _rows(schema_db) == (EXPECTED_TYPES, EXPECTED_GROUPS, EXPECTED_CATEGORIES)
    if schema_kind == "killreport":
        with psycopg.connect(schema_db) as conn:
            stamped = conn.execute("SELECT count(updated_at) FROM types").fetchone()[0]
        assert stamped == 2  # NOT NULL with no default there: filled with the import's time

    again = cli("types", "import", *sde, url=schema_db)
    assert "2 read: 0 new, 0 changed" in again.stdout, again.stdout
    # The plain CSV names no types or groups: it moves 670 to another group and
    # keeps the names the SDE gave.
    plain = _files(tmp_path, plain_csv=PLAIN.replace("670,29,6,Ship", "670,30,6,Ship"))
    moved = cli("types", "import", *plain, url=schema_db)
    assert moved.returncode == 0, moved.stderr
    types, groups, _ = _rows(schema_db)
    assert types == {34: ("Tritanium", 18), 670: ("Capsule", 30)}
    assert groups[30] == ("group 30", 6)  # a new group is named by its ID until a file names it


def test_a_bad_line_in_any_file_imports_nothing_and_is_named(schema_db, tmp_path):
    good = _files(tmp_path, types_jsonl=TYPES_JSONL)
    bad = tmp_path / "groups.jsonl"
    bad.write_text(GROUPS_JSONL + '\n{"_key": 30, "categoryID": "six", "name": {"en": "x"}}\n')
    out = cli("types", "import", *good, str(bad), url=schema_db)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"bulk-backfill: error: {bad}:line 3: categoryID 'six' is not a positive whole number;"
        " nothing was imported"
    )
    assert _rows(schema_db) == ({}, {}, {})


def test_types_import_refuses_a_column_it_cannot_fill(schema_db, tmp_path):
    with psycopg.connect(schema_db) as conn:
        conn.execute("ALTER TABLE types ADD COLUMN market_group_id int NOT NULL")
    out = cli("types", "import", *_files(tmp_path, types_jsonl=TYPES_JSONL), url=schema_db)
    assert out.returncode == 2
    assert "types.market_group_id is NOT NULL with no default" in out.stderr
    assert _rows(schema_db) == ({}, {}, {})


# -- the real killmails, the way a new user meets them ------------------------------------


def _valued(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(total_value) FROM killmails").fetchone()[0]


@needs_realdata
def test_the_real_killmails_need_type_data_and_the_right_price_column(schema_db):
    kills = cli("import-killmails", str(REALDATA / "killmails.jsonl"), url=schema_db)
    assert kills.returncode == 0, kills.stderr
    for rules in ("seed", "evekill", "zkillboard"):
        out = cli("run", "--rules", rules, url=schema_db)
        assert out.returncode == 2, (rules, out.stderr)
        error = out.stderr.strip().splitlines()[-1]
        assert "1,938 of 1,938 used types" in error and "missing from types" in error, error
        assert "bulk-backfill types import FILE" in error
    assert _valued(schema_db) == 0

    loaded = cli("types", "import", str(REALDATA / "types.csv"), url=schema_db)
    assert loaded.returncode == 0, loaded.stderr
    prices = cli("prices", "import", str(REALDATA / "prices.json"), url=schema_db)
    assert prices.returncode == 0, prices.stderr
    # ESI's /markets/prices/ fills average; run reads sell unless told otherwise.
    out = cli("run", url=schema_db)
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()[-1]
    assert "have a usable sell price; average has prices for" in error, error
    assert "--price-column average" in error
    assert _valued(schema_db) == 0

    status = cli("status", "--no-queue", "--json", url=schema_db)
    ready = json.loads(status.stdout)["readiness"]
    assert (ready["missing_types"], ready["better_price_column"]) == (0, "average")
    assert ready["ready"] is False and ready["price_coverage"] == 0

    run = cli("run", "--price-column", "average", url=schema_db)
    assert run.returncode == 0, run.stderr
    assert summary_count(run.stdout, "updated") == 534
    assert mismatches(schema_db, price_column="average") == []
    stored = values(schema_db)
    # Worked out from the JSON itself, blueprint copies (category Blueprint) at 0.01.
    for killmail_id, exact in _expected_from_json().items():
        assert stored[killmail_id] == tuple(float(v) for v in exact), killmail_id


@needs_realdata
def test_after_types_import_pods_are_worth_10000_under_evekill(schema_db):
    assert cli("import-killmails", str(REALDATA / "killmails.jsonl"), url=schema_db).returncode == 0
    assert cli("types", "import", str(REALDATA / "types.csv"), url=schema_db).returncode == 0
    # No market history at all: every other line gets evekill's fallback, so the job is
    # incomplete by the readiness rule, and says how many killmails it valued with gaps.
    refused = cli("run", "--rules", "evekill", url=schema_db)
    assert refused.returncode == 2 and "have market history" in refused.stderr
    out = cli("run", "--rules", "evekill", "--allow-incomplete", url=schema_db)
    assert out.returncode == 0, out.stderr
    assert summary_count(out.stdout, "incomplete") == 534  # every killmail holds an unpriced type
    assert mismatches(schema_db, rules="evekill") == []
    pods = {k["killmail_id"] for k in read_killmails() if k["victim"]["ship_type_id"] == 670}
    assert len(pods) == 55
    stored = values(schema_db)
    assert all(stored[k][1] >= 10_000 for k in pods)  # the capsule, by its group (29)


def test_allow_incomplete_counts_the_killmails_valued_with_gaps(demo_db):
    with psycopg.connect(demo_db) as conn:
        conn.execute(
            "DELETE FROM types WHERE id IN (SELECT item_type_id FROM killmail_items"
            " WHERE killmail_id = (SELECT min(killmail_id) FROM killmail_items) LIMIT 1)"
        )
        (expected,) = conn.execute(
            "SELECT count(*) FROM killmails k WHERE EXISTS (SELECT 1 FROM killmail_items i"
            " LEFT JOIN types t ON t.id = i.item_type_id"
            " WHERE i.killmail_id = k.killmail_id AND t.id IS NULL)"
            " OR EXISTS (SELECT 1 FROM victims v LEFT JOIN types t ON t.id = v.ship_type_id"
            " LEFT JOIN market_prices p ON p.type_id = v.ship_type_id"
            " WHERE v.killmail_id = k.killmail_id"
            " AND (t.id IS NULL OR NOT coalesce(p.sell > 0, false)))"
            " OR EXISTS (SELECT 1 FROM killmail_items i"
            " LEFT JOIN market_prices p ON p.type_id = i.item_type_id"
            " WHERE i.killmail_id = k.killmail_id AND NOT coalesce(p.sell > 0, false))"
        ).fetchone()
    refused = cli("queue", "--dry-run", url=demo_db)
    assert refused.returncode == 2 and "1 of " in refused.stderr, refused.stderr
    out = cli("run", "--allow-incomplete", url=demo_db)
    assert out.returncode == 0, out.stderr
    assert summary_count(out.stdout, "incomplete") == expected > 0
    assert mismatches(demo_db) == []


# -- types fetch ---------------------------------------------------------------------------

_UNIVERSE = {
    ("types", 34): {"type_id": 34, "name": "Tritanium", "group_id": 18},
    ("types", 670): {"type_id": 670, "name": "Capsule", "group_id": 29},
    ("groups", 18): {"group_id": 18, "name": "Mineral", "category_id": 4},
    ("groups", 29): {"group_id": 29, "name": "Capsule", "category_id": 6},
    ("categories", 4): {"category_id": 4, "name": "Material"},
    ("categories", 6): {"category_id": 6, "name": "Ship"},
}


class _Universe(BaseHTTPRequestHandler):
    calls: list = []
    missing: set = set()

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        parts = self.path.split("?")[0].strip("/").split("/")
        key = (parts[1], int(parts[2])) if len(parts) == 3 and parts[0] == "universe" else None
        self.calls.append(key)
        if key not in _UNIVERSE or key in self.missing:
            return self._send(404, b'{"error": "Type not found!"}')
        self._send(200, json.dumps(_UNIVERSE[key]).encode())

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-ESI-Error-Limit-Remain", "100")
        self.send_header("X-ESI-Error-Limit-Reset", "30")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def universe():
    _Universe.calls, _Universe.missing = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Universe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Universe
    server.shutdown()


def test_types_fetch_fills_what_killmails_use_and_asks_only_for_what_is_missing(
    schema_db, universe
):
    esi_url, handler = universe
    with psycopg.connect(schema_db) as conn:
        conn.execute("INSERT INTO killmails (killmail_id, killmail_time) VALUES (1, '2024-01-01')")
        conn.execute("INSERT INTO victims VALUES (1, 670)")
        conn.execute(
            "INSERT INTO killmail_items (killmail_id, item_type_id, quantity_dropped)"
            " VALUES (1, 34, 5)"
        )
    handler.missing = {("groups", 29)}  # ESI fails one group: the rest is written
    first = cli("types", "fetch", "--used-types", "--esi-url", esi_url, url=schema_db)
    assert first.returncode == 1
    assert "failed groups 29: HTTP 404 Not Found" in first.stdout, first.stdout
    types, groups, categories = _rows(schema_db)
    assert (
        types == EXPECTED_TYPES and groups == {18: ("Mineral", 4)} and categories == {4: "Material"}
    )

    handler.calls, handler.missing = [], set()
    second = cli("types", "fetch", "--esi-url", esi_url, url=schema_db)
    assert second.returncode == 0, second.stdout + second.stderr
    assert handler.calls == [("groups", 29), ("categories", 6)]  # nothing asked twice
    assert _rows(schema_db) == (EXPECTED_TYPES, EXPECTED_GROUPS, EXPECTED_CATEGORIES)


class _SlowUniverse(_Universe):
    """Every answer takes 0.4 s: a fetch of 12 types two at a time takes 2.4 s."""

    def do_GET(self):  # noqa: N802
        time.sleep(0.4)
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["universe", "types"]:
            type_id = int(parts[2])
            self.calls.append(("types", type_id))
            body = {"type_id": type_id, "name": f"Type {type_id}", "group_id": 18}
            return self._send(200, json.dumps(body).encode())
        super().do_GET()


def test_an_interrupted_types_fetch_keeps_what_it_got_and_resumes(schema_db):
    _SlowUniverse.calls, _SlowUniverse.missing = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowUniverse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    esi_url = f"http://127.0.0.1:{server.server_address[1]}"
    wanted = set(range(1001, 1013))
    try:
        with psycopg.connect(schema_db) as conn:
            conn.execute(
                "INSERT INTO killmails (killmail_id, killmail_time) VALUES (1, '2024-01-01')"
            )
            conn.execute("INSERT INTO victims VALUES (1, 1001)")
            for type_id in sorted(wanted - {1001}):
                conn.execute(
                    "INSERT INTO killmail_items (killmail_id, item_type_id) VALUES (1, %s)",
                    (type_id,),
                )
        args = ("types", "fetch", "--esi-url", esi_url, "--concurrency", "2")
        fetch = cli_popen(*args, url=schema_db)
        deadline = time.monotonic() + 10
        while len(_SlowUniverse.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        fetch.send_signal(signal.SIGINT)
        stdout, stderr = fetch.communicate(timeout=30)
        assert fetch.returncode == 1, stderr
        assert "interrupted: run the same command again" in stdout, stdout
        kept = set(_rows(schema_db)[0])
        assert kept and kept < wanted, kept  # what came back is written, not the rest
        _SlowUniverse.calls = []
        again = cli(*args, url=schema_db)
        assert again.returncode == 0, again.stdout + again.stderr
        asked = {key[1] for key in _SlowUniverse.calls if key and key[0] == "types"}
        assert asked == wanted - kept  # only what is still missing
        assert set(_rows(schema_db)[0]) == wanted
    finally:
        server.shutdown()
