"""Fixtures: every test gets a database of its own on the real PostgreSQL server.

The server is TEST_DATABASE_URL, else DATABASE_URL, else the local one
(postgresql://postgres@127.0.0.1:5432/postgres). Nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SERVER_URL = (
    os.environ.get("TEST_DATABASE_URL")
    or os.environ.get("DATABASE_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
# The installed console script: CLI tests exercise the installed package, not the
# source tree (a console script does not put the working directory on sys.path).
_SCRIPT = Path(sys.executable).with_name("bulk-backfill")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bulk"]


def _admin():
    return psycopg.connect(SERVER_URL, autocommit=True)


def drop_database(name: str) -> None:
    with _admin() as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


@contextmanager
def new_database():
    """The URL of a new, empty database of its own, dropped on the way out."""
    name = f"bbt_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(SERVER_URL, dbname=name)
    finally:
        drop_database(name)


def database_name(url: str) -> str:
    return conninfo_to_dict(url)["dbname"]


@pytest.fixture
def fresh_db():
    """The URL of a new, empty database, dropped after the test."""
    with new_database() as url:
        yield url


@pytest.fixture
def schema_db(fresh_db):
    """A new database with the killboard tables and no rows."""
    from bulk import db

    with psycopg.connect(fresh_db) as conn:
        db.init_db(conn)
    return fresh_db


def make_demo_db(url: str, killmails: int, seed: int = 1) -> str:
    from bulk import db
    from bulk.demo_data import load_demo_data

    with psycopg.connect(url) as conn:
        db.init_db(conn)
        load_demo_data(conn, killmails, seed, progress=False)
    return url


@pytest.fixture
def queue_name():
    """A queue (and dead-letter queue) name of this test's own, deleted afterwards."""
    from tests import rabbit

    name = rabbit.new_queue_name()
    yield name
    rabbit.delete_queues(name)


@pytest.fixture
def demo_db(fresh_db):
    """A new database with 3,000 generated killmails, none valued yet."""
    return make_demo_db(fresh_db, 3_000)


def cli(*args: str, url: str | None = None, env: dict | None = None, timeout: float = 300):
    """Run bulk-backfill as a user would, in a subprocess; returns CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RABBITMQ_URL")}
    if url is not None:
        full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def cli_popen(*args: str, url: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        **kwargs,
    )


def values(url: str) -> dict[int, tuple]:
    """killmail_id -> (total, destroyed, dropped) as stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT killmail_id, total_value, destroyed_value, dropped_value FROM killmails"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def mismatches(url: str, price_column: str = "sell", ids: list[int] | None = None) -> list:
    from bulk import reference

    with psycopg.connect(url) as conn:
        return reference.mismatches(conn, ids, price_column=price_column)


def victimless(url: str) -> set[int]:
    """IDs of the killmails that have no victim row (the engine leaves them unvalued)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT killmail_id FROM killmails k"
            " WHERE NOT EXISTS (SELECT 1 FROM victims v WHERE v.killmail_id = k.killmail_id)"
        ).fetchall()
    return {r[0] for r in rows}


def summary_count(output: str, label: str) -> int:
    """A count from the run summary, e.g. summary_count(out, 'updated')."""
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == label:
            return int(parts[1].replace(",", ""))
    raise AssertionError(f"no {label!r} line in:\n{output}")


def wait_until_valued(url: str, n: int, timeout: float = 60) -> None:
    """Block until at least n killmails have a total_value (a job is under way)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            query = "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
            if conn.execute(query).fetchone()[0] >= n:
                return
            time.sleep(0.05)
    raise AssertionError(f"fewer than {n} killmails valued after {timeout}s")


def child_pids(pid: int) -> list[int]:
    """The worker children of a bulk-backfill process, not multiprocessing's resource tracker."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True
    )
    return [int(x) for x in found.stdout.split()]
