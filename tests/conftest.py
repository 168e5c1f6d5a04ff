"""Fixtures: every test gets a database of its own on the real PostgreSQL server.

The server is TEST_DATABASE_URL, else DATABASE_URL, else the local one
(postgresql://postgres@127.0.0.1:5432/postgres). Nothing is mocked.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

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


# The schemas a test can run on: the tool's own (sql/schema.sql) and the replaced
# system's (tests/schemas/killreport.sql: NOT NULL columns the tool does not own,
# updated_at with no default, a foreign key from market_prices to types). A test
# module marked `both_schemas` runs each test that uses schema_db or demo_db on both.
SCHEMA_KINDS = ("tool", "killreport")
KILLREPORT_SCHEMA = Path(__file__).resolve().parent / "schemas" / "killreport.sql"


def pytest_generate_tests(metafunc):
    if "schema_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_schemas"
    ):
        # The second schema's runs are slow-tier: `make test-fast` checks each of
        # these tests on the tool's schema, `make test` and CI on both.
        kinds = [
            k if k == "tool" else pytest.param(k, marks=pytest.mark.slow) for k in SCHEMA_KINDS
        ]
        metafunc.parametrize("schema_kind", kinds, indirect=True)


@pytest.fixture
def schema_kind(request) -> str:
    """Which schema schema_db and demo_db create: the tool's own unless parametrized."""
    return getattr(request, "param", "tool")


def create_schema(url: str, kind: str = "tool") -> None:
    from bulk import db

    with psycopg.connect(url) as conn:
        if kind == "killreport":
            conn.execute(KILLREPORT_SCHEMA.read_text())
            # The tool's price book, as init-db or any price command adds it
            # beside a killboard's own tables (the history tables stay absent).
            db.ensure_book_table(conn)
        else:
            db.init_db(conn)


@pytest.fixture
def schema_db(fresh_db, schema_kind):
    """A new database with the killboard tables and no rows."""
    create_schema(fresh_db, schema_kind)
    return fresh_db


def make_demo_db(
    url: str,
    killmails: int,
    seed: int = 1,
    schema: str = "tool",
    history: bool = False,
    days: int | None = None,
) -> str:
    """A generated killboard in the empty database at url; with history, also
    demo-data's market history and price overrides (about 3 million rows: off by
    default). On the killreport schema the history tables are added first, as
    init-db would.

    Each (killmails, seed, schema, history) is generated once per code version, as
    a template database; url's database is then re-created as a clone of it (0.1 s
    against 1.3 s for 3,000 killmails).
    """
    target = database_name(url)
    template = demo_template(killmails, seed, schema, history, days)
    with _admin() as conn:
        tables = "SELECT count(*) FROM pg_stat_user_tables"
        with psycopg.connect(url) as probe:
            if probe.execute(tables).fetchone()[0]:
                raise AssertionError(f"make_demo_db wants an empty database, {target} has tables")
        ident = sql.Identifier(target)
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
        clone = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        conn.execute(clone.format(ident, sql.Identifier(template)))
    return url


def _fill_demo(
    url: str, killmails: int, seed: int, schema: str, history: bool, days: int | None = None
) -> None:
    from bulk import db
    from bulk.demo.load import load_demo_data

    create_schema(url, schema)
    with psycopg.connect(url) as conn:
        if history:
            db.ensure_history_tables(conn)
        load_demo_data(conn, killmails, seed, progress=False, history=history, days=days)


# Templates are named by a digest of everything that shapes their rows (the demo
# generator and loader, the schema and connection code, the engine's SQL and rules
# that the partition template's reference uses, the killreport schema, this file and
# the partition test), so such an edit makes new ones, while an edit elsewhere (the
# CLI, the queue, prices, the audit) reuses the last run's. Older ones are dropped at
# the start of a run.
TEMPLATE_PREFIX = "bbt_tpl_"


def _code_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = [
        *sorted((root / "bulk" / "demo").glob("*.py")),
        *sorted((root / "bulk" / "engine").glob("*.py")),
        root / "bulk" / "db.py",
        root / "bulk" / "target.py",
        *sorted((root / "sql").glob("*.sql")),
        KILLREPORT_SCHEMA,
        Path(__file__).resolve(),
        Path(__file__).resolve().parent / "test_partition.py",
    ]
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


CODE_DIGEST = _code_digest()


def demo_template(
    killmails: int,
    seed: int = 1,
    schema: str = "tool",
    history: bool = False,
    days: int | None = None,
):
    """The name of a template database holding that demo (`days`: demo-data --days),
    built on first use."""
    kind = f"{schema[0]}{killmails}s{seed}{'h' if history else ''}{f'd{days}' if days else ''}"
    return cached_template(
        kind, lambda url: _fill_demo(url, killmails, seed, schema, history, days)
    )


