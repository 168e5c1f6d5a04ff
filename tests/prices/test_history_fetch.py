"""`prices history fetch` against a local HTTP server playing ESI's history endpoint.

The server answers from histories made here, ending yesterday (UTC) as
ESI's do; the expected table is worked out from the same histories. Nothing
reaches the internet.
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

from tests.conftest import cli, cli_popen, summary_count

YESTERDAY = datetime.now(timezone.utc).date() - timedelta(days=1)


def _days(type_id: int, n: int = 12, last: date = YESTERDAY) -> list[dict]:
    """type_id's made-up history: n days ending `last`, prices drifting per type."""
    days = []
    for k in range(n):
        day = last - timedelta(days=n - 1 - k)
        average = round(type_id * 1.5 + k * 0.25, 2)
        days.append(
            {
                "average": average,
                "date": day.isoformat(),
                "highest": round(average * 1.1, 2),
                "lowest": round(average * 0.9, 2),
                "order_count": 10 + k,
                "volume": 1000 * type_id + k,
            }
        )
    return days


class _CannedHistory(BaseHTTPRequestHandler):
    histories: dict = {}
    calls: dict = {}
    arrivals: dict = {}
    delay = 0.0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/markets/10000002/history/":
            return self._send(404, b'{"error": "not found"}')
        type_id = int(query["type_id"][0])
        with self.lock:
            n = self.calls[type_id] = self.calls.get(type_id, 0) + 1
            self.arrivals.setdefault(type_id, []).append(time.monotonic())
        if self.delay:
            time.sleep(self.delay)
        if type_id == 429 and n == 1:
            return self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
        if type_id == 420 and n == 1:
            return self._send(420, b'{"error": "limited"}', {"X-ESI-Error-Limit-Reset": "1"})
        if type_id == 500 and n == 1:
            return self._send(500, b'{"error": "internal"}')
        if type_id == 404:
            return self._send(404, b'{"error": "Type not found!"}')
        self._send(200, json.dumps(self.histories.get(type_id, [])).encode())

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
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def canned_history():
    _CannedHistory.histories = {}
    _CannedHistory.calls = {}
    _CannedHistory.arrivals = {}
    _CannedHistory.delay = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHistory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CannedHistory
    server.shutdown()


def _stored(url) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT type_id, date, average, highest, lowest, order_count, volume, xmin::text"
            " FROM market_price_history WHERE region_id = 10000002"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _as_stored(type_id: int, days: list[dict]) -> dict:
    return {
        (type_id, date.fromisoformat(d["date"])): (
            d["average"],
            d["highest"],
            d["lowest"],
            d["order_count"],
            d["volume"],
        )
        for d in days
    }


def _values(stored: dict) -> dict:
    return {k: v[:5] for k, v in stored.items()}


def _insert(url, type_id: int, days: list[dict]) -> None:
    with psycopg.connect(url) as conn:
        for d in days:
            conn.execute(
                "INSERT INTO market_price_history VALUES (10000002, %s, %s, %s, %s, %s, %s, %s)",
                [
                    type_id,
                    d["date"],
                    d["average"],
                    d["highest"],
                    d["lowest"],
                    d["volume"],
                    d["order_count"],
                ],
            )


def _fetch(url, esi_url, *type_ids, extra=()):
    args = ["prices", "history", "fetch", "--esi-url", esi_url, "--timeout", "2"]
    for t in type_ids:
        args += ["--type-id", str(t)]
    return cli(*args, *extra, url=url)


def test_fetch_is_incremental_and_rewrites_nothing_known(fresh_db, canned_esi_types):
    url, (esi_url, handler) = fresh_db, canned_esi_types
    full = {t: _days(t) for t in (34, 35, 36, 37)}
    handler.histories = full
    # 34 is stored through yesterday: not asked. 35 through five days ago, those
    # days as ESI has them, but one of them differs: that one is updated.
    _insert(url, 34, full[34])
    known = [dict(d) for d in full[35][:7]]
    known[3]["average"] = 1.0
    _insert(url, 35, known)
    before = _stored(url)
    out = _fetch(url, esi_url, 34, 35, 36, 37, 38)  # 38 has no history at all
    assert out.returncode == 0, out.stderr
    assert set(handler.calls) == {35, 36, 37, 38}
    after = _stored(url)
    expected = {}
    for type_id, days in full.items():
        expected.update(_as_stored(type_id, days))
    assert _values(after) == expected
    for key, row in before.items():
        changed = key == (35, date.fromisoformat(full[35][3]["date"]))
        assert (after[key][5] != row[5]) == changed, key  # xmin: rewritten only if changed
    assert "(days: 29 new, 1 changed, 6 unchanged)" in out.stdout
    assert "up to date        1" in out.stdout and "no history: 38" in out.stdout
    # Everything is up to date now, but 38 (no history): only it is asked again.
    handler.calls.clear()
    out = _fetch(url, esi_url, 34, 35, 36, 37, 38)
    assert out.returncode == 0, out.stderr
    assert set(handler.calls) == {38}


