"""Reading market history files (pure: bytes and text in, numpy columns out).

Two shapes, both ESI's `GET /markets/{region}/history/?type_id=` days:
- CSV with a header naming `average,date,highest,lowest,order_count,volume`,
  plus `region_id,type_id` (EVE Ref's daily dumps, which also carry
  `http_last_modified`, ignored) or without them (one type's ESI history
  saved as CSV: the caller gives the region and type);
- ESI's JSON list of `{average, date, highest, lowest, order_count, volume}`.

A CSV is read in chunks of whole lines. Each chunk is parsed by numpy's C
reader and checked with vectorized tests; only a chunk that fails is read
again line by line, to name the first bad line and why. So the line-by-line
rules below are the definition, and the fast path only ever accepts rows
they accept.

A day must lie between FIRST_DAY and the caller's `newest` (tomorrow in UTC,
which this module does not read from the clock): a day from before EVE's
market or from the future is a broken source, and one stored would stand
for a day that never was (a future one makes `prices history fetch` think a
type is up to date for good).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np

from bulk.jsontext import shallow_recursion
from bulk.prices.files import PriceFileError, json_entries
from bulk.prices.market import MAX_PRICE

DAY_FIELDS = ("average", "date", "highest", "lowest", "order_count", "volume")
KEY_FIELDS = ("region_id", "type_id")
IGNORED_FIELDS = ("http_last_modified",)
PRICE_NAMES = ("average", "highest", "lowest")
COUNT_NAMES = ("order_count", "volume")
_MAX_ID = 2**31 - 1
_MAX_COUNT = 2**63 - 1

_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# EVE Online opened on this day: no market has a day before it. It also keeps
# out year 0000, which numpy reads and PostgreSQL stores as 1 BC.
FIRST_DAY = date(2003, 5, 6)


@dataclass
class HistoryRows:
    """Rows of market_price_history as columns, one entry per row."""

    region_id: np.ndarray  # int64
    type_id: np.ndarray  # int64
    date: np.ndarray  # datetime64[D]
    average: np.ndarray  # float64
    highest: np.ndarray
    lowest: np.ndarray
    volume: np.ndarray  # int64
    order_count: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.date.size)

    def select(self, keep: np.ndarray) -> HistoryRows:
        return HistoryRows(**{name: getattr(self, name)[keep] for name in _COLUMNS})

    @classmethod
    def concat(cls, parts: Sequence[HistoryRows]) -> HistoryRows:
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in _COLUMNS})

    @classmethod
    def from_lists(cls, columns: Sequence[Sequence]) -> HistoryRows:
        """From Python lists in _COLUMNS order (dates as datetime.date)."""
        region, type_id, days, *rest = columns
        return cls(
            np.asarray(region, dtype=np.int64),
            np.asarray(type_id, dtype=np.int64),
            np.asarray(days, dtype="datetime64[D]"),
            *(np.asarray(c, dtype=np.float64) for c in rest[:3]),
            *(np.asarray(c, dtype=np.int64) for c in rest[3:]),
        )


_COLUMNS = (
    "region_id",
    "type_id",
    "date",
    "average",
    "highest",
    "lowest",
    "volume",
    "order_count",
)


@dataclass
class Parsed:
    """A chunk's rows, and where each row came from (for a message about a repeat)."""

    rows: HistoryRows
    where: Callable[[int], str]  # row index -> "line N" (or "line N, entry K")
    other_regions: int = 0  # rows left out by the region filter


@dataclass(frozen=True)
class CsvLayout:
    """What a history CSV's header says."""

    names: tuple[str, ...]  # every column, in the file's order
    has_keys: bool  # region_id and type_id are columns (EVE Ref); else the caller's
    dtype: np.dtype  # numpy's reading of every column, the ignored ones as 1 byte


def csv_layout(header: str) -> CsvLayout:
    """The header row's layout; PriceFileError on line 1 if it is not a history header."""
    names = tuple(h.strip().lower() for h in next(csv.reader([header]), []))
    if not any(names):
        raise PriceFileError(1, "empty file: expected a header row")
    known = DAY_FIELDS + KEY_FIELDS + IGNORED_FIELDS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PriceFileError(
            1,
            f"unknown column {unknown[0][:40]!r} (expected {','.join(DAY_FIELDS)}, "
            f"and region_id,type_id as in EVE Ref's files)",
        )
    if len(set(names)) != len(names):
        raise PriceFileError(1, "a column is named twice")
    missing = [n for n in DAY_FIELDS if n not in names]
    if missing:
        raise PriceFileError(1, f"the header has no {missing[0]} column")
    keys = [n for n in KEY_FIELDS if n in names]
    if len(keys) == 1:
        raise PriceFileError(1, f"the header has {keys[0]} without the other of region_id,type_id")
    kinds = {"date": "S11", **dict.fromkeys(IGNORED_FIELDS, "S1")}
    kinds.update(dict.fromkeys(PRICE_NAMES, "f8"))
    kinds.update(dict.fromkeys(COUNT_NAMES + KEY_FIELDS, "i8"))
    return CsvLayout(names, bool(keys), np.dtype([(n, kinds[n]) for n in names]))


