"""What a hostile operator found: inputs and faults that hung or broke the tool.

Each test runs the installed command against the real PostgreSQL and RabbitMQ,
with a database and a queue of its own.
"""

import shlex
import uuid

import psycopg
import pytest

from tests import rabbit
from tests.conftest import SERVER_URL, cli, drop_database, failed_killmails, mismatches


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


def _hint(output: str, prefix: str) -> list[str]:
    """The arguments of the command line the output suggests, as a shell would split them."""
    lines = [line.split(prefix, 1)[1] for line in output.splitlines() if prefix in line]
    assert len(lines) == 1, output
    return shlex.split(lines[0])


def test_the_commands_work_suggests_name_its_queue_quoted(demo_db, queue_name):
    # `work --queue X` pointed at `dead list` with no --queue (the default
    # queue's dead letters, or none), and `queue` suggested `--queue a b`,
    # which a shell splits into two arguments.
    queue = f"{queue_name} odd name"
    try:
        env = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
        queued = cli("queue", "--queue", queue, "--limit", "5", url=demo_db, env=env)
        assert queued.returncode == 0, queued.stderr
        assert _hint(queued.stdout, "bulk-backfill work ")[-2:] == ["--queue", queue]
        rabbit.publish_raw(queue, [b"not json"])
        worked = cli(
            "work", "--queue", queue, "--until-empty", "--procs", "1", url=demo_db, env=env
        )
        assert worked.returncode == 0, worked.stderr
        args = _hint(worked.stdout, "bulk-backfill ")
        assert args[:2] == ["dead", "list"]
        listed = cli(*args, env=env)
        assert listed.returncode == 0, listed.stderr
        assert f"{queue}.dead: 1 message" in listed.stdout
    finally:
        rabbit.delete_queues(queue)


def test_the_demos_export_line_survives_a_quote_in_the_database_name():
    # The hint was export DATABASE_URL='...dbname='x'y'...': a name with a
    # quote broke out of the shell's quoting.
    name = f"bbt_{uuid.uuid4().hex[:8]} it's"
    try:
        result = cli("demo", "--database", name, "--killmails", "20", url=SERVER_URL)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if "export DATABASE_URL=" in line]
        assert len(lines) == 1, result.stdout
        words = shlex.split(lines[0])
        assert words[0] == "export" and len(words) == 2, words
        url = words[1].removeprefix("DATABASE_URL=")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
    finally:
        drop_database(name)


@pytest.mark.parametrize("command", [("dead", "list"), ("dead", "requeue")])
def test_a_short_piece_of_the_rabbitmq_password_is_not_quoted(command, queue_name):
    # pika reads "guest:Xy#Q..." as host "guest" and port "Xy", and its
    # message quoted the port: two characters of the password.
    url = "amqp://guest:Xy#Q?z/@127.0.0.1:5672/%2F"
    result = cli(*command, "--queue", queue_name, env={"RABBITMQ_URL": url})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "bad RabbitMQ URL" in result.stderr
    assert "Xy" not in result.stdout + result.stderr
