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

from bulk import db, sqlfiles
from bulk.audit import reference
from bulk.engine import rules as rule_sets
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
    # Killmails checked per book (rule set, with seed's price column: 'seed:sell'),
    # each under the rules its stamp names; those without a stamp under `rules`.
    by_rules: dict[str, int] = field(default_factory=dict)
    unstamped: int = 0
    by_stamps: bool = True

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0


def _written(conn: psycopg.Connection, by_stamps: bool) -> list[tuple[int, str | None]]:
    """(killmail_id, its stamp's book or None) of every killmail verify can audit."""
    if by_stamps and not db.absent_tables(conn, (db.STAMPS_TABLE,)):
        return conn.execute(sqlfiles.load("written_stamps")).fetchall()
    return [(r[0], None) for r in conn.execute(sqlfiles.load("written_ids")).fetchall()]


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


def _known_book(key: str) -> bool:
    try:
        rule_sets.book_rules(key)
    except (ValueError, UserError):
        return False
    return True


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
    by_stamps: bool = True,
) -> VerifyReport:
    """Check every written killmail (sample=None) or a seeded sample of them.

    Each killmail is audited under the rule set its stamp names (by_stamps), and
    one without a stamp under `rules` (and `price_column`, for seed); with
    by_stamps False, every one under `rules`.
    """
    default_book = rule_sets.book_key(rules, price_column)  # a UserError for unknown rules
    if rule_sets.reads_history(rules):
        db.require_history_tables(conn)
    written = _written(conn, by_stamps)
    ids = [killmail_id for killmail_id, _ in written]
    if sample is None:
        chosen = None
        checked = len(ids)
    else:
        chosen = choose_sample(ids, sample, seed)
        checked = len(chosen)
    groups: dict[str, list[int]] = {}
    unstamped = 0
    unknown: dict[str, int] = {}
    picked = None if chosen is None else set(chosen)
    for killmail_id, book in written:
        if picked is not None and killmail_id not in picked:
            continue
        if book is not None and not _known_book(book):
            # A stamp no version of the tool writes: audited as unstamped, and said.
            unknown[book] = unknown.get(book, 0) + 1
            book = None
        unstamped += book is None
        groups.setdefault(book or default_book, []).append(killmail_id)
    if any(rule_sets.reads_history(rule_sets.book_rules(b)[0]) for b in groups):
        db.require_history_tables(conn)
    found: list[reference.Mismatch] = []
    for book, group in groups.items():
        group_rules, group_column = rule_sets.book_rules(book)
        # Every written killmail under one book: the reference's own filter
        # (written_only) is faster than a list of every ID. A sample holds only
        # written killmails already; filtering again in SQL makes PostgreSQL
        # pick a plan as slow as --all.
        whole = chosen is None and len(groups) == 1
        found += reference.mismatches(
            conn,
            None if whole else group,
            group_column or price_column,
            written_only=whole,
            rules=group_rules,
        )
    found.sort(key=lambda m: m.killmail_id)
    report = VerifyReport(
        checked=checked,
        mismatch_count=len(found),
        mismatches=found[:SHOWN],
        distribution=reference.value_distribution(conn),
        price_column=price_column,
        rules=rules,
        by_rules={b: len(groups[b]) for b in sorted(groups)},
        unstamped=unstamped,
        by_stamps=by_stamps,
    )
    # Only an unstamped killmail's rule set is a guess worth a hint.
    guessable = set(groups.get(default_book, ()))
    guessed = [m for m in found if m.killmail_id in guessable]
    hint = _other_rules_matching(conn, guessed[:SHOWN], rules, price_column)
    if hint is not None:
        report.notes.append(
            f"the mismatching values shown match the {hint} rules: a job under --rules {hint}"
            f" wrote them? bulk-backfill verify --rules {hint} audits them"
        )
    for book, n in sorted(unknown.items()):
        report.notes.append(
            f"{n:,} stamps name an unknown book {book!r}: those killmails were audited"
            f" under {default_book}, as if unstamped"
        )
    if chosen is not None:
        report.sample_size, report.seed, report.sample_digest = sample, seed, digest(chosen)
        if sample > len(ids):
            report.notes.append(
                f"asked for {sample:,} but only {len(ids):,} killmails have a value"
            )
    return report
