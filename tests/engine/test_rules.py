"""The rule sets as fixed data: what the SQL is made from, and the README's table of them."""

from decimal import Decimal
from pathlib import Path

import pytest

from bulk.engine import rules, sqlfiles
from bulk.errors import UserError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_rule_sets_exactly_as_the_data_has_them():
    assert rules.table_markdown() in README.read_text()


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


@pytest.mark.parametrize("name", ["evekill", "zkillboard"])
def test_every_placeholder_of_the_dated_sql_is_filled(name):
    for text in (
        sqlfiles.resolve_dated_sql(name),
        sqlfiles.load_batch_dated_sql("null", name),
        sqlfiles.unusable_dated_sql("zero", name),
        sqlfiles.reference_sql("sell", name),
    ):
        assert "{" not in text and "}" not in text
    assert "3601 seconds" in sqlfiles.load_batch_dated_sql("all", "zkillboard")
    assert "i.flag = 179" in sqlfiles.load_batch_dated_sql("all", "zkillboard")
    assert "flag" not in sqlfiles.load_batch_dated_sql("all", "evekill")


def test_unknown_rules_are_a_user_error():
    with pytest.raises(UserError, match="unknown rules 'zkb': choose one of seed, evekill"):
        rules.rules_name("zkb")
    with pytest.raises(UserError, match="no kill-date prices"):
        rules.dated("seed")
    with pytest.raises(UserError, match="unknown rules"):
        sqlfiles.resolve_dated_sql("'; DROP TABLE killmails; --")


def test_only_plain_numbers_reach_the_sql():
    with pytest.raises(ValueError):
        rules._number(Decimal("1e3"))
    with pytest.raises(ValueError):
        rules._number(Decimal("-1"))
    with pytest.raises(ValueError):
        rules.cents(Decimal("0.001"))
    assert rules.cents(Decimal("0.01")) == 1
