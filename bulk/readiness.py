"""Is the killboard ready to be valued? Type data and price coverage, before any write.

Values are exact to the cent against the tables they read, and so is verify:
a killboard whose `types` is empty, or whose prices sit in another column than
the one a job reads, gets exact-looking wrong values that nothing flags. run,
queue and work check this when they start, and status shows it.

The check counts over the distinct types the killboard uses (victims' ships
and items), never over lines: on a killboard with an index led by
killmail_items.item_type_id (killreport has one) they are read by a loose
index scan, one probe per distinct type. Victims are read in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from bulk import db, sqlfiles
from bulk.engine import rules as rule_sets
from bulk.engine.modes import PRICE_COLUMNS
from bulk.engine.rules import THE_FORGE
from bulk.errors import UserError

# The order of the price flags in sql/readiness_types.sql's rows.
_USABLE_COLUMNS = ("buy", "sell", "average")
# Below this share of used types with a usable price, a job refuses to start.
MIN_PRICE_COVERAGE = 0.5
ALLOW = "--allow-incomplete"
TYPES_FIX = "bulk-backfill types import FILE or bulk-backfill types fetch --used-types"


@dataclass
class Readiness:
    rules: str
    price_column: str | None  # seed's column; None under a kill-date rule set
    used_types: int
    missing_types: list[int] = field(default_factory=list)
    missing_groups: list[int] = field(default_factory=list)  # named by used types
    missing_categories: list[int] = field(default_factory=list)  # named by those groups
    priced: int = 0  # used types with a usable price under the rule set
    # seed: used types with a usable price in each price column.
    by_column: dict[str, int] = field(default_factory=dict)
    unpriced_types: list[int] = field(default_factory=list)
    indexed: bool = False  # the used types came from an index skip scan

    @property
    def coverage(self) -> float | None:
        return self.priced / self.used_types if self.used_types else None

    @property
    def type_gaps(self) -> int:
        return len(self.missing_types) + len(self.missing_groups) + len(self.missing_categories)

    def better_column(self) -> str | None:
        """Another price column with more usable prices than the chosen one (seed)."""
        if self.price_column is None or not self.by_column:
            return None
        best = max(self.by_column, key=lambda c: (self.by_column[c], c == self.price_column))
        return best if self.by_column[best] > self.by_column.get(self.price_column, 0) else None

    def problems(self, prices: bool = True) -> list[str]:
        """One line per gap that stops a job, each naming the command that fills it
        (price coverage only if `prices`)."""
        found = []
        if self.type_gaps:
            parts = []
            if self.missing_types:
                parts.append(f"{len(self.missing_types):,} of {self.used_types:,} used types")
            if self.missing_groups:
                parts.append(f"{len(self.missing_groups):,} of their groups")
            if self.missing_categories:
                parts.append(f"{len(self.missing_categories):,} of their categories")
            found.append(
                f"{' and '.join(parts)} are missing from types, item_groups and categories,"
                f" so the capsule, SKIN, ore and blueprint-copy rules cannot see them:"
                f" fill them with {TYPES_FIX}"
            )
        coverage = self.coverage
        if prices and coverage is not None and coverage < MIN_PRICE_COVERAGE:
            found.append(self._price_problem(coverage))
        return found

    def _price_problem(self, coverage: float) -> str:
        share = f"{self.priced:,} of {self.used_types:,} used types ({coverage:.1%})"
        if self.price_column is None:
            return (
                f"only {share} have market history on or before their kill dates or an"
                f" override, so most lines would get the fallback price: load history with"
                f" bulk-backfill prices history import FILE or prices history fetch"
            )
        line = f"only {share} have a usable {self.price_column} price"
        better = self.better_column()
        if better is not None:
            return (
                f"{line}; {better} has prices for {self.by_column[better]:,}: pass"
                f" --price-column {better}, or load {self.price_column} prices with"
                f" bulk-backfill prices fetch"
            )
        return f"{line}: load prices with bulk-backfill prices fetch or prices import FILE"


def used_types(conn: psycopg.Connection) -> tuple[list[int], bool]:
    """Every distinct type the killmails use, and whether an index skip scan found them."""
    (indexed,) = conn.execute(sqlfiles.load("item_type_index")).fetchone()
    statement = "used_types_indexed" if indexed else "used_types"
    return [r[0] for r in conn.execute(sqlfiles.load(statement))], indexed


def check(conn: psycopg.Connection, rules: str, price_column: str = "sell") -> Readiness:
    """Type data and price coverage of the killboard's used types under a rule set."""
    types, indexed = used_types(conn)
    seed = rule_sets.uses_price_column(rules)
    result = Readiness(rules, price_column if seed else None, len(types), indexed=indexed)
    rows = conn.execute(sqlfiles.load("readiness_types"), {"type_ids": types}).fetchall()
    groups_seen: set[int] = set()
    categories_seen: set[int] = set()
    priced_in = {column: set() for column in PRICE_COLUMNS}
    for type_id, has_type, has_group, has_category, group_id, category_id, *usable in rows:
        if not has_type:
            result.missing_types.append(type_id)
        elif not has_group and group_id not in groups_seen:
            result.missing_groups.append(group_id)
        elif has_group and not has_category and category_id not in categories_seen:
            result.missing_categories.append(category_id)
        groups_seen.add(group_id)
        categories_seen.add(category_id)
        for column, ok in zip(_USABLE_COLUMNS, usable):
            if ok:
                priced_in[column].add(type_id)
    (has_source,) = conn.execute(sqlfiles.load("price_source_present"), {"seed": seed}).fetchone()
    if not has_source:
        # No prices at all (or no history tables): require_rule_prices says so,
        # with its own remedy; coverage is not this check's to report.
        priced = set(types)
    elif seed:
        result.by_column = {column: len(ids) for column, ids in priced_in.items()}
        priced = priced_in[price_column]
    else:
        found = conn.execute(
            sqlfiles.load("readiness_history"), {"type_ids": types, "region": THE_FORGE}
        )
        priced = {r[0] for r in found}
    result.priced = len(priced)
    result.unpriced_types = [t for t in types if t not in priced]
    db.end_read(conn)
    return result


def require_gaps(
    conn: psycopg.Connection,
    rules: str,
    price_column: str,
    allow_incomplete: bool,
    *,
    allow_unpriced: bool = False,
) -> int | None:
    """The check a job makes before its first write: a UserError naming the first gap,
    unless allow_incomplete; then how many killmails hold a gap (None: no gaps).
    allow_unpriced (--allow-empty-prices) lets low price coverage pass."""
    result = check(conn, rules, price_column)
    problems = result.problems(prices=not allow_unpriced)
    if not problems:
        return None
    if not allow_incomplete:
        more = f" ({len(problems) - 1} more gap after it)" if len(problems) > 1 else ""
        raise UserError(f"{problems[0]}{more}; or pass {ALLOW} to value anyway")
    return killmails_with_gaps(conn, result)


def killmails_with_gaps(conn: psycopg.Connection, result: Readiness) -> int:
    """How many killmails hold a type without type data or without a usable price."""
    gaps = sorted(set(result.missing_types) | set(result.unpriced_types))
    if not gaps:
        return 0
    (count,) = conn.execute(sqlfiles.load("killmails_with_types"), {"type_ids": gaps}).fetchone()
    db.end_read(conn)
    return count


def require_rule_prices(conn: psycopg.Connection, rules: str, allow_empty: bool) -> None:
    """The prices a rule set reads are there: market_prices for seed, the history tables else."""
    if rule_sets.reads_history(rules):
        db.require_history_tables(conn)
    elif not allow_empty:
        db.require_prices(conn)
