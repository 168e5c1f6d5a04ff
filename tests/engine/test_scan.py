"""The keyset scan: batches in ID order, a limit kept, and IDs read ahead of the batches."""

from __future__ import annotations

import psycopg
import pytest

from bulk.engine import scan
from tests.conftest import create_schema


class _Counting:
    """A connection factory whose connections count the scan queries they run."""

    def __init__(self, url: str):
        self.url = url
        self.queries = 0

    def __call__(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True)
        execute = conn.execute

        def counted(*args, **kwargs):
            self.queries += 1
            return execute(*args, **kwargs)

        conn.execute = counted
        return conn


@pytest.fixture
def killmail_ids(fresh_db) -> tuple[str, list[int]]:
    """2,500 killmails with gaps in their IDs; every third one valued already."""
    create_schema(fresh_db)
    ids = [1_000 + 7 * n + n % 3 for n in range(2_500)]
    with psycopg.connect(fresh_db) as conn:
        with conn.cursor().copy(
            "COPY killmails (killmail_id, killmail_time, total_value) FROM STDIN"
        ) as copy:
            for n, killmail_id in enumerate(ids):
                copy.write_row((killmail_id, "2024-01-01", 5.0 if n % 3 == 0 else None))
    return fresh_db, ids


def _scan(url: str, selection: scan.Selection, batch_size: int):
    connect = _Counting(url)
    scanner = scan.Scan(connect, selection, batch_size)
    try:
        return list(scanner), connect.queries, scanner.after
    finally:
        scanner.close()


def test_batches_are_keyset_pages_of_the_mode_read_ahead(killmail_ids):
    url, ids = killmail_ids
    expected = [i for n, i in enumerate(ids) if n % 3 != 0]
    batches, queries, after = _scan(url, scan.Selection(mode="null"), 50)
    assert [i for b in batches for i in b] == expected
    assert [len(b) for b in batches[:-1]] == [50] * (len(batches) - 1)
    assert after == expected[-1]
    # One query per READ_AHEAD batches, and one that finds nothing left.
    assert queries == -(-len(batches) // scan.READ_AHEAD) + 1 < len(batches)


def test_a_limit_and_a_resume_point_are_kept(killmail_ids):
    url, ids = killmail_ids
    selection = scan.Selection(mode="all", limit=777, after_id=ids[100])
    batches, _, after = _scan(url, selection, 100)
    handed = [i for b in batches for i in b]
    assert handed == ids[101 : 101 + 777]
    assert [len(b) for b in batches] == [100] * 7 + [77]
    assert after == handed[-1]


def test_a_huge_batch_size_reads_no_more_than_it_hands_out_at_once(killmail_ids):
    url, ids = killmail_ids
    batches, queries, _ = _scan(url, scan.Selection(mode="all"), 10_000)
    assert batches == [ids]
    assert queries == 2
