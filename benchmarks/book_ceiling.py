"""The pure-SQL ceiling of a rule set on the price book (issue 26): build, then join.

Each formulation builds the book rows the job needs (every (type, price date)
pair of the killmails to value, or for seed every known type) into the tool's
own table bulk_price_book with the engine's own statements (the job's pairs
gathered by statements.book_job_pairs_sql, then the rule set's builder
statements.book_build_sql(rules, "sell", "job"), sql/book_build_<rules>.sql), and
then values every killmail by one set-based UPDATE per keyset chunk of 500 IDs
that joins the book by equality (benchmarks/sql/book_ceiling_value.sql). The
build is inside the time. All of it is SQL; Python only sends the statements
(and, for `engine`, is the engine's own build function). Formulations:

- `engine`: one process runs the engine's job build, bulk.engine.book.build_for_job
  (as `run` calls it before its first batch: its statements, its lock and
  snapshot, its ANALYZE); meanwhile the other processes wait; then `procs`
  processes value interleaved chunks.
- `parity`: `procs` processes build at once, each the pairs of its share of
  the type IDs (type_id mod procs): each gathers the job's pairs (reading every
  line of the job), drops the other shares' pairs, and runs the builder on the
  rest; they wait for each other, then value interleaved chunks.
  Kill-date rule sets only.
- `halves`: the job's killmails split at a price date into `procs` spans of
  about equal size; each process gathers the pairs of its span's killmails,
  builds them and values its span's killmails, with no waiting: the spans
  share no pair, so the builds never touch the same row. Kill-date rule sets only.

Every connection has jit off (the builders' cost estimates pass
jit_above_cost, as the engine's comments say) and is in UTC.

As a command, so the suite times it like every other figure (start-up included):
    python -m benchmarks.book_ceiling URL --rules evekill --formulation halves --procs 2
prints one JSON line: rows written, and the seconds of the build and of the valuation
(the longest of any process), measured inside the processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import sys
import time
from pathlib import Path

import psycopg

from benchmarks.ceiling import chunk_bounds
from bulk.engine import book, rules, statements
from bulk.engine.scan import Selection

_DIR = Path(__file__).parent / "sql"

FORMULATIONS = ("engine", "parity", "halves")
# The formulations that apply to each rule set: seed's book is every known type
# at one price date (a few thousand rows, built in well under a second), so only
# the engine's own build is measured for it.
FOR_RULES = {"seed": ("engine",), "evekill": FORMULATIONS, "zkillboard": FORMULATIONS}


def _load(name: str) -> str:
    text = (_DIR / f"{name}.sql").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def job_condition() -> tuple[str, dict]:
    """The killmails of a `run --mode null` job: the engine's own condition on alias k."""
    return Selection(mode="null").killmails_sql()


def _build_part(
    conn: psycopg.Connection,
    rules_name: str,
    killmails: str,
    params: dict,
    types: str | None = None,
    gathered=None,
) -> None:
    """The engine's job build for the killmails `killmails` (a condition on k), in one
    transaction: gather their pairs, keep those of the types `types` (a condition
    on the pairs' type_id, or all), call `gathered`, build them; then ANALYZE the book.

    The engine gathers only the killmails whose price date has no book row yet:
    processes that share dates must all have gathered before any build commits
    (`gathered`: a barrier), or a later one would skip those dates."""
    with conn.transaction():
        conn.execute(statements.book_job_pairs_sql(rules_name, killmails), params, prepare=False)
        if types is not None:
            conn.execute(f"DELETE FROM pg_temp.bulk_book_job WHERE NOT ({types})")
        conn.execute("ANALYZE pg_temp.bulk_book_job")
        if gathered is not None:
            gathered()
        conn.execute(statements.book_build_sql(rules_name, "sell", "job"), prepare=False)
    conn.execute("ANALYZE bulk_price_book")


def value_statement(rules_name: str, part: str = "TRUE") -> str:
    fill = rules.book_placeholders(rules_name, "sell")
    return _load("book_ceiling_value").format(
        book=fill["book"], price_date=fill["price_date"], item_cents=fill["item_cents"], part=part
    )


