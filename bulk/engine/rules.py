"""The rule sets a killmail can be valued under, as fixed data, and the SQL text made from it.

`seed` is the replaced system's rule (today's market_prices); `evekill` and
`zkillboard` value a killmail at its kill date, from market_price_history and
price_overrides. Every fixed price, region, offset and window size is listed
once, in SEED and DATED below: the price book's builders
(sql/book_build_<rules>.sql, bulk.engine.book) and the dated references
(sql/reference_evekill.sql, sql/reference_zkillboard.sql) get their numbers
from here, and docs/prices.md's rules table is checked against table_rows(). This
is the only module that knows a rule set by name: everything else asks it.
Only identifiers and numbers from these fixed tables are ever pasted into SQL
text, never user text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from bulk.errors import UserError

RULES = ("seed", "evekill", "zkillboard")
DEFAULT_RULES = "seed"
THE_FORGE = 10000002


@dataclass(frozen=True)
class TypePrice:
    """A fixed unit price for every type of some categories or groups."""

    what: str
    column: str  # "category" (item_groups.category_id) or "group" (types.group_id)
    ids: tuple[int, ...]
    price: Decimal


@dataclass(frozen=True)
class LinePrice:
    """A fixed unit price for an item line by a column of killmail_items (never the ship)."""

    what: str
    column: str  # "singleton" or "flag"
    value: int
    price: Decimal


@dataclass(frozen=True)
class ShapePrice:
    """A fixed unit price of a type in one shape of line (SHAPES), where a condition holds.

    `column` is "type" (the type's id), "category_name" (its category's name)
    or None (every type).
    """

    what: str
    shape: str
    column: str | None
    values: tuple[int | str, ...]
    price: Decimal


# The shapes of line a book prices apart: the victim's ship, a plain item, and
# item lines that a rule set can fix by a column of killmail_items. A line
# takes the first item shape whose column has the value (then plain "item").
SHIP, ITEM = "ship", "item"
SHAPES: dict[str, tuple[str, int]] = {"copy": ("singleton", 2), "bay": ("flag", 179)}


@dataclass(frozen=True)
class Window:
    """zKillboard's market window: up to `size` daily averages walking back from the price date."""

    size: int = 34
    full_drop_low: int = 2  # with `size` prices
    full_drop_high: int = 2
    partial_min: int = 7  # from this many up to size - 1 prices ...
    partial_drop_high: int = 2  # ... drop this many of the highest
    lower_day: bool = True  # the price date's own average, where lower than the mean


@dataclass(frozen=True)
class RuleSet:
    name: str
    region_id: int
    # price date = UTC date of (killmail_time - this many seconds)
    price_date_offset_s: int
    # In this order, after a price override valid on the price date.
    type_prices: tuple[TypePrice, ...]
    # Item lines only; they win over everything, overrides included.
    line_prices: tuple[LinePrice, ...]
    # None: the latest positive average on or before the price date.
    window: Window | None
    # No override, no fixed price, no market price.
    fallback: Decimal


@dataclass(frozen=True)
class Seed:
    """The replaced system's rule: today's market_prices, in a column of the job's choice."""

    name: str
    price_columns: tuple[str, ...]
    shape_prices: tuple[ShapePrice, ...]
    # No market_prices row, or a NULL price.
    fallback: Decimal


SEED = Seed(
    name="seed",
    price_columns=("sell", "buy", "average"),
    shape_prices=(
        ShapePrice("capsule hull", SHIP, "type", (670,), Decimal("10")),
        ShapePrice("blueprint copies", "copy", "category_name", ("Blueprint",), Decimal("0.01")),
    ),
    fallback=Decimal("0"),
)

_SKIN = TypePrice("SKINs", "category", (91,), Decimal("0.01"))
_CAPSULE = TypePrice("capsules", "group", (29,), Decimal("10000"))
_ORE = TypePrice("ore groups 4513, 4759", "group", (4513, 4759), Decimal("200"))
_BLUEPRINT_COPY = LinePrice("blueprint copies", "singleton", 2, Decimal("0.01"))
_ESCAPE_BAY = LinePrice("items in the frigate escape bay", "flag", 179, Decimal("0.01"))

DATED: dict[str, RuleSet] = {
    "evekill": RuleSet(
        name="evekill",
        region_id=THE_FORGE,
        price_date_offset_s=0,
        type_prices=(_SKIN, _CAPSULE, _ORE),
        line_prices=(_BLUEPRINT_COPY,),
        window=None,
        fallback=Decimal("0.01"),
    ),
    "zkillboard": RuleSet(
        name="zkillboard",
        region_id=THE_FORGE,
        # zKillboard steps back "one hour" (and a second) for its old CREST cache.
        price_date_offset_s=3601,
        type_prices=(_SKIN, _CAPSULE, _ORE),
        line_prices=(_BLUEPRINT_COPY, _ESCAPE_BAY),
        window=Window(),
        fallback=Decimal("0.01"),
    ),
}

