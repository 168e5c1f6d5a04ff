"""Loads a generated killboard (bulk.demo.generate) into PostgreSQL through binary COPY."""

from __future__ import annotations

import numpy as np
import psycopg

from bulk import db
from bulk.demo import generate
from bulk.demo.copy_binary import FLOAT8, INT4, TIMESTAMP, Column, copy_columns, timestamp_values
from bulk.errors import UserError
from bulk.progress import Progress


def _require_empty(conn: psycopg.Connection) -> None:
    for table in db.REQUIRED_TABLES:
        # table names come from the fixed tuple in bulk.db, never from user text
        (has_rows,) = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
        if has_rows:
            raise UserError(
                f"demo-data fills an empty killboard, but table {table} already has rows"
            )


def _load_catalogue(cur: psycopg.Cursor, cat: generate.Catalogue) -> None:
    with cur.copy("COPY categories (id, name) FROM STDIN") as copy:
        for row in cat.categories:
            copy.write_row(row)
    with cur.copy("COPY item_groups (id, name, category_id) FROM STDIN") as copy:
        for row in cat.groups:
            copy.write_row(row)
    with cur.copy("COPY types (id, name, group_id) FROM STDIN") as copy:
        for tid, name, gid in zip(cat.type_ids.tolist(), cat.type_names, cat.type_groups.tolist()):
            copy.write_row((tid, name, gid))
    n = cat.price_rows.size
    copy_columns(
        cur,
        "market_prices",
        ["type_id", "buy", "sell", "average", "volume", "updated_at"],
        [
            Column(cat.type_ids[cat.price_rows], INT4),
            Column(cat.buy, FLOAT8),
            Column(cat.sell, FLOAT8),
            Column(cat.average, FLOAT8),
            Column(cat.volume, FLOAT8),
            Column(timestamp_values(np.full(n, np.datetime64("2026-11-01T12:00:00"))), TIMESTAMP),
        ],
    )


def _load_chunk(cur: psycopg.Cursor, chunk: generate.KillmailChunk) -> None:
    n = chunk.killmail_ids.size
    unset = np.ones(n, dtype=bool)
    copy_columns(
        cur,
        "killmails",
        ["killmail_id", "killmail_time", "total_value", "destroyed_value", "dropped_value"],
        [
            Column(chunk.killmail_ids, INT4),
            Column(timestamp_values(chunk.times), TIMESTAMP),
            Column(np.zeros(n), FLOAT8, unset),
            Column(np.zeros(n), FLOAT8, unset),
            Column(np.zeros(n), FLOAT8, unset),
        ],
    )
    copy_columns(
        cur,
        "victims",
        ["killmail_id", "ship_type_id"],
        [Column(chunk.victim_ids, INT4), Column(chunk.ship_type_ids, INT4)],
    )
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
        ],
        [
            Column(chunk.item_killmail_ids, INT4),
            Column(chunk.item_type_ids, INT4),
            Column(chunk.item_flags, INT4),
            Column(chunk.qty_destroyed, INT4, chunk.destroyed_null),
            Column(chunk.qty_dropped, INT4, chunk.dropped_null),
            Column(chunk.singleton, INT4),
        ],
    )


def load_demo_data(
    conn: psycopg.Connection, killmails: int, seed: int = 1, *, progress: bool = True
) -> int:
    """Fill an empty killboard with `killmails` generated killmails; returns the item rows."""
    if killmails < 1:
        raise UserError("--killmails must be at least 1")
    db.require_schema(conn)
    rng = np.random.default_rng(seed)
    items = 0
    bar = Progress(killmails, desc="demo-data", counts=(), enabled=progress)
    try:
        with conn.transaction(), conn.cursor() as cur:
            _require_empty(conn)
            cat = generate.catalogue(rng)
            _load_catalogue(cur, cat)
            for chunk in generate.killmail_chunks(rng, cat, killmails):
                _load_chunk(cur, chunk)
                items += chunk.item_killmail_ids.size
                bar.add(chunk.killmail_ids.size)
    finally:
        bar.close()
    with conn.cursor() as cur:
        for table in db.REQUIRED_TABLES:
            cur.execute(f"ANALYZE {table}")
    if not conn.autocommit:
        conn.commit()
    return items
