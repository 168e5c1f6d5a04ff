"""Which killmails a `--mode stale` job revalues: those whose stamp is missing, of
another book, or older than a change of their prices (sql/stale_ids.sql)."""

from __future__ import annotations

import dataclasses
import heapq
import re
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import psycopg
from psycopg import sql

from bulk import sqlfiles
from bulk.db import close_quietly
from bulk.engine import book, rules, scan
from bulk.errors import UserError

# Why a killmail is stale, in the order status shows them (sql/stale_ids.sql).
REASONS: tuple[str, ...] = (
    "never_valued",
    "no_stamp",
    "other_rules",
    "book_rebuilt",
    "now_priced",
    "prices_changed",
)

_PERCENT = re.compile(r"([0-9]{1,6}(\.[0-9]{1,6})?)%?")


def parse_min_change(text: str) -> Decimal:
    """`--min-change`: a percentage ("1%", "0.5%") as a fraction; "0" or "0%" is any cent."""
    value = text.strip()
    match = _PERCENT.fullmatch(value)
    number = Decimal(match.group(1)) if match else None
    if number is None or (number and not value.endswith("%")):
        raise UserError(f"--min-change {text!r}: give a percentage such as 1% (0 means any cent)")
    return number / 100


@contextmanager
def _searching(conn: psycopg.Connection, snapshot: str | None = None) -> Iterator[None]:
    """The search's own settings, in a transaction of its own (in the exported
    `snapshot` of another's, where given).

    jit off: its cost estimates pass jit_above_cost, and compiling took 0.6 s,
    more than the search. Nested loops off: the stamps' statistics lag their
    versions (every job rewrites them), and a plan that expected one stamp of a
    version probed the lines of 256,000 killmails one by one; the probes the
    search wants are LATERAL subqueries, which stay nested loops. No statement
    timeout: one meant for batches must not refuse the job (builds do the same).
    Repeatable read: the floor, the stamped versions, what moved since them and
    the killmails found are read in one snapshot (a book made again between two
    of them would leave stamps below its new floor unfound).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL enable_nestloop = off")
        conn.execute("SET LOCAL statement_timeout = 0")
        yield


# How sql/stale_ids.sql reaches the killmail of a line whose price moved: joined,
# where the job's filters or the rule set's price date read it; else, on a
# killboard without foreign keys (which may hold the lines and stamp of a
# killmail it deleted), only a probe that it exists, once a killmail found
# (OFFSET 0 keeps it a probe of the key, not a hash of every killmail); with
# them, nothing.
_HELD_KILLMAIL = "JOIN killmails AS k ON k.killmail_id = h.killmail_id"
_HELD_ALONE = "h.killmail_id > %(after)s"
_HELD_EXISTS = (
    "HAVING EXISTS (SELECT 1 FROM killmails AS k WHERE k.killmail_id = h.killmail_id OFFSET 0)"
)


def _statement(conn, rule_set, column, selection, min_change) -> tuple[dict, dict]:
    """The placeholders of sql/stale_ids.sql and its parts, filled, and their
    parameters, after sql/stale_moved.sql found what moved."""
    fill = rules.book_placeholders(rule_set, column)
    # One read of the stamps: their versions, and how many stamps hold each.
    stamps = dict(
        conn.execute(
            sqlfiles.load("stale_versions").format(book=fill["book"]), prepare=False
        ).fetchall()
    )
    (floor,) = conn.execute(
        sqlfiles.load("stale_floor").format(book=fill["book"]), prepare=False
    ).fetchone()
    moved = conn.execute(
        sqlfiles.load("stale_moved").format(book=fill["book"]),
        {"min_change": min_change, "versions": sorted(stamps)},
        prepare=False,
    ).fetchall()
    # The job's filters without its mode, and without its limit: the limit is
    # applied to the killmails found, in ID order, as a scan's page would
    # (stale_limit, at the end of the statement).
    unlimited = dataclasses.replace(selection, mode="all", limit=None)
    filters, params = unlimited.killmails_sql()
    held_killmails, held_filters, held_having = _HELD_KILLMAIL, filters, ""
    if not unlimited.filtered() and rules.uses_price_column(rule_set):
        # Today's prices and no filter: the held lines need no killmail row.
        held_killmails, held_filters = "", _HELD_ALONE
        # With foreign keys the lines cannot outlive their killmail: no probe
        # (23 of the moved prices' 151 ms on 300,000 killmails).
        held_having = "" if lines_keep_their_killmails(conn) else _HELD_EXISTS
    book_ = fill["book"]
    parts = {
        "book": book_,
        "moved_part": sqlfiles.load("stale_part_moved").format(
            book=book_,
            price_date=fill["price_date"],
            filters=filters,
            held_killmails=held_killmails,
            held_filters=held_filters,
            held_having=held_having,
        ),
        "unstamped_part": sqlfiles.load("stale_part_unstamped").format(book=book_, filters=filters),
    }
    since, dates, types, now_priced = (list(c) for c in zip(*moved)) if moved else ([],) * 4
    by_type, by_killmail = _routes(conn, stamps, moved)
    # Prefixed: the job's filters bind names of their own (--since is "since").
    params = {
        **params,
        "stale_limit": selection.limit,
        "stale_floor": floor,
        "stale_since": since,
        "stale_dates": dates,
        "stale_types": types,
        "stale_now_priced": now_priced,
        "stale_by_type_versions": sorted(by_type),
        "stale_by_type_types": sorted({t for v in by_type for t in by_type[v]}),
        "stale_by_killmail_versions": sorted(by_killmail),
        "stale_by_killmail_types": sorted({t for v in by_killmail for t in by_killmail[v]}),
        # The sides of sql/stale_part_moved.sql that run: those with versions.
        "stale_by_type": bool(by_type),
        "stale_by_killmail": bool(by_killmail),
    }
    return parts, params


def lines_keep_their_killmails(conn: psycopg.Connection) -> bool:
    """Whether the killboard's foreign keys keep every victim row and item line
    with its killmail (sql/lines_keep_their_killmails.sql)."""
    return bool(conn.execute(sqlfiles.load("lines_keep_their_killmails")).fetchone()[0])


def _whole(parts: dict) -> str:
    """sql/stale_ids.sql: both parts in one statement, one row a killmail with its reason."""
    return sqlfiles.load("stale_ids").format(**parts)


def _routes(conn, stamps: dict[int, int], moved) -> tuple[dict, dict]:
    """The stamped versions with moved types, split by where their lines are read
    from: {version: its moved types} found through the item types' index, and
    those found through their killmails' lines, whichever reads fewer lines.
    `stamps`: how many stamps of the book hold each version."""
    moved_types: dict[int, set[int]] = {}
    for version, _, type_id, _ in moved:
        moved_types.setdefault(version, set()).add(type_id)
    if not moved_types:
        return {}, {}
    per_type, per_killmail = conn.execute(sqlfiles.load("stale_sizes"), prepare=False).fetchone()
    by_type, by_killmail = {}, {}
    for version, types in moved_types.items():
        through_types = len(types) * per_type
        through_killmails = stamps.get(version, 0) * per_killmail
        (by_type if through_types <= through_killmails else by_killmail)[version] = types
    return by_type, by_killmail


def find(
    conn: psycopg.Connection,
    rule_set: str,
    column: str,
    selection: scan.Selection,
    beside: Callable[[], psycopg.Connection] | None = None,
) -> array:
    """The IDs, ascending, of the selection's killmails that are stale under the book
    of (`rule_set`, `column`) by the selection's min_change, 8 bytes each. The book's
    changed rows must be built first.

    `beside` opens another connection to the database: the search's two parts then
    run at once, one on each (0.29 against 0.42 s on 300,000 killmails: the moved
    prices' half is nested loops on one core, the other half takes the other)."""
    with _searching(conn):
        parts, params = _statement(conn, rule_set, column, selection, selection.min_change)
        if beside is not None:
            return _found_apart(conn, beside, parts, params, selection.limit)
        return _ids(conn, _whole(parts), params)


def _found_apart(
    conn: psycopg.Connection,
    beside: Callable[[], psycopg.Connection],
    parts: dict,
    params: dict,
    limit: int | None,
) -> array:
    """The search's two parts at once: the killmails without a stamp on a connection
    of its own (`beside()`), in this transaction's snapshot, while this connection
    finds those whose prices moved. Where no other connection opens, one after the
    other. The IDs of both, ascending, each once, at most `limit`."""
    (snapshot,) = conn.execute("SELECT pg_export_snapshot()").fetchone()
    try:
        other = beside()
    except (psycopg.Error, UserError):
        return _ids(conn, _whole(parts), params)
    text_unstamped = sqlfiles.load("stale_ids_unstamped").format(**parts)
    unstamped = _Beside(other, snapshot, text_unstamped, params)
    unstamped.start()
    try:
        text = sqlfiles.load("stale_ids_moved").format(**parts)
        moved = _ids(conn, text, params)
    except BaseException:
        # Ctrl+C or a failure here: the other statement must not run on alone.
        other.cancel_safe(timeout=5)
        raise
    finally:
        unstamped.join()
        close_quietly(other)
    if isinstance(unstamped.error, psycopg.errors.LockNotAvailable):
        # A lock request queued on a table between the two connections' reads of
        # it (an ALTER or VACUUM FULL waits for this transaction, the other
        # connection would wait behind it, and this one for the other, a cycle
        # through the client PostgreSQL cannot see): this connection, which
        # holds its locks, reads that half too.
        return _merged(moved, _ids(conn, text_unstamped, params), limit)
    if unstamped.error is not None:
        raise unstamped.error
    return _merged(moved, unstamped.ids, limit)


def _ids(conn: psycopg.Connection, text: str, params: dict) -> array:
    """The first column of the statement's rows, 8 bytes each.

    The rows' stream is closed before anything else runs on the connection, an
    interrupt included: left open (a generator expression's frame, kept alive by
    the traceback) it held the connection's lock, and the transaction's
    rollback waited for it forever.
    """
    ids = array("q")
    rows = _rows(conn, text, params)
    try:
        for row in rows:
            ids.append(row[0])
    finally:
        rows.close()
    return ids


class _Beside(threading.Thread):
    """One statement of the search on a connection of its own, in `snapshot`: its
    first column into `ids`, or what it raised into `error`."""

    def __init__(self, conn: psycopg.Connection, snapshot: str, text: str, params: dict):
        super().__init__(name="bulk-stale-search", daemon=True)
        self.conn, self.snapshot, self.text, self.params = conn, snapshot, text, params
        self.ids = array("q")
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _searching(self.conn, self.snapshot):
                # One core for this statement, the other for the moved prices' half
                # beside it: with its parallel workers the two halves took 0.37 s,
                # without them 0.29 s, against 0.42 s for the one statement (medians
                # of 8 on 300,000 killmails, two cores).
                self.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                # Its tables are locked by the other connection already: a wait
                # here is behind a lock request queued since, which waits for
                # that connection (see _found_apart).
                self.conn.execute("SET LOCAL lock_timeout = '200ms'")
                self.ids = _ids(self.conn, self.text, self.params)
        except BaseException as exc:  # handed to the thread that waits for it
            self.error = exc


def _merged(first: Iterable[int], second: Iterable[int], limit: int | None) -> array:
    """Two ascending ID sequences as one, each ID once, the first `limit` (None: all)."""
    out = array("q")
    if limit is not None and limit <= 0:
        return out
    last = None
    for killmail_id in heapq.merge(first, second):
        if killmail_id != last:
            out.append(killmail_id)
            last = killmail_id
            if limit is not None and len(out) >= limit:
                break
    return out


# Rows a chunk: millions of stale IDs arrive in chunks, never as millions of
# Python tuples at once.
_CHUNK = 50_000


def _rows(conn: psycopg.Connection, text: str, params: dict) -> Iterator[tuple]:
    """The search's rows, in chunks.

    A libpq from 17 on returns a statement's rows in chunks; the statement then
    runs as any other, with the parallel workers the planner gives it (0.4
    against 0.6 s on 300,000 killmails). A server-side cursor, the way with an
    older libpq, runs without them.
    """
    if psycopg.pq.version() >= 170000:
        yield from conn.cursor().stream(text, params, size=_CHUNK)
        return
    with conn.cursor(name="bulk_stale_ids") as cur:
        cur.itersize = _CHUNK
        cur.execute(text, params)
        while rows := cur.fetchmany(_CHUNK):
            yield from rows


def count(
    conn: psycopg.Connection,
    rule_set: str,
    column: str,
    min_change: Decimal = Decimal(0),
) -> Counter:
    """How many killmails are stale under the book, by reason (REASONS)."""
    with _searching(conn):
        parts, params = _statement(conn, rule_set, column, scan.Selection(mode="all"), min_change)
        rows = conn.execute(
            sqlfiles.load("stale_count").format(stale=_whole(parts)), params, prepare=False
        ).fetchall()
    return Counter(dict(rows))


def build_first(conn: psycopg.Connection, rule_set: str, column: str) -> tuple[int, str | None]:
    """A stale job's first step: the book rebuilt where its sources changed, so that
    every change is in the book's changes before the search. (rows written,
    book.build_before_batches's note or None)."""
    return book.build_before_batches(conn, rule_set, column, "FALSE", {})


def find_and_build(
    conn: psycopg.Connection,
    rule_set: str,
    column: str,
    selection: scan.Selection,
    note: str | None,
    beside: Callable[[], psycopg.Connection] | None = None,
) -> tuple[array, int, str | None]:
    """After build_first: the stale killmails found (find, with `beside`), then the
    prices they need built. (their IDs, book rows written, the note of the builds so
    far or None)."""
    ids = find(conn, rule_set, column, selection, beside)
    built = 0
    if ids and not rules.job_wants_every_type(rule_set) and note is None:
        built, note = book.build_before_batches(
            conn, rule_set, column, "k.killmail_id = ANY(%(found)s::int8[])", {"found": list(ids)}
        )
    return ids, built, note


def build_and_find(
    conn: psycopg.Connection,
    rule_set: str,
    column: str,
    selection: scan.Selection,
    beside: Callable[[], psycopg.Connection] | None = None,
) -> tuple[array, int, str | None]:
    """build_first, then find_and_build: (the stale IDs, book rows written, note or None)."""
    built, note = build_first(conn, rule_set, column)
    ids, more, note = find_and_build(conn, rule_set, column, selection, note, beside)
    return ids, built + more, note
