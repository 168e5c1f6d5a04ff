"""bulk.engine.pricing against sums done one line at a time in Python integers."""

import numpy as np
import pytest

from bulk.engine import pricing


def _python_sums(ids, unit, qd, qr):
    out = {}
    for k, u, d, r in zip(ids, unit, qd, qr):
        dest, drop = out.get(int(k), (0, 0))
        out[int(k)] = (dest + int(u) * int(d), drop + int(r) * int(u))
    return out


def _as_dict(cents):
    return {
        int(k): (int(d), int(r))
        for k, d, r in zip(cents.killmail_ids, cents.destroyed, cents.dropped)
    }


def test_sums_match_line_by_line_python_in_any_row_order():
    rng = np.random.default_rng(3)
    n = 5_000
    ids = rng.integers(1, 300, n)
    unit = rng.integers(0, 10**9, n)
    qd = rng.integers(0, 1000, n)
    qr = rng.integers(0, 1000, n)
    cents = pricing.sum_lines(ids, unit, qd, qr)
    assert _as_dict(cents) == _python_sums(ids, unit, qd, qr)
    assert list(cents.killmail_ids) == sorted(set(ids.tolist()))
    assert all(
        int(t) == int(d) + int(r) for t, d, r in zip(cents.total, cents.destroyed, cents.dropped)
    )


def test_sums_stay_exact_beyond_int64():
    # A titan-priced unit times a huge stack overflows int64; the result must not.
    ids = np.array([7, 7, 8])
    unit = np.array([10**14, 10**14, 3])
    qd = np.array([2_000_000_000, 1, 5])
    qr = np.array([2_000_000_000, 0, 0])
    cents = pricing.sum_lines(ids, unit, qd, qr)
    assert _as_dict(cents) == _python_sums(ids, unit, qd, qr)
    assert int(cents.total[0]) == 10**14 * 4_000_000_001


def test_empty_batch():
    cents = pricing.sum_lines(np.array([]), np.array([]), np.array([]), np.array([]))
    assert cents.killmail_ids.size == 0


def test_price_batch_leaves_out_killmails_without_victim():
    lines = np.array(
        [
            [1, pricing.LINE_SHIP, 500, 1, 0],
            [1, pricing.LINE_ITEM, 7, 2, 3],
            [2, pricing.LINE_NO_VICTIM, 0, 1, 0],
            [2, pricing.LINE_ITEM, 100, 1, 0],
        ]
    )
    cents, no_victim = pricing.price_batch(lines)
    assert no_victim.tolist() == [2]
    assert _as_dict(cents) == {1: (500 + 14, 21)}


def test_price_batch_names_each_killmail_without_victim_once_in_order():
    """Several killmails without a victim, one with two such lines, in any row order:
    each is named once, ascending, and none of their lines is summed."""
    rng = np.random.default_rng(7)
    lines = [[k, pricing.LINE_SHIP, 1000 + k, 1, 0] for k in (3, 8, 13)]
    lines += [[k, pricing.LINE_ITEM, 5, 2, 1] for k in (3, 8, 13, 21, 34, 55)]
    lines += [[k, pricing.LINE_NO_VICTIM, 0, 1, 0] for k in (55, 21, 34, 21)]
    lines = np.array(lines)[rng.permutation(len(lines))]
    cents, no_victim = pricing.price_batch(lines)
    assert no_victim.tolist() == [21, 34, 55]
    assert _as_dict(cents) == {k: (1000 + k + 10, 5) for k in (3, 8, 13)}
    cents, no_victim = pricing.price_batch(np.array(lines[lines[:, 1] != 2]))
    assert no_victim.tolist() == [] and len(cents.killmail_ids) == 6


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        pricing.sum_lines(np.array([1, 2]), np.array([1]), np.array([1]), np.array([1]))
