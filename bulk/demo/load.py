"""Loads a generated killboard (bulk.demo.generate) into PostgreSQL through binary COPY."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from bulk import db, sqlfiles
from bulk import target as target_tables
from bulk.copy_binary import (
    FLOAT8,
    INT4,
    INT8,
    TIMESTAMP,
    Column,
    copy_columns,
    timestamp_values,
)
from bulk.demo import generate
from bulk.errors import UserError
from bulk.progress import Progress


def _require_empty(conn: psycopg.Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        statement = sqlfiles.load("table_has_rows").format(table=table)
        (has_rows,) = conn.execute(statement).fetchone()
        if has_rows:
            raise UserError(
                f"demo-data fills an empty killboard, but table {table} already has rows"
            )


# The columns demo-data writes, per table; on a target with more, the extras
# below and created_at/updated_at (where they have no default).
_KNOWN = {
    "categories": ["id", "name"],
    "item_groups": ["id", "name", "category_id"],
    "types": ["id", "name", "group_id"],
    "market_prices": ["type_id", "buy", "sell", "average", "volume", "updated_at"],
    "killmails": ["killmail_id", "killmail_time", "total_value", "destroyed_value"]
    + ["dropped_value", "killmail_hash", "solar_system_id"],
    "victims": ["killmail_id", "ship_type_id", "corporation_id", "damage_taken"],
    "killmail_items": ["killmail_id", "item_type_id", "flag", "quantity_destroyed"]
    + ["quantity_dropped", "singleton"],
}


_EXTRAS = ("killmail_hash", "solar_system_id", "corporation_id", "damage_taken")


@dataclass(frozen=True)
class _Stamps:
    """The load's time, for the created_at/updated_at columns that have no default."""

    where: target_tables.Target
    now: np.datetime64

    def names(self, table: str) -> list[str]:
        return self.where[table].stamps()

    def columns(self, table: str, n: int) -> list[Column]:
        if not self.names(table):
            return []
        stamp = timestamp_values(np.full(n, self.now))
        return [Column(stamp, TIMESTAMP) for _ in self.names(table)]


def _copy_text(cur: psycopg.Cursor, table: str, names: list[str], rows, stamps: _Stamps) -> None:
    extra = stamps.names(table)
    now = stamps.now.astype("datetime64[us]").item()
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names + extra))
    )
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row((*row, *(now for _ in extra)))


def _load_catalogue(cur: psycopg.Cursor, cat: generate.Catalogue, stamps: _Stamps) -> None:
    _copy_text(cur, "categories", ["id", "name"], cat.categories, stamps)
    _copy_text(cur, "item_groups", ["id", "name", "category_id"], cat.groups, stamps)
    _copy_text(
        cur,
        "types",
        ["id", "name", "group_id"],
        zip(cat.type_ids.tolist(), cat.type_names, cat.type_groups.tolist()),
        stamps,
    )
    n = cat.price_rows.size
    # market_prices.updated_at is written always; only created_at may be added.
    extra = [s for s in stamps.names("market_prices") if s != "updated_at"]
    copy_columns(
        cur,
        "market_prices",
        ["type_id", "buy", "sell", "average", "volume", "updated_at", *extra],
        [
            Column(cat.type_ids[cat.price_rows], INT4),
            Column(cat.buy, FLOAT8),
            Column(cat.sell, FLOAT8),
            Column(cat.average, FLOAT8),
            Column(cat.volume, FLOAT8),
            Column(timestamp_values(np.full(n, np.datetime64("2026-11-01T12:00:00"))), TIMESTAMP),
            *stamps.columns("market_prices", n)[: len(extra)],
        ],
    )


