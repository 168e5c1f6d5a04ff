"""`prices import`: market_prices from a CSV or ESI JSON file, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from bulk.errors import UserError
from bulk.prices import files, store


@dataclass
class ImportSummary:
    rows: int
    columns: tuple[str, ...]
    written: int


def import_prices(
    conn: psycopg.Connection, path: Path, esi_mapping: dict[str, str] | None = None
) -> ImportSummary:
    """Read the whole file, then upsert every row in one transaction.

    JSON files are ESI /markets/prices/ lists and need esi_mapping (ESI field ->
    column); other files are read as CSV.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    try:
        if _looks_like_json(path, text):
            table = files.parse_esi_json(text, esi_mapping or {"average_price": "average"})
        else:
            table = files.parse_csv(text)
    except files.PriceFileError as exc:
        raise UserError(f"{path}:{exc}; nothing was imported") from None
    with conn.transaction():
        written = store.upsert(conn, table.columns, table.rows)
    return ImportSummary(len(table.rows), table.columns, written)


def _looks_like_json(path: Path, text: str) -> bool:
    return path.suffix.lower() == ".json" or text.lstrip().startswith("[")
