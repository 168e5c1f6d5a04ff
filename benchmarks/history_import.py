"""python -m benchmarks.history_import [--rows N] [--types T] [--bz2] [--rounds R]

How fast `prices history import` loads EVE Ref market-history files, as a user
runs it (the installed command, start-up included), against what PostgreSQL
alone takes on the same machine at the same time: the same rows binary-COPYed
straight into an empty market_price_history in key order, with no reading,
checking or upsert. Measured, in a database of its own:

- import: the files into an empty table (every row new);
- again: the same files once more (every row already there, none rewritten);
- ceiling: the plain COPY.

The files are generated here in EVE Ref's shape, one per day, T types a day
(The Forge), N rows in all. After each import the table is checked against
the generator: the row count and exact integer sums of volume and order_count.
"""

from __future__ import annotations

import argparse
import bz2
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import server_url
from bulk import db
from bulk.copy_binary import FLOAT8, INT4, INT8, Column, copy_columns

HEADER = "average,date,highest,lowest,order_count,volume,http_last_modified,region_id,type_id"
REGION = 10000002
TARGET = 500_000  # rows/s, issue 14
_COLUMNS = ["region_id", "type_id", "date", "average", "highest", "lowest"]
_COLUMNS += ["volume", "order_count"]


def generate(rows: int, types: int, folder: Path, compress: bool, seed: int = 1) -> dict:
    """EVE Ref-shaped daily files; returns the columns written (for the ceiling and checks)."""
    rng = np.random.default_rng(seed)
    days = -(-rows // types)
    type_ids = np.tile(np.arange(18, 18 + types), days)[:rows]
    day_index = np.repeat(np.arange(days), types)[:rows]
    first = np.datetime64("2025-01-01")
    base = np.exp(rng.normal(8, 3, types))[type_ids - 18]
    average = np.round(base * rng.uniform(0.9, 1.1, rows), 2)
    highest = np.round(average * rng.uniform(1.0, 1.2, rows), 2)
    lowest = np.round(average * rng.uniform(0.8, 1.0, rows), 2)
    volume = np.floor(rng.lognormal(8, 3, rows)).astype(np.int64)
    orders = rng.integers(1, 5000, rows)
    for day in range(days):
        take = slice(day * types, min((day + 1) * types, rows))
        date = str(first + day)
        stamp = f"{first + day + 1}T11:01:17Z"
        lines = [HEADER]
        lines += [
            f"{a!r},{date},{h!r},{lo!r},{o},{v},{stamp},{REGION},{t}"
            for a, h, lo, o, v, t in zip(
                average[take].tolist(),
                highest[take].tolist(),
                lowest[take].tolist(),
                orders[take].tolist(),
                volume[take].tolist(),
                type_ids[take].tolist(),
            )
        ]
        text = ("\n".join(lines) + "\n").encode()
        name = f"market-history-{date}.csv"
        if compress:
            (folder / f"{name}.bz2").write_bytes(bz2.compress(text, 6))
        else:
            (folder / name).write_bytes(text)
    return {
        "region_id": np.full(rows, REGION),
        "type_id": type_ids,
        "date": (first - np.datetime64("2000-01-01")).astype(int) + day_index,
        "average": average,
        "highest": highest,
        "lowest": lowest,
        "volume": volume,
        "order_count": orders,
    }


def _new_database(server: str) -> str:
    name = f"bbt_history_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server, dbname=name)
    with psycopg.connect(url) as conn:
        db.ensure_history_tables(conn)
    return url


def _drop(server: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE market_price_history")
        conn.execute("CHECKPOINT")


def _check(url: str, columns: dict) -> None:
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT count(*), sum(volume), sum(order_count) FROM market_price_history"
        ).fetchone()
    want = (
        len(columns["type_id"]),
        int(columns["volume"].sum()),
        int(columns["order_count"].sum()),
    )
    if tuple(int(x) for x in got) != want:
        raise SystemExit(f"wrong table after the import: {got} where {want} was expected")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("bulk-backfill")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bulk"]


def _import(url: str, files: list[Path]) -> tuple[float, str]:
    env = {**os.environ, "DATABASE_URL": url}
    started = time.monotonic()
    out = subprocess.run(
        [*_command(), "prices", "history", "import", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"import failed: {out.stderr.strip()}")
    return seconds, out.stdout


def _ceiling(url: str, columns: dict) -> float:
    kinds = {"region_id": INT4, "type_id": INT4, "date": INT4, "volume": INT8}
    kinds["order_count"] = INT8
    order = np.lexsort((columns["date"], columns["type_id"]))
    data = [Column(columns[c][order], kinds.get(c, FLOAT8)) for c in _COLUMNS]
    started = time.monotonic()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_columns(cur, "market_price_history", _COLUMNS, data)
        conn.commit()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history_import")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in all (2,000,000)")
    parser.add_argument("--types", type=int, default=15_000, help="rows per daily file")
    parser.add_argument("--bz2", action="store_true", help="bz2 files, as EVE Ref serves them")
    parser.add_argument("--rounds", type=int, default=3, help="repeats; medians are shown")
    args = parser.parse_args(argv)
    server = server_url()
    with tempfile.TemporaryDirectory(prefix="history_bench_") as tmp:
        folder = Path(tmp)
        print(f"generating {args.rows:,} rows in daily files of {args.types:,}", flush=True)
        columns = generate(args.rows, args.types, folder, args.bz2)
        files = sorted(folder.iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"{len(files)} files, {size / 1e6:,.0f} MB", flush=True)
        url = _new_database(server)
        figures: dict[str, list[float]] = {"import": [], "again": [], "ceiling": []}
        try:
            for round_ in range(1, args.rounds + 1):
                _empty(url)
                seconds, out = _import(url, files)
                _check(url, columns)
                figures["import"].append(args.rows / seconds)
                phases = re.search(r"elapsed .*", out)
                again, _ = _import(url, files)
                _check(url, columns)
                figures["again"].append(args.rows / again)
                _empty(url)
                figures["ceiling"].append(args.rows / _ceiling(url, columns))
                print(
                    f"round {round_}: import {figures['import'][-1]:,.0f} rows/s "
                    f"({phases.group(0) if phases else '?'}), again "
                    f"{figures['again'][-1]:,.0f} rows/s, plain COPY "
                    f"{figures['ceiling'][-1]:,.0f} rows/s",
                    flush=True,
                )
        finally:
            _drop(server, url)
    median = {k: statistics.median(v) for k, v in figures.items()}
    print(
        f"\nprices history import of {args.rows:,} rows in {len(files)} "
        f"{'bz2 ' if args.bz2 else ''}files, median of {args.rounds} on {os.cpu_count()} CPUs:"
    )
    print(f"  into an empty table       {median['import']:>12,.0f} rows/s")
    print(f"  again (all unchanged)     {median['again']:>12,.0f} rows/s")
    print(f"  plain COPY, key order     {median['ceiling']:>12,.0f} rows/s  (PostgreSQL alone)")
    print(f"  import / plain COPY       {median['import'] / median['ceiling']:>12.2f}")
    met = "met" if median["import"] >= TARGET else "not met"
    print(f"  target >= {TARGET:,} rows/s: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
