"""`prices fetch`: market_prices from ESI's order books, written in bulk as it goes.

Values need prices: without them every value is 0, which is what the zero
mode is for. A fetch writes its results in bulk upserts as it goes, each in
its own transaction, so an interrupted fetch leaves the table consistent, with
the types done so far up to date.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from bulk import db
from bulk.prices import esi, store
from bulk.prices.market import PRICE_FIELDS, MarketPrice, read_book
from bulk.progress import Progress

_FLUSH_EVERY = 500  # types per upsert during a fetch
T = TypeVar("T")


@dataclass
class FetchSummary:
    types: int
    priced: int = 0
    no_orders: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    # Orders that could not be real (price not a number from 0 to MAX_PRICE,
    # is_buy_order not a boolean, ...): skipped, and the types they were in.
    bad_orders: int = 0
    bad_order_types: list[int] = field(default_factory=list)
    written: int = 0
    # Priced types left out because `types` lacks them (type_id references types).
    not_in_types: list[int] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    stats: esi.FetchStats = field(default_factory=esi.FetchStats)


def fetch_prices(
    url: str,
    client: esi.Client,
    *,
    type_ids: list[int] | None = None,
    concurrency: int = 20,
    progress: bool = True,
    announce: Callable[[int], None] | None = None,
) -> FetchSummary:
    """Fetch and store prices for the given types, or every type the killmails use."""
    started = time.monotonic()
    with db.connect(url, autocommit=True) as conn:
        db.require_schema(conn)
        where = store.target(conn)
        db.ensure_book_table(conn)
        types = sorted(set(type_ids)) if type_ids else store.used_types(conn)
        summary = FetchSummary(types=len(types))
        if announce is not None:
            announce(len(types))
        bar = Progress(
            len(types),
            desc="prices fetch",
            noun="types",
            unit="type",
            counts=("priced", "no_orders", "failed"),
            enabled=progress,
        )
        done: list[MarketPrice] = []

        def record(type_id: int, future: Future) -> None:
            _record(summary, type_id, future, done, bar)

        def flush_if_due() -> None:
            if len(done) >= _FLUSH_EVERY:
                _flush(conn, where, done, summary)

        try:
            summary.interrupted = for_each_type(
                types,
                lambda type_id: read_book(type_id, client.orders(type_id)),
                record,
                concurrency=concurrency,
                after_each=flush_if_due,
                client=client,
                say=bar.note,
            )
        finally:
            # Whatever was fetched is written, even on Ctrl+C: each flush is whole.
            _flush(conn, where, done, summary)
            bar.close()
    summary.stats = client.stats
    summary.stats.pauses = client.budget.pauses
    summary.elapsed = time.monotonic() - started
    return summary


def for_each_type(
    types: Iterable[int],
    work: Callable[[int], T],
    record: Callable[[int, Future], None],
    *,
    concurrency: int,
    after_each: Callable[[], None] | None = None,
    client: esi.Client | None = None,
    say: Callable[[str], None] | None = None,
) -> bool:
    """work(type_id) for every type on `concurrency` threads; record(type_id, future)
    as each finishes, then after_each(). True if Ctrl+C stopped it.

    Shared by `prices fetch`, `prices history fetch` and `types fetch`: the
    ESI client they pass work through is what keeps the requests polite. The
    first Ctrl+C starts no more types and stops the client (no new requests,
    no more waiting); what is in flight still ends within the client's
    timeout and is recorded. A second Ctrl+C cuts that short; a third quits.
    A type the stop cut short (esi.Stopped) is not recorded: it is not done.
    """
    with ThreadPoolExecutor(max_workers=concurrency) as pool, _CtrlC() as ctrl_c:
        pending: dict[Future, int] = {}
        queue = iter(types)
        stopping = cutting = False
        try:
            _fill(pool, pending, queue, work, concurrency * 2)
            while pending:
                # A short wait: a Ctrl+C is acted on within it.
                finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    type_id = pending.pop(future)
                    if not future.cancelled() and not isinstance(future.exception(), esi.Stopped):
                        record(type_id, future)
                if after_each is not None:
                    after_each()
                if ctrl_c.count and not stopping:
                    stopping = True
                    for future in [f for f in pending if f.cancel()]:
                        del pending[future]
                    if client is not None:
                        client.stop()
                    if say is not None and pending:
                        within = f" within {client.timeout:g} s" if client is not None else ""
                        say(
                            f"stopping: no new requests; the {len(pending):,} types under way end"
                            f"{within} (Ctrl+C again to drop them)"
                        )
                if ctrl_c.count >= 2 and not cutting:
                    cutting = True
                    if client is not None:
                        client.abort()
                    if say is not None and pending:
                        say("stopping now: the requests in flight are dropped")
                if not stopping:
                    _fill(pool, pending, queue, work, concurrency * 2)
        except KeyboardInterrupt:
            # The third Ctrl+C: the pool's threads must not hold the exit up.
            for future in pending:
                future.cancel()
            if client is not None:
                client.abort()
            raise
    return stopping


class _CtrlC:
    """Counts SIGINTs instead of raising KeyboardInterrupt, from the main thread only.

    A KeyboardInterrupt could land anywhere, a write to the database included;
    the loop looks at the count between steps instead. A third Ctrl+C raises.
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous = None

    def __enter__(self) -> _CtrlC:
        # Not from another thread (Python refuses), nor where SIGINT is ignored
        # (a background job): there it must stay ignored.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt


def _fill(pool, pending: dict, queue, work, limit: int) -> None:
    """Keep at most `limit` types submitted, so a Ctrl+C has little to cancel."""
    while len(pending) < limit:
        type_id = next(queue, None)
        if type_id is None:
            return
        pending[pool.submit(work, type_id)] = type_id


def _record(summary: FetchSummary, type_id: int, future: Future, done: list, bar) -> None:
    try:
        price, bad_orders = future.result()
    except esi.TypeFailed as exc:
        summary.failed.append((type_id, str(exc)))
        bar.add(1, failed=1)
        return
    if bad_orders:
        summary.bad_orders += bad_orders
        summary.bad_order_types.append(type_id)
    if price is None:
        summary.no_orders.append(type_id)
        bar.add(1, no_orders=1)
        return
    summary.priced += 1
    done.append(price)
    bar.add(1, priced=1)


def _flush(
    conn: psycopg.Connection,
    where: store.PriceTarget,
    done: list[MarketPrice],
    summary: FetchSummary,
) -> None:
    if not done:
        return
    rows = [(p.type_id, *(getattr(p, name) for name in PRICE_FIELDS)) for p in done]
    with conn.transaction():
        written = store.upsert(conn, where, PRICE_FIELDS, rows)
    done.clear()
    summary.written += written.written
    summary.not_in_types.extend(written.not_in_types)
