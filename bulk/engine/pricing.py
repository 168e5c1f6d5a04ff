"""Per-killmail sums of priced lines, in integer cents. Pure numpy, no I/O.

A line is (killmail_id, unit_cents, qty_destroyed, qty_dropped); the ship is a
line with qty_destroyed 1. Sums are exact: int64 where the batch cannot
overflow it, Python integers otherwise (a freak stack of a trillion-ISK item).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KillmailCents:
    """Per-killmail totals, one entry per distinct killmail_id, sorted by id."""

    killmail_ids: np.ndarray
    total: np.ndarray
    destroyed: np.ndarray
    dropped: np.ndarray


def _fits_int64(unit: np.ndarray, qty_destroyed: np.ndarray, qty_dropped: np.ndarray) -> bool:
    if unit.size == 0:
        return True
    # The sum of |unit * qty| over every line bounds every product and every
    # partial sum. float64 gets it to within a relative 1e-12 or so, and 2**62
    # leaves a factor of 2 to int64's limit: far more than that error.
    magnitude = np.abs(unit).astype(np.float64) * (
        np.abs(qty_destroyed).astype(np.float64) + np.abs(qty_dropped).astype(np.float64)
    )
    return float(magnitude.sum()) < 2.0**62


def sum_lines(
    killmail_ids: np.ndarray,
    unit_cents: np.ndarray,
    qty_destroyed: np.ndarray,
    qty_dropped: np.ndarray,
) -> KillmailCents:
    """Sum destroyed and dropped cents per killmail; rows may come in any order."""
    ids = np.asarray(killmail_ids, dtype=np.int64)
    unit = np.asarray(unit_cents, dtype=np.int64)
    qd = np.asarray(qty_destroyed, dtype=np.int64)
    qr = np.asarray(qty_dropped, dtype=np.int64)
    if not (ids.shape == unit.shape == qd.shape == qr.shape):
        raise ValueError("line arrays must have the same length")
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return KillmailCents(empty, empty, empty, empty)

    order = np.argsort(ids, kind="stable")
    ids, unit, qd, qr = ids[order], unit[order], qd[order], qr[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])

    if not _fits_int64(unit, qd, qr):
        unit, qd, qr = unit.astype(object), qd.astype(object), qr.astype(object)
    destroyed = np.add.reduceat(unit * qd, starts)
    dropped = np.add.reduceat(unit * qr, starts)
    return KillmailCents(ids[starts], destroyed + dropped, destroyed, dropped)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending: np.unique's result, without the import of
    numpy.ma that np.unique makes on its first call (20 ms of every child's first
    batch)."""
    ordered = np.sort(values)
    first = np.ones(ordered.size, dtype=bool)  # the first of each run of equal values
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


# The big-endian types sql/load_book.sql packs its columns in.
_LINE_COLUMN_TYPES = (">i4", ">i2", ">i8", ">i8", ">i8")


def unpack_lines(row: tuple | None) -> np.ndarray:
    """The packed bytea columns of a load as an (n, 5) int64 array."""
    if row is None or row[0] is None:
        return np.zeros((0, 5), dtype=np.int64)
    lines = np.empty((len(row[0]) // 4, 5), dtype=np.int64)
    for j, (column, dtype) in enumerate(zip(row, _LINE_COLUMN_TYPES, strict=True)):
        lines[:, j] = np.frombuffer(column, dtype=dtype)
    return lines


# The `line` column of sql/load_book.sql.
LINE_SHIP, LINE_ITEM, LINE_NO_VICTIM = 0, 1, 2


def price_batch(lines: np.ndarray) -> tuple[KillmailCents, np.ndarray]:
    """Value the rows of sql/load_book.sql, an (n, 5) int64 array.

    Columns: killmail_id, line, unit_cents, qty_destroyed, qty_dropped.
    Returns the per-killmail cents and the ids of killmails without a victim,
    which are not valued: a missing victim is reported, never guessed at.
    """
    lines = np.asarray(lines, dtype=np.int64).reshape(-1, 5)
    no_victim = _distinct(lines[lines[:, 1] == LINE_NO_VICTIM, 0])
    valued = lines[~np.isin(lines[:, 0], no_victim)] if no_victim.size else lines
    cents = sum_lines(valued[:, 0], valued[:, 2], valued[:, 3], valued[:, 4])
    return cents, no_victim
