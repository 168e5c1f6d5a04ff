"""Prices that cannot value: what ESI and price files may say, and what is never stored.

ESI is played by the canned server of tests/test_prices.py, here answering
with orders and headers no real market has (NaN, 1e300, "false" as a buy
order, X-Pages: inf). Values are checked against the SQL reference.
"""

import json
import math
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from bulk.prices.esi import ErrorBudget
from tests.conftest import cli, mismatches, values
from tests.test_prices import _CannedESI, _prices

_GOOD = [
    {"is_buy_order": True, "price": 4.10, "volume_remain": 1000},
    {"is_buy_order": False, "price": 4.55, "volume_remain": 500},
]
# Orders no real market has; each is skipped, and each one alone would change
# the stored price if it were believed.
_BAD = [
    {"is_buy_order": True, "price": float("nan"), "volume_remain": 1},
    {"is_buy_order": True, "price": float("inf"), "volume_remain": 1},
    {"is_buy_order": False, "price": float("-inf"), "volume_remain": 1},
    {"is_buy_order": False, "price": -3.0, "volume_remain": 1},
    {"is_buy_order": True, "price": 1e300, "volume_remain": 1},
    {"is_buy_order": True, "price": 2e15, "volume_remain": 1},  # beyond the 1e15 ISK bound
    {"is_buy_order": False, "price": "1.5", "volume_remain": 1},
    {"is_buy_order": False, "price": True, "volume_remain": 1},
    {"is_buy_order": "false", "price": 9.0, "volume_remain": 1},  # a string, not a buy order
    {"is_buy_order": 0, "price": 1.0, "volume_remain": 1},
    {"is_buy_order": False, "price": 4.0, "volume_remain": float("nan")},
    "not an order",
]

# type_id -> (pages of orders, X-Pages header or None for the real page count)
_MARKET = {
    34: ([_GOOD[:1] + _BAD[:6], _GOOD[1:] + _BAD[6:]], None),
    35: ([_BAD[:3]], None),  # nothing usable: like no orders, the old row is kept
    36: ([_GOOD], "inf"),
    37: ([_GOOD], "garbage"),
    38: ([_GOOD], "0"),
    39: ([_GOOD], "10001"),
    40: ([_GOOD], "1e3"),
    41: ([[{"is_buy_order": False, "price": 7.25, "volume_remain": 3}]], None),
}


class _HostileESI(_CannedESI):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        query = parse_qs(urlsplit(self.path).query)
        type_id, page = int(query["type_id"][0]), int(query.get("page", ["1"])[0])
        with self.lock:
            self.calls[(type_id, page)] = self.calls.get((type_id, page), 0) + 1
        pages, x_pages = _MARKET[type_id]
        # json.dumps writes NaN and Infinity as bare words, as a broken server could.
        body = json.dumps(pages[page - 1]).encode()
        self._send(200, body, {"X-Pages": x_pages or str(len(pages))})


@pytest.fixture
def hostile_esi():
    _HostileESI.calls = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileESI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _HostileESI
    server.shutdown()


def test_fetch_skips_and_counts_orders_that_cannot_be_real(schema_db, hostile_esi):
    esi_url, _ = hostile_esi
    with psycopg.connect(schema_db) as conn:
        conn.execute("INSERT INTO market_prices VALUES (35, 1, 2, 1.5, 9, '2020-01-01')")
    args = ["prices", "fetch", "--esi-url", esi_url, "--type-id", "34", "--type-id", "35"]
    out = cli(*args, url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    stored = _prices(schema_db)
    # Only the two good orders count: buy 4.10, sell 4.55, volume 1500.
    assert stored[34][:4] == (4.10, 4.55, (4.10 + 4.55) / 2, 1500.0)
    assert stored[35][:4] == (1, 2, 1.5, 9) and stored[35][4].year == 2020
    bad = [line for line in out.stdout.splitlines() if line.startswith("bad orders ")]
    assert bad[0].split()[2] == str(len(_BAD) + 3), out.stdout
    assert "bad orders in types: 34, 35" in out.stdout


@pytest.mark.parametrize("type_id", [36, 37, 38, 39, 40])
def test_a_bad_page_count_fails_its_type_with_the_reason(schema_db, hostile_esi, type_id):
    esi_url, handler = hostile_esi
    args = ["prices", "fetch", "--esi-url", esi_url, "--type-id", str(type_id), "--type-id", "41"]
    out = cli(*args, url=schema_db)
    assert out.returncode == 1
    assert out.stderr.count("\n") <= 2 and "Traceback" not in out.stderr, out.stderr
    x_pages = _MARKET[type_id][1]
    assert f"failed {type_id}: page 1: X-Pages {x_pages!r} is not a page count" in out.stdout
    # The other type is priced; the failed one is not, and no page beyond 1 was asked for.
    assert set(_prices(schema_db)) == {41}
    assert (type_id, 2) not in handler.calls


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("type_id,sell\n34,4.5\n35,1e16\n", "line 3: sell '1e16' is beyond 1e+15 ISK"),
        ("type_id,buy\n34,4.5\n35,1e300\n", "line 3: buy '1e300' is beyond 1e+15 ISK"),
        ("type_id,average\n34,4.5\n35,NaN\n", "line 3: average 'NaN' is not a price"),
        ("type_id,sell\n34,4.5\n35,-Infinity\n", "line 3: sell '-Infinity' is not a price"),
        ("type_id,sell\n34,4.5\n35,-0.01\n", "line 3: sell '-0.01' is not a price"),
    ],
)
def test_import_refuses_absurd_csv_prices_with_the_line(schema_db, tmp_path, text, error):
    path = tmp_path / "prices.csv"
    path.write_text(text)
    out = cli("prices", "import", str(path), url=schema_db)
    assert out.returncode != 0
    assert out.stderr.strip() == (
        f"bulk-backfill: error: {path}:{error}, more than any type costs; nothing was imported"
        if "beyond" in error
        else f"bulk-backfill: error: {path}:{error} (finite, 0 or more); nothing was imported"
    )
    assert _prices(schema_db) == {}


