"""One batch of killmail IDs: load its priced lines, price them, write the values.

A batch is written whole or not at all: by one UPDATE statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import psycopg
import psycopg.errors
from psycopg import pq

from bulk import sqlfiles
from bulk.engine import book, modes, pricing, statements
from bulk.engine import rules as rule_sets
from bulk.engine.session import Session
from bulk.engine.valuation import BatchResult, Valuation


@dataclass(frozen=True)
class Stamp:
    """What a batch's stamps record beyond the job's book: the book's version the load
    read, and the killmails with a line priced by the fallback or of an unknown type."""

    version: int
    unpriced: tuple[int, ...]

    def flags(self, killmail_ids: np.ndarray) -> np.ndarray:
        """Whether each of `killmail_ids` had an unpriced line, as a bool array."""
        return np.isin(killmail_ids, np.asarray(self.unpriced, dtype=np.int64))


def _update_params(cents: pricing.KillmailCents, stamp: Stamp) -> list:
    columns = (cents.killmail_ids, cents.total, cents.destroyed, cents.dropped)
    unpriced = stamp.flags(cents.killmail_ids).tolist()
    rows = [v for row in zip(*(c.tolist() for c in columns), unpriced) for v in row]
    # In the order of the statement's text: the book's version, then the rows.
    return [stamp.version, *rows]


_INT4_OID, _INT8_OID, _BOOL_OID = 23, 20, 16
_ROW_TYPES = (_INT4_OID, _INT8_OID, _INT8_OID, _INT8_OID, _BOOL_OID)


def _binary_params(cents: pricing.KillmailCents, stamp: Stamp, rows: int) -> list[bytes | None]:
    """The book's version (int8), then each killmail's id (int4), three cent sums
    (int8) and whether a line was unpriced (bool), big-endian as libpq sends them;
    then rows with a NULL id (which match no killmail) up to `rows`.

    Building these with numpy and sending them through libpq directly skips
    psycopg's per-value adaptation, which costs more than the rest of the
    write for 2,000 parameters.
    """
    n = int(cents.killmail_ids.size)
    ids = cents.killmail_ids.astype(">i4").tobytes()
    sums = np.empty((n, 3), dtype=">i8")
    sums[:, 0], sums[:, 1], sums[:, 2] = cents.total, cents.destroyed, cents.dropped
    raw = sums.tobytes()
    flags = stamp.flags(cents.killmail_ids).astype(np.uint8).tobytes()
    params: list[bytes | None] = [stamp.version.to_bytes(8, "big", signed=True)]
    for i in range(n):
        at = 24 * i
        params += (
            ids[4 * i : 4 * i + 4],
            raw[at : at + 8],
            raw[at + 8 : at + 16],
            raw[at + 16 : at + 24],
            flags[i : i + 1],
        )
    params += (None, _ZERO8, _ZERO8, _ZERO8, _FALSE) * (rows - n)
    return params


_ZERO8, _FALSE = bytes(8), b"\x00"


def write_rows(n: int) -> int:
    """The VALUES rows of the write for `n` killmails: n rounded up to a multiple of 50
    (of 500 above 500). The write is a prepared statement per connection (its
    planning cost as much as the stamps' writes); rounding keeps them a handful
    rather than one per number of killmails a batch happens to write."""
    step = 50 if n <= 500 else 500
    return -(-n // step) * step


_NO_SUCH_STATEMENT, _STATEMENT_EXISTS = b"26000", b"42P05"


def _sqlstate(result: pq.abc.PGresult) -> bytes | None:
    return result.error_field(pq.DiagnosticField.SQLSTATE)


def _exec_prepared(session: Session, text: bytes, params, types, formats):
    """Run `text` as a statement prepared on the session's connection (prepared at
    its first use there).

    Behind a pooler that hands each transaction another server connection, the
    statement may be missing there: it then runs unprepared, as before.
    """
    name = sqlfiles.statement_name(text)
    pg = session.conn.pgconn
    if name not in session.prepared:
        made = pg.prepare(name, text, types)
        if made.status != pq.ExecStatus.COMMAND_OK and _sqlstate(made) != _STATEMENT_EXISTS:
            return made
        session.prepared.add(name)
    result = pg.exec_prepared(name, params, formats, pq.Format.BINARY)
    if result.status == pq.ExecStatus.FATAL_ERROR and _sqlstate(result) == _NO_SUCH_STATEMENT:
        session.prepared.discard(name)
        result = pg.exec_params(text, params, types, formats, pq.Format.BINARY)
    return result


def _write(
    session: Session,
    cur: psycopg.Cursor,
    cents,
    stamp: Stamp,
    mode: str,
    updated_at: str | None,
    rules: str,
    column: str,
) -> int:
    """The one guarded UPDATE ... FROM (VALUES ...) with its stamps; the rows it changed."""
    n = int(cents.killmail_ids.size)
    if cents.total.dtype == object:  # sums beyond int8: numeric text through psycopg
        statement = statements.update_batch_sql(mode, n, updated_at, rules, column)
        cur.execute(statement, _update_params(cents, stamp), prepare=False)
        return int(cur.fetchone()[0])
    conn = session.conn
    rows = write_rows(n)
    result = _exec_prepared(
        session,
        statements.update_batch_raw(mode, rows, updated_at, rules, column),
        _binary_params(cents, stamp, rows),
        (_INT8_OID,) + _ROW_TYPES * rows,
        [pq.Format.BINARY] * (1 + 5 * rows),
    )
    if result.status != pq.ExecStatus.TUPLES_OK:
        if conn.pgconn.status == pq.ConnStatus.BAD:
            message = conn.pgconn.error_message.decode(errors="replace").strip()
            raise psycopg.OperationalError(message or "the connection was lost")
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    # One row: the killmails written, an int8 in binary.
    return int.from_bytes(result.get_value(0, 0), "big", signed=True)


class PriceOutOfRange(psycopg.errors.NumericValueOutOfRange):
    """A unit price of the batch whose cents do not fit int8; str() names the types.

    A NumericValueOutOfRange (SQLSTATE 22003), so whatever classifies errors
    by SQLSTATE or by class treats it as the batch error it is: the batch is
    split and only the killmails that use the price fail.
    """


# The errors PostgreSQL raises casting such a price to int8 cents:
# "bigint out of range" (22003), "cannot convert NaN/infinity to bigint" (0A000).
_CENTS_CAST_ERRORS = (psycopg.errors.NumericValueOutOfRange, psycopg.errors.FeatureNotSupported)


def process_batch(
    session: Session, ids: Iterable[int], mode: str, valuation: Valuation = Valuation()
) -> BatchResult:
    """Value and write the killmails of `ids` that match `mode`, all or nothing.

    Where killmails has an updated_at column, the rows written get the
    statement's time in it (unless the valuation's touch_updated_at is False);
    rows not written keep theirs.

    Unit prices come from the price book (bulk.engine.book), joined by
    equality: a batch that finds a (type, price date) of its lines missing
    from the book, or stale, builds it and is valued again.

    The write is one statement, its own transaction on the session's autocommit
    connection: it commits whole or not at all, with no BEGIN/COMMIT round trips;
    the read needs no transaction, since the UPDATE re-checks the mode itself.
    """
    batch_ids = sorted({int(i) for i in ids})
    v = valuation
    step = _ENGINES[modes.engine(v.engine)]
    rule_sets.book_key(v.rules, v.price_column)  # a UserError for an unknown rule set or column
    book.recheck(session, v.rules, v.price_column, v.price_refresh)
    args = (batch_ids, mode, v.rules, v.price_column, v.touch_updated_at)
    try:
        for attempt in range(3):
            updated, no_victim, missing = step(session, *args)
            if not missing:
                break
            if attempt == 2:
                raise RuntimeError(
                    f"the price book still lacks {missing} prices after building them"
                )
            book.build_for_batch(session.conn, v.rules, v.price_column, batch_ids)
    except _CENTS_CAST_ERRORS as exc:
        if isinstance(exc, PriceOutOfRange):
            raise
        named = _unusable_prices(session.conn, batch_ids, mode, v.rules, v.price_column)
        if not named:
            raise
        raise PriceOutOfRange(
            "; ".join(_describe(v.rules, v.price_column, *n) for n in named)
        ) from exc
    return BatchResult(
        updated=updated,
        skipped=len(batch_ids) - updated,
        no_victim=int(no_victim.size),
        no_victim_ids=no_victim.tolist(),
    )


def _load(conn, batch_ids: list[int], mode: str, rules: str, column: str):
    """(the batch's lines (pricing.unpack_lines), their Stamp), or (None, how many
    lines of the batch the book lacks prices of)."""
    with conn.cursor(binary=True) as cur:
        # prepare=False: a prepared generic plan of this join can be many
        # times slower than the custom plan for the batch's actual IDs.
        statement = statements.load_book_sql(mode, rules, column)
        cur.execute(statement, {"ids": batch_ids}, prepare=False)
        row = cur.fetchone()
    if row[5]:
        return None, int(row[5])
    return pricing.unpack_lines(row[:5]), Stamp(int(row[7]), tuple(row[6]))


def load_lines(
    conn: psycopg.Connection,
    ids: Iterable[int],
    mode: str,
    rules: str = rule_sets.DEFAULT_RULES,
    price_column: str = "sell",
) -> np.ndarray:
    """The numpy engine's load alone: the (n, 5) int64 lines of pricing.price_batch for
    the killmails of `ids` that match `mode` (every one of them where the UPDATE alone
    guards the mode: modes.GUARDED_AT_WRITE), building the book's missing prices first."""
    batch_ids = sorted({int(i) for i in ids})
    for _ in range(2):
        lines, missing = _load(conn, batch_ids, mode, rules, price_column)
        if lines is not None:
            return lines
        book.build_for_batch(conn, rules, price_column, batch_ids)
    raise RuntimeError(f"the price book lacks {missing} prices after building them")


