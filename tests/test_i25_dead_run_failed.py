"""`run`'s failed list (issue 25): a short summary, the whole list in a file and in --json.

A failing trigger once made `run` print 19,950 failed killmails on one line of
199,620 characters; the summary now shows the first IDs of each error and
names a file with every one.
"""

import json
import re
from pathlib import Path

import psycopg
import pytest

from tests.conftest import cli, make_demo_db, victimless

_KILLMAILS = 600
_SHOWN = 10  # IDs an error line names before "... and N more"
_ERRORS_SHOWN = 10  # error lines before "... and N more errors"
_CONTEXT = " CONTEXT: PL/pgSQL function refuse() line 1 at RAISE"


def _refuse(url: str, body: str) -> None:
    """A trigger that runs `body` before every write of a killmail."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" {body} RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON killmails"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )


def _every_update_fails(url: str, message: str) -> set[int]:
    """Every write fails (SQLSTATE P0001, a batch error); the IDs that fail.

    A killmail without a victim is never written, so it cannot fail.
    """
    _refuse(url, f"RAISE {message};")
    with psycopg.connect(url) as conn:
        every = {r[0] for r in conn.execute("SELECT killmail_id FROM killmails")}
    return every - victimless(url)


@pytest.fixture
def small_db(fresh_db):
    return make_demo_db(fresh_db, _KILLMAILS)


def _run(url: str, *args: str, env: dict | None = None):
    # Batches of 100: each is split down to single killmails, so fewer IDs a batch
    # is fewer statements.
    return cli("run", "--procs", "2", "--batch-size", "100", *args, url=url, env=env)


def _read_list(path: Path) -> dict[int, str]:
    rows = [line.split("\t", 1) for line in path.read_text().splitlines()]
    ids = [int(killmail_id) for killmail_id, _ in rows]
    assert ids == sorted(ids)  # sorted, one line a killmail
    return {int(killmail_id): error for killmail_id, error in rows}


def _named_file(stdout: str) -> Path:
    (line,) = [line for line in stdout.splitlines() if "full list" in line]
    return Path(line.rsplit(": ", 1)[1])


def test_a_whole_job_failing_prints_a_short_line_and_writes_every_id_to_the_file(
    small_db, tmp_path
):
    failing = _every_update_fails(small_db, "'could not write block: disk on fire'")
    listed = tmp_path / "failed.tsv"
    out = _run(small_db, "--failed-file", str(listed))
    assert out.returncode == 1, out.stderr
    assert max(map(len, out.stdout.splitlines())) < 400, out.stdout
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("failed ")]
    first = sorted(failing)[:_SHOWN]
    assert line == (
        f"failed {len(failing)} killmails ({', '.join(map(str, first))}, ... and "
        f"{len(failing) - _SHOWN} more): RaiseException: could not write block: disk on fire"
        + _CONTEXT
    )
    assert _named_file(out.stdout) == listed
    assert _read_list(listed) == dict.fromkeys(
        failing, "RaiseException: could not write block: disk on fire" + _CONTEXT
    )


def test_without_failed_file_a_cut_list_goes_to_a_file_the_summary_names(small_db, tmp_path):
    failing = _every_update_fails(small_db, "'no'")
    out = _run(small_db, env={"TMPDIR": str(tmp_path)})
    assert out.returncode == 1, out.stderr
    named = _named_file(out.stdout)
    assert named.parent == tmp_path and named.name.startswith("bulk-backfill-run-failed-")
    assert set(_read_list(named)) == failing


def test_many_different_errors_print_ten_lines_and_say_how_many_more(small_db, tmp_path):
    failing = _every_update_fails(small_db, "'bad killmail %', NEW.killmail_id")
    listed = tmp_path / "failed.tsv"
    out = _run(small_db, "--failed-file", str(listed))
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("failed ")]
    # Killmails that fail alike come first, then by ID: here each error is its own.
    assert lines == [
        f"failed {i}: RaiseException: bad killmail {i}{_CONTEXT}"
        for i in sorted(failing)[:_ERRORS_SHOWN]
    ]
    more = len(failing) - _ERRORS_SHOWN
    assert f"... and {more} more errors ({more} killmails)" in out.stdout
    listed_errors = _read_list(listed)
    assert listed_errors == {i: f"RaiseException: bad killmail {i}{_CONTEXT}" for i in failing}


def test_json_holds_every_failed_killmail(small_db):
    failing = _every_update_fails(small_db, "'no'")
    out = _run(small_db, "--json")
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["failures"] == [
        {"killmail_id": i, "error": "RaiseException: no" + _CONTEXT} for i in sorted(failing)
    ]
    assert result["failed"] == len(failing)
    assert result["updated"] == 0 and result["selected"] == _KILLMAILS
    assert result["failed_file"] is None  # the list is all here: no file was written


def test_a_short_list_is_printed_whole_and_writes_no_file(small_db, tmp_path):
    with psycopg.connect(small_db) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM victims ORDER BY killmail_id LIMIT 3 OFFSET 50"
            )
        ]
    _refuse(
        small_db, f"IF NEW.killmail_id IN ({', '.join(map(str, ids))}) THEN RAISE 'no'; END IF;"
    )
    out = _run(small_db, env={"TMPDIR": str(tmp_path)})
    assert out.returncode == 1, out.stderr
    assert f"failed 3 killmails ({', '.join(map(str, ids))}): RaiseException: no" in out.stdout
    assert "full list" not in out.stdout and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "where, says", [("directory", "is a directory"), ("missing parent", "does not exist")]
)
def test_an_unwritable_failed_file_is_refused_before_anything_is_written(
    small_db, tmp_path, where, says
):
    path = tmp_path if where == "directory" else tmp_path / "no such dir" / "failed.tsv"
    out = _run(small_db, "--failed-file", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert re.fullmatch(r"bulk-backfill: error: .*--failed-file.*\n", out.stderr), out.stderr
    assert says in out.stderr
    with psycopg.connect(small_db) as conn:
        valued = "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
        assert conn.execute(valued).fetchone()[0] == 0