def parse_csv_chunk(
    chunk: bytes,
    first_line: int,
    layout: CsvLayout,
    *,
    region: int,
    type_id: int | None,
    all_regions: bool = False,
    newest: date | None = None,
) -> Parsed:
    """The rows of a chunk of whole CSV lines (no header), the first being first_line.

    Rows of a file without region_id,type_id get `region` and `type_id`; rows
    of a file with them keep their own, and only those of `region` are kept
    unless all_regions. A day after `newest` is refused (see the module's note).
    """
    if not layout.has_keys and type_id is None:
        raise PriceFileError(1, NEEDS_TYPE)
    rows = _fast(chunk, layout, region, type_id, newest)
    if rows is None:
        rows, lines = _careful(chunk, first_line, layout, region, type_id, newest)

        def where(i: int) -> str:
            return f"line {lines[i]}"
    else:

        def where(i: int) -> str:
            return f"line {_nth_row_line(chunk, first_line, i)}"

    return _keep_region(Parsed(rows, where), layout.has_keys and not all_regions, region)


def _keep_region(parsed: Parsed, filtered: bool, region: int) -> Parsed:
    if not filtered:
        return parsed
    keep = parsed.rows.region_id == region
    if keep.all():
        return parsed
    index = np.flatnonzero(keep)
    where = parsed.where
    return Parsed(
        parsed.rows.select(keep), lambda i: where(int(index[i])), int(keep.size - index.size)
    )


def _nth_row_line(chunk: bytes, first_line: int, n: int) -> int:
    """The line of the n-th row: blank lines are skipped, as both readers skip them."""
    seen = -1
    for offset, line in enumerate(chunk.split(b"\n")):
        if line.strip():
            seen += 1
            if seen == n:
                return first_line + offset
    raise IndexError(n)


def _fast(chunk: bytes, layout: CsvLayout, region: int, type_id: int | None, newest: date | None):
    """numpy's reading of the chunk if every row passes the rules, else None."""
    if b'"' in chunk:
        return None  # quoted cells: the csv module reads them
    try:
        table = np.loadtxt(
            io.BytesIO(chunk),
            delimiter=",",
            dtype=layout.dtype,
            comments=None,
            encoding="utf-8",
            ndmin=1,
        )
    except (ValueError, UnicodeDecodeError):
        return None
    n = table.shape[0]
    ok = np.ones(n, dtype=bool)
    for name in PRICE_NAMES:
        values = table[name]
        ok &= np.isfinite(values) & (values >= 0) & (values <= MAX_PRICE)
    for name in COUNT_NAMES:
        ok &= table[name] >= 0
    if layout.has_keys:
        for name in KEY_FIELDS:
            ok &= (table[name] >= 1) & (table[name] <= _MAX_ID)
    text = np.ascontiguousarray(table["date"]).view(np.uint8).reshape(n, 11)
    digits = text[:, [0, 1, 2, 3, 5, 6, 8, 9]]
    ok &= ((digits >= ord("0")) & (digits <= ord("9"))).all(axis=1)
    ok &= (text[:, 4] == ord("-")) & (text[:, 7] == ord("-")) & (text[:, 10] == 0)
    if not ok.all():
        return None
    try:
        days = table["date"].astype("datetime64[D]")
    except ValueError:  # a day that does not exist, such as 2023-02-29
        return None
    last = np.datetime64(newest or date.max, "D")
    if not ((days >= np.datetime64(FIRST_DAY, "D")) & (days <= last)).all():
        return None
    if layout.has_keys:
        regions, types = table["region_id"], table["type_id"]
    else:
        regions, types = np.full(n, region, np.int64), np.full(n, type_id, np.int64)
    return HistoryRows(
        regions,
        types,
        days,
        table["average"],
        table["highest"],
        table["lowest"],
        table["volume"],
        table["order_count"],
    )


NEEDS_TYPE = (
    "no region_id,type_id columns: this is one type's ESI history; give its --type-id "
    "(and --region, The Forge by default)"
)


