"""Market prices from an order book (pure: no I/O).

The definitions of the system being replaced: buy is the highest buy order,
sell the lowest sell order, average (buy + sell) / 2, and volume the sum of
volume_remain over every order. Where one side of the book is empty, that
column is None and average is the other side's price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRICE_FIELDS = ("buy", "sell", "average", "volume")


@dataclass(frozen=True)
class MarketPrice:
    type_id: int
    buy: float | None
    sell: float | None
    average: float | None
    volume: float


class BadOrder(ValueError):
    """An order without the fields a price needs."""


def summarize(type_id: int, orders: Iterable[dict]) -> MarketPrice | None:
    """The type's prices from all its orders; None when there are none."""
    buys: list[float] = []
    sells: list[float] = []
    volume = 0.0
    for order in orders:
        try:
            price = float(order["price"])
            remain = float(order["volume_remain"])
            is_buy = bool(order["is_buy_order"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadOrder(f"order without a usable {exc}") from None
        (buys if is_buy else sells).append(price)
        volume += remain
    if not buys and not sells:
        return None
    buy = max(buys) if buys else None
    sell = min(sells) if sells else None
    if buy is not None and sell is not None:
        average = (buy + sell) / 2
    else:
        average = buy if buy is not None else sell
    return MarketPrice(type_id, buy, sell, average, volume)
