"""What a hostile operator found: inputs and faults that hung or broke the tool.

Each test runs the installed command against the real PostgreSQL and RabbitMQ,
with a database and a queue of its own.
"""

import psycopg
import pytest

from tests.conftest import cli, failed_killmails, mismatches


def _trigger(url: str, body: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION hostile() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {body} RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER hostile BEFORE UPDATE ON killmails "
            "FOR EACH ROW EXECUTE FUNCTION hostile()"
        )


def _first_id(url: str) -> int:
    """The lowest killmail_id with a victim (one the engine values)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT min(killmail_id) FROM victims").fetchone()[0]


@pytest.mark.slow
def test_a_database_error_of_a_megabyte_fails_its_killmail_in_bounded_time(demo_db):
    # Masking scanned every start of a long run of letters to its end for a
    # URL scheme: 1 MB of error text took about an hour per masking, and a
    # failing killmail is masked once per split, so `run` hung.
    poison = _first_id(demo_db)
    _trigger(
        demo_db,
        f"IF NEW.killmail_id = {poison} THEN "
        "RAISE 'refused: %', repeat('x', 1000000) USING ERRCODE = '22012'; END IF;",
    )
    result = cli("run", "--procs", "2", url=demo_db, timeout=180)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr[-2000:]
    failed = failed_killmails(result.stdout)
    assert set(failed) == {poison}
    assert failed[poison].startswith("DivisionByZero: refused: xxx")
    assert {m.killmail_id for m in mismatches(demo_db)} == {poison}