# Cents beyond int8 cannot be summed by the engine; such a unit price is "bad".
MAX_CENTS = 2**63 - 1


def rules_name(name: str) -> str:
    """`name` if it is a rule set; a UserError naming the choices otherwise."""
    if name not in RULES:
        raise UserError(f"unknown rules {name!r}: choose one of {', '.join(RULES)}")
    return name


def dated(name: str) -> RuleSet:
    """The dated rule set called `name` (not seed, which has no dated prices)."""
    try:
        return DATED[rules_name(name)]
    except KeyError:
        raise UserError(f"rules {name!r} have no kill-date prices") from None


# --- SQL text, made only from the fixed data above ---------------------------

_NUMBER = re.compile(r"\d+(\.\d+)?")


def _number(value: Decimal | int) -> str:
    text = str(value)
    if not _NUMBER.fullmatch(text):  # never anything but a plain literal in SQL
        raise ValueError(f"not a plain number: {text!r}")
    return text


def literal(name: str) -> str:
    """The rule set's name as a quoted SQL literal (only names from RULES)."""
    return "'" + rules_name(name) + "'"


def price_date_sql(name: str) -> str:
    """The price date of killmail k: killmail_time is a timestamp without time zone in UTC."""
    offset = dated(name).price_date_offset_s
    if offset == 0:
        return "k.killmail_time::date"
    return f"(k.killmail_time - interval '{_number(offset)} seconds')::date"


_TYPE_COLUMNS = {"category": "g.category_id", "group": "t.group_id"}


def type_price_sql(name: str) -> str:
    """The fixed unit price (numeric ISK) of type t in group g, or NULL: a CASE."""
    whens = [
        f"WHEN {_TYPE_COLUMNS[p.column]} IN ({', '.join(map(_number, p.ids))})"
        f" THEN {_number(p.price)}::numeric"
        for p in dated(name).type_prices
    ]
    return "CASE " + " ".join(whens) + " END"


_LINE_COLUMNS = {"singleton": "i.singleton", "flag": "i.flag"}


def line_exempt_sql(name: str) -> str:
    """True for an item line i whose price is fixed by the line itself (no type price needed)."""
    tests = [f"{_LINE_COLUMNS[p.column]} = {_number(p.value)}" for p in dated(name).line_prices]
    return "(" + " OR ".join(tests) + ")"


def line_cents_sql(name: str) -> str:
    """The WHEN branches giving an item line i its fixed unit price in cents."""
    return " ".join(
        f"WHEN {_LINE_COLUMNS[p.column]} = {_number(p.value)} THEN {_number(cents(p.price))}"
        for p in dated(name).line_prices
    )


def cents(price: Decimal) -> int:
    exact = price * 100
    if exact != exact.to_integral_value():
        raise ValueError(f"{price} is not a whole number of cents")
    return int(exact)


def fixed_values_sql(name: str) -> str:
    """The type prices as rows (ord, column, id, price) for the references to apply."""
    rows = [
        f"({n}, '{p.column}', {_number(i)}, {_number(p.price)}::numeric)"
        for n, p in enumerate(dated(name).type_prices, start=1)
        for i in p.ids
    ]
    return "(VALUES " + ", ".join(rows) + ")"


def line_values_sql(name: str) -> str:
    """The line prices as rows (ord, column, value, price) for the references to apply."""
    rows = [
        f"({n}, '{p.column}', {_number(p.value)}, {_number(p.price)}::numeric)"
        for n, p in enumerate(dated(name).line_prices, start=1)
    ]
    return "(VALUES " + ", ".join(rows) + ")"


def placeholders(name: str) -> dict[str, str]:
    """Every placeholder the dated SQL files use, for rule set `name`."""
    rules = dated(name)
    window = rules.window or Window()
    return {
        "rules": literal(name),
        "region": _number(rules.region_id),
        "price_date": price_date_sql(name),
        "type_price": type_price_sql(name),
        "line_exempt": line_exempt_sql(name),
        "line_cents": line_cents_sql(name),
        "fixed_values": fixed_values_sql(name),
        "line_values": line_values_sql(name),
        "fallback": _number(rules.fallback),
        "offset_s": _number(rules.price_date_offset_s),
        "window": _number(window.size),
        "full_drop_low": _number(window.full_drop_low),
        "full_drop_high": _number(window.full_drop_high),
        "partial_min": _number(window.partial_min),
        "partial_drop_high": _number(window.partial_drop_high),
        "max_cents": _number(MAX_CENTS),
    }


