"""Reading price files (pure: text in, rows out): ESI /markets/prices/ JSON and CSV.

A whole file is read and checked before anything is written, so a bad row
stops the import with its line number and nothing changes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

from bulk.jsontext import shallow_recursion
from bulk.prices.market import MAX_PRICE, PRICE_FIELDS

ESI_FIELDS = ("average_price", "adjusted_price")
_MAX_TYPE_ID = 2**31 - 1


class PriceFileError(ValueError):
    """A file that cannot be imported; str() starts with the line number."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line


@dataclass
class PriceTable:
    """Rows to upsert: type_id plus one value per column, in the order of `columns`."""

    columns: tuple[str, ...]
    rows: list[tuple]
    # ESI entries left out because they lack a field that feeds a chosen column.
    skipped: int = 0
    # The ESI fields a skipped entry lacked (one or more of them), for the summary.
    needed: tuple[str, ...] = ()


def _type_id(value, line: int) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise PriceFileError(line, f"type_id {_shown(value)} is not a whole number")
        # int() of thousands of digits raises; no type_id has more than ten.
        if len(value) > 10:
            raise PriceFileError(line, f"type_id {_shown(value)} is not a positive whole number")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _MAX_TYPE_ID:
        raise PriceFileError(line, f"type_id {_shown(value)} is not a positive whole number")
    return value


def _price(value, name: str, line: int) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    shown = _shown(value)
    if isinstance(value, bool):
        raise PriceFileError(line, f"{name} {shown} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PriceFileError(line, f"{name} {shown} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise PriceFileError(line, f"{name} {shown} is not a price (finite, 0 or more)")
    # volume is a count, not a price: only the price columns have the bound.
    if name != "volume" and number > MAX_PRICE:
        raise PriceFileError(
            line, f"{name} {shown} is beyond {MAX_PRICE:.0e} ISK, more than any type costs"
        )
    return number


def _shown(value) -> str:
    """repr of a cell, cut: a line of a million digits is not echoed back whole."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_repeats(rows: list[tuple], lines: list[int]) -> None:
    seen: dict[int, int] = {}
    for row, line in zip(rows, lines):
        if row[0] in seen:
            raise PriceFileError(line, f"type_id {row[0]} again (first on line {seen[row[0]]})")
        seen[row[0]] = line


def parse_esi_json(text: str, mapping: dict[str, str]) -> PriceTable:
    """ESI /markets/prices/ entries; mapping says which column each ESI field fills.

    e.g. {"average_price": "sell"}. An entry without a mapped field (ESI leaves
    average_price out of some) is skipped and counted: writing it would put a
    NULL where a price was, or break a NOT NULL column.
    """
    if not mapping:
        raise ValueError("map at least one ESI field to a column")
    columns = tuple(mapping[f] for f in ESI_FIELDS if f in mapping)
    fields = tuple(f for f in ESI_FIELDS if f in mapping)
    if len(set(columns)) != len(columns):
        raise ValueError("two ESI fields cannot fill the same column")
    rows, ids, lines = [], [], []
    skipped = 0
    for line, entry in json_entries(text):
        if not isinstance(entry, dict):
            raise PriceFileError(line, "each entry must be an object with a type_id")
        if "type_id" not in entry:
            raise PriceFileError(line, "entry without a type_id")
        type_id = _type_id(entry["type_id"], line)
        prices = tuple(_price(entry.get(f), f, line) for f in fields)
        ids.append((type_id,))
        lines.append(line)
        if None in prices:
            skipped += 1
            continue
        rows.append((type_id, *prices))
    _no_repeats(ids, lines)
    return PriceTable(columns, rows, skipped, fields)


def json_entries(text: str):
    """(line, entry) for each element of a JSON list, keeping each entry's line number."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if position >= len(text) or text[position] != "[":
        raise PriceFileError(_line_at(text, position), "expected a JSON list of price entries")
    position = _skip_space(text, position + 1)
    if position < len(text) and text[position] == "]":
        return
    while True:
        try:
            with shallow_recursion():
                entry, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise PriceFileError(exc.lineno, f"not JSON ({exc.msg})") from None
        except ValueError:  # an integer beyond Python's limit of 4,300 digits
            reason = "a number with more digits than can be read"
            raise PriceFileError(_line_at(text, position), f"not JSON ({reason})") from None
        except RecursionError:
            raise PriceFileError(_line_at(text, position), "not JSON (nested too deep)") from None
        yield _line_at(text, position), entry
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
            continue
        if position < len(text) and text[position] == "]":
            if _skip_space(text, position + 1) != len(text):
                raise PriceFileError(_line_at(text, position + 1), "text after the list")
            return
        raise PriceFileError(_line_at(text, position), "expected ',' or ']' after an entry")


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def parse_csv(text: str) -> PriceTable:
    """CSV with a header: type_id plus any of buy, sell, average, volume."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise PriceFileError(1, "empty file: expected a header row") from None
    if "type_id" not in header:
        raise PriceFileError(1, "the header has no type_id column")
    unknown = [h for h in header if h != "type_id" and h not in PRICE_FIELDS]
    if unknown:
        expected = ", ".join(PRICE_FIELDS)
        raise PriceFileError(
            1, f"unknown column {unknown[0]!r} (expected type_id and any of {expected})"
        )
    if len(set(header)) != len(header):
        raise PriceFileError(1, "a column is named twice")
    columns = tuple(h for h in PRICE_FIELDS if h in header)
    if not columns:
        raise PriceFileError(1, f"no price column: expected any of {', '.join(PRICE_FIELDS)}")
    where = {h: i for i, h in enumerate(header)}
    rows, lines = [], []
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise PriceFileError(line, f"{len(cells)} cells where the header has {len(header)}")
        type_id = _type_id(cells[where["type_id"]], line)
        rows.append((type_id, *(_price(cells[where[c]], c, line) for c in columns)))
        lines.append(line)
    _no_repeats(rows, lines)
    return PriceTable(columns, rows)
