"""Reading market orders and market history from ESI, politely.

Every page of `GET {esi}/markets/{region}/orders/?type_id=T&order_type=all`
is read (X-Pages says how many); `GET {esi}/markets/{region}/history/?type_id=T`
is one list. 5xx answers, timeouts and dropped connections are retried with
backoff. ESI's error budget is watched: when X-ESI-Error-Limit-Remain runs
low, every request waits for X-ESI-Error-Limit-Reset seconds before the limit
is hit, and a 420 (the error limit was hit anyway) or a 429 (too many
requests) is waited out the same way, for Retry-After seconds where the
answer gives them.

`timeout` bounds a whole request, connecting to the last byte of the body: a
socket's timeout alone applies to each read, so an answer that drips in a
byte at a time would never end. stop() (the first Ctrl+C) starts no more
requests and ends every wait at once, letting the requests in flight finish
within their deadline; abort() (the second) cuts those too.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from bulk import jsontext
from bulk.backoff import jitter

DEFAULT_ESI = "https://esi.evetech.net/latest"
DEFAULT_REGION = 10000002  # The Forge, where Jita is
_ERROR_FLOOR = 10  # errors left in ESI's window below which requests pause
_DEFAULT_RESET = 60.0  # seconds to wait on a 420 that does not say
_MAX_RESET = 300.0  # the longest wait any answer can ask for
# A type's orders fill a few pages at most; a count beyond this is a broken
# answer, and believing it would mean thousands of requests for one type.
MAX_PAGES = 10_000


# A request that timed out or lost its connection is worth another try.
_RETRIABLE = (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException)


class TypeFailed(Exception):
    """A type whose orders could not be read; str() says why."""


class Stopped(Exception):
    """The client was stopped (Ctrl+C) before the answer was whole: neither a result
    nor a failure, the type is simply not done."""


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    pauses: int = 0  # waits for ESI's error budget (low remain, a 420 or a 429)


class ErrorBudget:
    """ESI's error limit, shared by every request thread."""

    def __init__(self, stop: threading.Event | None = None):
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._stop = stop or threading.Event()
        self.pauses = 0

    def observe(self, headers, hit_limit: bool = False) -> None:
        """Pause every request if the answer says so: hit_limit for a 420 or a 429."""
        remain = _number(headers.get("X-ESI-Error-Limit-Remain"))
        reset = _number(headers.get("X-ESI-Error-Limit-Reset"))
        if hit_limit:
            # Retry-After, where given, is the server's own word on when to come back.
            after = _retry_after(headers.get("Retry-After"))
            reset = after if after is not None else reset
        if hit_limit or (remain is not None and remain <= _ERROR_FLOOR):
            # ESI's error window is a minute; a reset far beyond it is not believed.
            wait = min(max(reset, 0.0), _MAX_RESET) if reset is not None else _DEFAULT_RESET
            with self._lock:
                resume = time.monotonic() + wait + 0.5
                if resume > self._resume_at:
                    self._resume_at = resume
                    self.pauses += 1

    def wait(self) -> None:
        """Until the budget allows a request; Stopped if the client is stopped meanwhile."""
        while True:
            with self._lock:
                left = self._resume_at - time.monotonic()
            if left <= 0:
                return
            # A slice at a time: another thread may push the pause further.
            if self._stop.wait(min(left, 1.0)):
                raise Stopped("stopped while waiting for ESI's error limit")


def _number(value) -> float | None:
    """A header's finite number, or None: 'inf' or 'nan' would make a wait endless."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date; None if neither."""
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - time.time()


def _page_count(value: str | None, page: int) -> int:
    """X-Pages as a whole number from 1 to MAX_PAGES (1 when absent); TypeFailed otherwise."""
    if value is None:
        return 1
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= MAX_PAGES:
        return int(text)
    shown = text[:40] + ("..." if len(text) > 40 else "")
    raise TypeFailed(
        f"page {page}: X-Pages {shown!r} is not a page count (a whole number 1 to {MAX_PAGES:,})"
    )


