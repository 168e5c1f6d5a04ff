"""import-killmails: ESI-format killmails from a JSON-lines file into the killboard tables.

The whole file is parsed before anything is written, and written in one
transaction: a malformed line stops the import with its line number and
nothing from the file is kept. The columns written are those the target has:
on a killboard like killreport the zKillboard hash, the system, the victim's
corporation and damage, and the ORM's timestamps, too (bulk.target).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from bulk import jsontext
from bulk import target as target_tables
from bulk.errors import UserError


@dataclass
class Killmail:
    killmail_id: int
    time: datetime
    ship_type_id: int
    # item_type_id, flag (None when the line has none), quantity_destroyed,
    # quantity_dropped, singleton
    items: list[tuple[int, int | None, int | None, int | None, int]] = field(default_factory=list)
    line: int = 0
    # zkb.hash of a RedisQ package or zKillboard API record (or the line's own
    # killmail_hash); None when the line carries neither.
    killmail_hash: str | None = None
    solar_system_id: int | None = None
    corporation_id: int | None = None
    damage_taken: int | None = None
    # Items inside containers, left out under --top-level-only.
    nested_skipped: int = 0


@dataclass
class ImportResult:
    read: int = 0
    imported: int = 0
    items: int = 0
    already_present: list[int] = field(default_factory=list)
    repeated_in_file: list[int] = field(default_factory=list)
    nested_skipped: int = 0


_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1
# Real containers nest two or three deep; far deeper is a broken or hostile line.
_MAX_ITEM_DEPTH = 50
_HASH = re.compile(r"[0-9a-fA-F]{40}")


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


def _items(raw, out: list, depth: int = 0, *, top_level_only: bool = False) -> int:
    """Appends the items to out; returns how many nested items were left out."""
    if raw is None:
        return 0
    if depth > _MAX_ITEM_DEPTH:
        raise ValueError(f"items nested more than {_MAX_ITEM_DEPTH} deep")
    if not isinstance(raw, list):
        raise ValueError("victim.items must be a list")
    skipped = 0
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("each item must be an object")
        out.append(
            (
                _int(item.get("item_type_id"), "item_type_id"),
                _int(item.get("flag"), "flag", optional=True),
                _int(item.get("quantity_destroyed"), "quantity_destroyed", optional=True),
                _int(item.get("quantity_dropped"), "quantity_dropped", optional=True),
                _int(item.get("singleton", 0), "singleton"),
            )
        )
        # Items inside a container belong to the same killmail, except where
        # the target stores only what was fitted or in the hold (killreport).
        if top_level_only:
            skipped += _count_nested(item.get("items"), depth + 1)
        else:
            skipped += _items(item.get("items"), out, depth + 1)
    return skipped


def _count_nested(raw, depth: int) -> int:
    if raw is None:
        return 0
    if depth > _MAX_ITEM_DEPTH:
        raise ValueError(f"items nested more than {_MAX_ITEM_DEPTH} deep")
    if not isinstance(raw, list):
        raise ValueError("items must be a list")
    return sum(
        1 + (_count_nested(item.get("items"), depth + 1) if isinstance(item, dict) else 0)
        for item in raw
    )


def _hash(value, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        shown = repr(value)
        raise ValueError(f"{what} must be 40 hex digits, got {shown[:50]}")
    return value.lower()


def _zkb_hash(zkb) -> str | None:
    if zkb is None:
        return None
    if not isinstance(zkb, dict):
        raise ValueError("zkb must be an object")
    return _hash(zkb.get("hash"), "zkb.hash")


def parse_killmail(text: str, *, top_level_only: bool = False) -> Killmail:
    """One line: a bare ESI killmail, a zKillboard API record (zkb inside), or a RedisQ package."""
    try:
        doc = jsontext.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    except ValueError:  # an integer beyond Python's limit of 4,300 digits
        raise ValueError("not JSON (a number with more digits than can be read)") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deep)") from None
    # RedisQ answers {"package": {...}}; a saved package is the inner object.
    if isinstance(doc, dict) and isinstance(doc.get("package"), dict):
        doc = doc["package"]
    zkb = None
    if isinstance(doc, dict) and isinstance(doc.get("killmail"), dict):
        zkb = doc.get("zkb")
        doc = doc["killmail"]
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if zkb is None:
        zkb = doc.get("zkb")
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
    # Some ESI dumps carry the hash beside the killmail instead of in a zkb block.
    km.killmail_hash = _zkb_hash(zkb) or _hash(doc.get("killmail_hash"), "killmail_hash")
    km.solar_system_id = _int(doc.get("solar_system_id"), "solar_system_id", optional=True)
    km.corporation_id = _int(victim.get("corporation_id"), "victim.corporation_id", optional=True)
    km.damage_taken = _int(victim.get("damage_taken"), "victim.damage_taken", optional=True)
    km.nested_skipped = _items(victim.get("items"), km.items, top_level_only=top_level_only)
    return km


def read_file(path: Path, *, top_level_only: bool = False) -> list[Killmail]:
    killmails = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    km = parse_killmail(line, top_level_only=top_level_only)
                except ValueError as exc:
                    raise UserError(f"{path}:{number}: {exc}; nothing was imported") from None
                km.line = number
                killmails.append(km)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; nothing was imported") from None
    return killmails


def read_zkb_file(path: Path) -> dict[int, str]:
    """zkb.hash by killmail_id from zKillboard API records: {"killmail_id": .., "zkb": {..}}."""
    hashes: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = jsontext.loads(line)
                    if not isinstance(doc, dict):
                        raise ValueError("not a JSON object")
                    kid = _int(doc.get("killmail_id"), "killmail_id")
                    found = _zkb_hash(doc.get("zkb"))
                    if found is None:
                        raise ValueError("no zkb.hash")
                except (ValueError, RecursionError) as exc:
                    what = "not JSON" if isinstance(exc, json.JSONDecodeError) else exc
                    raise UserError(f"{path}:{number}: {what}; nothing was imported") from None
                hashes[kid] = found
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; nothing was imported") from None
    return hashes


# What each column the target may require is filled from, as the refusal names it.
_SOURCES = {
    ("killmails", "killmail_hash"): ("killmail_hash", "zkb.hash"),
    ("killmails", "solar_system_id"): ("solar_system_id", "solar_system_id"),
    ("victims", "corporation_id"): ("corporation_id", "victim.corporation_id"),
    ("victims", "damage_taken"): ("damage_taken", "victim.damage_taken"),
}
_KNOWN = {
    "killmails": ["killmail_id", "killmail_time", "killmail_hash", "solar_system_id"],
    "victims": ["killmail_id", "ship_type_id", "corporation_id", "damage_taken"],
    "killmail_items": [
        "killmail_id",
        "item_type_id",
        "flag",
        "quantity_destroyed",
        "quantity_dropped",
        "singleton",
    ],
}


def _check_fillable(
    where: target_tables.Target, path: Path, killmails: list[Killmail], zkb_path: Path | None
) -> None:
    """Refuses, before anything is written, a NOT NULL column some line has nothing for."""
    where.refuse_unknown(_KNOWN, "imported")
    for (table, column), (attribute, source) in _SOURCES.items():
        if column not in where[table].required:
            continue
        for km in killmails:
            if getattr(km, attribute) is None:
                hint = (
                    f" (nor does {zkb_path})"
                    if column == "killmail_hash" and zkb_path is not None
                    else ""
                )
                raise UserError(
                    f"{table}.{column} is NOT NULL but {path} line {km.line} has no"
                    f" {source}{hint}: nothing was imported"
                )
    if "flag" in where["killmail_items"].required:
        for km in killmails:
            if any(item[1] is None for item in km.items):
                raise UserError(
                    f"killmail_items.flag is NOT NULL but {path} line {km.line} has an item"
                    " with no flag: nothing was imported"
                )


def _copy(cur: psycopg.Cursor, table: str, columns: list[str], rows) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def import_killmails(
    conn: psycopg.Connection,
    path: Path,
    *,
    zkb_path: Path | None = None,
    top_level_only: bool = False,
) -> ImportResult:
    """Parse the whole file, then write the killmails not yet present in one transaction."""
    parsed = read_file(path, top_level_only=top_level_only)
    if zkb_path is not None:
        hashes = read_zkb_file(zkb_path)
        for km in parsed:
            extra = hashes.get(km.killmail_id)
            if extra is None:
                continue
            if km.killmail_hash is not None and km.killmail_hash != extra:
                raise UserError(
                    f"{path} line {km.line}: killmail {km.killmail_id} has hash"
                    f" {km.killmail_hash} but {zkb_path} gives {extra}; nothing was imported"
                )
            km.killmail_hash = extra
    where = target_tables.read(conn)
    _check_fillable(where, path, parsed, zkb_path)
    # Where the target's flag has a default (the tool's schema: 0), a missing flag is 0.
    for km in parsed:
        km.items = [(t, 0 if f is None else f, *rest) for t, f, *rest in km.items]
    result = ImportResult(read=len(parsed))
    unique: dict[int, Killmail] = {}
    for km in parsed:
        if km.killmail_id in unique:
            result.repeated_in_file.append(km.killmail_id)
        else:
            unique[km.killmail_id] = km
    extras = {
        table: [c for c in _KNOWN[table][2:] if where[table].has(c)]
        for table in ("killmails", "victims")
    }
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
        # Stamps in UTC, as the replaced system's ORM writes them: with the
        # session in UTC, the text COPY reads this time the same way for a
        # timestamp and a timestamptz column.
        cur.execute("SET LOCAL TimeZone = 'UTC'")
        (now,) = cur.execute("SELECT now()").fetchone()
        columns = ["killmail_id", "killmail_time", *extras["killmails"]]
        stamps = where["killmails"].stamps()
        _copy(
            cur,
            "killmails",
            columns + stamps,
            (
                (km.killmail_id, km.time, *(getattr(km, c) for c in extras["killmails"]))
                + (now,) * len(stamps)
                for km in new
            ),
        )
        stamps = where["victims"].stamps()
        _copy(
            cur,
            "victims",
            ["killmail_id", "ship_type_id", *extras["victims"], *stamps],
            (
                (km.killmail_id, km.ship_type_id, *(getattr(km, c) for c in extras["victims"]))
                + (now,) * len(stamps)
                for km in new
            ),
        )
        stamps = where["killmail_items"].stamps()
        _copy(
            cur,
            "killmail_items",
            _KNOWN["killmail_items"] + stamps,
            ((km.killmail_id, *item) + (now,) * len(stamps) for km in new for item in km.items),
        )
        result.items = sum(len(km.items) for km in new)
        result.nested_skipped = sum(km.nested_skipped for km in new)
    result.imported = len(new)
    return result