def _span_condition(rules_name: str, span: int, spans: int) -> str:
    """Killmail k's price date within span `span` of `spans`, bounded by %(splits)s."""
    price_date = rules.book_price_date_sql(rules_name)
    clauses = []
    if span > 0:
        clauses.append(f"{price_date} >= (%(splits)s::date[])[{span}]")
    if span < spans - 1:
        clauses.append(f"{price_date} < (%(splits)s::date[])[{span + 1}]")
    return " AND ".join(clauses) or "TRUE"


def _worker(
    url: str,
    rules_name: str,
    formulation: str,
    part: int,
    parts: int,
    bounds: list[tuple[int, int]],
    splits: list,
    barrier,
    results,
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET jit = off")
        conn.execute("SET TimeZone TO 'UTC'")
        started = time.monotonic()
        span = "TRUE"
        if formulation == "engine":
            if part == 0:
                condition, params = job_condition()
                book.build_for_job(conn, rules_name, "sell", condition, params)
            barrier.wait()
        elif formulation == "parity":
            condition, params = job_condition()
            share = f"mod(type_id, {parts:d}) = {part:d}"
            _build_part(conn, rules_name, condition, params, share, barrier.wait)
            barrier.wait()
        elif formulation == "halves":
            condition, params = job_condition()
            span = _span_condition(rules_name, part, parts)
            _build_part(conn, rules_name, f"({condition}) AND {span}", {**params, "splits": splits})
        else:
            raise ValueError(f"unknown formulation {formulation!r}")
        built = time.monotonic()
        update = value_statement(rules_name, span)
        written = 0
        for lo, hi in bounds:
            params = {"lo": lo, "hi": hi, "splits": splits}
            written += conn.execute(update, params, prepare=False).rowcount
        results.put((part, written, built - started, time.monotonic() - built))


def _plan(url: str, rules_name: str, formulation: str, procs: int, chunk: int):
    """Per process: (ID chunks, price-date splits)."""
    with psycopg.connect(url) as conn:
        if formulation != "halves":
            ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
            bounds = chunk_bounds(ids, chunk) if ids else []
            # Interleaved, so the processes walk the table together as run's batches do.
            return [(bounds[n::procs], []) for n in range(procs)]
        price_date = rules.book_price_date_sql(rules_name)
        rows = conn.execute(
            f"SELECT k.killmail_id, {price_date} FROM killmails AS k ORDER BY 1"
        ).fetchall()
    dates = sorted(d for _, d in rows)
    splits = sorted({dates[len(dates) * n // procs] for n in range(1, procs)})
    spans: list[list[int]] = [[] for _ in range(len(splits) + 1)]
    for killmail_id, day in rows:
        spans[sum(day >= s for s in splits)].append(killmail_id)
    return [(chunk_bounds(ids, chunk) if ids else [], splits) for ids in spans]


def run_book_ceiling(
    url: str, rules_name: str, formulation: str, procs: int = 2, chunk: int = 500
) -> dict:
    """Rows written and the build's and the valuation's seconds of one formulation."""
    if formulation not in FOR_RULES[rules.rules_name(rules_name)]:
        raise ValueError(f"formulation {formulation!r} does not apply to {rules_name}")
    plan = _plan(url, rules_name, formulation, procs, chunk)
    parts = len(plan)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(parts)
    workers = [
        ctx.Process(
            target=_worker,
            args=(url, rules_name, formulation, n, parts, bounds, splits, barrier, results),
        )
        for n, (bounds, splits) in enumerate(plan)
    ]
    for w in workers:
        w.start()
    done = []
    try:
        while len(done) < parts:
            try:
                done.append(results.get(timeout=1))
            except queue.Empty:
                failed = [w for w in workers if w.exitcode not in (None, 0)]
                if failed:
                    code = failed[0].exitcode
                    raise RuntimeError(f"a ceiling process failed (exit {code})") from None
    finally:
        for w in workers:
            if w.is_alive() and len(done) < parts:
                w.terminate()
            w.join()
    return {
        "written": sum(d[1] for d in done),
        "build_seconds": max(d[2] for d in done),
        "value_seconds": max(d[3] for d in done),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.book_ceiling")
    parser.add_argument("url")
    parser.add_argument("--rules", required=True, choices=rules.RULES)
    parser.add_argument("--formulation", choices=FORMULATIONS, default="engine")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args(argv)
    done = run_book_ceiling(args.url, args.rules, args.formulation, args.procs, args.chunk)
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
