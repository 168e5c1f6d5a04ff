"""killmails.updated_at, where the table has one (as the replaced system's does).

The column is added after the demo data is loaded, NOT NULL with no default,
like the replaced system's `timestamp(3) NOT NULL`: every row starts at a
sentinel stamp, and only the rows a job writes may leave it.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from bulk.engine.batch import process_batch
from bulk.engine.session import Session
from tests import rabbit
from tests.conftest import cli, make_demo_db, mismatches, values, victimless
from tests.test_valuation_rules import BEYOND_INT64, KILLMAILS, rules_db  # noqa: F401

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}
_SENTINEL = dt.datetime(2000, 1, 1)
_TYPES = {
    # column type -> the database clock in that type, as the write stamps it
    "timestamp(3)": "(statement_timestamp() AT TIME ZONE 'UTC')::timestamp(3)",
    "timestamptz": "statement_timestamp()",
}


def _add_column(url: str, column_type: str = "timestamp(3)") -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            f"ALTER TABLE killmails ADD COLUMN updated_at {column_type}"
            " NOT NULL DEFAULT '2000-01-01 00:00:00+00'"
        )
        conn.execute("ALTER TABLE killmails ALTER COLUMN updated_at DROP DEFAULT")


def _stamps(url: str) -> dict[int, dt.datetime]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT killmail_id, updated_at FROM killmails").fetchall()
    return dict(rows)


def _clock(url: str, column_type: str = "timestamp(3)") -> dt.datetime:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {_TYPES[column_type]}").fetchone()[0]


def _sentinel(column_type: str) -> dt.datetime:
    if column_type == "timestamptz":
        return _SENTINEL.replace(tzinfo=dt.timezone.utc)
    return _SENTINEL


def _check(url, written: set[int], before, after, column_type="timestamp(3)") -> None:
    """Exactly the rows of `written` carry a stamp between `before` and `after`."""
    stamps = _stamps(url)
    assert written, "the test must write some rows"
    late = {k for k in written if not before <= stamps[k] <= after}
    assert not late, f"{len(late)} written rows not stamped, e.g. {sorted(late)[:5]}"
    touched = {k for k, s in stamps.items() if k not in written and s != _sentinel(column_type)}
    assert not touched, f"{len(touched)} rows not written were stamped, e.g. {sorted(touched)[:5]}"


def _demo(url: str, column_type: str = "timestamp(3)") -> str:
    """600 demo killmails, a few without a victim, then the updated_at column."""
    make_demo_db(url, 600)
    with psycopg.connect(url) as conn:
        conn.execute(
            "DELETE FROM victims WHERE killmail_id IN"
            " (SELECT killmail_id FROM killmails ORDER BY killmail_id OFFSET 3 LIMIT 400)"
            " AND killmail_id % 37 = 0"
        )
    assert victimless(url)
    _add_column(url, column_type)
    return url


@pytest.fixture
def stamped_db(fresh_db):
    return _demo(fresh_db)


def _prevalue(url: str, ids: list[int]) -> None:
    """Value `ids` with the tool, then put their stamps back to the sentinel."""
    out = cli("run", *[a for k in ids for a in ("--id", str(k))], url=url)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE killmails SET updated_at = %s WHERE killmail_id = ANY(%s)", (_SENTINEL, ids)
        )


@pytest.mark.parametrize("column_type", list(_TYPES))
def test_run_stamps_exactly_the_rows_it_writes(fresh_db, column_type):
    _demo(fresh_db, column_type)
    no_victim = victimless(fresh_db)
    earlier = sorted(set(values(fresh_db)) - no_victim)[::7]
    _prevalue(fresh_db, earlier)

    before = _clock(fresh_db, column_type)
    out = cli("run", "--mode", "null", "--batch-size", "100", url=fresh_db)
    after = _clock(fresh_db, column_type)
    assert out.returncode == 0, out.stderr
    written = set(values(fresh_db)) - no_victim - set(earlier)
    _check(fresh_db, written, before, after, column_type)
    assert mismatches(fresh_db) == []


@pytest.mark.parametrize("engine", ["numpy", "sql"])
def test_work_stamps_exactly_the_rows_it_writes(stamped_db, queue_name, engine):
    no_victim = victimless(stamped_db)
    earlier = sorted(set(values(stamped_db)) - no_victim)[1::5]
    _prevalue(stamped_db, earlier)

    queued = cli("queue", "--queue", queue_name, "--mode", "null", url=stamped_db, env=_ENV)
    assert queued.returncode == 0, queued.stderr
    before = _clock(stamped_db)
    done = cli(
        "work", "--queue", queue_name, "--until-empty", "--engine", engine, url=stamped_db, env=_ENV
    )
    after = _clock(stamped_db)
    assert done.returncode == 0, done.stderr
    written = set(values(stamped_db)) - no_victim - set(earlier)
    _check(stamped_db, written, before, after)
    assert mismatches(stamped_db) == []


def test_rows_no_longer_matching_the_mode_keep_their_stamp(stamped_db, queue_name):
    # Queued for mode null while NULL; valued by a run before work gets there, so
    # the UPDATE's guard skips every one of them when work writes the batch.
    queued = cli("queue", "--queue", queue_name, "--mode", "null", url=stamped_db, env=_ENV)
    assert queued.returncode == 0, queued.stderr
    ran = cli("run", "--mode", "null", "--no-touch-updated-at", url=stamped_db)
    assert ran.returncode == 0, ran.stderr
    done = cli("work", "--queue", queue_name, "--until-empty", url=stamped_db, env=_ENV)
    assert done.returncode == 0, done.stderr
    assert set(_stamps(stamped_db).values()) == {_SENTINEL}
    assert mismatches(stamped_db) == []


def test_no_touch_updated_at_leaves_every_stamp(stamped_db, queue_name):
    ran = cli("run", "--mode", "null", "--no-touch-updated-at", url=stamped_db)
    assert ran.returncode == 0, ran.stderr
    queued = cli("queue", "--queue", queue_name, "--mode", "all", url=stamped_db, env=_ENV)
    assert queued.returncode == 0, queued.stderr
    done = cli(
        "work",
        "--queue",
        queue_name,
        "--until-empty",
        "--no-touch-updated-at",
        url=stamped_db,
        env=_ENV,
    )
    assert done.returncode == 0, done.stderr
    assert set(_stamps(stamped_db).values()) == {_SENTINEL}
    valued = {k for k, v in values(stamped_db).items() if v[0] is not None}
    assert valued == set(values(stamped_db)) - victimless(stamped_db)
    assert mismatches(stamped_db) == []


def test_both_write_paths_stamp_in_the_same_update(rules_db):  # noqa: F811
    # Killmail 8's sums overflow int8 cents, so its batch goes through the
    # numeric-text write; the others through the binary one.
    assert 8 in BEYOND_INT64 and 7 in KILLMAILS  # 7 has no victim
    _add_column(rules_db)
    before = _clock(rules_db)
    with psycopg.connect(rules_db, autocommit=True) as conn:
        assert Session(conn).updated_at_type() == "timestamp"
        binary = process_batch(Session(conn), [1, 2, 7], "null")
        numeric = process_batch(Session(conn), [3, 8], "null")
        again = process_batch(
            Session(conn), [1, 8], "null"
        )  # written already: the guard skips them
    after = _clock(rules_db)
    assert (binary.updated, numeric.updated, again.updated) == (2, 2, 0)
    _check(rules_db, {1, 2, 3, 8}, before, after)
    assert mismatches(rules_db, ids=[1, 2, 3, 7, 8]) == []


def test_the_tool_schema_has_no_column_to_stamp(schema_db):
    with psycopg.connect(schema_db, autocommit=True) as conn:
        assert Session(conn).updated_at_type() is None
