"""PostgreSQL binary COPY rows built from numpy columns, without a Python loop per row.

A binary COPY tuple is a field count, then for each field its byte length and
its big-endian value (length -1 and no value for NULL). Rows that share a NULL
pattern have a fixed layout, so each pattern is one numpy structured array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = b"\xff\xff"

# Column kinds: the numpy big-endian dtype PostgreSQL's binary format uses.
INT4, INT8, FLOAT8 = ">i4", ">i8", ">f8"
# timestamp (without time zone) is int8 microseconds since 2000-01-01.
TIMESTAMP = ">i8"
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")


@dataclass(frozen=True)
class Column:
    values: np.ndarray
    kind: str
    null: np.ndarray | None = None  # True where the value is NULL


def timestamp_values(times: np.ndarray) -> np.ndarray:
    """datetime64 values as PostgreSQL binary timestamps."""
    return (times.astype("datetime64[us]") - PG_EPOCH).astype(np.int64)


def encode_rows(columns: Sequence[Column]) -> bytes:
    """The tuples of a binary COPY (no signature, no trailer)."""
    n = len(columns[0].values)
    pattern = np.zeros(n, dtype=np.int64)
    for bit, col in enumerate(columns):
        if col.null is not None:
            pattern |= col.null.astype(np.int64) << bit
    chunks = []
    for key in np.unique(pattern):
        rows = np.flatnonzero(pattern == key)
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i, col in enumerate(columns):
            fields.append((f"len{i}", ">i4"))
            if not (int(key) >> i) & 1:
                fields.append((f"val{i}", col.kind))
        out = np.empty(rows.size, dtype=np.dtype(fields))
        out["count"] = len(columns)
        for i, col in enumerate(columns):
            if (int(key) >> i) & 1:
                out[f"len{i}"] = -1
            else:
                out[f"len{i}"] = np.dtype(col.kind).itemsize
                out[f"val{i}"] = col.values[rows]
        chunks.append(out.tobytes())
    return b"".join(chunks)


def copy_columns(
    cur: psycopg.Cursor, table: str, names: Sequence[str], columns: Sequence[Column]
) -> None:
    """COPY the columns into table(names) in one binary COPY."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with cur.copy(statement) as copy:
        copy.write(SIGNATURE)
        copy.write(encode_rows(columns))
        copy.write(TRAILER)