def _load_chunk(
    cur: psycopg.Cursor,
    chunk: generate.KillmailChunk,
    stamps: _Stamps,
    extras_rng: np.random.Generator | None,
) -> None:
    n = chunk.killmail_ids.size
    v = chunk.victim_ids.size
    unset = np.ones(n, dtype=bool)
    km_names = ["killmail_id", "killmail_time", "total_value", "destroyed_value", "dropped_value"]
    km_columns = [
        Column(chunk.killmail_ids, INT4),
        Column(timestamp_values(chunk.times), TIMESTAMP),
        Column(np.zeros(n), FLOAT8, unset),
        Column(np.zeros(n), FLOAT8, unset),
        Column(np.zeros(n), FLOAT8, unset),
    ]
    victim_names = ["killmail_id", "ship_type_id"]
    victim_columns = [Column(chunk.victim_ids, INT4), Column(chunk.ship_type_ids, INT4)]
    if extras_rng is not None:
        extra = generate.killreport_columns(extras_rng, chunk)
        where = stamps.where
        for name, values, kind in (
            ("killmail_hash", extra.killmail_hashes, "S40"),
            ("solar_system_id", extra.solar_system_ids, INT4),
        ):
            if where["killmails"].has(name):
                km_names.append(name)
                km_columns.append(Column(values, kind))
        for name, values in (
            ("corporation_id", extra.corporation_ids),
            ("damage_taken", extra.damage_taken),
        ):
            if where["victims"].has(name):
                victim_names.append(name)
                victim_columns.append(Column(values, INT4))
    copy_columns(
        cur,
        "killmails",
        km_names + stamps.names("killmails"),
        km_columns + stamps.columns("killmails", n),
    )
    copy_columns(
        cur,
        "victims",
        victim_names + stamps.names("victims"),
        victim_columns + stamps.columns("victims", v),
    )
    m = chunk.item_killmail_ids.size
    copy_columns(
        cur,
        "killmail_items",
        [
            "killmail_id",
            "item_type_id",
            "flag",
            "quantity_destroyed",
            "quantity_dropped",
            "singleton",
            *stamps.names("killmail_items"),
        ],
        [
            Column(chunk.item_killmail_ids, INT4),
            Column(chunk.item_type_ids, INT4),
            Column(chunk.item_flags, INT4),
            Column(chunk.qty_destroyed, INT4, chunk.destroyed_null),
            Column(chunk.qty_dropped, INT4, chunk.dropped_null),
            Column(chunk.singleton, INT4),
            *stamps.columns("killmail_items", m),
        ],
    )


@dataclass
class DemoLoad:
    items: int = 0
    history: bool = False  # whether history and overrides were written
    history_rows: int = 0
    overrides: int = 0


def load_demo_data(
    conn: psycopg.Connection,
    killmails: int,
    seed: int = 1,
    *,
    progress: bool = True,
    history: bool | None = None,
    days: int | None = None,
) -> int:
    """Fill an empty killboard with `killmails` generated killmails; returns the item rows.

    history, days: see load_demo.
    """
    return load_demo(conn, killmails, seed, progress=progress, history=history, days=days).items


def _drop_item_types_index(cur: psycopg.Cursor) -> bool:
    """Drop the item-type index init-db made (sql/item_types_index.sql), if it is that
    very index, so the load can build it once at the end; True if dropped."""
    (definition,) = cur.execute(sqlfiles.load("item_types_index_definition")).fetchone()
    if definition is None or not definition.endswith(" USING btree (item_type_id)"):
        return False
    cur.execute("DROP INDEX killmail_items_item_type_id_idx")
    return True