# --- the price book: what a rule set tells the builders and the engines ---------

# seed's price date: its prices are today's, whatever the kill's date.
_TODAY = "'infinity'::date"


def uses_price_column(name: str) -> bool:
    """Whether the rule set reads market_prices (and so a price column): only seed."""
    return rules_name(name) == SEED.name


def reads_history(name: str) -> bool:
    """Whether the rule set reads market_price_history and price_overrides."""
    return rules_name(name) in DATED


def history_regions() -> list[int]:
    """The market regions whose history some rule set reads: a change elsewhere moves no price."""
    return sorted({rules.region_id for rules in DATED.values()})


def book_key(name: str, price_column: str = "sell") -> str:
    """The key of the rule set's rows in the price book: seed carries its price column."""
    if uses_price_column(name):
        if price_column not in SEED.price_columns:
            raise UserError(
                f"unknown price column {price_column!r}: choose one of"
                f" {', '.join(SEED.price_columns)}"
            )
        return f"{SEED.name}:{price_column}"
    return rules_name(name)


def book_rules(key: str) -> tuple[str, str | None]:
    """(rule set, price column or None) of a book key made by book_key()."""
    name, _, column = key.partition(":")
    if book_key(name, column or "sell") != key:
        raise ValueError(f"not a book key: {key!r}")
    return name, column or None


def book_price_date_sql(name: str) -> str:
    """The price date of killmail k under the rule set, as the book's rows are keyed."""
    return _TODAY if uses_price_column(name) else price_date_sql(name)


def _shape_prices(name: str) -> tuple[ShapePrice, ...]:
    if uses_price_column(name):
        return SEED.shape_prices
    by_line = {line: shape for shape, line in SHAPES.items()}
    return tuple(
        ShapePrice(p.what, by_line[(p.column, p.value)], None, (), p.price)
        for p in dated(name).line_prices
    )


_WORD = re.compile(r"[A-Za-z][A-Za-z ]*")
_SHAPE_COLUMNS = {"type": "t.id", "category_name": "c.name"}


def _value_sql(value: int | str) -> str:
    if isinstance(value, int):
        return _number(value)
    if not _WORD.fullmatch(value):  # fixed names only, never anything to escape
        raise ValueError(f"not a plain name: {value!r}")
    return f"'{value}'"


def shape_fixed_sql(name: str, shape: str) -> str:
    """The shape's fixed unit price (numeric ISK) of type t in group g, category c, or NULL."""
    whens = []
    for p in _shape_prices(name):
        if p.shape != shape:
            continue
        if p.column is None:
            whens.append(f"WHEN TRUE THEN {_number(p.price)}::numeric")
        else:
            values = ", ".join(map(_value_sql, p.values))
            whens.append(
                f"WHEN {_SHAPE_COLUMNS[p.column]} IN ({values}) THEN {_number(p.price)}::numeric"
            )
    return "CASE " + " ".join(whens) + " END" if whens else "NULL::numeric"


def item_cents_sql() -> str:
    """The book's column an item line i takes (on book row p), by the line's shape."""
    whens = " ".join(
        f"WHEN {_LINE_COLUMNS[column]} = {_number(value)} THEN p.{shape}"
        for shape, (column, value) in SHAPES.items()
    )
    return f"CASE {whens} ELSE p.{ITEM} END"


def builder(name: str) -> str:
    """The name of the rule set's builder, sql/book_build_<name>.sql."""
    return f"book_build_{rules_name(name)}"


def recheck(name: str) -> bool:
    """Whether a build recomputes every wanted price, not only missing and stale ones.

    seed's few thousand prices are cheaper to recompute than to track, and a
    killboard's own price fetcher may change market_prices behind the tool.
    """
    return uses_price_column(name)


def job_wants_every_type(name: str) -> bool:
    """Whether a job's book is every known type (seed: one price date) rather than
    the (type, price date) pairs of the job's killmails."""
    return uses_price_column(name)


def history_reach(name: str) -> str | None:
    """Which book rows of a type a history change on date D makes stale:
    "after" (price dates from D on), "all" (every price date: zkillboard's walk
    limit counts all of the type's rows), or None (the rule set reads no history)."""
    if not reads_history(name):
        return None
    return "all" if dated(name).window is not None else "after"