@pytest.fixture
def canned_esi_types(canned_history, fresh_db):
    out = cli("init-db", url=fresh_db)
    assert out.returncode == 0, out.stderr
    return canned_history


def test_fetch_is_polite_on_429_420_and_500_and_reports_a_failing_type(fresh_db, canned_esi_types):
    url, (esi_url, handler) = fresh_db, canned_esi_types
    handler.histories = {t: _days(t, 5) for t in (429, 420, 500)}
    out = _fetch(url, esi_url, 429, 420, 500, 404, extra=["--concurrency", "4"])
    assert out.returncode == 1, out.stderr
    assert "failed 404: history: HTTP 404" in out.stdout
    expected = {}
    for type_id, days in handler.histories.items():
        expected.update(_as_stored(type_id, days))
    assert _values(_stored(url)) == expected
    assert handler.calls == {429: 2, 420: 2, 500: 2, 404: 1}
    # The 429 said "Retry-After: 1", the 420 "reset in 1 s": each retry waited for
    # it, and not much longer (timed at the server, between the two requests).
    for type_id in (429, 420):
        first, retry = handler.arrivals[type_id]
        assert 1.0 <= retry - first < 10, type_id
    assert "pauses for ESI's error limit" in out.stdout


def test_an_interrupted_fetch_keeps_what_it_wrote_and_resumes(fresh_db, canned_esi_types):
    url, (esi_url, handler) = fresh_db, canned_esi_types
    # Enough types that the fetch is still going long after its first group is
    # written (about 2 s in): with 80, a loaded machine saw the fetch end first.
    types = list(range(1000, 1240))
    handler.histories = {t: _days(t, 8) for t in types}
    handler.delay = 0.15
    args = ["prices", "history", "fetch", "--esi-url", esi_url, "--concurrency", "2"]
    for t in types:
        args += ["--type-id", str(t)]
    proc = cli_popen(*args, url=url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len({k[0] for k in _stored(url)}) >= 4:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "interrupted: the types fetched so far are written" in stdout
    stored = _values(_stored(url))
    done = {k[0] for k in stored}
    assert 4 <= len(done) < len(types)
    # Every type fetched before Ctrl+C was written: none is lost and asked again.
    assert summary_count(stdout, "fetched") == len(done)
    # What was written is every day of each type written, nothing half.
    for type_id in done:
        assert {k: v for k, v in stored.items() if k[0] == type_id} == _as_stored(
            type_id, handler.histories[type_id]
        )
    handler.calls.clear()
    handler.delay = 0.0
    out = cli(*args, url=url)
    assert out.returncode == 0, out.stderr
    assert set(handler.calls) == set(types) - done
    expected = {}
    for type_id in types:
        expected.update(_as_stored(type_id, handler.histories[type_id]))
    assert _values(_stored(url)) == expected


def test_fetch_needs_types_and_takes_the_used_ones(demo_db, canned_history):
    esi_url, handler = canned_history
    out = cli("prices", "history", "fetch", "--esi-url", esi_url, url=demo_db)
    assert out.returncode == 2 and "--type-id N (repeat it) or --used-types" in out.stderr
    out = cli(
        "prices",
        "history",
        "fetch",
        "--esi-url",
        esi_url,
        "--used-types",
        "--concurrency",
        "8",
        url=demo_db,
    )
    assert out.returncode == 0, out.stderr
    with psycopg.connect(demo_db) as conn:
        used = {
            r[0]
            for r in conn.execute(
                "SELECT ship_type_id FROM victims UNION SELECT item_type_id FROM killmail_items"
            )
        }
    assert set(handler.calls) == used
