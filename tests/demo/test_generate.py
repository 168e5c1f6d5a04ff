"""bulk.demo.generate, pure: the default 18-year spread stays as it was, and `days`
packs the same killmails into the last days of it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bulk.demo import generate

_CHUNK_FIELDS = (
    "killmail_ids",
    "times",
    "victim_ids",
    "ship_type_ids",
    "item_killmail_ids",
    "item_type_ids",
    "item_flags",
    "qty_destroyed",
    "qty_dropped",
    "destroyed_null",
    "dropped_null",
    "singleton",
)
_HISTORY_FIELDS = ("type_ids", "days", "average", "highest", "lowest", "volume", "order_count")


def _generate(n: int, seed: int, days: int | None = None):
    """Every chunk, the history demo-data would write for it, and their digests."""
    rng = np.random.default_rng(seed)
    cat = generate.catalogue(rng)
    chunks = list(generate.killmail_chunks(rng, cat, n, days=days))
    first, last = chunks[0].times[0], chunks[-1].times[-1]
    lead = None if days is None else generate.HISTORY_LEAD_DAYS
    blocks = list(generate.history(np.random.default_rng([seed, 14]), cat, first, last, lead))
    return chunks, blocks


def _digest(parts, fields) -> str:
    digest = hashlib.sha256()
    for part in parts:
        for field in fields:
            digest.update(np.ascontiguousarray(getattr(part, field)).tobytes())
    return digest.hexdigest()[:16]


def _times(chunks) -> np.ndarray:
    return np.concatenate([c.times for c in chunks])


# Digests of what the generator gave before `days` existed: the benchmark databases
# and the tests' templates depend on the default data staying bit-identical.
@pytest.mark.parametrize(
    "n,seed,killmails,history,first,last",
    [
        (3_000, 1, "836a10632b273336", "e36a44ccdf194cf5", "2008-01-04T07:36:13",
         "2025-12-14T03:15:07"),
        (45_000, 7, "3f04efbe899dee38", "1d278670d709c8e1", "2008-01-01T00:25:18",
         "2025-12-06T21:48:15"),
    ],
)  # fmt: skip
def test_the_default_spread_is_unchanged(n, seed, killmails, history, first, last):
    chunks, blocks = _generate(n, seed)
    times = _times(chunks)
    assert (str(times[0]), str(times[-1])) == (first, last)
    assert _digest(chunks, _CHUNK_FIELDS) == killmails
    assert _digest(blocks, _HISTORY_FIELDS) == history


def test_days_packs_the_same_killmails_into_the_last_days_of_the_spread():
    n, days = 45_000, 3  # three chunks
    packed, blocks = _generate(n, 7, days)
    spread, _ = _generate(n, 7)
    times = _times(packed)
    start = generate.SPREAD_END - np.timedelta64(days, "D")
    assert start == np.datetime64("2025-12-24T00:00:00")
    assert times[0] == start and times[-1] < generate.SPREAD_END
    assert (np.diff(times) >= np.timedelta64(0, "s")).all()  # in killmail_id order
    dates, per_day = np.unique(times.astype("datetime64[D]"), return_counts=True)
    assert dates.tolist() == np.arange(start, generate.SPREAD_END, dtype="datetime64[D]").tolist()
    assert (abs(per_day - n / days) < 0.02 * n / days).all(), per_day
    # Only the times differ from the default spread: the same draws, in the same order.
    assert _digest(packed, _CHUNK_FIELDS[2:]) == _digest(spread, _CHUNK_FIELDS[2:])
    for a, b in zip(packed, spread, strict=True):
        assert (a.killmail_ids == b.killmail_ids).all()
        assert not (a.times == b.times).any()
    # History: every day from HISTORY_LEAD_DAYS before the first kill to the last.
    days_of_history = np.unique(np.concatenate([b.days for b in blocks]))
    lead = np.timedelta64(generate.HISTORY_LEAD_DAYS, "D")
    expected = np.arange(start.astype("datetime64[D]") - lead, dates[-1] + 1)
    assert days_of_history.tolist() == expected.tolist()
    # The same seed, size and days give the same data; these digests pin it.
    again, again_blocks = _generate(n, 7, days)
    assert _digest(again, _CHUNK_FIELDS) == _digest(packed, _CHUNK_FIELDS) == "5e01aeb01054fbf4"
    history = _digest(blocks, _HISTORY_FIELDS)
    assert _digest(again_blocks, _HISTORY_FIELDS) == history == "1289558279167f10"


def test_days_at_the_edges():
    # One kill a day in a one-day spread: ties are allowed, order kept, the day stays.
    chunks, _ = _generate(7, 1, 1)
    times = _times(chunks)
    assert (times.astype("datetime64[D]") == np.datetime64("2025-12-26")).all()
    # The whole 18 years, packed: they start where the default spread starts.
    assert generate.spread_first_day(generate.MAX_DAYS) == np.datetime64("2008-01-01")
    rng = np.random.default_rng(1)
    cat = generate.catalogue(rng)
    for days in (0, generate.MAX_DAYS + 1):
        with pytest.raises(ValueError, match="days must be from 1 to 6570"):
            next(generate.killmail_chunks(rng, cat, 10, days=days))


def test_history_days_daily_before():
    first, last = np.datetime64("2025-12-17T05:00:00"), np.datetime64("2025-12-26T23:00:00")
    days = generate.history_days(first, last, 60)
    assert days[0] == np.datetime64("2025-10-18") and days[-1] == np.datetime64("2025-12-26")
    assert days.size == 70 and (np.diff(days) == np.timedelta64(1, "D")).all()
    # Without it: one day in 30, then the last three years daily, as before.
    default = generate.history_days(np.datetime64("2008-01-04"), last)
    assert default[0] == np.datetime64("2008-01-04") and default[-1] == days[-1]
    assert (np.diff(default[-generate.HISTORY_DAILY_DAYS :]) == np.timedelta64(1, "D")).all()
    assert (np.diff(default[: -generate.HISTORY_DAILY_DAYS]) == np.timedelta64(30, "D")).all()