def _load_price_write(
    session: Session, batch_ids: list[int], mode: str, rules: str, column: str, touch: bool
):
    """The numpy engine: load the batch's lines, sum them, write them with one UPDATE."""
    conn = session.conn
    lines, stamp = _load(conn, batch_ids, mode, rules, column)
    if lines is None:
        return 0, np.empty(0, dtype=np.int64), stamp
    updated_at = session.updated_at_type() if touch else None
    cents, no_victim = pricing.price_batch(lines)
    if not cents.killmail_ids.size:
        return 0, no_victim, 0
    with conn.cursor(binary=True) as cur:
        written = _write(session, cur, cents, stamp, mode, updated_at, rules, column)
        return written, no_victim, 0


def _value_in_sql(
    session: Session, batch_ids: list[int], mode: str, rules: str, column: str, touch: bool
):
    """The set-based engine: one statement values and writes the batch."""
    updated_at = session.updated_at_type() if touch else None

    def run(product: str):
        text = statements.value_book_sql(mode, rules, column, updated_at, product)
        updated, no_victim, missing = session.conn.execute(
            text, {"ids": batch_ids}, prepare=False
        ).fetchone()
        return int(updated), np.asarray(no_victim, dtype=np.int64), int(missing)

    try:
        return run("int8")
    except psycopg.errors.NumericValueOutOfRange:
        # An int8 line product overflowed (or a price cannot be cents: then the
        # numeric statement fails the same way and the caller names the price).
        # Numeric products cost more, so only such a batch pays for them.
        return run("numeric")


_ENGINES = {"numpy": _load_price_write, "sql": _value_in_sql}


def _unusable_prices(conn, batch_ids: list[int], mode: str, rules: str, column: str) -> list:
    """(type_id, price_date, unit ISK) of the batch's prices that cannot be cents;
    asked after the valuation failed."""
    statement = statements.book_unusable_sql(mode, rules, column)
    return conn.execute(statement, {"ids": batch_ids}, prepare=False).fetchall()


def _describe(rules: str, column: str, type_id: int, price_date: date, price: Decimal) -> str:
    """One unusable price, for the error of the killmails that use it."""
    return rule_sets.describe_unusable(rules, column, type_id, price_date, price)
