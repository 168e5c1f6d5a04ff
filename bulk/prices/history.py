"""`prices history import`: market_price_history from EVE Ref CSV and ESI history files.

Every file is read and checked first, in chunks, each chunk binary-COPYed
into a temporary staging table as it is read; one upsert then moves the
staging rows into market_price_history, in the same transaction. A bad line
in any file stops the import before the upsert, with the file and line, and
the rollback leaves the table as it was.
"""

from __future__ import annotations

import bz2
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from bulk import db, sqlfiles
from bulk.copy_binary import FLOAT8, INT4, INT8, SIGNATURE, TRAILER, Column, encode_rows
from bulk.engine import book
from bulk.engine import rules as rule_sets
from bulk.errors import UserError
from bulk.prices import history_files as hf
from bulk.prices.esi import DEFAULT_REGION
from bulk.prices.files import PriceFileError
from bulk.progress import Progress

# Lines of CSV read, parsed and sent at a time: large enough that numpy's
# reader runs long per call, small enough to keep memory flat on big files.
_CHUNK_BYTES = 8 << 20
_PG_EPOCH = np.datetime64("2000-01-01", "D")  # PostgreSQL's binary date counts days from it

# The staging table's columns, in the COPY's order (sql/history_staging.sql).
_STAGING_COLUMNS = ("source", *hf._COLUMNS)
_STAGING_COPY = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.Identifier("history_staging"), sql.SQL(", ").join(map(sql.Identifier, _STAGING_COLUMNS))
)
# The upsert reads either the staging table or a fetch's arrays; both fixed here.
STAGING_SOURCE = "history_staging"
ARRAYS_SOURCE = (
    "unnest(%(region_id)s::int4[], %(type_id)s::int4[], %(date)s::date[],"
    " %(average)s::float8[], %(highest)s::float8[], %(lowest)s::float8[],"
    " %(volume)s::int8[], %(order_count)s::int8[])"
    " AS s (region_id, type_id, date, average, highest, lowest, volume, order_count)"
)


@dataclass
class Written:
    new: int = 0
    changed: int = 0
    unchanged: int = 0


@dataclass
class HistoryImportSummary:
    files: int
    rows: int = 0  # rows read that were kept (every row, or the region's)
    other_regions: int = 0  # EVE Ref rows of other regions, left out
    written: Written = field(default_factory=Written)
    elapsed: float = 0.0
    # Where the time went: reading, checking and COPYing into staging; then the upsert.
    staging_seconds: float = 0.0
    upsert_seconds: float = 0.0
    tables_created: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    path: Path
    compressed: bool
    # esi-json (a list of days), average-json (zKillboard's or evetreemap's object),
    # csv (EVE Ref's or one type's ESI history) or average-csv (type_id,date,average).
    shape: str


def import_history_files(
    conn: psycopg.Connection,
    paths: Iterable[Path],
    *,
    region: int = DEFAULT_REGION,
    type_id: int | None = None,
    all_regions: bool = False,
    progress: bool = False,
) -> HistoryImportSummary:
    """Import EVE Ref CSV (plain or .bz2) and ESI history (JSON, or CSV without
    region_id,type_id) files into market_price_history, all or nothing.

    ESI files are one type's history: their rows get `type_id` (required for
    them) and `region`. EVE Ref rows keep their own region and type; only
    those of `region` are kept unless all_regions. Raises UserError naming
    the file and line of the first bad row; then nothing is written.
    """
    started = time.monotonic()
    newest = newest_allowed()
    sources = [_sniff(Path(p), type_id) for p in paths]
    created = db.ensure_history_tables(conn)
    summary = HistoryImportSummary(files=len(sources), tables_created=created)
    bar = Progress(
        None, desc="history import", noun="rows", unit="row", counts=(), enabled=progress
    )
    _roomy_temp_buffers(conn)
    failed = True
    try:
        with conn.transaction():
            _create_staging(conn)
            # One COPY for every file, sent by a thread of its own: the server
            # stores a chunk while the next one is parsed.
            with (
                conn.cursor() as cur,
                cur.copy(_STAGING_COPY, writer=QueuedLibpqWriter(cur)) as copy,
            ):
                copy.write(SIGNATURE)
                for number, source in enumerate(sources):
                    for parsed in _read(source, region, type_id, all_regions, newest):
                        copy.write(_encoded(number, parsed.rows))
                        summary.rows += len(parsed.rows)
                        summary.other_regions += parsed.other_regions
                        bar.add(len(parsed.rows) + parsed.other_regions)
                copy.write(TRAILER)
            staged = time.monotonic()
            summary.staging_seconds = staged - started
            summary.written = _upsert_staged(conn, sources, region, type_id, all_regions, newest)
            # In the same transaction: a job that starts after this commits builds them again.
            changes = conn.execute(
                sqlfiles.load("history_staged_changes"), {"regions": rule_sets.history_regions()}
            ).fetchall()
            book.invalidate_history(conn, dict(changes))
            summary.upsert_seconds = time.monotonic() - staged
            # ON COMMIT DROP waits for the caller's commit: a second import in the
            # same transaction needs the name free.
            conn.execute("DROP TABLE history_staging")
        failed = False
    finally:
        bar.close(failed=failed)
    summary.written.unchanged = summary.rows - summary.written.new - summary.written.changed
    summary.elapsed = time.monotonic() - started
    return summary


