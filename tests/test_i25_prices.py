"""Issue 25's findings on prices: future and impossible history days, Ctrl+C and whole-request
deadlines of the ESI fetches, a NUL in an override file, control characters in notes.

The ESI stand-in is a local HTTP server in each test (port 0); nothing reaches the internet.
"""

import json
import signal
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from bulk.prices import esi
from bulk.prices.files import PriceFileError
from bulk.prices.history_files import csv_layout, parse_csv_chunk
from tests.conftest import cli, cli_popen

TODAY = datetime.now(timezone.utc).date()
YESTERDAY = TODAY - timedelta(days=1)
EVEREF = "average,date,highest,lowest,order_count,volume,http_last_modified,region_id,type_id"


def _one_error(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


def _history_rows(url) -> list[tuple]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('market_price_history')").fetchone()[0] is None:
            return []
        return conn.execute(
            "SELECT type_id, date FROM market_price_history ORDER BY 1, 2"
        ).fetchall()


# -- 7 and 9a: a history day must be one a market can have had ---------------------------


def _everef(day: str) -> str:
    return (
        f"{EVEREF}\n"
        "4.21,2025-01-01,4.23,4.19,2167,5376548540,2025-01-02T11:01:17Z,10000002,34\n"
        f"11.5,{day},11.9,11.2,1210,1046211024,2025-01-02T11:01:17Z,10000002,35\n"
    )


def _esi_json(day: str) -> str:
    entry = {"average": 4.2, "highest": 4.3, "lowest": 4.1, "order_count": 9, "volume": 99}
    return (
        "[\n"
        + json.dumps({**entry, "date": "2025-01-01"})
        + ",\n"
        + json.dumps({**entry, "date": day})
        + "\n]\n"
    )


# (file name, text for a day, extra options, where the second day is)
SHAPES = {
    "everef": ("market-history.csv", _everef, [], "line 3"),
    "esi-json": ("orca.json", _esi_json, ["--type-id", "28606"], "line 3: entry 2"),
    "average-csv": (
        "averages.csv",
        lambda day: f"type_id,date,average\n34,2025-01-01,4.2\n34,{day},4.3\n",
        [],
        "line 3",
    ),
    "zkillboard": (
        "zkb.json",
        lambda day: json.dumps({"2025-01-01": 4.2, day: 4.3, "typeID": 34}),
        [],
        "the object, ",
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_history_import_refuses_a_day_after_tomorrow_with_its_line(fresh_db, tmp_path, shape):
    name, text, extra, where = SHAPES[shape]
    path = tmp_path / name
    # Tomorrow is still taken (a day of slack for clocks); the day after is not.
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    path.write_text(text(tomorrow))
    out = cli("prices", "history", "import", str(path), *extra, url=fresh_db)
    assert out.returncode == 0, out.stderr
    assert len(_history_rows(fresh_db)) == 2
    with psycopg.connect(fresh_db) as conn:
        conn.execute("DELETE FROM market_price_history")
    for future in ((TODAY + timedelta(days=2)).isoformat(), "2999-01-01"):
        path.write_text(text(future))
        out = cli("prices", "history", "import", str(path), *extra, url=fresh_db)
        error = _one_error(out)
        assert out.returncode == 2
        assert f"{path}:" in error and where in error, error
        assert f"date '{future}' is in the future (after {tomorrow}, tomorrow in UTC)" in error
        assert error.endswith("nothing was imported")
        assert _history_rows(fresh_db) == []


def test_year_0000_is_refused_by_both_csv_readers_with_its_line():
    layout = csv_layout(EVEREF)
    plain = _everef("0000-01-01").split("\n", 1)[1]
    # A quoted cell sends the chunk to the careful reader; without one numpy reads it.
    quoted = plain.replace("2025-01-02T11:01:17Z", '"2025-01-02T11:01:17Z"')
    for body in (plain, quoted):
        with pytest.raises(PriceFileError) as raised:
            parse_csv_chunk(body.encode(), 2, layout, region=10000002, type_id=None)
        assert str(raised.value) == "line 3: date '0000-01-01' is not a date (YYYY-MM-DD)"
    # Before EVE's market opened, the same: both readers, the same line and reason.
    for body in (plain, quoted):
        with pytest.raises(PriceFileError, match=r"^line 3: date '1999-12-31' is before 2003"):
            body = body.replace("0000-01-01", "1999-12-31")
            parse_csv_chunk(body.encode(), 2, layout, region=10000002, type_id=None)


def test_history_import_of_year_0000_names_the_line_and_writes_nothing(fresh_db, tmp_path):
    path = tmp_path / "market-history.csv"
    path.write_text(_everef("0000-01-01"))
    out = cli("prices", "history", "import", str(path), url=fresh_db)
    assert out.returncode == 2
    assert _one_error(out) == (
        f"bulk-backfill: error: {path}:line 3: date '0000-01-01' is not a date (YYYY-MM-DD);"
        " nothing was imported"
    )
    assert _history_rows(fresh_db) == []


# -- a local ESI: histories, order books, drips and 429s -----------------------------------


class _ESI(BaseHTTPRequestHandler):
    histories: dict = {}  # type_id -> list of days
    drip: set = set()  # types whose answers drip in a byte at a time
    drip_once: set = set()  # types whose first answer drips, the next ones not
    limited: set = set()  # types answered 429 with a long Retry-After
    drip_bytes = 12  # dripped before the rest of the answer comes at once
    calls: dict = {}
    arrivals: list = []  # (monotonic time, type_id)
    answered: set = set()
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        parts = urlsplit(self.path)
        type_id = int(parse_qs(parts.query)["type_id"][0])
        with self.lock:
            n = self.calls[type_id] = self.calls.get(type_id, 0) + 1
            self.arrivals.append((time.monotonic(), type_id))
        if type_id in self.limited:
            time.sleep(0.5)  # the other types' requests are on their way first
            return self._send(429, b'{"error": "slow down"}', {"Retry-After": "90"})
        if parts.path.endswith("/orders/"):
            body = json.dumps(
                [{"is_buy_order": False, "price": 4.5, "volume_remain": 10, "type_id": type_id}]
            ).encode()
        else:
            body = json.dumps(self.histories.get(type_id, [])).encode()
        slow = type_id in self.drip or (type_id in self.drip_once and n == 1)
        self._send(200, body, drip=slow)

    def _send(self, code, body, headers=None, drip=False):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if drip:
                # A byte every 0.25 s: each read gets something long before the
                # client's --timeout, the whole answer takes far longer.
                for i in range(self.drip_bytes):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.25)
                body = body[self.drip_bytes :]
            self.wfile.write(body)
            with self.lock:
                self.answered.add(self.path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def local_esi():
    _ESI.histories, _ESI.calls, _ESI.arrivals, _ESI.answered = {}, {}, [], set()
    _ESI.drip, _ESI.drip_once, _ESI.limited = set(), set(), set()
    _ESI.drip_bytes = 12
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ESI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _ESI
    server.shutdown()
    server.server_close()


def _days(type_id: int, last: date, n: int = 5) -> list[dict]:
    return [
        {
            "average": 1.5 * type_id + k,
            "date": (last - timedelta(days=n - 1 - k)).isoformat(),
            "highest": 2.0 * type_id + k,
            "lowest": 1.0 * type_id + k,
            "order_count": 10 + k,
            "volume": 1000 + k,
        }
        for k in range(n)
    ]


def _history_fetch(url, esi_url, *type_ids, extra=()):
    args = ["prices", "history", "fetch", "--esi-url", esi_url, *extra]
    for t in type_ids:
        args += ["--type-id", str(t)]
    return cli(*args, url=url)


# -- 7: a future day from the source neither is stored nor freezes the next fetch ----------


def test_history_fetch_skips_future_days_and_a_stored_one_does_not_freeze_it(fresh_db, local_esi):
    esi_url, handler = local_esi
    assert cli("init-db", url=fresh_db).returncode == 0
    behind = YESTERDAY - timedelta(days=5)
    handler.histories = {
        35: [*_days(35, behind), {**_days(35, behind)[0], "date": "2099-12-31"}],
        37: _days(37, YESTERDAY),
    }
    # 37 has a day from the future stored already (another tool, an older version).
    with psycopg.connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO market_price_history VALUES (10000002, 37, '2099-12-31', 1, 1, 1, 1, 1)"
        )
    out = _history_fetch(fresh_db, esi_url, 35, 37)
    assert out.returncode == 0, out.stderr
    assert set(handler.calls) == {35, 37}  # 37's stored 2099 does not make it up to date
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    assert (
        f"future days: skipped 1 day dated after {tomorrow} (tomorrow in UTC: no market has"
        " them yet) in types: 35"
    ) in out.stdout
    stored = _history_rows(fresh_db)
    assert (35, date(2099, 12, 31)) not in stored
    assert sum(1 for t, _ in stored if t == 35) == 5
    # 35 is still behind (its newest real day is six days ago): asked again, not frozen.
    handler.calls.clear()
    out = _history_fetch(fresh_db, esi_url, 35, 37)
    assert out.returncode == 0, out.stderr
    assert set(handler.calls) == {35}


# -- 8: a whole-request deadline, and Ctrl+C that stops at once -----------------------------


def test_timeout_bounds_the_whole_request_not_each_read(fresh_db, local_esi):
    esi_url, handler = local_esi
    assert cli("init-db", url=fresh_db).returncode == 0
    handler.histories = {34: _days(34, YESTERDAY)}
    handler.drip_once = {34}  # 12 bytes over 3 s: no read waits 1 s, the answer does
    out = _history_fetch(fresh_db, esi_url, 34, extra=["--timeout", "1"])
    assert out.returncode == 0, out.stderr
    assert handler.calls == {34: 2}  # the dripping answer was cut and asked again
    assert "requests          2  (1 retried" in out.stdout
    assert len(_history_rows(fresh_db)) == 5


def test_an_answer_that_always_drips_fails_the_type_in_bounded_time(local_esi):
    esi_url, handler = local_esi
    handler.histories = {34: _days(34, YESTERDAY)}
    handler.drip = {34}
    client = esi.Client(esi_url, user_agent="tests", timeout=0.5, attempts=2)
    started = time.monotonic()
    with pytest.raises(esi.TypeFailed, match=r"gave up after 2 attempts \(no whole answer within"):
        client.history(34)
    assert time.monotonic() - started < 4  # each attempt alone would drip for 3 s
    assert handler.calls == {34: 2}


@pytest.mark.parametrize("command", ["history", "prices"])
def test_the_first_ctrl_c_stops_a_fetch_within_its_timeout_and_keeps_what_came(
    fresh_db, local_esi, command
):
    esi_url, handler = local_esi
    assert cli("init-db", url=fresh_db).returncode == 0
    fast, drip, limited = [34, 35], 9001, 9002
    handler.histories = {t: _days(t, YESTERDAY) for t in (*fast, drip)}
    handler.drip, handler.limited = {drip}, {limited}
    args = ["prices", "history", "fetch"] if command == "history" else ["prices", "fetch"]
    args += ["--esi-url", esi_url, "--timeout", "1.5", "--concurrency", "4"]
    for t in (*fast, drip, limited):
        args += ["--type-id", str(t)]
    proc = cli_popen(*args, url=fresh_db)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with handler.lock:
                asked = {t for _, t in handler.arrivals}
                fast_done = sum(1 for p in handler.answered if "type_id=3" in p)
            if fast_done == 2 and {drip, limited} <= asked and handler.calls[limited] >= 1:
                break
            time.sleep(0.05)
        time.sleep(0.6)  # the 429 is answered: its 90 s Retry-After wait is on
        sigint_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sigint_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # The drip's deadline (1.5 s) bounds it; the Retry-After wait ends at once.
    assert took < 8, (took, stderr)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "stopping: no new requests; the 2 types under way end within 1.5 s" in stderr, stderr
    assert "interrupted: the types fetched so far are written" in stdout
    assert not [t for at, t in handler.arrivals if at > sigint_at + 0.5]  # nothing new asked
    with psycopg.connect(fresh_db) as conn:
        if command == "history":
            kept = conn.execute("SELECT DISTINCT type_id FROM market_price_history").fetchall()
        else:
            kept = conn.execute("SELECT type_id FROM market_prices").fetchall()
    assert sorted(t for (t,) in kept) == fast


def test_a_second_ctrl_c_drops_the_requests_in_flight(fresh_db, local_esi):
    esi_url, handler = local_esi
    assert cli("init-db", url=fresh_db).returncode == 0
    handler.histories = {34: _days(34, YESTERDAY), 9001: _days(9001, YESTERDAY)}
    handler.drip, handler.drip_bytes = {9001}, 40  # 10 s, well within a --timeout of 60 s
    args = ["prices", "history", "fetch", "--esi-url", esi_url, "--timeout", "60"]
    proc = cli_popen(*args, "--type-id", "34", "--type-id", "9001", url=fresh_db)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            9001 in handler.calls and any("type_id=34" in p for p in handler.answered)
        ):
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.4)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert took < 3, (took, stderr)  # not the rest of the 10 s drip
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "interrupted: the types fetched so far are written" in stdout
    assert "stopping now: the requests in flight are dropped" in stderr, stderr
    assert {t for t, _ in _history_rows(fresh_db)} == {34}


