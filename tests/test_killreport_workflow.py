"""The whole operator workflow on the replaced system's schema (tests/schemas/killreport.sql).

Prices fetched and imported, the real killmails imported, then queue + work,
run in every mode, status and verify: every command exits 0, every value is
exact, updated_at moves exactly on the rows written, and nothing else in the
database changes: not the schema (pg_dump --schema-only), not one other
column of one other row.
"""

import hashlib
import json
import subprocess
from datetime import datetime

import psycopg
import pytest

from tests import rabbit
from tests.conftest import REALDATA, cli, mismatches, victimless
from tests.realdata import needs_realdata, read_types
from tests.test_killreport_imports import _hashed_file
from tests.test_prices import _expected, canned_esi  # noqa: F401 - the fixture

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
_LONG_AGO = datetime(2001, 1, 1)
# What valuing a killmail may change; everything else must stay as it was.
_WRITTEN = {"killmails": {"total_value", "destroyed_value", "dropped_value", "updated_at"}}


def _load_types(url: str) -> None:
    """The killboard's own type tables, as the replaced system keeps them (not the tool's job)."""
    types = read_types()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        categories = {(int(t["category_id"]), t["category_name"]) for t in types}
        groups = {(int(t["group_id"]), int(t["category_id"])) for t in types}
        cur.executemany(
            "INSERT INTO categories (id, name, updated_at) VALUES (%s, %s, now())",
            sorted(categories),
        )
        cur.executemany(
            "INSERT INTO item_groups (id, name, category_id, updated_at)"
            " VALUES (%s, 'group ' || %s, %s, now())",
            [(g, g, c) for g, c in sorted(groups)],
        )
        cur.executemany(
            "INSERT INTO types (id, name, group_id, updated_at)"
            " VALUES (%s, 'type ' || %s, %s, now())",
            [(int(t["type_id"]), t["type_id"], int(t["group_id"])) for t in types],
        )


def _schema(url: str) -> str:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "-h", "127.0.0.1", "-U", "postgres", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # pg_dump names its own version and a random restrict key; neither is the schema.
    return "\n".join(
        line
        for line in dump.splitlines()
        if not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


def _fingerprints(url: str) -> dict[str, str]:
    """table -> a hash of every row, without the columns valuing may write."""
    prints = {}
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, ordinal_position"
        ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in columns:
            # The tool's own tables: every job writes its prices, versions and stamps.
            if table in (
                "bulk_price_book",
                "bulk_book_versions",
                "bulk_price_book_changes",
                "bulk_valuations",
            ):
                continue
            if column not in _WRITTEN.get(table, ()):
                tables.setdefault(table, []).append(f'"{column}"')
        for table, kept in tables.items():
            rows = conn.execute(
                f'SELECT row({", ".join(kept)})::text AS r FROM "{table}" ORDER BY r'
            ).fetchall()
            digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()
            prints[table] = f"{len(rows)} rows {digest}"
    return prints


def _stamps(url: str) -> dict[int, datetime]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT killmail_id, updated_at FROM killmails").fetchall())


def _age_stamps(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE killmails SET updated_at = %s", [_LONG_AGO])


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@needs_realdata
@pytest.mark.slow
def test_the_whole_workflow_on_the_replaced_systems_schema(
    killreport_db,
    canned_esi,  # noqa: F811
    queue_name,
    tmp_path,
):
    url = killreport_db
    esi_url, _ = canned_esi
    _load_types(url)

    # prices fetch: the replaced system's numbers for a one-sided book
    _ok(cli("prices", "fetch", "--esi-url", esi_url, "--type-id", "34", "--type-id", "35", url=url))
    with psycopg.connect(url) as conn:
        (buy, sell, average, volume) = conn.execute(
            "SELECT buy, sell, average, volume FROM market_prices WHERE type_id = 35"
        ).fetchone()
    assert (buy, sell, average, volume) == _expected(35)
    assert buy == 0 and average == sell / 2

    _ok(cli("prices", "import", str(REALDATA / "prices.json"), "--average-as", "sell", url=url))
    # Every real killmail that has a hash (one came without any: killreport cannot hold it).
    killmails, _, _ = _hashed_file(REALDATA, tmp_path)
    zkb = str(REALDATA / "zkb.jsonl")
    _ok(cli("import-killmails", str(killmails), "--zkb", zkb, "--top-level-only", url=url))

    schema_before, prints_before = _schema(url), _fingerprints(url)
    no_victim = victimless(url)
    everyone = set(_stamps(url))

    # queue + work (null mode): updated_at moves exactly on the rows written
    _age_stamps(url)
    _ok(cli("queue", "--queue", queue_name, url=url, env=_ENV))
    _ok(cli("work", "--queue", queue_name, "--until-empty", url=url, env=_ENV))
    assert rabbit.counts(queue_name) == (0, 0)
    stamps = _stamps(url)
    assert {k for k, t in stamps.items() if t != _LONG_AGO} == everyone - no_victim
    assert mismatches(url) == []

    # run in every mode: null finds nothing left, zero rewrites the rows valued 0, all every row
    with psycopg.connect(url) as conn:
        zero = {
            r[0] for r in conn.execute("SELECT killmail_id FROM killmails WHERE total_value = 0")
        }
    for mode, written in (("null", set()), ("zero", zero), ("all", everyone - no_victim)):
        _age_stamps(url)
        _ok(cli("run", "--mode", mode, url=url))
        stamps = _stamps(url)
        assert {k for k, t in stamps.items() if t != _LONG_AGO} == written, mode
        assert mismatches(url) == [], mode

    status = json.loads(_ok(cli("status", "--queue", queue_name, "--json", url=url, env=_ENV)))
    assert status["database"]["killmails"] == len(everyone)
    assert status["database"]["valued"] == len(everyone - no_victim)
    verified = json.loads(_ok(cli("verify", "--all", "--json", url=url)))
    assert verified["mismatches"] == 0 and verified["checked"] == len(everyone - no_victim)

    # nothing else changed: not the schema, not one other column of one other row
    assert _schema(url) == schema_before
    assert _fingerprints(url) == prints_before
