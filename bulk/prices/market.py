"""Market prices from an order book (pure: no I/O).

The definitions of the system being replaced: buy is the highest buy order,
sell the lowest sell order, average (buy + sell) / 2, and volume the sum of
volume_remain over every order. Where one side of the book is empty, that
side is 0 and average is still (buy + sell) / 2, as the replaced system stores
it (its price columns are NOT NULL DEFAULT 0).

An order is only believed when it could be real: a price that is a finite
number from 0 to MAX_PRICE, a JSON boolean is_buy_order and a finite volume.
Anything else is skipped and counted, never stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

PRICE_FIELDS = ("buy", "sell", "average", "volume")

# No real type comes near this: the dearest hulls trade around 1e12 ISK. The
# bound keeps every unit price's cents (1e17) well inside int8, which the
# valuation needs, and turns a price of 1e300 into an error, not a value.
MAX_PRICE = 1e15
_MAX_VOLUME = 2.0**63


@dataclass(frozen=True)
class MarketPrice:
    type_id: int
    buy: float
    sell: float
    average: float
    volume: float


def _number(value, upper: float) -> float | None:
    """value as a float if it is a JSON number in [0, upper]; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        return None
    if not math.isfinite(number) or not 0 <= number <= upper:
        return None
    return number


def usable_order(order) -> tuple[bool, float, float] | None:
    """(is_buy, price, volume_remain) of an order worth believing, else None."""
    if not isinstance(order, dict):
        return None
    is_buy = order.get("is_buy_order")
    price = _number(order.get("price"), MAX_PRICE)
    volume = _number(order.get("volume_remain"), _MAX_VOLUME)
    if not isinstance(is_buy, bool) or price is None or volume is None:
        return None
    return is_buy, price, volume


def read_book(type_id: int, orders: Iterable) -> tuple[MarketPrice | None, int]:
    """The type's prices from its usable orders (None when there are none) and the skipped count."""
    buys: list[float] = []
    sells: list[float] = []
    volume = 0.0
    skipped = 0
    for order in orders:
        usable = usable_order(order)
        if usable is None:
            skipped += 1
            continue
        is_buy, price, remain = usable
        (buys if is_buy else sells).append(price)
        volume += remain
    if not buys and not sells:
        return None, skipped
    buy = max(buys) if buys else 0.0
    sell = min(sells) if sells else 0.0
    return MarketPrice(type_id, buy, sell, (buy + sell) / 2, volume), skipped
