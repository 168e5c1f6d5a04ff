"""`prices fetch`: market_prices from ESI's order books, written in bulk as it goes.

Values need prices: without them every value is 0, which is what the zero
mode is for. A fetch writes its results in bulk upserts as it goes, each in
its own transaction, so an interrupted fetch leaves the table consistent, with
the types done so far up to date.
"""

from __future__ import annotations

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
) -> bool:
    """work(type_id) for every type on `concurrency` threads; record(type_id, future)
    as each finishes, then after_each(). True if Ctrl+C stopped it (the rest cancelled).

    Shared by `prices fetch` and `prices history fetch`: the ESI client they
    pass work through is what keeps the requests polite.
    """
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: dict[Future, int] = {}
        queue = iter(types)
        try:
            _fill(pool, pending, queue, work, concurrency * 2)
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(pending.pop(future), future)
                if after_each is not None:
                    after_each()
                _fill(pool, pending, queue, work, concurrency * 2)
        except KeyboardInterrupt:
            for future in pending:
                future.cancel()
            return True
    return False


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
