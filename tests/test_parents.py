"""The parents' own connections and children: issue 11, points 3 and 5 and the last of 7.

`run` and `queue` keep scanning when their scan connection is terminated,
and say where to resume when they give up; the `work` parent keeps one
channel for its depth polls and replaces a child that stops reporting; a
SIGKILLed `run` parent leaves children that exit quietly. Faults land mid-run
by waiting for progress read from the database or the broker.
"""

import json
import os
import signal
import time
from contextlib import contextmanager

import psycopg
import pytest

from bulk.engine import scan
from tests import rabbit
from tests.conftest import (
    child_pids,
    cli,
    cli_popen,
    database_name,
    free_port,
    make_demo_db,
    mismatches,
    reaped,
    spawned,
    victimless,
    wait_until_valued,
)
from tests.test_faults import _slow_writes

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def _terminate_scan(url: str, application: str, proc, timeout: float = 30) -> None:
    """pg_terminate_backend the scan's backend (waiting for it to exist), while proc runs."""
    deadline = time.monotonic() + timeout
    name = database_name(url)
    # From another database: the test may have closed this one to new connections.
    with psycopg.connect(url, autocommit=True, dbname="postgres") as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = %s",
                [application, name],
            ).fetchall()
            if any(r[0] for r in rows):
                assert proc.poll() is None, "the command ended before the kill: make it slower"
                return
            time.sleep(0.02)
    raise AssertionError(f"no backend named {application!r} to terminate after {timeout}s")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _all_valued(url: str) -> None:
    assert mismatches(url) == []
    with psycopg.connect(url) as conn:
        unvalued = {
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM killmails WHERE total_value IS NULL"
            ).fetchall()
        }
    assert unvalued == victimless(url)


def _ids(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT killmail_id FROM killmails").fetchall()}


# -- point 3: the scan connection ----------------------------------------------


@pytest.mark.slow
def test_run_scan_survives_three_terminations(fresh_db):
    url = make_demo_db(fresh_db, 3_000)
    _slow_writes(url, 0.05)
    proc = cli_popen("run", "--procs", "2", "--batch-size", "20", url=url)
    for round_ in range(3):
        wait_until_valued(url, 400 + 600 * round_, timeout=120)
        _terminate_scan(url, "bulk-backfill run scan", proc)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "scan reconnected to the database: 3" in stdout
    _all_valued(url)


@pytest.mark.slow
def test_queue_scan_survives_three_terminations(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 3_000)
    proc = cli_popen("queue", "--queue", queue_name, "--batch-size", "2", url=url, env=_ENV)
    for round_ in range(3):
        deadline = time.monotonic() + 120
        while rabbit.ready(queue_name) < 150 + 300 * round_:
            assert time.monotonic() < deadline, "queue made no progress"
            time.sleep(0.02)
        _terminate_scan(url, "bulk-backfill queue scan", proc)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "reconnected 3 times" in stdout
    queued: set[int] = set()
    for body, _ in rabbit.drain(queue_name):
        queued.update(json.loads(body)["ids"])
    assert queued == _ids(url)


def test_scan_gives_up_after_patience_at_the_last_id_handed_out(demo_db):
    """A connection that cannot be reopened: ScanStopped after `patience`, resume point kept."""
    dead = psycopg.conninfo.make_conninfo(demo_db, port=1)  # nothing listens there
    urls = iter([demo_db])
    scanner = scan.Scan(
        lambda: psycopg.connect(next(urls, dead), autocommit=True, application_name="scan test"),
        scan.Selection(),
        100,
        patience=1.0,
    )
    pages = iter(scanner)
    # One query reads READ_AHEAD batches: the next batch after them needs a new query.
    handed = [next(pages) for _ in range(scan.READ_AHEAD)]
    assert [len(page) for page in handed] == [100] * scan.READ_AHEAD
    _terminate_scan(demo_db, "scan test", proc=_Running())
    started = time.monotonic()
    with pytest.raises(scan.ScanStopped) as stopped:
        next(pages)
    assert 1.0 <= time.monotonic() - started < 15
    assert stopped.value.after == handed[-1][-1]
    assert "lost the database connection of the scan" in str(stopped.value)


class _Running:
    def poll(self):
        return None


@contextmanager
def _refusing_connections(url: str):
    """The test database refuses new connections inside the block; those open stay."""
    name = database_name(url)
    with psycopg.connect(url, autocommit=True, dbname="postgres") as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True, dbname="postgres") as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _the_error_line(returncode: int, stderr: str) -> str:
    """A run that stopped early: exit 1 and exactly one error line, no traceback."""
    assert returncode == 1, stderr
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("bulk-backfill: error")]
    assert len(error_lines) == 1, stderr
    return error_lines[0]


