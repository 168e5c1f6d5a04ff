"""Each command that changes a price source makes the price book rows it reaches stale
(issue 26): a batch valued after it commits uses the new price, under the rule sets that
read that source. Each test values, runs the command as a user would, and values again
in the same process with no recheck due, so only the book's invalidation can show the
change; the reference proves the change moved some value at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from bulk import db
from bulk.engine.batch import Valuation, process_batch
from bulk.engine.session import Session
from tests import dated
from tests.conftest import cli, mismatches
from tests.test_i25_prices import EVEREF, local_esi  # noqa: F401 (a fixture)

YESTERDAY = datetime.now(timezone.utc).date() - timedelta(days=1)
TRITANIUM, RIFTER = 34, 587


@pytest.fixture
def small_board(schema_db, schema_kind):
    """Two types with prices and 40 days of history, three killmails yesterday."""
    with psycopg.connect(schema_db, autocommit=True) as conn:
        db.ensure_history_tables(conn)
        dated.insert_types(
            conn, schema_kind, [(TRITANIUM, 18, 4, "Material"), (RIFTER, 25, 6, "Ship")]
        )
        stamp, now = (", updated_at", ", now()") if schema_kind == "killreport" else ("", "")
        conn.execute(
            f"INSERT INTO market_prices (type_id, buy, sell, average, volume{stamp})"
            f" VALUES (34, 4, 5, 4.5, 1{now}), (587, 250000, 300000, 275000, 1{now})"
        )
        for type_id, price in ((TRITANIUM, 5.0), (RIFTER, 300000.0)):
            days = [(YESTERDAY - timedelta(days=d), price + d % 3) for d in range(40)]
            dated.insert_history(conn, type_id, days)
        noon = datetime.combine(YESTERDAY, datetime.min.time()) + timedelta(hours=12)
        for n in (1, 2, 3):
            dated.insert_killmail(
                conn, schema_kind, n, noon, RIFTER, [(TRITANIUM, 5, 1000 * n, None, 0)]
            )
    return schema_db


def _changed_by(url: str, rules: str, *command: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # One session, whose recheck of seed is not due again for an hour: the
        # command's own invalidation must bring the new prices.
        session, job = Session(conn), Valuation(rules=rules, price_refresh=3600)
        process_batch(session, [1, 2, 3], "all", job)
        assert mismatches(url, rules=rules) == []
        done = cli(*command, url=url)
        assert done.returncode == 0, done.stderr
        assert mismatches(url, rules=rules) != []  # the command moved some reference value
        process_batch(session, [1, 2, 3], "all", job)
    assert mismatches(url, rules=rules) == []


@pytest.mark.both_schemas
def test_prices_import(small_board, tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("type_id,sell\n34,7.77\n")
    _changed_by(small_board, "seed", "prices", "import", str(path))


def test_prices_fetch(small_board, local_esi):  # noqa: F811
    esi_url, _ = local_esi  # every type's lowest sell order is 4.5
    _changed_by(small_board, "seed", "prices", "fetch", "--esi-url", esi_url, "--type-id", "34")


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_prices_history_import(small_board, tmp_path, rules):
    path = tmp_path / "market-history.csv"
    path.write_text(
        f"{EVEREF}\n99.5,{YESTERDAY},99.9,99.2,1210,1046211024,2025-01-02T11:01:17Z,10000002,34\n"
    )
    _changed_by(small_board, rules, "prices", "history", "import", str(path))


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_prices_history_fetch(small_board, local_esi, rules):  # noqa: F811
    esi_url, handler = local_esi
    day = {"average": 88.0, "highest": 90.0, "lowest": 80.0, "order_count": 5, "volume": 50}
    handler.histories = {TRITANIUM: [{**day, "date": YESTERDAY.isoformat()}]}
    with psycopg.connect(small_board, autocommit=True) as conn:
        # The history ends the day before: the fetch has a day to bring.
        conn.execute("DELETE FROM market_price_history WHERE date = %s", [YESTERDAY])
    _changed_by(
        small_board, rules, "prices", "history", "fetch", "--esi-url", esi_url, "--type-id", "34"
    )


@pytest.mark.parametrize("rules", ["evekill", "zkillboard"])
def test_prices_override_set(small_board, rules):
    _changed_by(
        small_board, rules, "prices", "override", "set", "--type-id", "34", "--price", "12.5"
    )


def test_types_import(small_board, tmp_path):
    # Tritanium moved into the capsule group: 10,000 ISK a unit under zkillboard.
    path = tmp_path / "types.csv"
    path.write_text("type_id,group_id,category_id,category_name\n34,29,6,Ship\n")
    _changed_by(small_board, "zkillboard", "types", "import", str(path))
