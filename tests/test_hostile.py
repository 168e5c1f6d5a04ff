"""What a hostile operator found: inputs and faults that hung or broke the tool.

Each test runs the installed command against the real PostgreSQL and RabbitMQ,
with a database and a queue of its own.
"""

import json
import shlex
import uuid

import pika
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
    assert len(failed[poison]) <= 2000  # a report line carries the start, not the megabyte
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


def _deep_table(depth: int) -> dict:
    table: dict = {}
    inner = table
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return table


@pytest.mark.slow
def test_a_header_table_nested_thousands_deep_stalls_no_worker(demo_db, queue_name):
    # pika decodes header tables recursively: one 3,000 levels deep raised
    # RecursionError inside pika, the connection dropped, and the message came
    # back at the head of the queue for every worker, forever.
    import sys

    with psycopg.connect(demo_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM victims ORDER BY 1 LIMIT 30")]
    deep = {"deep": _deep_table(3_000)}
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pika encodes as recursively as it decodes
    try:
        with rabbit.connection() as conn:
            channel = conn.channel()
            channel.queue_declare(queue_name, durable=True, arguments={"x-max-priority": 10})
            channel.confirm_delivery()
            bodies = [
                json.dumps({"v": 1, "ids": ids[:10], "mode": "null"}).encode(),
                b"not a batch",
                json.dumps({"v": 1, "ids": ids[10:], "mode": "null"}).encode(),
            ]
            for n, body in enumerate(bodies):
                headers = deep if n < 2 else None
                properties = pika.BasicProperties(delivery_mode=2, headers=headers)
                channel.basic_publish("", queue_name, body, properties)
    finally:
        sys.setrecursionlimit(before)
    env = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
    out = cli("work", "--queue", queue_name, "--until-empty", url=demo_db, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "broker connection lost" not in out.stdout + out.stderr
    assert mismatches(demo_db, ids=ids) == []
    listed = cli("dead", "list", "--queue", queue_name, env=env)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "invalid" in listed.stdout
    dead = rabbit.drain(f"{queue_name}.dead")
    assert [body for body, _ in dead] == [b"not a batch"]
    assert len(dead[0][1]["x-original-headers"]) <= 2000
    assert rabbit.counts(queue_name) == (0, 0)


@pytest.mark.parametrize("command", ["queue", "work", "dead list", "dead requeue", "status"])
def test_a_dead_letter_queue_is_no_work_queue(demo_db, queue_name, command):
    # `queue --queue X.dead` declared X.dead as a work queue (and X.dead.dead),
    # after which every command on X failed with PRECONDITION_FAILED.
    env = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
    out = cli(*command.split(), "--queue", f"{queue_name}.dead", url=demo_db, env=env)
    assert out.returncode == 2
    assert "dead-letter queue's name" in out.stderr and "Traceback" not in out.stderr
    assert rabbit.ready(f"{queue_name}.dead") == 0
    with rabbit.connection() as conn:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            conn.channel().queue_declare(f"{queue_name}.dead", passive=True)
