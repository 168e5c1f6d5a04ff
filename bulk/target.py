"""The killboard tables as the target database defines them, for the writers that insert rows.

The tool's own schema (sql/schema.sql) is the smallest one it works on; a
killboard like killreport has more columns, some NOT NULL without a default.
import-killmails and demo-data read the catalog once and fill what exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from bulk import sqlfiles
from bulk.errors import UserError

# The timestamps an ORM sets itself: filled with the load's time where the
# target has them with no default.
STAMPS = ("created_at", "updated_at")


@dataclass(frozen=True)
class Table:
    columns: frozenset[str] = frozenset()
    # NOT NULL and nothing PostgreSQL fills by itself: every insert must name them.
    required: frozenset[str] = frozenset()

    def has(self, column: str) -> bool:
        return column in self.columns

    def stamps(self) -> list[str]:
        """created_at/updated_at where they exist with no default, in that order."""
        return [c for c in STAMPS if c in self.columns and c in self.required]


@dataclass(frozen=True)
class Target:
    tables: dict[str, Table] = field(default_factory=dict)

    def __getitem__(self, table: str) -> Table:
        return self.tables.get(table, Table())

    def refuse_unknown(self, known: dict[str, Iterable[str]], doing: str) -> None:
        """One line naming every NOT NULL column without a default the writer cannot fill."""
        unknown = [
            f"{table}.{column}"
            for table, columns in known.items()
            for column in sorted(self[table].required - set(columns) - set(STAMPS))
        ]
        if unknown:
            raise UserError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} NOT NULL with"
                f" no default and bulk-backfill has nothing to fill "
                f"{'it' if len(unknown) == 1 else 'them'} with: nothing was {doing}"
            )


def read(conn: psycopg.Connection) -> Target:
    """The killboard tables' columns on this connection."""
    columns: dict[str, set[str]] = {}
    required: dict[str, set[str]] = {}
    for table, column, not_null, has_default in conn.execute(sqlfiles.load("target_columns")):
        columns.setdefault(table, set()).add(column)
        if not_null and not has_default:
            required.setdefault(table, set()).add(column)
    return Target(
        {t: Table(frozenset(cols), frozenset(required.get(t, ()))) for t, cols in columns.items()}
    )