def book_placeholders(name: str, price_column: str = "sell") -> dict[str, str]:
    """Every placeholder the book's SQL files use, for rule set `name`."""
    fill = {
        "book": "'" + book_key(name, price_column) + "'",
        "price_date": book_price_date_sql(name),
        "item_cents": item_cents_sql(),
        "max_cents": _number(MAX_CENTS),
        "recheck": "TRUE" if recheck(name) else "FALSE",
    }
    if uses_price_column(name):
        fill["book_dates"] = f"p.price_date = {_TODAY}"
        fill["book_cte"] = "NOT MATERIALIZED"
    else:
        fill["book_dates"] = (
            "p.price_date = ANY(array(SELECT DISTINCT b.price_date FROM batch AS b))"
        )
        fill["book_cte"] = "MATERIALIZED"
    for shape in (SHIP, *SHAPES):
        fill[f"{shape}_fixed"] = shape_fixed_sql(name, shape)
    if uses_price_column(name):
        fill["price_column"] = price_column
        fill["fallback"] = _number(SEED.fallback)
    else:
        fill.update(placeholders(name))
    return fill


# --- docs/prices.md's table ----------------------------------------------------


def _isk(price: Decimal) -> str:
    return f"{price:,}"


def _fixed(rules: RuleSet, fixed: TypePrice | LinePrice, otherwise: str = "market") -> str:
    return _isk(fixed.price) if fixed in (*rules.type_prices, *rules.line_prices) else otherwise


def table_rows() -> list[tuple[str, str, str, str]]:
    """(part, seed, evekill, zkillboard): the rule sets side by side, as docs/prices.md shows them.

    tests/engine/test_rules.py checks that docs/prices.md holds exactly this table, so
    the doc cannot drift from the data above.
    """
    ek, zk = DATED["evekill"], DATED["zkillboard"]
    assert zk.window is not None
    forge = "The Forge" if ek.region_id == zk.region_id == THE_FORGE else "region"
    rows = [
        (
            "price date",
            "none: today's `market_prices`",
            "UTC kill date",
            f"UTC date of kill time − {zk.price_date_offset_s:,} s",
        ),
        (
            "unit price of a type",
            f"`{SEED.price_columns[0]}` (or `--price-column`)",
            f"latest {forge} daily `average` > 0 on or before the date",
            f"trimmed mean of up to {zk.window.size} {forge} daily averages back from"
            " the date, or the date's own if lower",
        ),
        ("no price", _isk(SEED.fallback), _isk(ek.fallback), _isk(zk.fallback)),
        ("`price_overrides`", "not used", "first, on the date", "first, on the date"),
    ]
    seed_ship = next(p for p in SEED.shape_prices if p.shape == SHIP)
    seed_copy = next(p for p in SEED.shape_prices if p.shape == "copy")
    copy_column, copy_value = SHAPES["copy"]
    for fixed in (_SKIN, _CAPSULE, _ORE):
        label = fixed.what
        if len(fixed.ids) == 1:
            label += f" ({fixed.column} {fixed.ids[0]})"
        seed = "market"
        if fixed is _CAPSULE:
            seed = f"ship {', '.join(map(str, seed_ship.values))}: {_isk(seed_ship.price)}"
        rows.append((label, seed, _fixed(ek, fixed), _fixed(zk, fixed)))
    rows.append(
        (
            "blueprint copies",
            f"{_isk(seed_copy.price)} (`{copy_column} = {copy_value}`,"
            f" category `{seed_copy.values[0]}`)",
            f"{_fixed(ek, _BLUEPRINT_COPY)} (`singleton = 2`)",
            f"{_fixed(zk, _BLUEPRINT_COPY)} (`singleton = 2`)",
        )
    )
    rows.append(
        (
            f"{_ESCAPE_BAY.what} ({_ESCAPE_BAY.column} {_ESCAPE_BAY.value})",
            "market",
            _fixed(ek, _ESCAPE_BAY),
            _fixed(zk, _ESCAPE_BAY),
        )
    )
    return rows


def table_markdown() -> str:
    lines = ["| part | seed (default) | evekill | zkillboard |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows()]
    return "\n".join(lines)


def describe_unusable(
    name: str, column: str | None, type_id: int, price_date, price: Decimal
) -> str:
    """A price of the book that cannot be cents, for the error of the killmails that use it."""
    if uses_price_column(name):
        value = float(price)
        if math.isfinite(value):
            return (
                f"market_prices.{column} of type {type_id} is {value!r} ISK,"
                " beyond what a value can hold"
            )
        return f"market_prices.{column} of type {type_id} is {value!r}, not a price"
    shown = "not a number" if price.is_nan() else f"{price:.6g} ISK"
    return (
        f"the {rules_name(name)} price of type {type_id} on {price_date}"
        f" is {shown}, beyond what a value can hold"
    )
