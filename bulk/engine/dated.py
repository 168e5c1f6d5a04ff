"""Kill-date unit prices (--rules evekill | zkillboard) for the engine: resolve, cache, load.

Each database connection keeps a TEMP table of unit cents by (rules, type,
price date) (sql/dated_cents_table.sql). A batch first resolves the pairs
it needs that the table lacks, in one set-based statement
(sql/resolve_dated_<rules>.sql), then loads its lines joined to the table
(sql/load_batch_dated.sql), in exactly the shape of sql/load_batch.sql, so
bulk.engine.pricing.price_batch values them as it values seed's lines.

A pair is resolved once per connection, until clear() (after a change to
market_price_history or price_overrides under a running job). A price that
cannot be int8 cents is cached as bad and fails only the load of a batch
that uses it, with 22003 (beyond int8) or 0A000 (NaN, infinity), as a bad
market_prices row fails load_batch.sql; unusable() then names the pairs.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

import numpy as np
import psycopg
from psycopg import pq

from bulk.engine import pricing, rules, sqlfiles

# Connections whose cache table exists, by backend: a reconnect is a new key.
_READY: weakref.WeakKeyDictionary[psycopg.Connection, int] = weakref.WeakKeyDictionary()


class _Growth:
    """Rows in a connection's cache, and how many it had when last analyzed."""

    def __init__(self) -> None:
        self.rows = 0
        self.analyzed = 0


_GROWTH: weakref.WeakKeyDictionary[psycopg.Connection, _Growth] = weakref.WeakKeyDictionary()
# Autovacuum never analyzes a temporary table: without statistics the planner
# may hash the whole cache to find a batch's few thousand pairs. So the cache is
# analyzed each time it has doubled since the last time (a few times a job).
_ANALYZE_FROM = 5_000


def ensure_cache(conn: psycopg.Connection) -> None:
    """Create this connection's cache table (a no-op once it surely exists).

    It also turns JIT compilation off for the session: the resolve statements'
    cost estimates (thousands of index probes) pass jit_above_cost, and
    compiling them takes 0.1 to 2 s, far more than running them.

    Inside a transaction of the caller the table is created there, and created
    again (IF NOT EXISTS) next time: a rollback would take it away.
    """
    pid = conn.info.backend_pid
    if _READY.get(conn) == pid:
        return
    statement = sqlfiles.load("dated_cents_table")
    if conn.autocommit or conn.info.transaction_status == pq.TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute(statement)
            conn.execute("SET jit = off")
        _READY[conn] = pid
        _GROWTH[conn] = _Growth()
    else:
        conn.execute(statement)
        conn.execute("SET LOCAL jit = off")


# When each connection's cache was last emptied (time.monotonic()); a new
# connection's cache starts empty.
_CLEARED: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()


def ensure_fresh(conn: psycopg.Connection, refresh: float | None) -> None:
    """Empty this connection's cache once it is `refresh` seconds old (None: never).

    A batch that starts more than `refresh` seconds after a change to the
    history or the overrides committed resolves its pairs again, as
    bulk.engine.unit_prices does for today's prices.
    """
    ensure_cache(conn)
    now = time.monotonic()
    cleared = _CLEARED.get(conn)
    if cleared is None:
        _CLEARED[conn] = now
    elif refresh is not None and now - cleared >= refresh:
        clear(conn)
        _CLEARED[conn] = now


def clear(conn: psycopg.Connection) -> None:
    """Forget every cached price of this connection (after the history or overrides changed)."""
    ensure_cache(conn)
    conn.execute("TRUNCATE pg_temp.bulk_dated_cents, pg_temp.bulk_dated_history_rows")
    _GROWTH[conn] = _Growth()


def resolve(conn: psycopg.Connection, ids: Iterable[int], rules_name: str) -> int:
    """Resolve and cache the pairs the killmails `ids` need; the number of pairs added.

    Every killmail of `ids` is resolved, whatever its mode: the load checks the
    mode in a later snapshot and must find every pair it needs.
    """
    ensure_cache(conn)
    statement = sqlfiles.resolve_dated_sql(rules_name)
    # prepare=False: the batch's own IDs give a better plan than a generic one.
    cur = conn.execute(statement, {"ids": _ids(ids)}, prepare=False)
    added = max(cur.rowcount, 0)
    growth = _GROWTH.setdefault(conn, _Growth())
    growth.rows += added
    if growth.rows >= max(2 * growth.analyzed, _ANALYZE_FROM):
        conn.execute("ANALYZE pg_temp.bulk_dated_cents")
        growth.analyzed = growth.rows
    return added


def load_lines(
    conn: psycopg.Connection, ids: Iterable[int], mode: str, rules_name: str
) -> np.ndarray:
    """Resolve the batch's pairs, then load its lines: the (n, 5) int64 array of price_batch.

    Columns killmail_id, line, unit_cents, qty_destroyed, qty_dropped, for the
    killmails of `ids` that match `mode`, as load_batch.sql gives them.
    """
    batch = _ids(ids)
    resolve(conn, batch, rules_name)
    statement = sqlfiles.load_batch_dated_sql(mode, rules_name)
    with conn.cursor(binary=True) as cur:
        cur.execute(statement, {"ids": batch}, prepare=False)
        return pricing.unpack_lines(cur.fetchone())


def unusable(
    conn: psycopg.Connection, ids: Iterable[int], mode: str, rules_name: str
) -> list[tuple[int, date, Decimal]]:
    """(type_id, price_date, unit price in ISK) of the batch's pairs that cannot be cents.

    Asked after a load failed; it resolves the batch again first, since a load
    that failed inside a transaction took that transaction's new pairs with it.
    """
    resolve(conn, ids, rules_name)
    statement = sqlfiles.unusable_dated_sql(mode, rules_name)
    return [tuple(r) for r in conn.execute(statement, {"ids": _ids(ids)}, prepare=False)]


def describe(rules_name: str, type_id: int, price_date: date, price: Decimal) -> str:
    """One unusable pair, for the error of the killmails that use it."""
    shown = "not a number" if price.is_nan() else f"{price:.6g} ISK"
    return (
        f"the {rules.rules_name(rules_name)} price of type {type_id} on {price_date}"
        f" is {shown}, beyond what a value can hold"
    )


def _ids(ids: Iterable[int]) -> list[int]:
    return sorted({int(i) for i in ids})
