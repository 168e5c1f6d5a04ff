"""The rule sets as fixed data: what the SQL is made from, and docs/prices.md's table of them."""

from decimal import Decimal
from pathlib import Path

import pytest

from bulk.engine import rules, statements
from bulk.errors import UserError

PRICES_DOC = Path(__file__).resolve().parents[2] / "docs" / "prices.md"


def test_the_readme_shows_the_rule_sets_exactly_as_the_data_has_them():
    assert rules.table_markdown() in PRICES_DOC.read_text()


def test_the_issues_numbers_are_the_data():
    ek, zk = rules.DATED["evekill"], rules.DATED["zkillboard"]
    assert rules.RULES == ("seed", "evekill", "zkillboard") and rules.DEFAULT_RULES == "seed"
    for r in (ek, zk):
        assert r.region_id == 10000002 and r.fallback == Decimal("0.01")
        fixed = {(p.column, i): p.price for p in r.type_prices for i in p.ids}
        assert fixed == {
            ("category", 91): Decimal("0.01"),
            ("group", 29): Decimal("10000"),
            ("group", 4513): Decimal("200"),
            ("group", 4759): Decimal("200"),
        }
    assert [(p.column, p.value, p.price) for p in ek.line_prices] == [
        ("singleton", 2, Decimal("0.01"))
    ]
    assert [(p.column, p.value, p.price) for p in zk.line_prices] == [
        ("singleton", 2, Decimal("0.01")),
        ("flag", 179, Decimal("0.01")),
    ]
    assert (ek.price_date_offset_s, zk.price_date_offset_s) == (0, 3601)
    assert ek.window is None
    w = zk.window
    assert (w.size, w.full_drop_low, w.full_drop_high, w.partial_min, w.partial_drop_high) == (
        34,
        2,
        2,
        7,
        2,
    )


@pytest.mark.parametrize("name", ["seed", "evekill", "zkillboard"])
def test_every_placeholder_of_the_book_sql_is_filled(name):
    texts = [
        statements.book_build_sql(name, "buy", wanted) for wanted in ("batch", "stale", "known")
    ]
    texts.append(statements.book_build_sql(name, "buy", "job"))
    texts.append(statements.book_job_pairs_sql(name, "k.killmail_id > %(after)s"))
    for mode in ("null", "zero", "all"):
        texts.append(statements.load_book_sql(mode, name, "buy"))
        texts.append(statements.value_book_sql(mode, name, "buy", "timestamp", "int8"))
        texts.append(statements.book_unusable_sql(mode, name, "buy"))
    texts.append(statements.reference_sql("buy", name))
    for text in texts:
        assert "{" not in text.replace("'{}'::jsonb", "") and "}" not in text.replace(
            "'{}'::jsonb", ""
        )


def test_the_book_sql_takes_each_rule_sets_own_data():
    assert "3601 seconds" in statements.load_book_sql("all", "zkillboard", "sell")
    assert "'infinity'::date" in statements.load_book_sql("all", "seed", "sell")
    assert "mp.buy::numeric" in statements.book_build_sql("seed", "buy", "known")
    # The escape bay has its own price only under zkillboard; copies under every rule set.
    assert rules.shape_fixed_sql("evekill", "bay") == "NULL::numeric"
    assert "0.01::numeric" in rules.shape_fixed_sql("zkillboard", "bay")
    assert "c.name IN ('Blueprint')" in rules.shape_fixed_sql("seed", "copy")
    assert "t.id IN (670) THEN 10::numeric" in rules.shape_fixed_sql("seed", "ship")
    assert rules.shape_fixed_sql("evekill", "ship") == "NULL::numeric"
    assert rules.book_key("seed", "average") == "seed:average"
    assert rules.book_rules("seed:average") == ("seed", "average")
    assert rules.book_rules("zkillboard") == ("zkillboard", None)
    with pytest.raises(UserError, match="unknown price column"):
        rules.book_key("seed", "sell; DROP TABLE killmails")


def test_unknown_rules_are_a_user_error():
    with pytest.raises(UserError, match="unknown rules 'zkb': choose one of seed, evekill"):
        rules.rules_name("zkb")
    with pytest.raises(UserError, match="no kill-date prices"):
        rules.dated("seed")
    with pytest.raises(UserError, match="unknown rules"):
        statements.book_build_sql("'; DROP TABLE killmails; --", "sell", "stale")


def test_only_plain_numbers_reach_the_sql():
    with pytest.raises(ValueError):
        rules._number(Decimal("1e3"))
    with pytest.raises(ValueError):
        rules._number(Decimal("-1"))
    with pytest.raises(ValueError):
        rules.cents(Decimal("0.001"))
    assert rules.cents(Decimal("0.01")) == 1
