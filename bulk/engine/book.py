"""The price book: one shared table of unit cents per (book, price date, type).

A book is a rule set (with its price column, for seed). Its rows are built by
the rule set's builder (sql/book_build_<rules>.sql, filled from the fixed data
of bulk.engine.rules): a job builds the rows its killmails need before its
first batch, a batch builds whatever it finds missing or stale, and the
engines only join the book by equality (sql/book_batch.sql).

Every build is one REPEATABLE READ transaction that first locks the book's
table against other writers (SHARE ROW EXCLUSIVE, which readers never wait
for): one builder at a time, the others wait and then find the rows built, and
each build reads one snapshot of the prices, so a price is never a mix of two
states of the history. The price commands mark the rows a change affects stale
in the same transaction as the change (invalidate_*): the next batch that
needs such a row builds it again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date

import psycopg
from psycopg.pq import TransactionStatus

from bulk import db, sqlfiles
from bulk.engine import rules, statements
from bulk.engine.errors import ErrorKind, classify
from bulk.engine.session import Session
from bulk.errors import UserError, one_line

TABLE = db.BOOK_TABLE


def missing_table(conn: psycopg.Connection) -> bool:
    """Whether any of the tool's tables (the book, its versions and changes, the
    stamps) is missing or older than this version."""
    return bool(db.absent_tables(conn, db.TOOL_TABLES)) or db.tool_tables_outdated(conn)


def require_table(conn: psycopg.Connection) -> None:
    """A UserError naming the command that creates the tool's tables, where one is
    missing or older than this version."""
    missing = db.absent_tables(conn, db.TOOL_TABLES)
    if missing:
        lacks = f"lacks the tool's own table{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    elif db.tool_tables_outdated(conn):
        lacks = f"holds the price book table {TABLE} of an older version"
    else:
        return
    raise UserError(
        f"the database {lacks}: run `bulk-backfill init-db` (it adds only the tool's own"
        " tables, and updates the price book's) first"
    )


def create_table(conn: psycopg.Connection) -> bool:
    """Create the book's table if missing (init-db and the price commands); True if created."""
    created = missing_table(conn)
    if created:
        with conn.transaction():
            conn.execute(sqlfiles.load("book_schema"))
    return created


@contextmanager
def _writing(conn: psycopg.Connection) -> Iterator[None]:
    """One build: the table locked against other writers, then one snapshot.

    LOCK TABLE takes no snapshot, so the REPEATABLE READ snapshot of the first
    query after it sees every build and every invalidation that committed before.
    """
    own = conn.autocommit or conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if own:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # A build reads many prices; a timeout meant for batches must not fail
        # it (every batch would then fail), and waiting for another builder is
        # how builders share the work: a role's lock_timeout must not refuse a
        # second job that starts while the first builds.
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SET LOCAL lock_timeout = 0")
        # The cost estimates of thousands of index probes pass jit_above_cost,
        # and compiling takes 0.1 to 2 s, far more than running them.
        conn.execute("SET LOCAL jit = off")
        # Valuing connections turn merge joins off for their batches (bulk/db.py);
        # a build is not a batch.
        conn.execute("SET LOCAL enable_mergejoin TO DEFAULT")
        conn.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
        yield


def _run(conn: psycopg.Connection, statements: Iterable[tuple[str, dict, bool]]) -> int:
    """Run (statement, params, writes the book) triples as one build; the rows written."""
    built = 0
    with _writing(conn):
        for statement, params, builds in statements:
            cur = conn.execute(statement, params, prepare=False)
            if builds:  # a builder's one row: the rows it wrote (sql/book_store.sql)
                built += int(cur.fetchone()[0])
        if built:
            # Autovacuum analyzes later; the engines' plans want the new rows now.
            conn.execute(f"ANALYZE {TABLE}")
    return built


def build_for_batch(conn: psycopg.Connection, rule_set: str, column: str, ids: list[int]) -> int:
    """Build the prices the killmails `ids` need that the book lacks or holds stale."""
    statement = statements.book_build_sql(rule_set, column, "batch")
    return _run(conn, [(statement, {"ids": ids}, True)])