def _careful(
    chunk: bytes,
    first_line: int,
    layout: CsvLayout,
    region: int,
    type_id: int | None,
    newest: date | None,
) -> tuple[HistoryRows, list[int]]:
    """The chunk line by line: the rules, and the first bad line's number and reason."""
    text = _decode(chunk, first_line)
    columns: list[list] = [[] for _ in _COLUMNS]
    lines: list[int] = []
    where = {n: i for i, n in enumerate(layout.names)}
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        line = first_line + reader.line_num - 1
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(layout.names):
            raise PriceFileError(
                line, f"{len(cells)} cells where the header has {len(layout.names)}"
            )
        if layout.has_keys:
            row_region = _id(cells[where["region_id"]], "region_id", line)
            row_type = _id(cells[where["type_id"]], "type_id", line)
        else:
            row_region, row_type = region, type_id
        values = (
            row_region,
            row_type,
            _day(cells[where["date"]], line, newest),
            *(_price(cells[where[n]], n, line) for n in PRICE_NAMES),
            _count(cells[where["volume"]], "volume", line),
            _count(cells[where["order_count"]], "order_count", line),
        )
        for column, value in zip(columns, values):
            column.append(value)
        lines.append(line)
    return HistoryRows.from_lists(columns), lines


def _decode(chunk: bytes, first_line: int) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + chunk.count(b"\n", 0, exc.start)
        raise PriceFileError(line, "not UTF-8 text") from None


