"""`prices import` and `prices fetch`, against the real PostgreSQL and a canned ESI server.

The canned server is a local HTTP server playing ESI's part from fixed
answers (pages, an empty book, a 500, a 420, a slow answer); the expected
prices are worked out here from the same canned orders.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.conftest import cli, mismatches, values

# type_id -> pages of orders (each page a list)
_BOOK = {
    34: [  # three pages
        [
            {"is_buy_order": True, "price": 4.10, "volume_remain": 1000},
            {"is_buy_order": False, "price": 4.55, "volume_remain": 500},
        ],
        [
            {"is_buy_order": True, "price": 4.32, "volume_remain": 250},
            {"is_buy_order": False, "price": 4.41, "volume_remain": 10},
        ],
        [{"is_buy_order": False, "price": 4.99, "volume_remain": 7}],
    ],
    35: [[{"is_buy_order": False, "price": 11.5, "volume_remain": 3}]],  # no buy side
    587: [[]],  # no orders at all
    670: [  # answered with a 500 first
        [
            {"is_buy_order": True, "price": 9.0, "volume_remain": 1},
            {"is_buy_order": False, "price": 10.0, "volume_remain": 2},
        ]
    ],
    11399: [  # answered with a 420 first
        [
            {"is_buy_order": True, "price": 1_000_000.0, "volume_remain": 4},
            {"is_buy_order": False, "price": 1_250_000.5, "volume_remain": 6},
        ]
    ],
    16242: [  # the first answer is slower than the client's timeout
        [
            {"is_buy_order": True, "price": 55.0, "volume_remain": 100},
            {"is_buy_order": False, "price": 60.0, "volume_remain": 50},
        ]
    ],
}


class _CannedESI(BaseHTTPRequestHandler):
    calls: dict = {}
    arrivals: dict = {}  # (type_id, page) -> monotonic times the requests came in
    agents: set = set()
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/markets/10000002/orders/" or query.get("order_type") != ["all"]:
            return self._send(404, b'{"error": "not found"}')
        type_id, page = int(query["type_id"][0]), int(query.get("page", ["1"])[0])
        with self.lock:
            n = self.calls[(type_id, page)] = self.calls.get((type_id, page), 0) + 1
            self.arrivals.setdefault((type_id, page), []).append(time.monotonic())
            self.agents.add(self.headers.get("User-Agent"))
        if type_id == 670 and n == 1:
            return self._send(500, b'{"error": "internal"}')
        if type_id == 11399 and n == 1:
            return self._send(420, b'{"error": "limited"}', {"X-ESI-Error-Limit-Reset": "1"})
        if type_id == 16242 and n == 1:
            time.sleep(1.5)
        pages = _BOOK.get(type_id, [[]])
        body = json.dumps([{**o, "type_id": type_id} for o in pages[page - 1]]).encode()
        headers = {"X-Pages": str(len(pages))}
        if type_id == 35:  # ESI's error budget nearly spent: the client must slow down
            headers.update({"X-ESI-Error-Limit-Remain": "3", "X-ESI-Error-Limit-Reset": "1"})
        self._send(200, body, headers)

    def _send(self, code, body, headers=None):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            budget = {"X-ESI-Error-Limit-Remain": "100", "X-ESI-Error-Limit-Reset": "30"}
            for k, v in {**budget, **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout case)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned_esi():
    _CannedESI.calls = {}
    _CannedESI.arrivals = {}
    _CannedESI.agents = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedESI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CannedESI
    server.shutdown()


def _expected(type_id):
    orders = [o for page in _BOOK[type_id] for o in page]
    buys = [o["price"] for o in orders if o["is_buy_order"]]
    sells = [o["price"] for o in orders if not o["is_buy_order"]]
    # The replaced system's rules: a missing side is 0, and average still (buy + sell) / 2.
    buy = max(buys) if buys else 0.0
    sell = min(sells) if sells else 0.0
    return buy, sell, (buy + sell) / 2, float(sum(o["volume_remain"] for o in orders))


def _prices(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT type_id, buy, sell, average, volume, updated_at FROM market_prices"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _db_now(url):
    """The database's localtimestamp, the clock updated_at is written with."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT localtimestamp").fetchone()[0]


def test_fetch_reads_every_page_retries_and_keeps_rows_without_orders(schema_db, canned_esi):
    esi_url, handler = canned_esi
    with psycopg.connect(schema_db) as conn:
        conn.execute(
            "INSERT INTO market_prices VALUES (587, 1, 2, 1.5, 9, '2020-01-01'),"
            " (34, 0, 0, 0, 0, '2020-01-01')"
        )
    args = ["prices", "fetch", "--esi-url", esi_url, "--timeout", "0.5", "--concurrency", "4"]
    for type_id in _BOOK:
        args += ["--type-id", str(type_id)]
    started, db_started = time.monotonic(), _db_now(schema_db)
    out = cli(*args, "--user-agent", "tests; ops@example.com", url=schema_db)
    db_finished = _db_now(schema_db)
    assert out.returncode == 0, out.stderr
    stored = _prices(schema_db)
    for type_id in (34, 35, 670, 11399, 16242):
        assert stored[type_id][:4] == pytest.approx(_expected(type_id), abs=0), type_id
        assert db_started <= stored[type_id][4] <= db_finished, type_id
    assert stored[35][:3] == (0, 11.5, 5.75)  # no buy orders: 0, and average halves the sell
    assert stored[587] == (1, 2, 1.5, 9, stored[587][4]) and stored[587][4].year == 2020
    assert out.stdout.splitlines()[1].split()[:3] == ["no", "orders", "1"]
    assert "no orders: 587" in out.stdout
    assert handler.calls[(34, 3)] == 1 and handler.calls[(670, 1)] == 2
    assert handler.calls[(11399, 1)] == 2 and handler.calls[(16242, 1)] >= 2
    # The 420 said "reset in 1 s": the retry waited for it, and not much longer. Timed
    # at the server, between the two requests, so start-up time cannot stand in for it.
    first, retry = handler.arrivals[(11399, 1)]
    assert 1.0 <= retry - first < 10
    assert time.monotonic() - started < 30
    assert "2 pauses for ESI's error limit" in out.stdout  # the 420, and type 35's low budget
    assert handler.agents == {f"bulk-backfill/{_version()} (tests; ops@example.com)"}


