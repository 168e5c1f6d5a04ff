"""SQLSTATE classification, checked on errors raised by the real PostgreSQL server."""

import psycopg
import pytest

from bulk.engine.errors import ErrorKind, classify


@pytest.mark.parametrize(
    "statement, kind",
    [
        ("SET statement_timeout = '1ms' ;; SELECT pg_sleep(1)", ErrorKind.BATCH),
        ("SELECT 1/0", ErrorKind.BATCH),
        ("SELECT (2^63)::int8", ErrorKind.BATCH),
        ("SELECT * FROM no_such_table", ErrorKind.ENVIRONMENT),
        ("SET TRANSACTION READ ONLY ;; CREATE TABLE t (x int)", ErrorKind.ENVIRONMENT),
        (
            "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END $$",
            ErrorKind.CONTENTION,
        ),
        (
            "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$",
            ErrorKind.CONTENTION,
        ),
        ("SELECT pg_terminate_backend(pg_backend_pid())", ErrorKind.CONNECTION),
        # A full disk or an I/O error is the server's: waited out, never dead-lettered.
        (
            "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '53100'; END $$",
            ErrorKind.RESOURCES,
        ),
        (
            "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '58030'; END $$",
            ErrorKind.RESOURCES,
        ),
        # A program limit (a row too big) is this batch's own.
        (
            "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '54000'; END $$",
            ErrorKind.BATCH,
        ),
    ],
)
def test_errors_of_the_real_server_are_classified_by_sqlstate(schema_db, statement, kind):
    conn = psycopg.connect(schema_db)
    try:
        with pytest.raises(psycopg.Error) as caught:
            for part in statement.split(" ;; "):
                conn.execute(part)
        assert classify(caught.value, conn) is kind, caught.value.sqlstate
    finally:
        conn.close()


def test_a_statement_timeout_is_an_operational_error_but_a_batch_error(schema_db):
    # The reason classification reads SQLSTATEs: psycopg files 57014 under
    # OperationalError, which the old code retried without end.
    with psycopg.connect(schema_db) as conn:
        conn.execute("SET statement_timeout = '1ms'")
        with pytest.raises(psycopg.OperationalError) as caught:
            conn.execute("SELECT pg_sleep(1)")
    assert caught.value.sqlstate == "57014"
    assert classify(caught.value) is ErrorKind.BATCH


def test_a_closed_connection_is_a_connection_error(schema_db):
    conn = psycopg.connect(schema_db)
    conn.close()
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT 1")
    assert classify(caught.value, conn) is ErrorKind.CONNECTION