def _shown(value) -> str:
    """A cell as the file wrote it (JSON's true and null, a CSV cell quoted), cut short."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _price(cell, name: str, line: int) -> float:
    """A price: a number from 0 to MAX_PRICE (a JSON number, or a CSV cell's text)."""
    if isinstance(cell, str):
        text = cell.strip()
        if not text:
            raise PriceFileError(line, f"{name} is empty")
        if not _DECIMAL.fullmatch(text):
            if text.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
                raise PriceFileError(line, f"{name} {_shown(cell)} is not a number")
        value = float(text)
    elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
        try:
            value = float(cell)
        except OverflowError:
            value = math.inf
    else:
        raise PriceFileError(line, f"{name} {_shown(cell)} is not a number")
    if not math.isfinite(value) or value < 0:
        raise PriceFileError(line, f"{name} {_shown(cell)} is not a price (finite, 0 or more)")
    if value > MAX_PRICE:
        raise PriceFileError(
            line, f"{name} {_shown(cell)} is beyond {MAX_PRICE:.0e} ISK, more than any type costs"
        )
    return value


def _whole(cell, name: str, line: int, low: int, high: int, what: str) -> int:
    if isinstance(cell, str):
        text = cell.strip()
        if not _WHOLE.fullmatch(text):
            raise PriceFileError(line, f"{name} {_shown(cell)} is not {what}")
        value = int(text)
    elif isinstance(cell, int) and not isinstance(cell, bool):
        value = cell
    else:
        raise PriceFileError(line, f"{name} {_shown(cell)} is not {what}")
    if not low <= value <= high:
        raise PriceFileError(line, f"{name} {_shown(cell)} is not {what}")
    return value


def _count(cell, name: str, line: int) -> int:
    return _whole(cell, name, line, 0, _MAX_COUNT, "a whole number, 0 or more")


def _id(cell, name: str, line: int) -> int:
    return _whole(cell, name, line, 1, _MAX_ID, "a positive whole number")


def _day(cell, line: int, newest: date | None = None) -> date:
    """A YYYY-MM-DD day from FIRST_DAY to newest (no upper bound if None)."""
    text = cell.strip() if isinstance(cell, str) else None
    day = None
    if text is not None and _DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:  # 2023-02-29, or year 0000
            pass
    if day is None:
        raise PriceFileError(line, f"date {_shown(cell)} is not a date (YYYY-MM-DD)")
    if day < FIRST_DAY:
        raise PriceFileError(
            line, f"date {_shown(cell)} is before {FIRST_DAY.isoformat()}, when EVE's market opened"
        )
    if newest is not None and day > newest:
        raise PriceFileError(line, future_reason(cell, newest))
    return day


def future_reason(cell, newest: date) -> str:
    """Why a day after `newest` (tomorrow, UTC) is refused."""
    return (
        f"date {_shown(cell)} is in the future (after {newest.isoformat()}, tomorrow in UTC):"
        " no market has that day yet"
    )


def tomorrow(today: date) -> date:
    """The newest day a source may hold, given today's UTC date: a day of slack for clocks."""
    return today + timedelta(days=1)


def parse_esi_json(text: str, *, region: int, type_id: int, newest: date | None = None) -> Parsed:
    """ESI history JSON: a list of {average, date, highest, lowest, order_count, volume}."""
    columns: list[list] = [[] for _ in _COLUMNS]
    places: list[str] = []
    for number, (line, entry) in enumerate(json_entries(text), start=1):
        values = _esi_day(entry, region, type_id, line, number, newest)
        for column, value in zip(columns, values):
            column.append(value)
        places.append(f"line {line}, entry {number}")
    return Parsed(HistoryRows.from_lists(columns), places.__getitem__)


class EsiDays(NamedTuple):
    rows: HistoryRows  # the days that pass the rules
    bad: int  # days that could not be real: no date, a negative price, ...
    future: int  # days dated after `newest`: real perhaps, but not yet


def esi_days(entries: list, *, region: int, type_id: int, newest: date | None = None) -> EsiDays:
    """The days of an ESI history answer that pass the rules, and how many did not.

    A date given twice keeps its last entry (a day is one row of the table).
    """
    columns: list[list] = [[] for _ in _COLUMNS]
    bad = future = 0
    for number, entry in enumerate(entries, start=1):
        try:
            values = _esi_day(entry, region, type_id, 1, number)
        except PriceFileError:
            bad += 1
            continue
        if newest is not None and values[2] > newest:
            future += 1
            continue
        for column, value in zip(columns, values):
            column.append(value)
    rows = HistoryRows.from_lists(columns)
    # np.unique keeps the first of equal dates: look from the end for the last.
    _, last = np.unique(rows.date[::-1], return_index=True)
    if last.size != len(rows):
        rows = rows.select(np.sort(len(rows) - 1 - last))
    return EsiDays(rows, bad, future)


def _esi_day(
    entry, region: int, type_id: int, line: int, number: int, newest: date | None = None
) -> tuple:
    at = f"entry {number}"
    if not isinstance(entry, dict):
        raise PriceFileError(line, f"{at}: expected an object with {', '.join(DAY_FIELDS)}")
    missing = [f for f in DAY_FIELDS if f not in entry]
    if missing:
        raise PriceFileError(line, f"{at}: no {missing[0]}")
    try:
        return (
            region,
            type_id,
            _day(entry["date"], line, newest),
            *(_price(entry[n], n, line) for n in PRICE_NAMES),
            _count(entry["volume"], "volume", line),
            _count(entry["order_count"], "order_count", line),
        )
    except PriceFileError as exc:
        reason = str(exc).split(": ", 1)[1]
        raise PriceFileError(line, f"{at}: {reason}") from None


def days_since(days: np.ndarray, epoch: np.datetime64) -> np.ndarray:
    """datetime64[D] values as whole days since epoch (PostgreSQL's binary date is since 2000)."""
    return (days.astype("datetime64[D]") - epoch).astype(np.int64)


def rows_from_tuples(rows, newest: date | None = None) -> HistoryRows:
    """HistoryRows from tuples (region_id, type_id, date, average, highest, lowest, volume,
    order_count), each checked by the file rules; PriceFileError names the row (1-based)."""
    columns: list[list] = [[] for _ in _COLUMNS]
    for n, row in enumerate(rows, start=1):
        if len(row) != len(_COLUMNS):
            raise PriceFileError(n, f"{len(row)} values where a row has {len(_COLUMNS)}")
        region, type_id, day, average, highest, lowest, volume, order_count = row
        if isinstance(day, date):
            day = day.isoformat()
        values = (
            _id(region, "region_id", n),
            _id(type_id, "type_id", n),
            _day(day, n, newest),
            _price(average, "average", n),
            _price(highest, "highest", n),
            _price(lowest, "lowest", n),
            _count(volume, "volume", n),
            _count(order_count, "order_count", n),
        )
        for column, value in zip(columns, values):
            column.append(value)
    return HistoryRows.from_lists(columns)


# -- history with the daily average only ---------------------------------------------------
#
# Three shapes people have, each one average a (type, day); the other columns are
# stored as NULL (staged as NaN and -1, which no checked row can hold):
# - zKillboard's /api/prices/{type_id}/ answer: {"<YYYY-MM-DD>": average, ...,
#   "currentPrice": ..., "typeID": ...}; its other keys are not days and are ignored;
# - evetreemap's {"region": ..., "prices": {"<type_id>": {"<YYYY-MM-DD>": average}}};
# - a CSV of type_id,date,average and optionally region_id.

NO_PRICE = math.nan  # highest and lowest of an average-only row: NULL in the table
NO_COUNT = -1  # volume and order_count of an average-only row: NULL in the table
AVERAGE_CSV_FIELDS = ("type_id", "date", "average")
_ZKB_KEYS = ("currentPrice", "typeID", "_id")

SHAPES = (
    "ESI's JSON list of days, zKillboard's /api/prices/{type_id}/ object, evetreemap's"
    " {prices: {type: {date: average}}}, an EVE Ref or ESI history CSV, or a"
    " type_id,date,average[,region_id] CSV"
)


def parse_average_json(
    text: str, *, region: int, type_id: int | None, newest: date | None = None
) -> Parsed:
    """A JSON object of daily averages: zKillboard's or evetreemap's shape."""
    try:
        with shallow_recursion():
            doc = json.loads(text)
    except RecursionError:
        raise PriceFileError(1, "not JSON (nested too deep)") from None
    except json.JSONDecodeError as exc:
        raise PriceFileError(exc.lineno, f"not JSON ({exc.msg})") from None
    except ValueError:
        raise PriceFileError(1, "not JSON (a number with more digits than can be read)") from None
    if not isinstance(doc, dict):
        raise PriceFileError(1, f"expected {SHAPES}; found {_kind(doc)}")
    rows: list[tuple] = []
    places: list[str] = []
    if "prices" in doc:
        days_by_type = doc["prices"]
        if not isinstance(days_by_type, dict):
            raise PriceFileError(
                1, f"evetreemap's prices should map type IDs to days; found {_kind(days_by_type)}"
            )
        if doc.get("region") is not None:
            region = _id(doc["region"], "region", 1)
        for type_key, days in days_by_type.items():
            type_ = _id(type_key, "type ID", 1)
            if not isinstance(days, dict):
                raise PriceFileError(
                    1, f"prices[{type_key!r}] should map dates to averages; found {_kind(days)}"
                )
            for day, average in days.items():
                rows.append(
                    _average_row(region, type_, day, average, f"prices[{type_key!r}]", newest)
                )
                places.append(f"type {type_}, {day}")
    else:
        days = {k: v for k, v in doc.items() if k not in _ZKB_KEYS and _DATE.fullmatch(str(k))}
        if not days:
            keys = ", ".join(repr(k) for k in list(doc)[:3]) or "none"
            raise PriceFileError(
                1, f"expected {SHAPES}; found an object with no YYYY-MM-DD keys (keys: {keys})"
            )
        named = doc.get("typeID")
        if named is not None:
            type_id = _id(named, "typeID", 1)
        if type_id is None:
            raise PriceFileError(
                1, "zKillboard price JSON without a typeID: give the file's --type-id"
            )
        for key, average in days.items():
            rows.append(_average_row(region, type_id, key, average, "the object", newest))
            places.append(f"{key}")
    columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in _COLUMNS]
    return Parsed(HistoryRows.from_lists(columns), places.__getitem__)