# -- 9d and 9e: override notes ---------------------------------------------------------------


def test_a_nul_in_an_override_file_names_its_line_and_writes_nothing(fresh_db, tmp_path):
    path = tmp_path / "overrides.csv"
    path.write_text(
        "type_id,valid_from,valid_to,price,note\n671,,,1e11,Erebus\n3514,,,1e11,Reve\x00nant\n"
    )
    out = cli("prices", "override", "import", str(path), url=fresh_db)
    assert out.returncode == 2
    assert _one_error(out) == (
        f"bulk-backfill: error: {path}:line 3: the note has a NUL character (\\x00), which"
        " PostgreSQL cannot store; nothing was imported"
    )
    with psycopg.connect(fresh_db) as conn:
        table = conn.execute("SELECT to_regclass('price_overrides')").fetchone()[0]
        assert (
            table is None or conn.execute("SELECT count(*) FROM price_overrides").fetchone()[0] == 0
        )


def test_override_list_shows_control_characters_in_notes_escaped(fresh_db):
    note = "Revenant\x1b[2J\rfake\nrow\ttab \u202eevil é"
    out = cli(
        "prices",
        "override",
        "set",
        "--type-id",
        "3514",
        "--price",
        "1e11",
        "--note",
        note,
        url=fresh_db,
    )
    assert out.returncode == 0, out.stderr
    out = cli("prices", "override", "list", url=fresh_db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout  # the header and the one override
    assert lines[1].endswith("Revenant\\x1b[2J\\rfake\\nrow\\ttab \\u202eevil é")
    assert not any(c in out.stdout for c in "\x1b\r\t\u202e")
    # JSON keeps the note as stored (json escapes it itself).
    out = cli("prices", "override", "list", "--json", url=fresh_db)
    assert json.loads(out.stdout)[0]["note"] == note
