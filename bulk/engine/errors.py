"""What a database error means for a batch, read from its SQLSTATE rather than its psycopg class.

psycopg files a statement timeout (57014), DiskFull, OutOfMemory and
ProgramLimitExceeded under OperationalError, so the driver's class says
nothing about whether trying again can help; the SQLSTATE does: a statement
timeout or a program limit is this batch's, a full disk everyone's.
"""

from __future__ import annotations

import enum

import psycopg


class ErrorKind(enum.Enum):
    CONNECTION = "connection"  # the connection is gone: retry on a new one for as long as it takes
    # The server is short of disk, memory or connections, or its storage failed:
    # every batch fails alike until someone fixes it, so wait it out like an outage.
    RESOURCES = "resources"
    CONTENTION = "contention"  # serialization failure, deadlock, lock not available: a few retries
    ENVIRONMENT = "environment"  # the database itself is wrong for us: stop, leave the batch queued
    BATCH = "batch"  # anything else: this batch (or one killmail in it) fails


# Class 08 is connection exceptions; 57P01-57P03 are admin shutdown, crash
# shutdown and "cannot connect now" (a server starting or stopping).
_CONNECTION_PREFIXES = ("08",)
_CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03"})
# Class 53 is insufficient resources (disk full, out of memory, too many
# connections), class 58 a system error (an I/O error, a missing file). Counting
# them as batch errors dead-lettered a whole job, one killmail at a time, during
# one disk-full hour.
_RESOURCES_PREFIXES = ("53", "58")
_CONTENTION_STATES = frozenset({"40001", "40P01", "55P03"})
# Missing table or column, syntax, privileges (42xxx); invalid catalog or
# schema name (3D, 3F); a read-only transaction, as on a replica (25006).
_ENVIRONMENT_PREFIXES = ("42", "3D", "3F")
_ENVIRONMENT_STATES = frozenset({"25006"})


def classify(exc: BaseException, conn: psycopg.Connection | None = None) -> ErrorKind:
    """The kind of a database error; `conn`, when given, tells a broken connection apart."""
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(_CONNECTION_PREFIXES) or state in _CONNECTION_STATES:
        return ErrorKind.CONNECTION
    if state.startswith(_RESOURCES_PREFIXES):
        return ErrorKind.RESOURCES
    if state in _CONTENTION_STATES:
        return ErrorKind.CONTENTION
    if state.startswith(_ENVIRONMENT_PREFIXES) or state in _ENVIRONMENT_STATES:
        return ErrorKind.ENVIRONMENT
    if not state and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        # No SQLSTATE: the client library itself failed (server closed the
        # connection, socket error, connection already closed).
        return ErrorKind.CONNECTION
    if conn is not None and (conn.broken or conn.closed):
        return ErrorKind.CONNECTION
    return ErrorKind.BATCH