def cached_template(kind: str, build) -> str:
    """The name of the template database `kind` of this code version; build(url) fills
    a new empty database for it the first time.

    Several pytest-xdist workers may ask at once: an advisory lock lets one build it
    (under a temporary name, renamed when complete) while the others wait.
    """
    name = f"{TEMPLATE_PREFIX}{CODE_DIGEST}_{kind}"
    with _admin() as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            exists = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(exists, (name,)).fetchone() is None:
                building = f"{name}_b{os.getpid()}"
                drop_database(building)
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                try:
                    build(make_conninfo(SERVER_URL, dbname=building))
                    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
                    conn.execute(rename.format(sql.Identifier(building), sql.Identifier(name)))
                except BaseException:
                    drop_database(building)
                    raise
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
    return name


def drop_old_templates() -> None:
    """Drop the templates of other code versions (not in use: a busy one is left)."""
    with _admin() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname NOT LIKE %s",
            (TEMPLATE_PREFIX + "%", f"{TEMPLATE_PREFIX}{CODE_DIGEST}%"),
        ).fetchall()
        for (name,) in rows:
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            except psycopg.errors.ObjectInUse:
                pass


_prewarm: list = []


def pytest_sessionstart(session):
    # Once per run: in the xdist controller, or in the only process without xdist.
    if not hasattr(session.config, "workerinput"):
        stale = stale_install()
        if stale:
            pytest.exit(stale, returncode=4)
        drop_old_templates()
        if os.environ.get("BBT_PREWARM_SERIAL_TEMPLATES"):
            # make test: the serial part that follows clones the partition test's
            # 100,000 killmails; the otherwise idle controller builds them meanwhile.
            import threading

            def prewarm() -> None:
                from tests.test_partition import partition_template

                try:
                    partition_template()
                except Exception as exc:  # only time is lost: the serial part builds it
                    print(f"\nprewarming the partition template failed: {exc!r}", flush=True)

            thread = threading.Thread(target=prewarm, daemon=True)
            thread.start()
            _prewarm.append(thread)


def pytest_sessionfinish(session):
    for thread in _prewarm:
        thread.join()


def stale_install() -> str | None:
    """Why the console script would not run this working tree, or None.

    Tests run most commands in-process from the tree, and the rest through the
    installed bulk-backfill: a plain `pip install .` is a copy that goes stale at
    the first edit, so the suite insists on an editable install of this tree.
    """
    import json
    import sysconfig
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    fix = f"run `make test`, or `{sys.executable} -m pip install -e '.[test]'` in {root}"
    # In site-packages, not the egg-info an editable build leaves in the tree.
    where_installed = [sysconfig.get_paths()["purelib"]]
    found = list(metadata.distributions(name="bulk-backfill", path=where_installed))
    if not found:
        return f"bulk-backfill is not installed in {sys.prefix}: {fix}"
    dist = found[0]
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    where = info.get("url", "").removeprefix("file://")
    if not info.get("dir_info", {}).get("editable") or Path(where).resolve() != root:
        return (
            f"the installed bulk-backfill is not an editable install of this tree"
            f" (it is {info.get('url') or 'a release'}), so its console script would run"
            f" stale code: {fix}"
        )
    return None


@pytest.fixture
def queue_name():
    """A queue (and dead-letter queue) name of this test's own, deleted afterwards."""
    from tests import rabbit

    name = rabbit.new_queue_name()
    yield name
    rabbit.delete_queues(name)


@pytest.fixture
def demo_db(fresh_db, schema_kind):
    """A new database with 3,000 generated killmails, none valued yet."""
    return make_demo_db(fresh_db, 3_000, schema=schema_kind)


# Commands whose process is the subject: they spawn children, install signal handlers
# and supervise; tests run them as the console script. Every other command runs
# in-process (0.7-1.1 s of start-up saved per call) through bulk.cli.invoke, the same
# error handling as the script, unless a test asks for the process with process=True.
PROCESS_COMMANDS = {"run", "work", "demo"}


def cli(
    *args: str,
    url: str | None = None,
    env: dict | None = None,
    timeout: float = 300,
    process: bool | None = None,
):
    """Run bulk-backfill as a user would; returns a CompletedProcess (in-process or not)."""
    if process is None:
        process = bool(args) and args[0] in PROCESS_COMMANDS
    if not process:
        return cli_in_process(*args, url=url, env=env)
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


def cli_in_process(
    *args: str,
    url: str | None = None,
    env: dict | None = None,
    whole_env: dict | None = None,
    cwd: Path | None = None,
):
    """The command in this process, with the environment a subprocess of cli() would see
    (or exactly whole_env), in cwd if given."""

    if whole_env is not None:
        changes: dict[str, str | None] = {k: None for k in os.environ if k not in whole_env}
        changes.update(whole_env)
    else:
        changes = {"DATABASE_URL": url, "RABBITMQ_URL": None}
        changes.update(env or {})
    with _working_directory(cwd):
        return _invoke_isolated(args, changes)


