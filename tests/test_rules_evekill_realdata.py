"""EVE-KILL's own kill-date prices (../shared/realdata/history/evekill_shrike_killdate_prices.json)
loaded as history and overrides: under --rules evekill each of the 106 killmails that came from
EVE-KILL is valued from exactly those prices, on both schemas, by the engine path and by the
rule set's SQL reference, against a Decimal oracle worked out here from the JSON files."""

from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from bulk.importer import import_killmails
from tests import dated
from tests.conftest import REALDATA
from tests.realdata import needs_realdata, read_types

pytestmark = needs_realdata

PRICES = REALDATA / "history" / "evekill_shrike_killdate_prices.json"


def _shrike_lines() -> list[str]:
    with open(REALDATA / "killmail_sources.csv", newline="") as fh:
        shrike = {
            int(r["killmail_id"]) for r in csv.DictReader(fh) if r["repo"] == "EVE-KILL/Shrike"
        }
    lines = (REALDATA / "killmails.jsonl").read_text().splitlines()
    return [line for line in lines if line.strip() and json.loads(line)["killmail_id"] in shrike]


def _walk(items, top_level_only: bool):
    for item in items or []:
        yield item
        if not top_level_only:
            yield from _walk(item.get("items"), top_level_only)


def _oracle(docs: list[dict], top_level_only: bool) -> dated.Values:
    """EVE-KILL's order, from the JSON alone: custom price, SKIN, capsule, ore, the day's
    price, 0.01; blueprint copies 0.01."""
    data = json.loads(PRICES.read_text())
    custom = {int(t): p for t, p in data["custom_prices"].items()}
    types = {int(t["type_id"]): t for t in read_types()}

    def price(type_id: int, day: str) -> Decimal:
        if type_id in custom:
            return dated.unit(custom[type_id])
        t = types.get(type_id)
        if t and int(t["category_id"]) == 91:
            return Decimal("0.01")
        if t and int(t["group_id"]) == 29:
            return Decimal("10000.00")
        if t and int(t["group_id"]) in (4513, 4759):
            return Decimal("200.00")
        on_day = data["prices"][day].get(str(type_id))
        return Decimal("0.01") if on_day is None else dated.unit(on_day)

    out = {}
    for doc in docs:
        day = doc["killmail_time"][:10]  # all "...Z": the UTC date
        victim = doc["victim"]
        destroyed, dropped = price(victim["ship_type_id"], day), Decimal(0)
        for item in _walk(victim.get("items"), top_level_only):
            each = (
                Decimal("0.01") if item.get("singleton") == 2 else price(item["item_type_id"], day)
            )
            destroyed += each * item.get("quantity_destroyed", 0)
            dropped += each * item.get("quantity_dropped", 0)
        out[doc["killmail_id"]] = (destroyed + dropped, destroyed, dropped)
    return out


def _load(url: str, kind: str, tmp_path) -> list[dict]:
    lines = _shrike_lines()
    path = tmp_path / "shrike.jsonl"
    path.write_text("\n".join(lines) + "\n")
    data = json.loads(PRICES.read_text())
    with psycopg.connect(url) as conn:
        # killreport keeps only the top-level items (tests/schemas/killreport.sql)
        result = import_killmails(conn, path, top_level_only=kind == "killreport")
        assert result.imported == 106
        dated.insert_types(
            conn,
            kind,
            (
                (int(t["type_id"]), int(t["group_id"]), int(t["category_id"]), t["category_name"])
                for t in read_types()
            ),
        )
        dated.create_history_tables(conn)
        for day, prices in data["prices"].items():
            for type_id, average in prices.items():
                dated.insert_history(conn, int(type_id), [(date.fromisoformat(day), average)])
        for type_id, price in data["custom_prices"].items():
            dated.insert_override(conn, int(type_id), price)
    return [json.loads(line) for line in lines]


@pytest.mark.both_schemas
def test_every_evekill_killmail_is_valued_from_exactly_evekills_prices(
    schema_db, schema_kind, tmp_path
):
    docs = _load(schema_db, schema_kind, tmp_path)
    expected = _oracle(docs, top_level_only=schema_kind == "killreport")
    ids = sorted(expected)
    assert len(ids) == 106

    engine, reference = dated.both_ways(schema_db, ids, "evekill")
    assert reference == expected
    assert engine == expected

    # The set exercises the rule's parts: custom prices (the Shrike titans among
    # them), the 0.01 of types EVE-KILL had no price for, capsules, blueprint copies.
    custom = json.loads(PRICES.read_text())["custom_prices"]
    ships = {d["killmail_id"]: d["victim"]["ship_type_id"] for d in docs}
    assert any(str(s) in custom for s in ships.values())
    assert any(s == 670 and expected[k][1] >= Decimal(10000) for k, s in ships.items())
    assert any(
        i.get("singleton") == 2 for d in docs for i in _walk(d["victim"].get("items"), False)
    )
    assert len({e for e in expected.values()}) > 90  # not a constant by accident
