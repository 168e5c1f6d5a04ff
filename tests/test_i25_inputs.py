"""Issue 25, hostile inputs: control characters in queue names (4), the session time
zone of a timestamptz killmail_time (9b), and status on a queue that does not exist (9c)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import date, datetime, timezone

import pika
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bulk import db
from bulk.audit import reference
from bulk.queue import broker
from tests import dated, rabbit
from tests.conftest import cli, cli_popen, database_name

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
_BROKER_COMMANDS = ["queue", "work", "status", "dead list", "dead requeue"]


def _one_line_error(out) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def _exists(queue: str) -> bool:
    with rabbit.connection() as conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
    return True


# --- 4: control characters in a queue name ------------------------------------------


@pytest.mark.parametrize(
    "char",
    [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]],
    ids=lambda c: f"{ord(c):02x}",
)
def test_check_queue_name_refuses_every_control_character(char):
    with pytest.raises(broker.BrokerError, match="control character"):
        broker.check_queue_name(f"work{char}queue")


def test_check_queue_name_takes_printable_names_and_refuses_undecodable_bytes():
    for name in ("backfill_killmail_values_queue", "my queue", "é-ü.日本", "a\xa0b"):
        broker.check_queue_name(name)
    # A byte of the environment that is not UTF-8 (os.environ's surrogateescape).
    with pytest.raises(broker.BrokerError, match="not valid UTF-8"):
        broker.check_queue_name("queue\udc85")


def test_a_carriage_return_in_the_queue_name_is_refused_at_once(demo_db, queue_name):
    # RabbitMQ drops the '\r' and answers for 'name'; pika waited for an answer
    # naming 'name\r', forever. With the stripped name's queues there, each of these
    # commands hung (the declare of queue and work hangs even without them).
    rabbit.publish_raw(queue_name, [])
    rabbit.publish_raw(f"{queue_name}.dead", [])
    name = f"{queue_name}\r"  # the last line of a .env file saved with CRLF
    runs = {}
    for command in _BROKER_COMMANDS:
        extra = ["--until-empty", "--procs", "1"] if command == "work" else []
        # Run side by side, as processes: a hang is then a timeout, not a stuck suite.
        runs[command, "flag"] = _start(*command.split(), "--queue", name, *extra, url=demo_db)
        runs[command, "env"] = _start(
            *command.split(), *extra, url=demo_db, env={"BACKFILL_QUEUE": name}
        )
    results, hung, deadline = {}, [], time.monotonic() + 60
    try:
        for (command, source), proc in runs.items():
            try:
                left = max(0.1, deadline - time.monotonic())
                stdout, stderr = proc.communicate(timeout=left)
                results[command, source] = (proc.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                hung.append(f"{command} ({source})")
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert not hung, f"hung with a queue name ending in '\\r': {', '.join(hung)}"
    for run, (code, stdout, stderr) in results.items():
        error = _one_line_error(subprocess.CompletedProcess(run, code, stdout, stderr))
        assert "Invalid value for '--queue'" in error and "control character" in error, error
        assert "'\\r'" in error and "Windows line ends" in error, error


def _start(*args: str, url: str, env: dict | None = None) -> subprocess.Popen:
    return cli_popen(*args, url=url, env={**_ENV, **(env or {})}, start_new_session=True)


def test_a_line_feed_a_tab_or_a_del_in_the_queue_name_is_refused(schema_db, queue_name):
    for name in (f"{queue_name}\n", f"{queue_name}\tx", f"{queue_name}\x7f"):
        out = cli("status", "--queue", name, url=schema_db, env=_ENV)
        assert "control character" in _one_line_error(out)
    assert not _exists(f"{queue_name}\tx") and not _exists(f"{queue_name}\x7f")


# --- 9b: the session time zone ---------------------------------------------------------


def _set_database_timezone(url: str, zone: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET TimeZone = {}").format(
                sql.Identifier(database_name(url)), sql.Literal(zone)
            )
        )


def test_every_connection_the_tool_opens_is_in_utc(fresh_db):
    _set_database_timezone(fresh_db, "Asia/Tokyo")
    with psycopg.connect(fresh_db) as plain:
        assert plain.execute("SHOW TimeZone").fetchone()[0] == "Asia/Tokyo"
    # The URL's own options are kept: only the time zone is the tool's.
    with_options = make_conninfo(
        fresh_db, options="-c statement_timeout=4321 -c TimeZone=Europe/Paris"
    )
    for url, timeout in ((fresh_db, "0"), (with_options, "4321ms")):
        for autocommit in (False, True):
            with db.connect(url, autocommit=autocommit) as conn:
                assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
                assert conn.execute("SHOW statement_timeout").fetchone()[0] == timeout
            with db.open_connection(url, autocommit=autocommit) as conn:
                # Nothing left open: a worker's connection starts each batch idle.
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"


_SHIP = 587  # a plain ship type: no fixed price under evekill
_EARLY = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)  # 2024-03-11 02:00 in Kiritimati
_LATE = datetime(2024, 3, 11, 12, 0, tzinfo=timezone.utc)


def test_kill_dates_and_bounds_are_utc_on_a_timestamptz_column(schema_db):
    # Kiritimati is UTC+14: a kill at 12:00 UTC falls on the next day there, so a
    # session in that zone priced it a day late and read --since 14 hours early.
    with psycopg.connect(schema_db) as conn:
        conn.execute(
            "ALTER TABLE killmails ALTER COLUMN killmail_time TYPE timestamptz"
            " USING killmail_time AT TIME ZONE 'UTC'"
        )
        dated.insert_types(conn, "tool", [(_SHIP, 25, 6, "Ship")])
        dated.insert_killmail(conn, "tool", 1, _EARLY, _SHIP)
        dated.insert_killmail(conn, "tool", 2, _LATE, _SHIP)
        dated.insert_history(
            conn,
            _SHIP,
            [(date(2024, 3, 10), 100.0), (date(2024, 3, 11), 200.0), (date(2024, 3, 12), 400.0)],
        )
    _set_database_timezone(schema_db, "Pacific/Kiritimati")

    out = cli("run", "--rules", "evekill", "--since", "2024-03-10T20:00", url=schema_db)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(schema_db) as conn:
        stored = dict(
            conn.execute("SELECT killmail_id, total_value FROM killmails ORDER BY 1").fetchall()
        )
        # The kill at 12:00 UTC on the 10th is before --since 20:00 UTC; the other is
        # priced on its UTC date, the 11th.
        assert stored == {1: None, 2: 200.0}
        conn.execute("SET TimeZone TO 'UTC'")
        assert reference.mismatches(conn, [2], rules="evekill") == []


# --- 9c: status on a queue that does not exist -----------------------------------------


def test_status_says_a_queue_does_not_exist_and_creates_none(schema_db, queue_name):
    typo = f"{queue_name}_typo"
    text = cli("status", "--queue", typo, url=schema_db, env=_ENV)
    assert text.returncode == 1, (text.stdout, text.stderr)
    assert "Traceback" not in text.stderr
    assert f"warning: no queue named {typo!r} on this broker: check --queue" in text.stdout
    assert "  does not exist on this broker" in text.stdout
    assert "ready messages" not in text.stdout

    out = cli("status", "--queue", typo, "--json", url=schema_db, env=_ENV)
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["queue"]["exists"] is False and result["queue"]["ready"] == 0
    assert any(w.startswith(f"no queue named {typo!r}") for w in result["warnings"])
    assert not _exists(typo) and not _exists(f"{typo}.dead")


def test_status_of_an_existing_empty_queue_is_no_error(schema_db, queue_name):
    rabbit.publish_raw(queue_name, [])
    out = cli("status", "--queue", queue_name, "--json", url=schema_db, env=_ENV)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["queue"]["exists"] is True and result["queue"]["ready"] == 0
    assert not any("no queue named" in w for w in result["warnings"])
