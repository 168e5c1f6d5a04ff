"""A realistic generated killboard, as numpy arrays. Pure computation, no I/O.

Same seed and size, same data: everything comes from one numpy Generator
consumed in a fixed order, killmails in fixed-size chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CAPSULE_TYPE_ID = 670
CHUNK = 20_000

# id, name, number of types, median price (ISK), lognormal sigma, min, max,
# weight among item rows
_CATEGORIES = [
    (2, "Celestial", 10, 5e3, 1.0, 1.0, 1e5, 0.002),
    (4, "Material", 40, 20.0, 1.5, 0.5, 1e4, 0.05),
    (6, "Ship", 260, 3e7, 1.8, 2e5, 1.2e11, 0.01),
    (7, "Module", 1400, 8e5, 1.8, 1e3, 6e9, 0.42),
    (8, "Charge", 350, 120.0, 1.4, 0.05, 5e4, 0.25),
    (9, "Blueprint", 120, 2e7, 2.0, 1e4, 5e10, 0.03),
    (16, "Skill", 60, 2e6, 1.5, 1e4, 1e9, 0.01),
    (17, "Commodity", 150, 3e3, 2.0, 1.0, 5e8, 0.08),
    (18, "Drone", 90, 3e5, 1.5, 1e3, 1e9, 0.09),
    (20, "Implant", 80, 3e7, 1.5, 1e5, 3e9, 0.04),
    (65, "Structure", 8, 4e10, 1.6, 2e9, 2.4e12, 0.0),
    (87, "Fighter", 24, 1e6, 1.0, 1e5, 5e7, 0.008),
]
_FLAGS = np.array([5, 11, 12, 13, 14, 19, 20, 21, 22, 27, 28, 29, 30, 87, 92, 93, 94, 158])


@dataclass(frozen=True)
class Catalogue:
    categories: list[tuple[int, str]]
    groups: list[tuple[int, str, int]]  # id, name, category_id
    type_ids: np.ndarray
    type_names: list[str]
    type_groups: np.ndarray
    type_categories: np.ndarray
    base_price: np.ndarray  # ISK, before the odd decimals of real price feeds
    price_rows: np.ndarray  # indices of types that have a market_prices row
    buy: np.ndarray
    sell: np.ndarray
    average: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True)
class KillmailChunk:
    killmail_ids: np.ndarray
    times: np.ndarray  # datetime64[s]
    victim_ids: np.ndarray  # killmails that have a victim row
    ship_type_ids: np.ndarray
    item_killmail_ids: np.ndarray
    item_type_ids: np.ndarray
    item_flags: np.ndarray
    qty_destroyed: np.ndarray
    qty_dropped: np.ndarray
    destroyed_null: np.ndarray  # True where quantity_destroyed is NULL
    dropped_null: np.ndarray
    singleton: np.ndarray


def _feed_prices(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """Prices with the decimals real feeds have: cents, more decimals, exact half cents, zeros."""
    kind = rng.choice(5, size=base.size, p=[0.72, 0.14, 0.06, 0.05, 0.03])
    price = np.round(base, 2)
    price[kind == 1] = np.round(base[kind == 1], 4)
    price[kind == 2] = base[kind == 2]  # adjusted-price style: all the decimals a double has
    price[kind == 3] = np.floor(base[kind == 3] * 100) / 100 + 0.005  # half cents: 1234.565
    price[kind == 4] = 0.0
    return price


def catalogue(rng: np.random.Generator) -> Catalogue:
    categories, groups = [], []
    ids, names, grp, cat, base = [], [], [], [], []
    next_type, next_group = 1000, 100
    for cid, cname, n, median, sigma, lo, hi, _w in _CATEGORIES:
        categories.append((cid, cname))
        n_groups = max(1, n // 40)
        group_ids = list(range(next_group, next_group + n_groups))
        groups += [(g, f"{cname} group {g}", cid) for g in group_ids]
        next_group += n_groups
        if cname == "Ship":
            groups.append((29, "Capsule", cid))
            ids.append(CAPSULE_TYPE_ID)
            names.append("Capsule")
            grp.append(29)
            cat.append(cid)
            base.append(10_000.0)
        prices = np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi)
        if cname == "Structure":
            # Citadels span three orders of magnitude, Astrahus to Keepstar: the
            # trillion-ISK tail of a real killboard must be there in every demo.
            prices = np.geomspace(lo, hi, n) * rng.uniform(0.9, 1.1, n)
        for i in range(n):
            ids.append(next_type)
            names.append(f"{cname} {next_type}")
            grp.append(group_ids[i % n_groups])
            cat.append(cid)
            base.append(float(prices[i]))
            next_type += 1
    type_ids = np.array(ids, dtype=np.int64)
    base_price = np.array(base)
    has_row = rng.random(type_ids.size) < 0.9
    sell = _feed_prices(rng, base_price)
    structures = np.array(cat) == _category_id("Structure")
    has_row[structures] = True
    sell[structures] = np.round(base_price[structures], 2)
    # Two prices every demo has, the classic traps of cent rounding.
    sell[1], sell[2] = 1234.565, 0.125
    has_row[[1, 2]] = True
    buy = np.round(sell * rng.uniform(0.7, 0.99, sell.size), 2)
    average = (buy + sell) / 2
    volume = np.floor(rng.lognormal(8, 2, sell.size))
    rows = np.flatnonzero(has_row)
    return Catalogue(
        categories=categories,
        groups=groups,
        type_ids=type_ids,
        type_names=names,
        type_groups=np.array(grp, dtype=np.int64),
        type_categories=np.array(cat, dtype=np.int64),
        base_price=base_price,
        price_rows=rows,
        buy=buy[rows],
        sell=sell[rows],
        average=average[rows],
        volume=volume[rows],
    )


def _category_id(name: str) -> int:
    return next(row[0] for row in _CATEGORIES if row[1] == name)


def _category_index(cat: Catalogue, name: str) -> np.ndarray:
    return np.flatnonzero(cat.type_categories == _category_id(name))


def _weights(rng: np.random.Generator, cat: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Item type and ship type sampling weights: cheap things are common."""
    item_w = np.zeros(cat.type_ids.size)
    for cid, _name, _n, _m, _s, _lo, _hi, weight in _CATEGORIES:
        members = np.flatnonzero(cat.type_categories == cid)
        zipf = 1.0 / np.arange(1, members.size + 1) ** 0.8
        item_w[rng.permutation(members)] = weight * zipf / zipf.sum()
    ships = _category_index(cat, "Ship")
    ships = ships[cat.type_ids[ships] != CAPSULE_TYPE_ID]
    ship_w = np.zeros(cat.type_ids.size)
    ship_w[ships] = cat.base_price[ships] ** -0.6
    ship_w /= ship_w.sum()
    return item_w / item_w.sum(), ship_w


