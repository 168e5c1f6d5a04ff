"""Writing market prices in bulk, inside the caller's transaction, on whatever schema is there.

The tool's own market_prices has nullable prices and no created_at; the
replaced system's (killreport) has prices NOT NULL DEFAULT 0, an updated_at
with no default and a type_id that references types. What to write is read
from the catalog once (`target`), so the same upsert fits both: no NULL is
ever written into a price, created_at is filled only where the column has no
default, and rows for types that `types` lacks are left out and listed where
the foreign key would refuse them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from bulk import sqlfiles
from bulk.engine import book, modes
from bulk.errors import UserError
from bulk.prices.market import PRICE_FIELDS


@dataclass(frozen=True)
class PriceTarget:
    """What the catalog says about market_prices."""

    # created_at exists and has no default: the writer fills it on insert.
    fills_created_at: bool
    # type_id references types: a row for a type `types` lacks is left out.
    references_types: bool


@dataclass
class Upserted:
    written: int = 0
    # Types left out because `types` lacks them (only where type_id references types).
    not_in_types: list[int] = field(default_factory=list)
    # Rows that gave no price at all: nothing to write, so not written.
    empty: int = 0


def target(conn: psycopg.Connection) -> PriceTarget:
    """market_prices as the catalog defines it; read once per import or fetch."""
    columns = {
        name: (not_null, has_default, references)
        for name, not_null, has_default, references in conn.execute(sqlfiles.load("price_columns"))
    }
    created = columns.get("created_at")
    type_id = columns.get("type_id")
    return PriceTarget(
        fills_created_at=created is not None and not created[1],
        references_types=type_id is not None and type_id[2],
    )


def upsert(
    conn: psycopg.Connection,
    where: PriceTarget,
    columns: Sequence[str],
    rows: Sequence[tuple],
) -> Upserted:
    """Write rows of (type_id, value per column; None = not given) in the caller's transaction.

    A value not given keeps an existing row's price and gives a new row the
    column's default, so rows are written in groups by the columns they give
    (at most 2**4 groups, each one statement).
    """
    result = Upserted()
    if not rows:
        return result
    names = [modes.fixed_name(PRICE_FIELDS, c, "price column") for c in columns]
    if where.references_types:
        result.not_in_types = [
            r[0]
            for r in conn.execute(
                sqlfiles.load("missing_price_types"), {"type_ids": [r[0] for r in rows]}
            )
        ]
        if result.not_in_types:
            left_out = set(result.not_in_types)
            rows = [r for r in rows if r[0] not in left_out]
    groups: dict[tuple[int, ...], list[tuple]] = {}
    for row in rows:
        given = tuple(i for i, value in enumerate(row[1:]) if value is not None)
        if given:
            groups.setdefault(given, []).append(row)
        else:
            result.empty += 1
    for given, group in groups.items():
        values = [(r[0], *(r[i + 1] for i in given)) for r in group]
        result.written += _upsert_group(conn, where, [names[i] for i in given], values)
    # In the same transaction: a job that starts after this commits builds them again.
    book.invalidate_types(conn, [r[0] for group in groups.values() for r in group])
    return result


def _upsert_group(
    conn: psycopg.Connection, where: PriceTarget, names: list[str], rows: list[tuple]
) -> int:
    stamps = ["updated_at", "created_at"] if where.fills_created_at else ["updated_at"]
    statement = sqlfiles.load("upsert_prices").format(
        columns=", ".join(names),
        arrays=", ".join(f"%({n})s::float8[]" for n in names),
        updates=", ".join(f"{n} = excluded.{n}" for n in names),
        stamps=", ".join(stamps),
        stamp_values=", ".join("localtimestamp" for _ in stamps),
    )
    params: dict = {"type_ids": [r[0] for r in rows]}
    for i, name in enumerate(names, start=1):
        params[name] = [r[i] for r in rows]
    try:
        return conn.execute(statement, params).rowcount
    except psycopg.errors.NotNullViolation as exc:
        # A NOT NULL column without a default that no price file or book can fill.
        column = exc.diag.column_name or "a column"
        raise UserError(
            f"market_prices.{column} is NOT NULL with no default, and a new price row "
            "gives it no value; the write was rolled back"
        ) from None
    except psycopg.errors.ForeignKeyViolation:
        # `types` lost a row between the check above and this write.
        raise UserError(
            "a price's type was deleted from types while writing; the write was rolled "
            "back, run it again"
        ) from None


def used_types(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute(sqlfiles.load("used_types"))]
