"""No password reaches any output, whatever characters it holds and wherever it came from.

The property tests draw passwords from all printable ASCII plus a few non-ASCII
characters and run the library's masking and one-line error paths in-process;
the command tests run every command that takes a URL with a handful of nasty
passwords, each failing (refused port, refused login), and look at stdout and
stderr. Each drawn password carries a marker, so a leak of any long enough
part of it is caught, not only of the whole.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, quote_plus, unquote

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from bulk import db, redact
from bulk.config import database_url
from bulk.errors import UserError, describe, one_line
from bulk.queue import broker
from tests import rabbit
from tests.conftest import PROCESS_COMMANDS, cli

MARK = "Zq9Xw"
ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F)) + "éß€✓"
piece = st.text(alphabet=ALPHABET, max_size=8)
passwords = st.builds(lambda a, b: a + MARK + b, piece, piece)


def _forms(password: str) -> set[str]:
    forms = {password, unquote(password), quote(password, safe=""), quote(password)}
    forms.add(quote_plus(password))
    return {f for f in forms if len(f) >= 4}


def _leaks(text: str, password: str) -> list[str]:
    found = [f for f in _forms(password) if f in text]
    return found + ([MARK] if MARK in password and MARK in text else [])


def _urls(password: str) -> dict[str, str]:
    """The password in every place a user may put it, raw and percent-encoded."""
    encoded = quote(password, safe="")
    keyword = password.replace("\\", "\\\\").replace("'", "\\'")
    return {
        "pg raw": f"postgresql://postgres:{password}@127.0.0.1:1/db",
        "pg encoded": f"postgresql://postgres:{encoded}@127.0.0.1:1/db",
        "pg query": f"postgresql://postgres@127.0.0.1:1/db?password={encoded}",
        "pg keywords": f"host=127.0.0.1 port=1 user=postgres password='{keyword}' dbname=db",
        "amqp raw": f"amqp://guest:{password}@127.0.0.1:1/%2F",
        "amqp encoded": f"amqp://guest:{encoded}@127.0.0.1:1/%2F",
        "no scheme": f"guest:{password}",
    }


_quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_quick
@given(passwords)
def test_mask_url_never_shows_the_password(password):
    for where, url in _urls(password).items():
        assert not _leaks(redact.mask_url(url), password), where


@_quick
@given(passwords)
@example("Zq9Xw@.")  # read as a host ".@127.0.0.1": the resolver's IDNA step raised UnicodeError
def test_a_database_url_that_fails_fails_in_one_line_without_the_password(password):
    for where, url in _urls(password).items():
        if not where.startswith("pg"):
            continue
        with pytest.raises(UserError) as failure:
            db.connect(database_url(url))
        message = str(failure.value)
        assert "\n" not in message
        assert not _leaks(message, password), (where, message)


@_quick
@given(passwords)
def test_a_broker_url_that_fails_fails_in_one_line_without_the_password(password):
    for where, url in _urls(password).items():
        if where.startswith("pg"):
            continue
        with pytest.raises(broker.BrokerError) as failure:
            broker.connect(url)
        message = str(failure.value)
        assert "\n" not in message
        assert not _leaks(message, password), (where, message)


@_quick
@given(passwords)
def test_error_texts_that_quote_a_url_or_its_password_are_scrubbed(password):
    # A database error can quote a connection URL; describe() feeds dead-letter headers.
    for where, url in _urls(password).items():
        error = psycopg.OperationalError(f'could not use "{url}" here')
        assert not _leaks(describe(error), password), where
        assert not _leaks(one_line(error), password), where
        redact.remember(url)
        bare = RuntimeError(f"the server did not like {password!r} nor {password}")
        assert not _leaks(describe(bare), password), where


# -- every command, in a subprocess ----------------------------------------------

NASTY = ["x#S3cret", "a/b?c#d@e", "p%40ss", "pässwörd€", 'it\'s "S3cret"', "two words & more"]


def _db_cases() -> list[tuple[str, dict]]:
    """(password, environment) pairs whose database is unreachable (port 1)."""
    forms = ["pg raw", "pg raw", "pg raw", "pg encoded", "pg keywords", "pg encoded"]
    cases = [(p, {"DATABASE_URL": _urls(p)[f]}) for p, f in zip(NASTY, forms)]
    plain = "postgresql://postgres@127.0.0.1:1/db"
    cases.append(("x#S3cret", {"DATABASE_URL": plain, "PGPASSWORD": "x#S3cret"}))
    return cases


def _broker_cases() -> list[tuple[str, str]]:
    """(password, amqp URL) pairs that the real broker refuses or cannot parse."""
    base = rabbit.RABBITMQ_URL.split("@", 1)[1]
    raw = [True, True, True, False, False, True]
    cases = [
        (p, f"amqp://guest:{p if r else quote(p, safe='')}@{base}") for p, r in zip(NASTY, raw)
    ]
    cases.append(("S3cret", "guest:S3cret"))
    return cases


DB_COMMANDS = {
    "init-db": ["init-db"],
    "demo-data": ["demo-data", "--killmails", "10"],
    "import-killmails": ["import-killmails", "/nonexistent/killmails.jsonl"],
    "run": ["run"],
    "queue": ["queue"],
    "work": ["work", "--until-empty"],
    "status": ["status"],
    "verify": ["verify"],
    "prices import": ["prices", "import", "/nonexistent/prices.csv"],
    "prices fetch": ["prices", "fetch", "--esi-url", "http://127.0.0.1:1"],
    "demo": ["demo", "--killmails", "10", "--database", "bbt_never_created"],
}

BROKER_COMMANDS = {
    "queue": ["queue", "--allow-empty-prices"],
    "work": ["work", "--until-empty", "--allow-empty-prices"],
    "status": ["status"],
    "dead list": ["dead", "list"],
    "dead requeue": ["dead", "requeue"],
}


def _check(out, password: str) -> None:
    assert out.returncode != 0, out.stdout
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    leaks = _leaks(out.stdout + out.stderr, password)
    assert not leaks, (leaks, out.stderr)


def _run_all(jobs):
    def one(job):
        return job[0], cli(*job[1], env=job[2], timeout=120)

    if any(args[0] not in PROCESS_COMMANDS for _, args, _ in jobs):
        # One after another: in-process commands share this process's stdout and stderr.
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(one, jobs))


@pytest.mark.parametrize("command", list(DB_COMMANDS))
def test_no_command_shows_a_database_password(command):
    jobs = [(password, DB_COMMANDS[command], env) for password, env in _db_cases()]
    for password, out in _run_all(jobs):
        assert "cannot connect to PostgreSQL" in out.stderr or "cannot be parsed" in out.stderr
        _check(out, password)


@pytest.mark.parametrize("command", list(BROKER_COMMANDS))
def test_no_command_shows_a_broker_password(command, queue_name, demo_db):
    args = [*BROKER_COMMANDS[command], "--queue", queue_name]
    jobs = [
        (password, args, {"DATABASE_URL": demo_db, "RABBITMQ_URL": url})
        for password, url in _broker_cases()
    ]
    for password, out in _run_all(jobs):
        _check(out, password)


def test_management_url_password_is_never_shown(schema_db, queue_name):
    rabbit.publish_raw(queue_name, [])  # the API is asked only about a queue that exists
    for password in NASTY:
        management = f"http://admin:{quote(password, safe='')}@127.0.0.1:15672"
        for url in (management, management.replace(quote(password, safe=""), password)):
            out = cli(
                "status", "--queue", queue_name, "--management-url", url, url=schema_db,
                env={"RABBITMQ_URL": rabbit.RABBITMQ_URL},
            )  # fmt: skip
            assert "Traceback" not in out.stderr
            assert not _leaks(out.stdout + out.stderr, password), out.stdout


def test_banners_mask_a_password_holding_a_hash(demo_db):
    # libpq reads x#S3cret whole (the test server trusts, so the login works);
    # urlsplit would read '#' as the start of a fragment.
    info = conninfo_to_dict(demo_db)
    url = (
        f"postgresql://{info.get('user') or 'postgres'}:x#S3cret@{info.get('host') or '127.0.0.1'}"
        f":{info.get('port') or 5432}/{info['dbname']}"
    )
    for args in (["init-db"], ["run", "--limit", "50"]):
        out = cli(*args, url=url)
        assert out.returncode == 0, out.stderr
        assert "***" in out.stdout + out.stderr
        assert "S3cret" not in out.stdout + out.stderr


@pytest.mark.slow
def test_dead_letter_headers_do_not_carry_a_password_a_database_error_quotes(demo_db, queue_name):
    password = "x#S3cret/?" + uuid.uuid4().hex[:6]
    info = conninfo_to_dict(demo_db)
    url = (
        f"postgresql://{info.get('user') or 'postgres'}:{quote(password, safe='')}"
        f"@{info.get('host') or '127.0.0.1'}:{info.get('port') or 5432}/{info['dbname']}"
    )
    with psycopg.connect(demo_db) as conn:
        (bad,) = conn.execute("SELECT min(killmail_id) FROM victims").fetchone()
        # A database error whose text quotes the URL and the bare password.
        conn.execute("CREATE TABLE leak_text (t text)")
        conn.execute("INSERT INTO leak_text VALUES (%s)", [f"see {url} ({password})"])
        conn.execute(
            "CREATE FUNCTION leak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.killmail_id = {int(bad)} THEN"
            " RAISE EXCEPTION '%', (SELECT t FROM leak_text); END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER leak BEFORE UPDATE ON killmails FOR EACH ROW EXECUTE FUNCTION leak()"
        )
    env = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
    queued = cli("queue", "--queue", queue_name, "--limit", "20", "--batch-size", "20", url=url)
    assert queued.returncode == 0, queued.stderr
    worked = cli(
        "work", "--queue", queue_name, "--until-empty", "--procs", "1",
        "--database-url", url, env=env, url=None,
    )  # fmt: skip
    dead = rabbit.drain(f"{queue_name}.dead")
    assert len(dead) == 1, worked.stdout + worked.stderr
    body, headers = dead[0]
    assert "see postgresql://" in headers["x-error"]  # the error did quote the URL
    texts = [worked.stdout, worked.stderr, body.decode(), repr(headers)]
    for text in texts:
        assert not _leaks(text, password), text
