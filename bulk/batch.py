"""One batch of killmail IDs: load its priced lines, price them, write the values.

All in one transaction, so a batch is either written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import psycopg

from bulk import pricing, sqlfiles


@dataclass
class BatchResult:
    """Counts for one batch. updated + skipped = distinct IDs; no_victim is part of skipped."""

    updated: int = 0
    skipped: int = 0
    no_victim: int = 0
    no_victim_ids: list[int] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.updated += other.updated
        self.skipped += other.skipped
        self.no_victim += other.no_victim
        self.no_victim_ids.extend(other.no_victim_ids)


def _update_params(cents: pricing.KillmailCents) -> list[int]:
    columns = (cents.killmail_ids, cents.total, cents.destroyed, cents.dropped)
    return [value for row in zip(*(c.tolist() for c in columns)) for value in row]


def process_batch(
    conn: psycopg.Connection,
    ids: Iterable[int],
    mode: str,
    price_column: str = "sell",
) -> BatchResult:
    """Value and write the killmails of `ids` that match `mode`, in one transaction."""
    batch_ids = sorted({int(i) for i in ids})
    load_sql = sqlfiles.load_batch_sql(mode, price_column)
    with conn.transaction(), conn.cursor(binary=True) as cur:
        # prepare=False: a prepared generic plan of this join can be many
        # times slower than the custom plan for the batch's actual IDs.
        cur.execute(load_sql, {"ids": batch_ids}, prepare=False)
        lines = np.array(cur.fetchall(), dtype=np.int64)
        cents, no_victim = pricing.price_batch(lines)
        updated = 0
        if cents.killmail_ids.size:
            update_sql = sqlfiles.update_batch_sql(mode, int(cents.killmail_ids.size))
            cur.execute(update_sql, _update_params(cents), prepare=False)
            updated = len(cur.fetchall())
    return BatchResult(
        updated=updated,
        skipped=len(batch_ids) - updated,
        no_victim=int(no_victim.size),
        no_victim_ids=no_victim.tolist(),
    )
