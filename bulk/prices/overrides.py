"""`prices override set/list/import`: fixed prices for types the market cannot price.

An override is a type's price over an optional range of UTC dates, both ends
inclusive and NULL meaning open. Setting an override of the same type and
the same range replaces it. Where several cover a kill date, the rules take
the one with the latest valid_from (an open start counts as earliest), then
the highest id (sql/history_schema.sql).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg

from bulk import db, sqlfiles
from bulk.engine import book
from bulk.errors import UserError
from bulk.prices.files import PriceFileError
from bulk.prices.market import MAX_PRICE

_MAX_TYPE_ID = 2**31 - 1
_MAX_NOTE = 1000  # characters: a note says where a price comes from, not an essay
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CSV_COLUMNS = ("type_id", "valid_from", "valid_to", "price", "note")


@dataclass(frozen=True)
class Override:
    type_id: int
    price: float
    valid_from: date | None = None
    valid_to: date | None = None
    note: str | None = None
    id: int | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "type_id": self.type_id,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "price": self.price,
            "note": self.note,
        }


@dataclass
class SetResult:
    ids: list[int]
    replaced: int  # overrides of the same type and range that were replaced
    rows: list[Override]  # as stored (checked: a float price, an empty note as None)


def check(override: Override) -> Override:
    """The override if it can be stored; ValueError with the reason otherwise (pure)."""
    type_id, price = override.type_id, override.price
    if isinstance(type_id, bool) or not isinstance(type_id, int) or not 0 < type_id <= _MAX_TYPE_ID:
        raise ValueError(f"type_id {type_id!r} is not a positive whole number")
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise ValueError(f"price {price!r} is not a number")
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"price {price!r} is not a price (finite, 0 or more)")
    if price > MAX_PRICE:
        raise ValueError(f"price {price!r} is beyond {MAX_PRICE:.0e} ISK, more than any type costs")
    start, end = override.valid_from, override.valid_to
    if start is not None and end is not None and start > end:
        raise ValueError(f"valid_from {start.isoformat()} is after valid_to {end.isoformat()}")
    if override.note is not None and len(override.note) > _MAX_NOTE:
        raise ValueError(f"the note is longer than {_MAX_NOTE:,} characters")
    if override.note is not None and "\x00" in override.note:
        # PostgreSQL's text cannot hold it: caught here, the error can name the line.
        raise ValueError("the note has a NUL character (\\x00), which PostgreSQL cannot store")
    return Override(type_id, float(price), start, end, override.note or None)


def set_override(
    conn: psycopg.Connection,
    type_id: int,
    price: float,
    valid_from: date | None = None,
    valid_to: date | None = None,
    note: str | None = None,
) -> SetResult:
    """Store one override (replacing one of the same type and range); commits.

    UserError for bad input (negative or NaN price, valid_from after valid_to).
    Creates the history tables if they are missing.
    """
    try:
        override = check(Override(type_id, price, valid_from, valid_to, note))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return _store(conn, [override])


def import_overrides(conn: psycopg.Connection, path: Path) -> SetResult:
    """Store every override of a CSV file in one transaction, or none of them.

    UserError names the file and the line of the first bad row.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    try:
        rows = parse_csv(text)
    except PriceFileError as exc:
        raise UserError(f"{path}:{exc}; nothing was imported") from None
    return _store(conn, rows)


def _store(conn: psycopg.Connection, rows: list[Override]) -> SetResult:
    db.ensure_history_tables(conn)
    result = SetResult([], 0, rows)
    statement = sqlfiles.load("override_set")
    with conn.transaction():
        for row in rows:
            params = {
                "type_id": row.type_id,
                "valid_from": row.valid_from,
                "valid_to": row.valid_to,
                "price": row.price,
                "note": row.note,
            }
            new_id, replaced = conn.execute(statement, params).fetchone()
            result.ids.append(new_id)
            result.replaced += replaced
        book.invalidate_overrides(conn, [row.type_id for row in rows])
    return result


def list_overrides(conn: psycopg.Connection, type_ids: list[int] | None = None) -> list[Override]:
    """Every override (of the given types), by type and rank; [] if the table is missing."""
    if db.absent_tables(conn, ("price_overrides",)):
        return []
    rows = conn.execute(sqlfiles.load("override_list"), {"type_ids": type_ids or None})
    return [Override(t, p, f, to, note, i) for i, t, f, to, p, note in rows]


def parse_csv(text: str) -> list[Override]:
    """Overrides from CSV with a header: type_id and price, and any of valid_from,
    valid_to (YYYY-MM-DD, empty for open) and note (pure)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise PriceFileError(1, "empty file: expected a header row") from None
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise PriceFileError(
            1, f"unknown column {unknown[0][:40]!r} (expected {', '.join(CSV_COLUMNS)})"
        )
    if len(set(header)) != len(header):
        raise PriceFileError(1, "a column is named twice")
    for needed in ("type_id", "price"):
        if needed not in header:
            raise PriceFileError(1, f"the header has no {needed} column")
    where = {h: i for i, h in enumerate(header)}
    found: list[Override] = []
    first: dict[tuple, int] = {}
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise PriceFileError(line, f"{len(cells)} cells where the header has {len(header)}")

        def cell(name: str, cells=cells) -> str:
            return cells[where[name]].strip() if name in where else ""

        try:
            override = check(
                Override(
                    _whole(cell("type_id"), "type_id"),
                    _number(cell("price")),
                    _day(cell("valid_from"), "valid_from"),
                    _day(cell("valid_to"), "valid_to"),
                    cell("note") or None,
                )
            )
        except ValueError as exc:
            raise PriceFileError(line, str(exc)) from None
        key = (override.type_id, override.valid_from, override.valid_to)
        if key in first:
            raise PriceFileError(
                line,
                f"type_id {override.type_id} with the same valid_from and valid_to again "
                f"(first on line {first[key]})",
            )
        first[key] = line
        found.append(override)
    return found


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _whole(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise ValueError(f"{name} {_shown(text)} is not a positive whole number")
    return int(text)


def _number(text: str) -> float:
    if not text:
        raise ValueError("price is empty")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"price {_shown(text)} is not a number") from None


def parse_day(text: str, name: str = "date") -> date:
    """A YYYY-MM-DD date; ValueError naming `name` otherwise."""
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"{name} {_shown(text)} is not a date (YYYY-MM-DD)")


def _day(text: str, name: str) -> date | None:
    return parse_day(text, name) if text else None
