"""`types import`: types, item_groups and categories from files, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from bulk.errors import UserError
from bulk.typedata import files, store


@dataclass
class TypesImported:
    read: dict[str, int]  # rows read per table
    inserted: dict[str, int]
    updated: dict[str, int]


def read_files(paths: list[Path]) -> files.TypeData:
    """Every file read and checked; a bad line is a UserError naming file and line."""
    data = files.TypeData()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        try:
            data.merge(files.parse(path.name, text))
        except files.TypeFileError as exc:
            raise UserError(f"{path}:{exc}; nothing was imported") from None
    return data


def import_types(conn: psycopg.Connection, paths: list[Path]) -> TypesImported:
    """Read all the files, then upsert everything in one transaction: all of it or none."""
    data = read_files(paths)
    with conn.transaction():
        written = store.upsert(conn, data)
    read = {"types": len(data.types), "item_groups": len(data.groups)}
    read["categories"] = len(data.categories)
    return TypesImported(read, written.inserted, written.updated)