def _version():
    from importlib.metadata import version

    return version("bulk-backfill")


def test_fetch_takes_the_types_the_killmails_use(demo_db, canned_esi):
    esi_url, handler = canned_esi
    out = cli("prices", "fetch", "--esi-url", esi_url, "--concurrency", "8", url=demo_db)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(demo_db) as conn:
        used = {
            r[0]
            for r in conn.execute(
                "SELECT ship_type_id FROM victims UNION SELECT item_type_id FROM killmail_items"
            )
        }
    asked = {t for t, page in handler.calls if page == 1}
    assert asked == used


def test_fetch_reports_a_type_that_keeps_failing(schema_db, canned_esi):
    esi_url, _ = canned_esi
    out = cli(
        "prices",
        "fetch",
        "--esi-url",
        esi_url + "/nothing-here",
        "--type-id",
        "34",
        url=schema_db,
    )
    assert out.returncode == 1
    assert "failed 34: page 1: HTTP 404" in out.stdout
    assert _prices(schema_db) == {}


def test_import_with_a_bad_row_writes_nothing_and_names_the_line(demo_db, tmp_path):
    before = _prices(demo_db)
    bad = tmp_path / "prices.csv"
    bad.write_text("type_id,sell,buy\n34,4.5,4.1\n35,11.2,10\n36,abc,1\n37,1,1\n")
    out = cli("prices", "import", str(bad), url=demo_db)
    assert out.returncode != 0
    assert out.stderr.strip() == (
        f"bulk-backfill: error: {bad}:line 4: sell 'abc' is not a number; nothing was imported"
    )
    assert _prices(demo_db) == before

    esi = tmp_path / "esi.json"
    esi.write_text(
        '[\n{"type_id": 34, "average_price": 4.2},\n'
        '{"type_id": 35, "average_price": 11},\n'
        '{"type_id": -5, "average_price": 1}\n]\n'
    )
    out = cli("prices", "import", str(esi), "--average-as", "sell", url=demo_db)
    assert out.returncode != 0 and "esi.json:line 4: type_id -5" in out.stderr
    assert _prices(demo_db) == before


def test_a_good_import_upserts_every_row(demo_db, tmp_path):
    before = _prices(demo_db)
    some = sorted(before)[:3]
    lines = ["type_id,sell,volume"] + [f"{t},{100 + n}.25,{n}" for n, t in enumerate(some)]
    lines.append("999999,7.5,1")  # a new type
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n")
    started = _db_now(demo_db)
    out = cli("prices", "import", str(path), url=demo_db)
    finished = _db_now(demo_db)
    assert out.returncode == 0, out.stderr
    assert "imported 4 price rows" in out.stdout
    after = _prices(demo_db)
    for n, t in enumerate(some):
        buy, sell, average, volume, updated = after[t]
        assert (sell, volume) == (100 + n + 0.25, n)
        assert (buy, average) == before[t][0:1] + before[t][2:3]  # untouched columns kept
        assert started <= updated <= finished
    assert after[999999][:4] == (None, 7.5, None, 1)
    assert len(after) == len(before) + 1

    esi = tmp_path / "esi.json"
    entries = [{"type_id": t, "average_price": 1.5, "adjusted_price": 2.5} for t in some]
    esi.write_text(json.dumps(entries))
    out = cli(
        "prices",
        "import",
        str(esi),
        "--average-as",
        "buy",
        "--adjusted-as",
        "average",
        url=demo_db,
    )
    assert out.returncode == 0, out.stderr
    final = _prices(demo_db)
    assert all(final[t][0] == 1.5 and final[t][2] == 2.5 for t in some)


def test_prices_then_zero_mode_gives_the_reference_values(demo_db, tmp_path):
    with psycopg.connect(demo_db) as conn:
        rows = conn.execute(
            "SELECT type_id, buy, sell, average, volume FROM market_prices ORDER BY 1"
        ).fetchall()
        conn.execute("DELETE FROM market_prices")
    assert cli("run", "--allow-empty-prices", url=demo_db).returncode == 0
    zero = {k for k, v in values(demo_db).items() if v[0] == 0}
    assert len(zero) > 1_000

    path = tmp_path / "prices.csv"
    cells = ["" if v is None else repr(v) for row in rows for v in row]
    body = "\n".join(",".join(cells[i : i + 5]) for i in range(0, len(cells), 5))
    path.write_text("type_id,buy,sell,average,volume\n" + body + "\n")
    out = cli("prices", "import", str(path), url=demo_db)
    assert out.returncode == 0, out.stderr
    assert cli("run", "--mode", "zero", url=demo_db).returncode == 0
    wrong = {m.killmail_id for m in mismatches(demo_db)}
    assert not wrong & zero