def newest_allowed(today: date | None = None) -> date:
    """The newest day any history source may hold: tomorrow in UTC."""
    return hf.tomorrow(today or datetime.now(timezone.utc).date())


def upsert_rows(conn: psycopg.Connection, rows: hf.HistoryRows) -> Written:
    """Upsert checked rows through bound arrays (a fetch's few hundred rows per type)."""
    if not len(rows):
        return Written()
    params = {name: getattr(rows, name).tolist() for name in hf._COLUMNS}
    params["date"] = rows.date.astype(object).tolist()
    statement = sqlfiles.load("upsert_history").format(source=ARRAYS_SOURCE)
    try:
        new, changed = conn.execute(statement, params).fetchone()
    except psycopg.errors.CardinalityViolation:
        raise UserError("a (region, type, date) is given twice; nothing was written") from None
    earliest: dict[int, date] = {}
    read = set(rule_sets.history_regions())
    for region, type_id, day in zip(params["region_id"], params["type_id"], params["date"]):
        if region not in read:
            continue
        if type_id not in earliest or day < earliest[type_id]:
            earliest[type_id] = day
    book.invalidate_history(conn, earliest)
    return Written(new, changed, len(rows) - new - changed)


def _sniff(path: Path, type_id: int | None) -> _Source:
    """What a file is, from its name and first bytes; UserError if it cannot be read."""
    compressed = path.name.lower().endswith(".bz2")
    try:
        with _open(path, compressed) as handle:
            start = handle.read(4096)
    except (OSError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    stem = path.name.lower().removesuffix(".bz2")
    first = start.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"{" or (stem.endswith(".json") and first != b"["):
        # zKillboard's object names its type (typeID), evetreemap's its region and types.
        return _Source(path, compressed, "average-json")
    if first == b"[" or stem.endswith(".json"):
        if type_id is None:
            raise UserError(
                f"{path}: ESI history JSON (a list of days) says neither region nor type: give"
                f" its --type-id (and --region, {DEFAULT_REGION} The Forge by default)"
            )
        return _Source(path, compressed, "esi-json")
    header = start.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return _Source(path, compressed, "average-csv" if hf.is_average_csv(header) else "csv")


def _open(path: Path, compressed: bool) -> BinaryIO:
    return bz2.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115


def _read(
    source: _Source, region: int, type_id: int | None, all_regions: bool, newest: date
) -> Iterator[hf.Parsed]:
    """The file's rows, chunk by chunk; UserError at the first bad line."""
    try:
        with _open(source.path, source.compressed) as handle:
            if source.shape != "csv":
                text = _text(handle.read(), source.path)
                if source.shape == "esi-json":
                    yield hf.parse_esi_json(text, region=region, type_id=type_id, newest=newest)
                elif source.shape == "average-json":
                    yield hf.parse_average_json(text, region=region, type_id=type_id, newest=newest)
                else:
                    yield hf.parse_average_csv(text, region=region, newest=newest)
                return
            for first_line, chunk, layout in _chunks(handle):
                yield hf.parse_csv_chunk(
                    chunk,
                    first_line,
                    layout,
                    region=region,
                    type_id=type_id,
                    all_regions=all_regions,
                    newest=newest,
                )
    except PriceFileError as exc:
        raise UserError(f"{source.path}:{exc}; nothing was imported") from None
    except (OSError, EOFError, ValueError) as exc:  # a truncated or corrupt .bz2
        raise UserError(f"cannot read {source.path}: {exc}; nothing was imported") from None


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PriceFileError(line, "not UTF-8 text") from None


def _chunks(handle: BinaryIO) -> Iterator[tuple[int, bytes, hf.CsvLayout]]:
    """(first line number, whole lines, the header's layout) for each chunk after the header."""
    rest = b""
    layout = None
    line = 1
    while True:
        block = handle.read(_CHUNK_BYTES)
        data = rest + block
        if not block:
            if layout is None:
                layout = hf.csv_layout(_header(data))
                return
            if data.strip():
                yield line, data, layout
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        whole, rest = data[:cut], data[cut:]
        if layout is None:
            end = whole.index(b"\n") + 1
            layout = hf.csv_layout(_header(whole[:end]))
            whole = whole[end:]
            line = 2
        if whole:
            yield line, whole, layout
            line += whole.count(b"\n")


def _header(data: bytes) -> str:
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8").split("\n", 1)[0]
    except UnicodeDecodeError:
        raise PriceFileError(1, "not UTF-8 text") from None


def _create_staging(conn: psycopg.Connection) -> None:
    conn.execute(sqlfiles.load("history_staging"))


def _roomy_temp_buffers(conn: psycopg.Connection) -> None:
    """Let the staging table stay in memory (the default 8 MB spills it to disk).

    PostgreSQL accepts this only before the session's first temporary table;
    a session that had one keeps what it has.
    """
    try:
        with conn.transaction():
            conn.execute("SET temp_buffers = '256MB'")
    except psycopg.errors.InvalidParameterValue:
        pass


def _encoded(number: int, rows: hf.HistoryRows) -> bytes:
    """The rows as binary COPY tuples for the staging table (no header, no trailer)."""
    n = len(rows)
    if not n:
        return b""
    return encode_rows(
        [
            Column(np.full(n, number, np.int64), INT4),
            Column(rows.region_id, INT4),
            Column(rows.type_id, INT4),
            Column(hf.days_since(rows.date, _PG_EPOCH), INT4),
            Column(rows.average, FLOAT8),
            Column(rows.highest, FLOAT8),
            Column(rows.lowest, FLOAT8),
            Column(rows.volume, INT8),
            Column(rows.order_count, INT8),
        ]
    )


def _upsert_staged(
    conn: psycopg.Connection,
    sources: list[_Source],
    region: int,
    type_id: int | None,
    all_regions: bool,
    newest: date,
) -> Written:
    # Enough memory to sort the staged rows into key order without spilling.
    conn.execute("SET LOCAL work_mem = '256MB'")
    (overlap,) = conn.execute(sqlfiles.load("history_overlap")).fetchone()
    try:
        # A savepoint: after a repeated day the staging table is still there to ask.
        with conn.transaction():
            if not overlap:
                return Written(conn.execute(sqlfiles.load("insert_history")).rowcount, 0)
            statement = sqlfiles.load("upsert_history").format(source=STAGING_SOURCE)
            new, changed = conn.execute(statement).fetchone()
    except (psycopg.errors.CardinalityViolation, psycopg.errors.UniqueViolation):
        raise _repeated(conn, sources, region, type_id, all_regions, newest) from None
    return Written(new, changed)


def _repeated(
    conn: psycopg.Connection,
    sources: list[_Source],
    region: int,
    type_id: int | None,
    all_regions: bool,
    newest: date,
) -> UserError:
    """The error for a (region, type, date) given twice, naming both places."""
    region_id, type_, day, numbers = conn.execute(sqlfiles.load("history_repeated")).fetchone()
    places = []
    for number in dict.fromkeys(numbers):
        source = sources[number]
        for parsed in _read(source, region, type_id, all_regions, newest):
            rows = parsed.rows
            hits = np.flatnonzero(
                (rows.region_id == region_id)
                & (rows.type_id == type_)
                & (rows.date == np.datetime64(day, "D"))
            )
            places += [f"{source.path}:{parsed.where(int(i))}" for i in hits]
    first, again = (places + ["?", "?"])[:2]
    return UserError(
        f"{again}: region {region_id} type {type_} date {day.isoformat()} again "
        f"(first at {first}); nothing was imported"
    )


def known_through(
    conn: psycopg.Connection, region: int, type_ids: list[int], newest: date
) -> dict[int, date]:
    """The newest stored day per type in the region, up to `newest` (types without
    history are absent): a day stored beyond it, by other means or an older
    version, must not make a type look up to date for good."""
    rows = conn.execute(
        sqlfiles.load("history_latest"),
        {"type_ids": type_ids, "region_id": region, "newest": newest},
    ).fetchall()
    return dict(rows)