class Client:
    """Market orders of one type at a time; safe to share between threads."""

    def __init__(
        self,
        base_url: str = DEFAULT_ESI,
        region: int = DEFAULT_REGION,
        *,
        user_agent: str,
        timeout: float = 10.0,
        attempts: int = 6,
    ):
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.user_agent = user_agent
        self.timeout = timeout  # seconds for a whole request, body included
        self.attempts = attempts
        self._stop = threading.Event()
        self.budget = ErrorBudget(self._stop)
        self.stats = FetchStats()
        self._lock = threading.Lock()
        self._flights: set[_Flight] = set()
        self._opener = urllib.request.build_opener(_WatchedHTTP, _WatchedHTTPS)

    def stop(self) -> None:
        """Start no more requests and end every wait; requests in flight may finish."""
        self._stop.set()

    def abort(self) -> None:
        """stop(), and cut the requests in flight too."""
        self._stop.set()
        with self._lock:
            flights = list(self._flights)
        for flight in flights:
            flight.expire()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def orders(self, type_id: int) -> list[dict]:
        """Every order of the type in the region, all pages."""
        first, pages = self._page(type_id, 1)
        orders = list(first)
        for page in range(2, pages + 1):
            more, _ = self._page(type_id, page)
            orders.extend(more)
        return orders

    def history(self, type_id: int) -> list:
        """The type's daily market history in the region: ESI's list as it came."""
        query = urllib.parse.urlencode({"type_id": type_id, "datasource": "tranquility"})
        url = f"{self.base_url}/markets/{self.region}/history/?{query}"
        data, _ = self._get_list(url, "history", "a JSON list of days")
        return data

    def _url(self, type_id: int, page: int) -> str:
        query = urllib.parse.urlencode(
            {"type_id": type_id, "order_type": "all", "page": page, "datasource": "tranquility"}
        )
        return f"{self.base_url}/markets/{self.region}/orders/?{query}"

    def _page(self, type_id: int, page: int) -> tuple[list, int]:
        data, headers = self._get_list(
            self._url(type_id, page), f"page {page}", "a JSON list of orders"
        )
        return data, _page_count(headers.get("X-Pages"), page)

    def universe(self, kind: str, id_: int) -> dict:
        """ESI's /universe/{kind}/{id}/ (kind: types, groups or categories): the object."""
        if kind not in ("types", "groups", "categories"):
            raise ValueError(f"unknown universe kind {kind!r}")
        url = f"{self.base_url}/universe/{kind}/{int(id_)}/?datasource=tranquility&language=en"
        data, _ = self._get_json(url, f"{kind} {id_}", "a JSON object", dict)
        return data

    def _get_list(self, url: str, where: str, expected: str) -> tuple[list, object]:
        return self._get_json(url, where, expected, list)

    def _get_json(self, url: str, where: str, expected: str, shape: type) -> tuple:
        """One GET whose answer is JSON of `shape`, retried politely; (the data, its headers).

        `where` starts every failure's reason (e.g. "page 2"), `expected` names
        what the answer should have been.
        """
        last_error = "no attempt made"
        for attempt in range(self.attempts):
            self.budget.wait()
            if self.stopped:
                raise Stopped(f"{where}: stopped before it was asked")
            self._count("requests")
            try:
                body, headers = self._exchange(url)
                data = jsontext.loads(body)
                if not isinstance(data, shape):
                    raise TypeFailed(f"{where}: expected {expected}")
                return data, headers
            except _Expired:
                last_error = f"no whole answer within {self.timeout:g} s"
                self._backoff(attempt)
            except urllib.error.HTTPError as exc:
                limited = exc.code in (420, 429)
                self.budget.observe(exc.headers, hit_limit=limited)
                if exc.code == 420:
                    last_error = "HTTP 420 (error limit reached)"
                elif exc.code == 429:
                    last_error = "HTTP 429 (too many requests)"
                elif exc.code >= 500:
                    last_error = f"HTTP {exc.code}"
                    self._backoff(attempt)
                else:
                    raise TypeFailed(f"{where}: HTTP {exc.code} {exc.reason}") from None
            except _RETRIABLE as exc:
                reason = getattr(exc, "reason", exc)
                last_error = f"{type(reason).__name__}: {reason}" if str(reason) else "timeout"
                self._backoff(attempt)
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
                # ValueError also covers an integer of thousands of digits.
                reason = " ".join(str(exc).split())[:200]
                raise TypeFailed(f"{where}: not {expected} ({reason})") from None
            except RecursionError:
                raise TypeFailed(f"{where}: not {expected} (nested too deep)") from None
            if self.stopped:
                raise Stopped(f"{where}: stopped before a retry ({last_error})")
            self._count("retries")
        raise TypeFailed(f"{where}: gave up after {self.attempts} attempts ({last_error})")

    def _exchange(self, url: str) -> tuple[bytes, object]:
        """One GET within the deadline: (body, headers); _Expired if the deadline cut it,
        whatever error the cut showed as (or a body that merely looked whole)."""
        flight = _Flight(self.timeout)
        request = _Request(
            url, flight, headers={"User-Agent": self.user_agent, "Accept": "application/json"}
        )
        with self._lock:
            self._flights.add(flight)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                self.budget.observe(response.headers)
                body = response.read()
                headers = response.headers
        except Exception as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # its headers are all the caller reads
            if flight.finish():
                raise _Expired from None
            raise
        finally:
            flight.finish()
            with self._lock:
                self._flights.discard(flight)
        if flight.finish():
            raise _Expired
        return body, headers

    def _backoff(self, attempt: int) -> None:
        """The wait before the next try (none after the last); Stopped at once if the
        client is stopped meanwhile."""
        if attempt + 1 < self.attempts and self._stop.wait(jitter(attempt, base=0.5, cap=10.0)):
            raise Stopped("stopped during a backoff")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


class _Expired(Exception):
    """A request cut at its deadline (or by abort())."""


class _Flight:
    """One request's connection, shut down when the request's deadline passes or on
    abort(): that wakes a read blocked in any layer (TLS, chunks, headers)."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._expired = False
        self._finished = False
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            expired = self._expired
        if expired:  # the deadline passed while connecting
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self._finished or self._expired:
                return
            self._expired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)

    def finish(self) -> bool:
        """No more cutting; whether the request was cut (idempotent)."""
        with self._lock:
            self._finished = True
        self._timer.cancel()
        return self._expired


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its
    # TLS state under a thread still reading it, and close() would not wake that read.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Request(urllib.request.Request):
    """A request that carries its _Flight to the connection it opens."""

    def __init__(self, url: str, flight: _Flight, headers: dict):
        super().__init__(url, headers=headers)
        self.flight = flight


class _Watched:
    """urllib's handlers with connections that hand their socket to the request's _Flight."""

    def do_open(self, http_class, req, **kwargs):
        flight = getattr(req, "flight", None)
        if flight is None:
            return super().do_open(http_class, req, **kwargs)

        def connection(host, **args):
            conn = http_class(host, **args)
            connect = conn.connect

            def watched_connect() -> None:
                connect()
                flight.attach(conn.sock)

            conn.connect = watched_connect
            return conn

        return super().do_open(connection, req, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass
