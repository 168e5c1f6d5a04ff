"""Writing type data (types, item_groups, categories) inside the caller's transaction.

On the replaced system's schema these tables have more columns, updated_at
NOT NULL with no default among them: the catalog is read once (bulk.target)
and a column that nothing can fill is refused by name before anything is
written, as import-killmails does.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from bulk import sqlfiles
from bulk import target as target_tables
from bulk.engine import book
from bulk.typedata.files import TypeData

# table -> (kind, parent column): the only identifiers the statements are filled with.
TABLES = {
    "categories": ("category", None),
    "item_groups": ("group", "category_id"),
    "types": ("type", "group_id"),
}


@dataclass
class Written:
    inserted: dict[str, int]
    updated: dict[str, int]


def upsert(conn: psycopg.Connection, data: TypeData) -> Written:
    """Insert new rows and update changed ones, categories first; the caller's transaction."""
    where = target_tables.read(conn)
    known = {t: ["id", "name", *([p] if p else [])] for t, (_, p) in TABLES.items()}
    where.refuse_unknown(known, "imported")
    rows = {
        "categories": [(k, v, None) for k, v in sorted(data.categories.items())],
        "item_groups": [(k, v[0], v[1]) for k, v in sorted(data.groups.items())],
        "types": [(k, v[0], v[1]) for k, v in sorted(data.types.items())],
    }
    written = Written({}, {})
    for table in TABLES:
        written.inserted[table], written.updated[table] = _write(
            conn, table, where[table], rows[table]
        )
    # A type's group or category fixes some rule sets' prices: build them again.
    book.invalidate_types(conn, data.types)
    book.invalidate_groups(conn, data.groups)
    return written


def _write(conn, table: str, shape: target_tables.Table, rows: list[tuple]) -> tuple[int, int]:
    if not rows:
        return 0, 0
    kind, parent = TABLES[table]
    stamps = shape.stamps()
    fill = {
        "table": table,
        "kind": kind,
        "parent_column": f", {parent}" if parent else "",
        "parent_value": ", u.parent" if parent else "",
        "parent_array": ", %(parents)s::int[]" if parent else "",
        "parent_alias": ", parent" if parent else "",
        "parent_set": f", {parent} = u.parent" if parent else "",
        "parent_t": f", t.{parent}" if parent else "",
        "parent_u": ", u.parent" if parent else "",
        "stamps": "".join(f", {s}" for s in stamps),
        "stamp_values": ", localtimestamp" * len(stamps),
        "touch": ", updated_at = localtimestamp" if shape.has("updated_at") else "",
    }
    params = {"ids": [r[0] for r in rows], "names": [r[1] for r in rows]}
    if parent:
        params["parents"] = [r[2] for r in rows]
    inserted = conn.execute(sqlfiles.load("insert_type_rows").format(**fill), params).rowcount
    updated = conn.execute(sqlfiles.load("update_type_rows").format(**fill), params).rowcount
    return inserted, updated
