"""`types fetch`: the types, groups and categories killmails use, from ESI's /universe/.

Three rounds, each on what the last one wrote: the used types `types` lacks,
then the groups of the types that item_groups lacks, then their categories.
Answers are written as they come, in bulk upserts each in its own transaction,
so an interrupted fetch keeps what it got and the next one asks only for
what is still missing. The ESI client (bulk.prices.esi) keeps the requests
polite: the error limit, 420/429 with their pauses, bounded concurrency, retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import psycopg

from bulk import db, sqlfiles
from bulk.prices import esi
from bulk.prices.fetch import for_each_type
from bulk.progress import Progress
from bulk.typedata import files, store

_FLUSH_EVERY = 200  # answers per upsert
KINDS = ("types", "groups", "categories")
# What each /universe/ answer names its parent by, and how TypeData files it.
_PARENT = {"types": "group_id", "groups": "category_id", "categories": None}


@dataclass
class TypesFetched:
    asked: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    stats: esi.FetchStats = field(default_factory=esi.FetchStats)


def missing(conn: psycopg.Connection) -> dict[str, list[int]]:
    """kind -> the IDs killmails need that the type tables lack, at this moment."""
    found: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for kind, id_ in conn.execute(sqlfiles.load("missing_type_data")):
        found[kind].append(id_)
    return found


def fetch_types(
    url: str,
    client: esi.Client,
    *,
    type_ids: list[int] | None = None,
    concurrency: int = 20,
    progress: bool = True,
    announce: Callable[[str, int], None] | None = None,
) -> TypesFetched:
    """Fetch and store what is missing (or the given types), level by level."""
    started = time.monotonic()
    summary = TypesFetched()
    with db.connect(url, autocommit=True) as conn:
        db.require_schema(conn)
        for kind in KINDS:
            if kind == "types" and type_ids:
                wanted = sorted(set(type_ids))
            else:
                wanted = missing(conn)[kind]
            summary.asked[kind] = len(wanted)
            summary.written[kind] = 0
            if not wanted:
                continue
            if announce is not None:
                announce(kind, len(wanted))
            if _round(conn, client, kind, wanted, concurrency, progress, summary):
                summary.interrupted = True
                break
    summary.stats = client.stats
    summary.stats.pauses = client.budget.pauses
    summary.elapsed = time.monotonic() - started
    return summary


def _round(conn, client, kind, wanted, concurrency, progress, summary) -> bool:
    bar = Progress(
        len(wanted),
        desc=f"types fetch {kind}",
        noun=kind,
        unit=kind[:-1] if kind != "categories" else "category",
        counts=("fetched", "failed"),
        enabled=progress,
    )
    done = files.TypeData()

    def record(id_: int, future: Future) -> None:
        try:
            answer = future.result()
            _file(done, kind, id_, answer)
            bar.add(1, fetched=1)
        except esi.TypeFailed as exc:
            summary.failed.append((kind, id_, str(exc).removeprefix(f"{kind} {id_}: ")))
            bar.add(1, failed=1)
        except files.TypeFileError as exc:
            summary.failed.append((kind, id_, str(exc).removeprefix("line 0: ")))
            bar.add(1, failed=1)

    def flush_if_due() -> None:
        if _count(done) >= _FLUSH_EVERY:
            _flush(conn, done, kind, summary)

    try:
        return for_each_type(
            wanted,
            lambda id_: client.universe(kind, id_),
            record,
            concurrency=concurrency,
            after_each=flush_if_due,
            client=client,
            say=bar.note,
        )
    finally:
        _flush(conn, done, kind, summary)  # whatever came back is kept, even on Ctrl+C
        bar.close()


def _file(done: files.TypeData, kind: str, id_: int, answer: dict) -> None:
    """One /universe/ answer into `done`, checked like a line of a file."""
    name = answer.get("name")
    if not isinstance(name, str) or not name.strip():
        raise files.TypeFileError(0, "ESI gave no name")
    name = name.strip()
    parent = _PARENT[kind]
    if parent is None:
        done.categories[id_] = name
        return
    value = answer.get(parent)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise files.TypeFileError(0, f"ESI gave no {parent}")
    (done.types if kind == "types" else done.groups)[id_] = (name, value)


def _count(done: files.TypeData) -> int:
    return len(done.types) + len(done.groups) + len(done.categories)


def _flush(conn: psycopg.Connection, done: files.TypeData, kind: str, summary) -> None:
    if not _count(done):
        return
    with conn.transaction():
        written = store.upsert(conn, done)
    summary.written[kind] += sum(written.inserted.values()) + sum(written.updated.values())
    done.types.clear()
    done.groups.clear()
    done.categories.clear()
