"""What a job values its batches with (Valuation) and what a batch did (BatchResult).

Apart from bulk.engine.batch, which imports numpy: a parent that only hands out
batches (run's, work's) imports these without it, and its children import numpy
while the parent scans or searches (bulk.run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bulk.engine import rules as rule_sets


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


@dataclass(frozen=True)
class Valuation:
    """How a job values its batches; the same for every batch of the job."""

    price_column: str = "sell"
    # Stamp killmails.updated_at on the rows written, where the column exists.
    touch_updated_at: bool = True
    # "numpy" (load, numpy sums, one UPDATE) or "sql" (one set-based statement).
    engine: str = "numpy"
    # Recheck the book's prices of a rule set that rechecks (seed: market_prices
    # may change behind the price commands) when this many seconds old; None:
    # once per process (bulk.engine.book.recheck).
    price_refresh: float | None = None
    # The rule set (bulk.engine.rules): seed (today's prices) or a kill-date one.
    rules: str = rule_sets.DEFAULT_RULES
