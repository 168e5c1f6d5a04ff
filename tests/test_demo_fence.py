"""`demo --database NAME` drops only a database the demo itself created."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bulk.demo.run import DEMO_MARKER
from tests.conftest import SERVER_URL, cli, drop_database, mismatches


def _comment(name: str) -> str | None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
    return None if row is None else row[0]


def _exists(name: str) -> bool:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


@pytest.mark.parametrize("prefix", ["killboard_", "bulk_backfill_demo_"])
def test_demo_refuses_to_drop_a_database_it_did_not_create(prefix):
    # A killboard, and one that merely carries the demo's name: neither was made by the demo.
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(SERVER_URL, dbname=name)
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE precious (v int)")
            conn.execute("INSERT INTO precious VALUES (42)")
        out = cli(
            "demo", "--killmails", "200", "--database", name, env={"DATABASE_URL": SERVER_URL}
        )
        assert out.returncode != 0
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"refusing to drop database {name!r}" in out.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM precious").fetchall() == [(42,)]
    finally:
        drop_database(name)


def test_demo_drops_and_recreates_its_own_database():
    name = f"bulk_backfill_demo_{uuid.uuid4().hex[:10]}"
    url = make_conninfo(SERVER_URL, dbname=name)
    env = {"DATABASE_URL": SERVER_URL}
    try:
        first = cli("demo", "--killmails", "300", "--procs", "1", "--database", name, env=env)
        assert first.returncode == 0, first.stderr
        assert _comment(name) == DEMO_MARKER
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE left_from_before (v int)")
        second = cli("demo", "--killmails", "300", "--procs", "1", "--database", name, env=env)
        assert second.returncode == 0, second.stderr
        assert _exists(name) and _comment(name) == DEMO_MARKER
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('left_from_before')").fetchone() == (None,)
        assert mismatches(url) == []
    finally:
        drop_database(name)