def build_for_job(
    conn: psycopg.Connection, rule_set: str, column: str, killmails: str, params: dict
) -> int:
    """Build every price a job needs before its first batch; the rows written.

    `killmails` is a condition on alias k choosing the job's killmails (fixed
    text; its values are in `params`). seed's book is every known type, so its
    job needs no scan of the killmails' lines; the kill-date rule sets build the
    (type, price date) pairs of the job's killmails, and every stale row of the book.
    """
    if rules.job_wants_every_type(rule_set):
        steps = [(statements.book_build_sql(rule_set, column, "known"), {}, True)]
    else:
        steps = [
            (statements.book_build_sql(rule_set, column, "stale"), {}, True),
            # The job's pairs first, in a statement PostgreSQL may run in parallel.
            (statements.book_job_pairs_sql(rule_set, killmails), params, False),
            ("ANALYZE pg_temp.bulk_book_job", {}, False),
            (statements.book_build_sql(rule_set, column, "job"), {}, True),
        ]
    return _run(conn, steps)


def build_before_batches(
    conn: psycopg.Connection, rule_set: str, column: str, killmails: str, params: dict
) -> tuple[int, str | None]:
    """build_for_job before a job's first batch: (rows written, None), or (0, why
    the batches are left to build their own prices) where some killmail's data,
    not the database, cannot be priced; only the killmails concerned then fail,
    in their batches. Any other database error (read-only, no privilege, a lost
    connection) is raised: nothing was valued yet."""
    try:
        return build_for_job(conn, rule_set, column, killmails, params), None
    except psycopg.Error as exc:
        if classify(exc, conn) != ErrorKind.BATCH:
            raise
        return 0, (
            f"the price book could not be built before the first batch"
            f" ({one_line(exc)}); each batch builds its own prices"
        )


# `every` of a job whose parent built the whole book just before its first batch
# (run): its processes need no recheck of their own, which each would otherwise
# make at its first batch, one after the other under the book's lock.
BUILT_BY_JOB = math.inf


def recheck(session: Session, rule_set: str, column: str, every: float | None) -> None:
    """Rebuild the book's rows whose sources may have changed behind the price commands.

    Only a rule set that rechecks (seed: a killboard's own fetcher may write
    market_prices) does anything, once per session (and the sessions that share
    its `rechecked`), then again when the last recheck is `every` seconds old
    (None: never again; BUILT_BY_JOB: not even once).
    The clock is read before the build's snapshot is taken, so a batch that
    starts more than `every` seconds after a price change committed sees it.
    """
    if not rules.recheck(rule_set) or every == BUILT_BY_JOB:
        return
    key = rules.book_key(rule_set, column)
    at = session.rechecked.get(key)
    now = time.monotonic()
    if at is not None and (every is None or now - at < every):
        return
    session.rechecked.pop(key, None)
    _run(session.conn, [(statements.book_build_sql(rule_set, column, "known"), {}, True)])
    session.rechecked[key] = now


# --- invalidation: the price commands, in the transaction of their change ---------


def _invalidate(conn: psycopg.Connection, statement: str, params: dict) -> int:
    if missing_table(conn):
        return 0
    return max(conn.execute(statement, params).rowcount, 0)


def invalidate_types(conn: psycopg.Connection, type_ids: Iterable[int]) -> int:
    """Mark stale every book row of these types (their market price or type data changed)."""
    ids = sorted({int(t) for t in type_ids})
    if not ids:
        return 0
    return _invalidate(conn, sqlfiles.load("book_invalidate_types"), {"types": ids})


def invalidate_history(conn: psycopg.Connection, changes: dict[int, date]) -> int:
    """Mark stale the rows a history change reaches: `changes` maps each type to the
    earliest day of it that changed. Each rule set says how far a change reaches."""
    if not changes:
        return 0
    types = sorted(changes)
    params = {
        "types": types,
        "days": [changes[t] for t in types],
        "after": [n for n in rules.RULES if rules.history_reach(n) == "after"],
        "all": [n for n in rules.RULES if rules.history_reach(n) == "all"],
    }
    return _invalidate(conn, sqlfiles.load("book_invalidate_history"), params)


def invalidate_overrides(conn: psycopg.Connection, type_ids: Iterable[int]) -> int:
    """Mark stale the rows of the rule sets that read overrides, for these types."""
    ids = sorted({int(t) for t in type_ids})
    if not ids:
        return 0
    books = [n for n in rules.RULES if rules.reads_history(n)]
    return _invalidate(
        conn, sqlfiles.load("book_invalidate_overrides"), {"types": ids, "books": books}
    )


def invalidate_groups(conn: psycopg.Connection, group_ids: Iterable[int]) -> int:
    """Mark stale every book row of the types in these groups (their category changed)."""
    ids = sorted({int(g) for g in group_ids})
    if not ids:
        return 0
    return _invalidate(conn, sqlfiles.load("book_invalidate_groups"), {"groups": ids})