def load_demo(
    conn: psycopg.Connection,
    killmails: int,
    seed: int = 1,
    *,
    progress: bool = True,
    history: bool | None = None,
    days: int | None = None,
) -> DemoLoad:
    """Fill an empty killboard with `killmails` generated killmails, and market history
    and price overrides (bulk.demo.generate.history): with history None, where the
    history tables exist (init-db makes them; demo-data never does); True requires
    them; False writes none.

    days: None spreads the kills over 18 years (history daily for the last three,
    one day in 30 before); N packs them into the last N days before
    generate.SPREAD_END, with daily history from generate.HISTORY_LEAD_DAYS days
    before the first kill (bulk.demo.generate.killmail_chunks)."""
    if killmails < 1:
        raise UserError("--killmails must be at least 1")
    if days is not None and not 1 <= days <= generate.MAX_DAYS:
        raise UserError(f"--days must be from 1 to {generate.MAX_DAYS:,}")
    db.require_schema(conn)
    missing = db.missing_tables(conn, db.HISTORY_TABLES)
    if history and missing:
        raise UserError(
            f"the database lacks the history tables {', '.join(missing)}: run "
            "`bulk-backfill init-db` first (on an existing killboard it adds only those)"
        )
    result = DemoLoad(history=not missing if history is None else history)
    tables = db.REQUIRED_TABLES + (db.HISTORY_TABLES if result.history else ())
    # Before the progress bar: a refusal is the only line printed.
    where = target_tables.read(conn)
    where.refuse_unknown(_KNOWN, "loaded")
    rng = np.random.default_rng(seed)
    items = 0
    first = last = None
    bar = Progress(killmails, desc="demo-data", counts=(), enabled=progress)
    try:
        with conn.transaction(), conn.cursor() as cur:
            _require_empty(conn, tables)
            # An index is cheaper built once after the load than kept up row by row.
            rebuild = _drop_item_types_index(cur)
            # Stamps in UTC, as the replaced system's ORM writes them, whatever
            # the column's type: binary COPY is UTC, and the text COPY is read in
            # the session's zone.
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            (now,) = cur.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()
            stamps = _Stamps(where, np.datetime64(now, "us"))
            extra_columns = where["killmails"].columns | where["victims"].columns
            wants_extras = bool(extra_columns & set(_EXTRAS))
            # Their own Generator: the killmails stay the same for a seed on any target.
            extras_rng = np.random.default_rng([seed, 13]) if wants_extras else None
            cat = generate.catalogue(rng)
            _load_catalogue(cur, cat, stamps)
            for chunk in generate.killmail_chunks(rng, cat, killmails, days=days):
                _load_chunk(cur, chunk, stamps, extras_rng)
                items += chunk.item_killmail_ids.size
                first = chunk.times[0] if first is None else first
                last = chunk.times[-1]
                bar.add(chunk.killmail_ids.size)
            if rebuild:
                cur.execute(sqlfiles.load("item_types_index"))
            if result.history:
                daily_before = None if days is None else generate.HISTORY_LEAD_DAYS
                n_days = generate.history_days(first, last, daily_before).size
                # About 3% of the (type, day) pairs are gaps.
                about = _about(0.97 * n_days * cat.price_rows.size)
                bar.note(f"writing market history and price overrides (about {about} rows)")
                # Its own Generator: the killmails stay those of the seed either way.
                history_rng = np.random.default_rng([seed, 14])
                result.history_rows = _load_history(
                    cur, history_rng, cat, first, last, daily_before
                )
                result.overrides = _load_overrides(cur, generate.overrides(cat, first, last))
    finally:
        bar.close()
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(f"ANALYZE {table}")
    if not conn.autocommit:
        conn.commit()
    result.items = items
    return result


def _about(n: float) -> str:
    """A row count to two figures: '2.9 million', '170,000'."""
    if n >= 1e6:
        return f"{n / 1e6:.1f} million"
    return f"{float(f'{n:.2g}'):,.0f}"


_HISTORY_COLUMNS = ["region_id", "type_id", "date", "average", "highest", "lowest"]
_HISTORY_COLUMNS += ["volume", "order_count"]


def _load_history(
    cur: psycopg.Cursor,
    rng: np.random.Generator,
    cat: generate.Catalogue,
    first: np.datetime64,
    last: np.datetime64,
    daily_before: int | None,
) -> int:
    """Binary-COPY the generated history, a block of types at a time, in key order."""
    rows = 0
    for block in generate.history(rng, cat, first, last, daily_before):
        n = block.type_ids.size
        days = (block.days - np.datetime64("2000-01-01", "D")).astype(np.int64)
        copy_columns(
            cur,
            "market_price_history",
            _HISTORY_COLUMNS,
            [
                Column(np.full(n, generate.HISTORY_REGION), INT4),
                Column(block.type_ids, INT4),
                Column(days, INT4),
                Column(block.average, FLOAT8),
                Column(block.highest, FLOAT8),
                Column(block.lowest, FLOAT8),
                Column(block.volume, INT8),
                Column(block.order_count, INT8),
            ],
        )
        rows += n
    return rows


def _load_overrides(cur: psycopg.Cursor, overrides: list[generate.Override]) -> int:
    cur.executemany(
        "INSERT INTO price_overrides (type_id, valid_from, valid_to, price, note)"
        " VALUES (%s, %s, %s, %s, %s)",
        [
            (
                o.type_id,
                None if o.valid_from is None else o.valid_from.item(),
                None if o.valid_to is None else o.valid_to.item(),
                o.price,
                o.note,
            )
            for o in overrides
        ],
    )
    return len(overrides)