def _resumes_where_it_says(url: str, error_line: str) -> None:
    """Every killmail up to the line's --after-id is written, and resuming from it finishes."""
    after = int(error_line.rsplit("--after-id ", 1)[1])
    with psycopg.connect(url) as conn:
        (unvalued_before,) = conn.execute(
            "SELECT count(*) FROM killmails k WHERE killmail_id <= %s AND total_value IS NULL"
            " AND EXISTS (SELECT 1 FROM victims v WHERE v.killmail_id = k.killmail_id)",
            [after],
        ).fetchone()
    assert unvalued_before == 0
    resumed = cli("run", "--procs", "2", "--batch-size", "200", "--after-id", str(after), url=url)
    assert resumed.returncode == 0, resumed.stderr
    _all_valued(url)


@pytest.mark.slow
def test_run_that_loses_its_scan_prints_the_resume_point(fresh_db):
    """Giving up: one line with the last confirmed ID and --after-id; resuming finishes the job."""
    url = make_demo_db(fresh_db, 2_000)
    _slow_writes(url, 0.05)
    command = ("run", "--procs", "2", "--batch-size", "20", "--db-patience", "2")
    proc = cli_popen(*command, url=url)
    wait_until_valued(url, 200, timeout=120)
    # New connections are refused, so the scan tries to reconnect for
    # --db-patience and gives up; the children keep their connections.
    with _refusing_connections(url):
        _terminate_scan(url, "bulk-backfill run scan", proc)
        stdout, stderr = proc.communicate(timeout=300)
    error_line = _the_error_line(proc.returncode, stderr)
    assert "lost the database connection of the scan for" in error_line
    assert "last confirmed killmail_id" in error_line
    assert stdout  # the summary is printed as well
    _resumes_where_it_says(url, error_line)


@pytest.mark.slow
def test_run_whose_children_lose_the_database_stops_after_one_patience(fresh_db):
    """Each child holds two batches: the second is not tried once the first gave up."""
    url = make_demo_db(fresh_db, 2_000)
    _slow_writes(url, 1.0)
    patience = 5
    command = ("run", "--procs", "2", "--batch-size", "20", "--db-patience", str(patience))
    proc = cli_popen(*command, url=url)
    wait_until_valued(url, 40, timeout=120)
    with _refusing_connections(url):
        _terminate_scan(url, "bulk-backfill run", proc)
        cut = time.monotonic()
        _, stderr = proc.communicate(timeout=300)
        took = time.monotonic() - cut
    error_line = _the_error_line(proc.returncode, stderr)
    assert "lost the database and could not reconnect" in error_line
    # Trying the batch behind it would wait out a second patience.
    assert patience <= took < 2 * patience - 0.5, took
    _resumes_where_it_says(url, error_line)


# -- point 5: broker resources and stuck children ---------------------------------


def test_depth_polls_keep_one_channel(queue_name):
    from bulk.queue import supervise

    rabbit.publish_raw(queue_name, [b"{}"] * 3)
    depth = supervise._Depth(rabbit.RABBITMQ_URL, queue_name)
    try:
        # More polls than the default channel_max (2047) channels.
        for _ in range(3_000):
            assert depth.ready() == 3
        assert len(depth.asker.connection._impl._channels) == 1
    finally:
        depth.close()


@pytest.mark.slow
def test_stopped_child_is_replaced_and_the_queue_drains(fresh_db, queue_name):
    url = make_demo_db(fresh_db, 6_000)
    _slow_writes(url, 0.02)
    out = cli("queue", "--queue", queue_name, "--batch-size", "50", url=url, env=_ENV)
    assert out.returncode == 0, out.stderr
    command = ("work", "--queue", queue_name, "--until-empty", "--procs", "2")
    proc = cli_popen(*command, "--stall-timeout", "3", url=url, env=_ENV)
    try:
        wait_until_valued(url, 1_000, timeout=120)
        stopped = child_pids(proc.pid)[0]
        os.kill(stopped, signal.SIGSTOP)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"worker process {stopped} reported nothing" in stderr
    assert "restarted after a stall: " in stdout
    assert not _running(stopped)
    _all_valued(url)
    assert rabbit.counts(queue_name) == (0, 0)
    assert rabbit.counts(f"{queue_name}.dead") == (0, 0)


