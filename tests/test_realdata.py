"""The 534 real killmails of ../shared/realdata: imported, valued, and checked twice,
against the SQL reference and against values worked out here from the JSON itself."""

from decimal import ROUND_HALF_UP, Decimal

from tests.conftest import cli, mismatches, summary_count, values
from tests.realdata import (
    REALDATA,
    load_prices_and_types,
    needs_realdata,
    read_killmails,
    read_prices,
    read_types,
)

pytestmark = needs_realdata


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("items"))


def _expected_from_json() -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    unit = {
        t: Decimal(f"{p:.15g}").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        for t, p in read_prices().items()
    }
    blueprint = {int(t["type_id"]) for t in read_types() if t["category_name"] == "Blueprint"}
    out = {}
    for km in read_killmails():
        victim = km["victim"]
        ship = victim["ship_type_id"]
        destroyed = Decimal("10.00") if ship == 670 else unit.get(ship, Decimal(0))
        dropped = Decimal(0)
        for item in _walk(victim.get("items")):
            t = item["item_type_id"]
            price = (
                Decimal("0.01") if (item["singleton"] == 2 and t in blueprint) else unit.get(t, 0)
            )
            destroyed += price * item.get("quantity_destroyed", 0)
            dropped += price * item.get("quantity_dropped", 0)
        out[km["killmail_id"]] = (destroyed + dropped, destroyed, dropped)
    return out


def test_real_killmails_import_and_value_exactly(schema_db):
    out = cli("import-killmails", str(REALDATA / "killmails.jsonl"), url=schema_db)
    assert out.returncode == 0, out.stderr
    assert "imported 534 " in out.stdout
    # SOURCES.md: 10,760 item rows, nested ones included.
    assert "10,760 item rows" in out.stdout
    load_prices_and_types(schema_db)

    run = cli("run", "--mode", "null", "--procs", "2", url=schema_db)
    assert run.returncode == 0, run.stderr
    assert summary_count(run.stdout, "updated") == 534
    assert mismatches(schema_db) == []
    stored = values(schema_db)
    expected = _expected_from_json()
    assert len(expected) == 534
    for kid, exact in expected.items():
        assert stored[kid] == tuple(float(v) for v in exact), kid
    # The set has blueprint copies, capsules and a Keepstar: the rules were exercised.
    assert stored[93963688][0] > 0 and stored[131126432] is not None


def test_reimport_skips_every_killmail(schema_db):
    path = str(REALDATA / "killmails.jsonl")
    assert cli("import-killmails", path, url=schema_db).returncode == 0
    again = cli("import-killmails", path, url=schema_db)
    assert again.returncode == 0, again.stderr
    assert "imported 0 " in again.stdout
    assert "skipped 534 already present" in again.stdout
