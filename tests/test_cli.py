"""What an operator sees: one-line errors, no secrets, safe init-db, repeatable demo data."""

import hashlib

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import (
    SERVER_URL,
    cli,
    database_name,
    drop_database,
    make_demo_db,
    mismatches,
    new_database,
)


def _one_line_error(out):
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["init-db"], ["run"], ["demo-data", "--killmails", "5"]])
def test_commands_other_than_demo_need_a_database_url(command):
    line = _one_line_error(cli(*command))
    assert "DATABASE_URL" in line


def test_unreachable_database_masks_the_password():
    url = "postgresql://backfill:s3cr3t-pw@127.0.0.1:1/killboard"
    out = cli("run", url=url)
    line = _one_line_error(out)
    assert "s3cr3t-pw" not in out.stderr + out.stdout
    assert "***" in line and "cannot connect" in line


def test_wrong_password_is_one_line_without_the_password(password_server):
    # The shared test server trusts local connections; this one checks passwords.
    admin = password_server("postgres", password_server.superuser_password)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS bb_pw_test")
        conn.execute("CREATE ROLE bb_pw_test LOGIN PASSWORD 'right-pw-1'")
        conn.execute("GRANT CREATE ON SCHEMA public TO bb_pw_test")
    try:
        out = cli("init-db", url=password_server("bb_pw_test", "hunter2-wrong"))
        line = _one_line_error(out)
        assert "password authentication failed" in line, line
        assert "hunter2-wrong" not in out.stderr + out.stdout
        # The right password gets in: the failure above was the password, nothing else.
        good = cli("init-db", url=password_server("bb_pw_test", "right-pw-1"))
        assert good.returncode == 0, good.stderr
        assert "right-pw-1" not in good.stderr + good.stdout
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP OWNED BY bb_pw_test")
            conn.execute("DROP ROLE IF EXISTS bb_pw_test")


def test_bad_mode_and_bad_dates_are_one_line(schema_db):
    assert "mode" in _one_line_error(cli("run", "--mode", "sometimes", url=schema_db))
    assert "date" in _one_line_error(cli("run", "--since", "yesterday", url=schema_db))
    line = _one_line_error(
        cli("run", "--since", "2024-02-01", "--until", "2024-01-01", url=schema_db)
    )
    assert "--since" in line


def test_missing_tables_are_explained(fresh_db):
    assert "init-db" in _one_line_error(cli("run", url=fresh_db))


def test_empty_prices_are_explained(schema_db):
    assert "market_prices is empty" in _one_line_error(cli("run", url=schema_db))
    assert cli("run", "--allow-empty-prices", url=schema_db).returncode == 0


def test_init_db_is_idempotent_and_keeps_data(demo_db):
    def fingerprint():
        with psycopg.connect(demo_db) as conn:
            return conn.execute(
                "SELECT count(*), sum(killmail_id::bigint) FROM killmails"
            ).fetchone(), conn.execute("SELECT count(*) FROM killmail_items").fetchone()

    before = fingerprint()
    out = cli("init-db", url=demo_db)
    assert out.returncode == 0 and "nothing changed" in out.stdout
    assert fingerprint() == before


def _table_digest(url):
    digest = hashlib.sha256()
    with psycopg.connect(url) as conn:
        for query in (
            "SELECT * FROM killmails ORDER BY killmail_id",
            "SELECT * FROM victims ORDER BY killmail_id",
            "SELECT killmail_id, item_type_id, flag, quantity_destroyed, quantity_dropped,"
            " singleton FROM killmail_items ORDER BY 1, 2, 3, 4, 5, 6",
            "SELECT * FROM market_prices ORDER BY type_id",
            "SELECT * FROM types ORDER BY id",
        ):
            for row in conn.execute(query):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def test_same_seed_same_data_other_seed_other_data(fresh_db):
    make_demo_db(fresh_db, 2_000, seed=5)
    with new_database() as other, new_database() as third:
        make_demo_db(other, 2_000, seed=5)
        make_demo_db(third, 2_000, seed=6)
        assert _table_digest(fresh_db) == _table_digest(other)
        assert _table_digest(fresh_db) != _table_digest(third)


def test_demo_data_is_realistic(demo_db):
    with psycopg.connect(demo_db) as conn:
        items = conn.execute(
            "SELECT avg(n), max(n), count(*) FILTER (WHERE n = 0) FROM ("
            " SELECT count(i.id) AS n FROM killmails k"
            " LEFT JOIN killmail_items i USING (killmail_id) GROUP BY k.killmail_id) s"
        ).fetchone()
        assert 15 <= items[0] <= 35 and items[1] >= 150 and items[2] > 0
        (bpc,) = conn.execute(
            "SELECT count(*) FROM killmail_items i JOIN types t ON t.id = i.item_type_id"
            " JOIN item_groups g ON g.id = t.group_id JOIN categories c ON c.id = g.category_id"
            " WHERE c.name = 'Blueprint' AND i.singleton = 2"
        ).fetchone()
        assert bpc > 0
        prices = conn.execute(
            "SELECT count(*) FILTER (WHERE sell = 0),"
            " count(*) FILTER (WHERE sell::numeric <> round(sell::numeric, 2)),"
            " count(*) FILTER (WHERE sell = 1234.565),"
            " (SELECT count(*) FROM market_prices)::float / (SELECT count(*) FROM types)"
            " FROM market_prices"
        ).fetchone()
        assert prices[0] > 0 and prices[1] > 0 and prices[2] == 1 and 0.85 < prices[3] < 0.95
        assert conn.execute("SELECT count(*) FROM victims WHERE ship_type_id = 670").fetchone()[0]


def test_demo_command_end_to_end(fresh_db):
    name = database_name(fresh_db) + "_demo"
    out = cli("demo", "--killmails", "3000", "--database", name, env={"DATABASE_URL": SERVER_URL})
    try:
        assert out.returncode == 0, out.stderr
        assert "value distribution" in out.stdout and "next steps" in out.stdout
        assert mismatches(make_conninfo(fresh_db, dbname=name)) == []
    finally:
        drop_database(name)