# -- point 7: a killed parent ------------------------------------------------------


@pytest.mark.slow
def test_children_of_a_killed_run_exit_quietly(fresh_db):
    url = make_demo_db(fresh_db, 2_000)
    _slow_writes(url, 0.3)  # children are nearly always in a batch when the parent dies
    proc = cli_popen("run", "--procs", "2", "--batch-size", "20", url=url)
    wait_until_valued(url, 40, timeout=120)
    children = child_pids(proc.pid)
    assert children, "run should have child processes"
    os.kill(proc.pid, signal.SIGKILL)
    # The children hold the inherited stderr pipe: it ends when the last one exits.
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in children)


# -- how run's children start -------------------------------------------------------


def test_run_forks_its_children_and_their_replacements(fresh_db):
    # Forked, a child starts with the parent's imports done (0.27 s of CPU each
    # when spawned, on a stale job's critical path).
    url = make_demo_db(fresh_db, 2_000)
    _slow_writes(url, 0.3)
    proc = cli_popen("run", "--procs", "2", "--batch-size", "20", url=url)
    with reaped(proc):
        wait_until_valued(url, 40, timeout=120)
        children = child_pids(proc.pid)
        assert len(children) == 2 and not any(spawned(pid) for pid in children), children
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(after := child_pids(proc.pid)) < 2 or children[0] in after:
            assert time.monotonic() < deadline, "no replacement for the killed child"
            time.sleep(0.05)
        assert not any(spawned(pid) for pid in after), after
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER slow_write ON killmails")
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    # Whatever the parent had written before a fork is not written again by a child.
    assert stderr.count("run: mode") == 1, stderr
    assert "child processes restarted: 1" in stdout
    assert mismatches(url) == []


_STOP = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))


def _stop_signals(pid: int) -> tuple[bool, bool] | None:
    """Whether SIGINT and SIGTERM are (both blocked or ignored, both ignored) in the
    process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except FileNotFoundError:
        return None
    blocked, ignored = int(fields["SigBlk"], 16) & _STOP, int(fields["SigIgn"], 16) & _STOP
    return (blocked | ignored) == _STOP, ignored == _STOP


def test_a_spawned_child_takes_no_stop_signal_while_it_starts(fresh_db):
    # With a metrics thread the children are spawned: a Ctrl+C reaching the
    # process group during a child's imports killed it with a traceback (the
    # first spawn's resource tracker unblocked the signals run had blocked).
    url = make_demo_db(fresh_db, 2_000)
    port = free_port()
    proc = cli_popen(
        "run", "--procs", "2", "--batch-size", "20", "--metrics-port", str(port),
        "--metrics-address", "127.0.0.1", url=url,
    )  # fmt: skip
    exposed, samples = set(), 0
    with reaped(proc):
        deadline = time.monotonic() + 60
        while True:
            states = {pid: _stop_signals(pid) for pid in child_pids(proc.pid)}
            for pid, state in states.items():
                samples += state is not None
                if state is not None and not state[0]:
                    exposed.add(pid)
            if len(states) == 2 and all(state and state[1] for state in states.values()):
                break  # both past child_setup
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.002)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert samples > 2, "the children were never seen starting"
    assert not exposed, f"children {sorted(exposed)} could take SIGINT/SIGTERM while starting"


@pytest.mark.parametrize("metrics", [False, True], ids=["forked", "spawned"])
def test_a_child_that_cannot_import_the_engine_stops_the_run_in_one_line(
    fresh_db, tmp_path, metrics
):
    """The parent never imports numpy (its children do, as they start): a broken one
    stops the run with one line and nothing written, forked or spawned, rather than
    children dying and restarted until the parent gives up."""
    url = make_demo_db(fresh_db, 1_000)
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text('raise ImportError("numpy is broken here")\n')
    args = ["--metrics-port", str(free_port())] if metrics else []
    out = cli("run", *args, url=url, env={"PYTHONPATH": str(tmp_path)}, process=True)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "restarting" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert errors == [
        "bulk-backfill: error: the valuation engine cannot be imported: numpy is broken"
        " here; nothing was valued for sure: run again with the same command"
    ], out.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM bulk_valuations").fetchone()[0] == 0
