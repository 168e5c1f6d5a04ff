"""import-killmails: ESI-format killmails from a JSON-lines file into the killboard tables.

The whole file is parsed before anything is written, and written in one
transaction: a malformed line stops the import with its line number and
nothing from the file is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from bulk.errors import UserError


@dataclass
class Killmail:
    killmail_id: int
    time: datetime
    ship_type_id: int
    # item_type_id, flag, quantity_destroyed, quantity_dropped, singleton
    items: list[tuple[int, int, int | None, int | None, int]] = field(default_factory=list)


@dataclass
class ImportResult:
    read: int = 0
    imported: int = 0
    items: int = 0
    already_present: list[int] = field(default_factory=list)
    repeated_in_file: list[int] = field(default_factory=list)


_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1
# Real containers nest two or three deep; far deeper is a broken or hostile line.
_MAX_ITEM_DEPTH = 50


def _int(value, what: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value)
        raise ValueError(f"{what} must be an integer, got {shown[:40]}")
    # Every such column is int4: refused here with the line, not by COPY later.
    if not _INT4_MIN <= value <= _INT4_MAX:
        raise ValueError(f"{what} {value} is out of range (a 32-bit integer)")
    return value


def _items(raw, out: list, depth: int = 0) -> None:
    if raw is None:
        return
    if depth > _MAX_ITEM_DEPTH:
        raise ValueError(f"items nested more than {_MAX_ITEM_DEPTH} deep")
    if not isinstance(raw, list):
        raise ValueError("victim.items must be a list")
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("each item must be an object")
        out.append(
            (
                _int(item.get("item_type_id"), "item_type_id"),
                _int(item.get("flag", 0), "flag"),
                _int(item.get("quantity_destroyed"), "quantity_destroyed", optional=True),
                _int(item.get("quantity_dropped"), "quantity_dropped", optional=True),
                _int(item.get("singleton", 0), "singleton"),
            )
        )
        # Items inside a container belong to the same killmail.
        _items(item.get("items"), out, depth + 1)


def parse_killmail(text: str) -> Killmail:
    """One line: a bare ESI killmail, or a zKillboard/RedisQ wrapper with a `killmail` key."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    except ValueError:  # an integer beyond Python's limit of 4,300 digits
        raise ValueError("not JSON (a number with more digits than can be read)") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deep)") from None
    if isinstance(doc, dict) and isinstance(doc.get("killmail"), dict):
        doc = doc["killmail"]
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    killmail_id = _int(doc.get("killmail_id"), "killmail_id")
    if not 0 < killmail_id < 2**31:
        raise ValueError(f"killmail_id {killmail_id} is out of range")
    raw_time = doc.get("killmail_time")
    if not isinstance(raw_time, str):
        raise ValueError("killmail_time is missing")
    shown = repr(raw_time) if len(raw_time) <= 40 else repr(raw_time[:37] + "...")
    try:
        time = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"killmail_time {shown} is not ISO-8601") from None
    if time.tzinfo is not None:
        try:
            time = time.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(
                f"killmail_time {shown} is out of range in UTC (years 1 to 9999)"
            ) from None
    victim = doc.get("victim")
    if not isinstance(victim, dict):
        raise ValueError("victim is missing")
    km = Killmail(killmail_id, time, _int(victim.get("ship_type_id"), "victim.ship_type_id"))
    _items(victim.get("items"), km.items)
    return km


def read_file(path: Path) -> list[Killmail]:
    killmails = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    killmails.append(parse_killmail(line))
                except ValueError as exc:
                    raise UserError(f"{path}:{number}: {exc}; nothing was imported") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; nothing was imported") from None
    return killmails


def import_killmails(conn: psycopg.Connection, path: Path) -> ImportResult:
    """Parse the whole file, then write the killmails not yet present in one transaction."""
    parsed = read_file(path)
    result = ImportResult(read=len(parsed))
    unique: dict[int, Killmail] = {}
    for km in parsed:
        if km.killmail_id in unique:
            result.repeated_in_file.append(km.killmail_id)
        else:
            unique[km.killmail_id] = km
    with conn.transaction(), conn.cursor() as cur:
        # Locking out a concurrent import of the same IDs for this transaction.
        cur.execute("LOCK TABLE killmails IN SHARE ROW EXCLUSIVE MODE")
        cur.execute(
            "SELECT killmail_id FROM killmails WHERE killmail_id = ANY(%s::int[])",
            [list(unique)],
        )
        present = {r[0] for r in cur.fetchall()}
        result.already_present = sorted(present)
        new = [km for kid, km in sorted(unique.items()) if kid not in present]
        with cur.copy("COPY killmails (killmail_id, killmail_time) FROM STDIN") as copy:
            for km in new:
                copy.write_row((km.killmail_id, km.time))
        with cur.copy("COPY victims (killmail_id, ship_type_id) FROM STDIN") as copy:
            for km in new:
                copy.write_row((km.killmail_id, km.ship_type_id))
        with cur.copy(
            "COPY killmail_items (killmail_id, item_type_id, flag, quantity_destroyed,"
            " quantity_dropped, singleton) FROM STDIN"
        ) as copy:
            for km in new:
                for item in km.items:
                    copy.write_row((km.killmail_id, *item))
                result.items += len(km.items)
    result.imported = len(new)
    return result