def _average_row(region: int, type_id: int, day, average, where: str, newest: date | None) -> tuple:
    try:
        return (
            region,
            type_id,
            _day(day, 1, newest),
            _price(average, "average", 1),
            NO_PRICE,
            NO_PRICE,
            NO_COUNT,
            NO_COUNT,
        )
    except PriceFileError as exc:
        raise PriceFileError(1, f"{where}, {day!r}: {str(exc).split(': ', 1)[1]}") from None


def is_average_csv(header: str) -> bool:
    names = {h.strip().lower() for h in next(csv.reader([header]), [])}
    return set(AVERAGE_CSV_FIELDS) <= names and not names & {"highest", "lowest"}


def parse_average_csv(text: str, *, region: int, newest: date | None = None) -> Parsed:
    """type_id,date,average[,region_id]: one average a (type, day), region from the row
    or the caller's."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    unknown = [h for h in header if h not in (*AVERAGE_CSV_FIELDS, "region_id")]
    if unknown or len(set(header)) != len(header):
        raise PriceFileError(
            1,
            "expected the header type_id,date,average[,region_id];"
            f" found {','.join(header)[:80]!r}",
        )
    at = {name: header.index(name) for name in header}
    rows, places = [], []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise PriceFileError(line, f"{len(row)} cells where the header has {len(header)}")
        row_region = _id(row[at["region_id"]], "region_id", line) if "region_id" in at else region
        rows.append(
            (
                row_region,
                _id(row[at["type_id"]], "type_id", line),
                _day(row[at["date"]], line, newest),
                _price(row[at["average"]], "average", line),
                NO_PRICE,
                NO_PRICE,
                NO_COUNT,
                NO_COUNT,
            )
        )
        places.append(f"line {line}")
    columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in _COLUMNS]
    return Parsed(HistoryRows.from_lists(columns), places.__getitem__)


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), "null" if value is None else "a number"
    )
