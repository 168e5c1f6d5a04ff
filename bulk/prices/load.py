"""`prices import`: market_prices from a CSV or ESI JSON file, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bulk import db
from bulk.errors import UserError
from bulk.prices import files, store


@dataclass
class ImportSummary:
    rows: int
    columns: tuple[str, ...]
    written: int
    # ESI entries without a field that feeds a chosen column, and those fields.
    skipped: int = 0
    needed: tuple[str, ...] = ()
    # Rows left out because `types` lacks their type (type_id references types).
    not_in_types: list[int] = field(default_factory=list)
    # CSV rows with every price cell empty: nothing to write.
    empty: int = 0


def import_prices(
    conn: psycopg.Connection, path: Path, esi_mapping: dict[str, str] | None = None
) -> ImportSummary:
    """Read the whole file, then upsert every row in one transaction.

    JSON files are ESI /markets/prices/ lists and need esi_mapping (ESI field ->
    column); other files are read as CSV. An empty cell leaves the column as it
    is (a new row gets the column's default); rows for types that `types` lacks
    are left out where market_prices.type_id references types.
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
    db.ensure_book_table(conn)
    with conn.transaction():
        done = store.upsert(conn, store.target(conn), table.columns, table.rows)
    return ImportSummary(
        rows=len(table.rows),
        columns=table.columns,
        written=done.written,
        skipped=table.skipped,
        needed=table.needed,
        not_in_types=done.not_in_types,
        empty=done.empty,
    )


def _looks_like_json(path: Path, text: str) -> bool:
    return path.suffix.lower() == ".json" or text.lstrip().startswith("[")