# By default any size spreads over the same 18 years of killboard history from
# SPREAD_START (the last kill lands near SPREAD_END, a little before or after);
# with `days`, the kills fill the last `days` days before SPREAD_END exactly, a
# fixed date, so the same seed, size and days give the same data.
SPREAD_START = np.datetime64("2008-01-01T00:00:00", "s")
SPREAD_SECONDS = 18 * 365 * 86400
SPREAD_END = SPREAD_START + np.timedelta64(SPREAD_SECONDS, "s")  # 2025-12-27T00:00:00
MAX_DAYS = SPREAD_SECONDS // 86400  # `days` packs the kills into the last days of the 18 years


def spread_first_day(days: int) -> np.datetime64:
    """The first UTC date of a `days`-day spread: its kills fall on this date and
    the days - 1 dates after it, up to the day before SPREAD_END."""
    return (SPREAD_END - np.timedelta64(days, "D")).astype("datetime64[D]")


def _packed_times(gaps: np.ndarray, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    """Kill times in [lo, hi) whose gaps are proportional to `gaps` (exponential:
    the ordered times of a Poisson process with this many kills in the interval),
    the first at lo."""
    ends = np.cumsum(gaps)
    before = np.concatenate(([0.0], ends[:-1]))
    width = (hi - lo).astype(np.int64)
    offsets = np.floor(before / ends[-1] * width).astype(np.int64)
    return lo + offsets.astype("timedelta64[s]")


def killmail_chunks(
    rng: np.random.Generator,
    cat: Catalogue,
    n_killmails: int,
    first_id: int = 90_000_000,
    days: int | None = None,
) -> Iterator[KillmailChunk]:
    """The killmails, CHUNK at a time, in killmail_id and time order.

    days: None spreads them over 18 years from SPREAD_START; N packs them into the
    last N days before SPREAD_END (n_killmails / N a day). Both draw the same
    numbers from rng, so the IDs, victims and items are the same either way: only
    the times differ.
    """
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, not {days}")
    item_w, ship_w = _weights(rng, cat)
    structures = _category_index(cat, "Structure")
    blueprint_cat = _category_id("Blueprint")
    next_id = first_id
    clock = SPREAD_START
    mean_gap = SPREAD_SECONDS / n_killmails
    if days is not None:
        packed_from = SPREAD_END - np.timedelta64(days * 86400, "s")
        packed_seconds = days * 86400
    for start in range(0, n_killmails, CHUNK):
        n = min(CHUNK, n_killmails - start)
        ids = next_id + np.cumsum(rng.integers(1, 4, n))
        next_id = int(ids[-1])
        if days is None:
            times = clock + np.cumsum(rng.exponential(mean_gap, n)).astype("timedelta64[s]")
            clock = times[-1]
        else:
            # Each chunk its share of the spread, by its share of the killmails:
            # the kills stay in order and end before SPREAD_END whatever the draws.
            lo = packed_from + np.timedelta64(packed_seconds * start // n_killmails, "s")
            hi = packed_from + np.timedelta64(packed_seconds * (start + n) // n_killmails, "s")
            # Scale 1.0 draws the same numbers as mean_gap: the rest stays the same.
            times = _packed_times(rng.exponential(1.0, n), lo, hi)

        kind = rng.choice(3, size=n, p=[0.15, 0.8495, 0.0005])  # capsule, ship, structure
        ship = cat.type_ids[rng.choice(cat.type_ids.size, size=n, p=ship_w)]
        ship[kind == 0] = CAPSULE_TYPE_ID
        ship[kind == 2] = cat.type_ids[rng.choice(structures, size=int((kind == 2).sum()))]
        n_items = rng.negative_binomial(1.3, 1.3 / (1.3 + 27.0), n)
        n_items[kind == 0] = rng.poisson(1.5, int((kind == 0).sum()))
        n_items[kind == 2] = 150 + rng.negative_binomial(2, 2 / 202, int((kind == 2).sum()))
        n_items = np.minimum(n_items, 900)
        has_victim = rng.random(n) >= 0.002

        item_km = np.repeat(ids, n_items)
        m = item_km.size
        idx = rng.choice(cat.type_ids.size, size=m, p=item_w)
        price = np.maximum(cat.base_price[idx], 0.5)
        cheap = price < 2e4
        stack = np.ones(m, dtype=np.int64)
        scale = np.minimum(2e6 / price[cheap], 8000.0)
        stack[cheap] = 1 + np.floor(rng.lognormal(np.log(scale), 1.0)).astype(np.int64)
        stack = np.minimum(stack, 2_000_000)
        few = ~cheap & (rng.random(m) < 0.08)
        stack[few] = rng.integers(2, 8, int(few.sum()))
        destroyed = rng.random(m) < 0.55
        blueprint = cat.type_categories[idx] == blueprint_cat
        singleton = np.where(blueprint & (rng.random(m) < 0.5), 2, 0)
        singleton[~blueprint & (rng.random(m) < 0.03)] = 1
        yield KillmailChunk(
            killmail_ids=ids,
            times=times,
            victim_ids=ids[has_victim],
            ship_type_ids=ship[has_victim],
            item_killmail_ids=item_km,
            item_type_ids=cat.type_ids[idx],
            item_flags=rng.choice(_FLAGS, size=m),
            qty_destroyed=np.where(destroyed, stack, 0),
            qty_dropped=np.where(destroyed, 0, stack),
            destroyed_null=~destroyed,
            dropped_null=destroyed,
            singleton=singleton,
        )


# The demo's market history: daily averages for the last three years up to the
# newest kill, and one day in 30 before that back to the first kill, so every
# kill date has history on or before it without 18 years of daily rows. For kills
# packed into a few days (killmail_chunks' `days`), daily averages from
# HISTORY_LEAD_DAYS before the first kill to the last one instead: zkillboard's
# window (up to 34 daily averages back from a date) is full from the first kill on
# for every type but the dearest, which trade on about half the days (the gaps
# below), and the history stays a killboard's size, not three years of it.
HISTORY_REGION = 10000002  # The Forge, whose averages the kill-date rules read
HISTORY_DAILY_DAYS = 3 * 365 + 1
HISTORY_OLDER_STEP = 30
HISTORY_LEAD_DAYS = 60


@dataclass(frozen=True)
class History:
    """market_price_history rows of the priced types, sorted by (type_id, date)."""

    type_ids: np.ndarray
    days: np.ndarray  # datetime64[D]
    average: np.ndarray
    highest: np.ndarray
    lowest: np.ndarray
    volume: np.ndarray
    order_count: np.ndarray


def history_days(
    first: np.datetime64, last: np.datetime64, daily_before: int | None = None
) -> np.ndarray:
    """The days the demo has history for: one in 30 from `first`, then every day
    of the last HISTORY_DAILY_DAYS up to `last` (both UTC dates); with
    daily_before N, every day from N days before `first` up to `last`, nothing older."""
    first, last = first.astype("datetime64[D]"), last.astype("datetime64[D]")
    if daily_before is not None:
        return np.arange(first - daily_before, last + 1).astype("datetime64[D]")
    daily_from = max(first, last - (HISTORY_DAILY_DAYS - 1))
    older = np.arange(first, daily_from, HISTORY_OLDER_STEP).astype("datetime64[D]")
    return np.concatenate([older, np.arange(daily_from, last + 1).astype("datetime64[D]")])


HISTORY_BLOCK = 256  # types generated (and loaded) at a time: memory stays flat


def history(
    rng: np.random.Generator,
    cat: Catalogue,
    first: np.datetime64,
    last: np.datetime64,
    daily_before: int | None = None,
) -> Iterator[History]:
    """Daily averages of every priced type wandering around its sell price (pure numpy),
    HISTORY_BLOCK types at a time, in (type_id, date) order, on history_days(first,
    last, daily_before).

    A mean-reverting walk in log space (about ±10%), with the highest and
    lowest of the day around it, volumes that fall as prices rise, and gaps:
    a few days without trades for every type, many for the dearest.
    """
    days = history_days(first, last, daily_before)
    # The price a type's history wanders around: its sell price where it has one.
    price = cat.base_price.copy()
    price[cat.price_rows] = np.where(cat.sell > 0, cat.sell, price[cat.price_rows])
    ordered = cat.price_rows[np.argsort(cat.type_ids[cat.price_rows], kind="stable")]
    for start in range(0, ordered.size, HISTORY_BLOCK):
        types = ordered[start : start + HISTORY_BLOCK]
        yield _history_block(rng, cat.type_ids[types], price[types], days)


def _history_block(
    rng: np.random.Generator, type_ids: np.ndarray, price: np.ndarray, days: np.ndarray
) -> History:
    n_types, n_days = type_ids.size, days.size
    base = np.maximum(price, 0.01)
    steps = rng.normal(0.0, 0.03, (n_days, n_types))
    walk = np.empty((n_types, n_days))
    level = np.zeros(n_types)
    for day in range(n_days):
        level = 0.97 * level + steps[day]
        walk[:, day] = level
    average = np.maximum(np.round(base[:, None] * np.exp(walk), 2), 0.01)
    spread = np.abs(rng.normal(0.0, 0.04, (2, n_types, n_days)))
    highest = np.round(average * (1 + spread[0]), 2)
    lowest = np.maximum(np.round(average * (1 - np.minimum(spread[1], 0.5)), 2), 0.01)
    volume = np.floor(rng.lognormal(np.log(2e8 / base).clip(0, 20)[:, None], 1.0, walk.shape)) + 1
    order_count = rng.poisson(np.clip(40 - np.log10(base) * 4, 1, 60)[:, None], walk.shape) + 1
    # Gaps: 3% of days for any type, half of them for types over 10B ISK; the
    # first day stays, so every kill date has a price on or before it.
    gap = rng.random((n_types, n_days)) < np.where(base > 1e10, 0.5, 0.03)[:, None]
    gap[:, 0] = False
    keep = ~gap
    return History(
        type_ids=np.repeat(type_ids, keep.sum(axis=1)),
        days=np.broadcast_to(days, walk.shape)[keep],
        average=average[keep],
        highest=highest[keep],
        lowest=lowest[keep],
        volume=volume[keep].astype(np.int64),
        order_count=order_count[keep].astype(np.int64),
    )


@dataclass(frozen=True)
class Override:
    type_id: int
    valid_from: np.datetime64 | None
    valid_to: np.datetime64 | None
    price: float
    note: str


def overrides(cat: Catalogue, first: np.datetime64, last: np.datetime64) -> list[Override]:
    """A fixed price for the dearest hull before and after a date in the middle of
    the killboard's history, as a killboard sets one for a hull nobody trades."""
    ships = _category_index(cat, "Ship")
    hull = ships[np.argmax(cat.base_price[ships])]
    type_id = int(cat.type_ids[hull])
    price = float(np.round(cat.base_price[hull], -6))
    first, last = first.astype("datetime64[D]"), last.astype("datetime64[D]")
    change = first + (last - first) // 2
    return [
        Override(type_id, None, change - 1, price, "demo: the build price before the change"),
        Override(type_id, change, None, price * 1.5, "demo: the build price after the change"),
    ]


@dataclass(frozen=True)
class KillreportColumns:
    """The columns a killboard like killreport has beyond the tool's schema, for one chunk."""

    killmail_hashes: np.ndarray  # S40: 40 lowercase hex digits, as zKillboard's
    solar_system_ids: np.ndarray  # per killmail
    corporation_ids: np.ndarray  # per victim row
    damage_taken: np.ndarray  # per victim row


_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def killreport_columns(rng: np.random.Generator, chunk: KillmailChunk) -> KillreportColumns:
    """Plausible values for those columns. Drawn from their own Generator, so the same
    seed gives the same killmails whether or not the target has the columns."""
    n = chunk.killmail_ids.size
    v = chunk.victim_ids.size
    nibbles = rng.integers(0, 16, size=(n, 40), dtype=np.uint8)
    hashes = np.ascontiguousarray(_HEX[nibbles]).view("S40").reshape(n)
    # k-space systems run from 30000001 to about 30005000; player corporations
    # from 98000000 (NPC corporations, 1000002 up, lose ships too).
    systems = rng.integers(30_000_001, 30_005_001, n)
    corporations = np.where(
        rng.random(v) < 0.1,
        rng.integers(1_000_002, 1_000_300, v),
        rng.integers(98_000_000, 98_800_000, v),
    )
    capsule = chunk.ship_type_ids == CAPSULE_TYPE_ID
    damage = np.minimum(rng.lognormal(np.log(4000.0), 1.6, v), 2e9).astype(np.int64) + 1
    damage[capsule] = rng.integers(1, 1200, int(capsule.sum()))
    return KillreportColumns(hashes, systems, corporations, damage)