@contextmanager
def _working_directory(cwd: Path | None):
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def _invoke_isolated(args, changes: dict):
    from click.testing import CliRunner

    from bulk import redact
    from bulk.cli import invoke

    # What a command changes for its whole process, which its own process would take
    # with it: the recursion limit the readers of messages raise for pika
    # (bulk.queue.broker), and the passwords redact has seen and masks from then on.
    recursion_limit = sys.getrecursionlimit()
    seen = set(redact._seen)
    redact._seen.clear()
    with CliRunner().isolation(env=changes) as streams:
        try:
            code = invoke(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.setrecursionlimit(recursion_limit)
            redact._seen.clear()
            redact._seen.update(seen)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return subprocess.CompletedProcess(
        ["bulk-backfill", *args], code, out.decode(errors="replace"), err.decode(errors="replace")
    )


@contextmanager
def reaped(process: subprocess.Popen):
    """The process, killed and reaped on the way out if it is still running (a test failed)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


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


def mismatches(
    url: str, price_column: str = "sell", ids: list[int] | None = None, rules: str = "seed"
) -> list:
    """Killmails whose stored values differ from the reference of `rules` (seed: price_column)."""
    from bulk.audit import reference

    with psycopg.connect(url) as conn:
        return reference.mismatches(conn, ids, price_column=price_column, rules=rules)


def killmail_ids(url: str) -> list[int]:
    """Every killmail's ID, ascending."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]


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


def failed_killmails(output: str) -> dict[int, str]:
    """killmail_id -> error from a run summary's failure lines.

    One killmail: 'failed ID: error'; several sharing an error:
    'failed N killmails (ID, ID, ...): error'.
    """
    failed = {}
    for line in output.splitlines():
        group = re.match(r"failed [\d,]+ killmails \(([\d, ]+)\): (.*)$", line)
        single = re.match(r"failed (\d+): (.*)$", line)
        if group:
            for killmail_id in group.group(1).split(", "):
                failed[int(killmail_id)] = group.group(2)
        elif single:
            failed[int(single.group(1))] = single.group(2)
    return failed


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
    """The worker children of a bulk-backfill process, forked or spawned, not
    multiprocessing's resource tracker (which a spawn starts)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in found.stdout.split() if b"resource_tracker" not in _cmdline(int(x))]


def spawned(pid: int) -> bool:
    """Whether a child was spawned (a fresh interpreter) rather than forked."""
    return b"spawn_main" in _cmdline(pid)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # ended meanwhile
        return b""


def in_ci() -> bool:
    """CI=true: a test that cannot run there must fail, so CI never passes without it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where skipping would hide the test."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def realdata_present():
    """Use on tests that read REALDATA: skipped without it, failed under CI."""
    if not (REALDATA / "killmails.jsonl").exists():
        skip_or_fail(f"real data folder {REALDATA} is absent")
    return REALDATA


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(candidates[-1]).parent if candidates else None


def _version_key(path: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in Path(path).parts)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def password_server():
    """A private PostgreSQL that asks for passwords (scram-sha-256), for the whole session.

    The shared test server trusts every local connection, so a wrong password
    never fails there. This one is made with initdb in a temporary folder,
    listens on a free loopback port, and is stopped and removed at the end.
    Yields a function url(user, password, dbname="postgres") -> postgresql:// URL
    with the superuser's password in `url.superuser_password`.
    """
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are absent")
    # PostgreSQL refuses to run as root: run its programs as the postgres user then.
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    home = tempfile.mkdtemp(prefix="bbt_pg_")
    data, log, pwfile = f"{home}/data", f"{home}/log", f"{home}/pw"
    superuser_password = secrets.token_urlsafe(16)
    Path(pwfile).write_text(superuser_password + "\n")
    if as_root:
        shutil.chown(home, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()

    def run(*args: str, timeout: float = 60) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, timeout=timeout, cwd=home)

    started = False
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(bin_dir / "pg_ctl")
        run(pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "-t", "30", "start")
        started = True

        def url(user: str, password: str, dbname: str = "postgres") -> str:
            credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
            return f"postgresql://{credentials}@127.0.0.1:{port}/{dbname}"

        url.superuser_password = superuser_password
        yield url
    finally:
        try:
            if started:
                run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def killreport_db():
    """A new database with the replaced system's schema (tests/schemas/killreport.sql), no rows."""
    with new_database() as url:
        with psycopg.connect(url) as conn:
            conn.execute(KILLREPORT_SCHEMA.read_text())
            from bulk import db

            db.ensure_book_table(conn)
        yield url


@pytest.fixture(autouse=True)
def _process_state_restored():
    """Tests that call the library directly share one process: give each test back the
    recursion limit and the passwords redact masks as they were before it."""
    from bulk import redact

    limit, seen = sys.getrecursionlimit(), set(redact._seen)
    yield
    sys.setrecursionlimit(limit)
    redact._seen.clear()
    redact._seen.update(seen)
