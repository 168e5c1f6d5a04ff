"""`verify`: recompute written values with the independent SQL reference and compare exactly.

The reference of the rule set (sql/reference_values.sql for seed,
sql/reference_<rules>.sql for the kill-date ones) shares no code with the engine; a
stored value is right when it equals reference::float8, for all three columns.
Only killmails that have a value are audited; those still without one are
counted in the distribution.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import psycopg

from bulk.audit import reference
from bulk.engine import rules as rule_sets
from bulk.engine import sqlfiles
from bulk.errors import UserError

SHOWN = 20  # mismatches listed in full


@dataclass
class VerifyReport:
    checked: int
    mismatch_count: int
    mismatches: list[reference.Mismatch]  # the first SHOWN, in id order
    distribution: dict
    price_column: str
    rules: str = rule_sets.DEFAULT_RULES
    sample_size: int | None = None  # None: every written killmail
    seed: int | None = None
    sample_digest: str | None = None  # same seed and data, same digest
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0


def _written_ids(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute(sqlfiles.load("written_ids")).fetchall()
    return [r[0] for r in rows]


def _other_rules_matching(conn, shown, rules: str, price_column: str) -> str | None:
    """The other rule set whose reference every shown mismatch agrees with, if any."""
    if not shown:
        return None
    ids = [m.killmail_id for m in shown]
    missing = [r[0] for r in conn.execute(sqlfiles.load("missing_history_tables"))]
    for other in rule_sets.RULES:
        if other == rules or (rule_sets.reads_history(other) and missing):
            continue
        if not reference.mismatches(conn, ids, price_column, written_only=False, rules=other):
            return other
    return None


def require_history_tables(conn: psycopg.Connection) -> None:
    """A UserError where the kill-date price tables are missing (they are never created here)."""
    missing = [r[0] for r in conn.execute(sqlfiles.load("missing_history_tables"))]
    if missing:
        raise UserError(
            f"the database lacks {' and '.join(missing)}, which the kill-date rule sets read:"
            " create them with `bulk-backfill init-db` or load history with"
            " `bulk-backfill prices history import`"
        )


def choose_sample(ids: list[int], size: int, seed: int) -> list[int]:
    """A reproducible sample: the same IDs, size and seed always give the same killmails."""
    if size >= len(ids):
        return list(ids)
    return sorted(random.Random(seed).sample(ids, size))


def digest(ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def verify(
    conn: psycopg.Connection,
    *,
    sample: int | None = None,
    seed: int = 1,
    price_column: str = "sell",
    rules: str = rule_sets.DEFAULT_RULES,
) -> VerifyReport:
    """Check every written killmail (sample=None) or a seeded sample of them, under `rules`."""
    if rule_sets.reads_history(rules):
        require_history_tables(conn)
    written = _written_ids(conn)
    if sample is None:
        chosen = None
        checked = len(written)
    else:
        chosen = choose_sample(written, sample, seed)
        checked = len(chosen)
    # A sample holds only written killmails already; filtering again in SQL
    # (written_only with a list of IDs) makes PostgreSQL pick a plan as slow as --all.
    written_only = chosen is None
    found = (
        reference.mismatches(conn, chosen, price_column, written_only=written_only, rules=rules)
        if checked
        else []
    )
    report = VerifyReport(
        checked=checked,
        mismatch_count=len(found),
        mismatches=found[:SHOWN],
        distribution=reference.value_distribution(conn),
        price_column=price_column,
        rules=rules,
    )
    hint = _other_rules_matching(conn, found[:SHOWN], rules, price_column)
    if hint is not None:
        report.notes.append(
            f"the mismatching values shown match the {hint} rules: a job under --rules {hint}"
            f" wrote them? bulk-backfill verify --rules {hint} audits them"
        )
    if chosen is not None:
        report.sample_size, report.seed, report.sample_digest = sample, seed, digest(chosen)
        if sample > len(written):
            report.notes.append(
                f"asked for {sample:,} but only {len(written):,} killmails have a value"
            )
    return report