def test_import_refuses_absurd_esi_json_prices_with_the_line(schema_db, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        '[\n{"type_id": 34, "average_price": 999999999999999},\n'
        '{"type_id": 35, "average_price": 1e300}\n]\n'
    )
    out = cli("prices", "import", str(path), url=schema_db)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{path}:line 3: average_price 1e+300 is beyond 1e+15 ISK" in out.stderr
    assert _prices(schema_db) == {}
    # The bound itself is a price: just under 1e15 ISK is imported.
    path.write_text('[{"type_id": 34, "average_price": 999999999999999}]')
    assert cli("prices", "import", str(path), url=schema_db).returncode == 0
    assert _prices(schema_db)[34][2] == 999999999999999.0


def _users_of(conn, type_id: int) -> set[int]:
    """Killmails whose value uses the type's market price (not a capsule, not a blueprint copy)."""
    rows = conn.execute(
        """
        SELECT v.killmail_id FROM victims v
        WHERE v.ship_type_id = %(t)s AND v.ship_type_id <> 670
        UNION
        SELECT i.killmail_id FROM killmail_items i
        LEFT JOIN types t ON t.id = i.item_type_id
        LEFT JOIN item_groups g ON g.id = t.group_id
        LEFT JOIN categories c ON c.id = g.category_id
        WHERE i.item_type_id = %(t)s AND (i.singleton = 2 AND c.name = 'Blueprint') IS NOT TRUE
        """,
        {"t": type_id},
    ).fetchall()
    return {r[0] for r in rows}


def _rarely_used_types(conn, n: int) -> list[int]:
    """n priced item types, each used by 1 to 5 killmails, with no killmail in common."""
    candidates = conn.execute(
        "SELECT i.item_type_id FROM killmail_items i"
        " JOIN market_prices mp ON mp.type_id = i.item_type_id AND mp.sell > 0"
        " WHERE i.item_type_id <> 670"
        " GROUP BY 1 HAVING count(DISTINCT i.killmail_id) BETWEEN 1 AND 5 ORDER BY 1"
    ).fetchall()
    chosen, seen = [], set()
    for (type_id,) in candidates:
        users = _users_of(conn, type_id)
        if users and not users & seen:
            chosen.append(type_id)
            seen |= users
        if len(chosen) == n:
            return chosen
    raise AssertionError("the demo data has too few rarely used types")


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_a_price_beyond_int8_cents_fails_only_its_killmails_and_names_the_type(demo_db, engine):
    with psycopg.connect(demo_db) as conn:
        huge, infinite = _rarely_used_types(conn, 2)
        bad_huge, bad_infinite = _users_of(conn, huge), _users_of(conn, infinite)
        # Written straight into the table, as the tool itself would never store them.
        conn.execute("UPDATE market_prices SET sell = 1e300 WHERE type_id = %s", [huge])
        conn.execute("UPDATE market_prices SET sell = 'Infinity' WHERE type_id = %s", [infinite])
    # --json: a type's users can outnumber the IDs the text summary names (issue 25).
    out = cli("run", "--engine", engine, "--json", url=demo_db)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "bigint out of range" not in out.stdout
    failed = {f["killmail_id"]: f["error"] for f in json.loads(out.stdout)["failures"]}
    assert set(failed) == bad_huge | bad_infinite
    for killmail_id in bad_huge:
        assert failed[killmail_id] == (
            f"PriceOutOfRange: market_prices.sell of type {huge} is 1e+300 ISK,"
            " beyond what a value can hold"
        )
    for killmail_id in bad_infinite:
        assert failed[killmail_id] == (
            f"PriceOutOfRange: market_prices.sell of type {infinite} is inf, not a price"
        )
    stored = values(demo_db)
    others = sorted(set(stored) - bad_huge - bad_infinite)
    assert all(stored[k][0] is None for k in bad_huge | bad_infinite)
    assert len(others) > 2_900
    assert mismatches(demo_db, ids=others) == []


def test_a_valid_page_count_is_still_followed(schema_db, hostile_esi):
    esi_url, handler = hostile_esi
    out = cli("prices", "fetch", "--esi-url", esi_url, "--type-id", "34", url=schema_db)
    assert out.returncode == 0, out.stderr
    assert handler.calls == {(34, 1): 1, (34, 2): 1}
    assert all(math.isfinite(v) for v in _prices(schema_db)[34][:4])


@pytest.mark.parametrize("reset", ["inf", "nan", "1e300", "-5"])
def test_an_absurd_error_limit_reset_cannot_stall_the_fetch(reset):
    budget = ErrorBudget()
    budget.observe({"X-ESI-Error-Limit-Remain": "0", "X-ESI-Error-Limit-Reset": reset})
    # At most the 300 s cap (a NaN or garbage reset waits ESI's usual minute).
    assert budget._resume_at - time.monotonic() <= 301
