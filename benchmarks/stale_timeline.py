"""Where a stale job's time goes: one `run --mode stale`, its statements from the
server's log, as offsets from the command's start.

    python -m benchmarks.stale_timeline --killmails 300000

On the database of benchmarks.stamps (every killmail valued and stamped), the
types that benchmarks.stamps moves (10% of the killmails hold one) are imported at
1.5 times their sell price, the tables vacuumed, and `run --mode stale --procs 2`
timed with every statement logged (`log_min_duration_statement = 0` on that
database for the run, reset after). The prices are then imported back and the
killmails revalued, untimed, so that the database is left as it was found.

It reads the server's log file, so it runs on the database's machine
(`--log`, default Debian's /var/log/postgresql/postgresql-15-main.log, with the
default `log_line_prefix` '%m [%p] %q%u@%d ').
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.stamps import NEW, SERVER, _q, import_prices, pick_types, stamps_database, vacuum

_LINE = re.compile(
    r"^\S+ (?P<at>\d\d:\d\d:\d\d\.\d+) \S+ \[(?P<pid>\d+)\] \S+@(?P<db>\S+) LOG:  "
    r"duration: (?P<ms>[0-9.]+) ms  [^:]*: (?P<text>.*)$"
)


# The server's clock as its log writes it (log_timezone), not this machine's zone.
_LOG_CLOCK = (
    "SELECT to_char(clock_timestamp() AT TIME ZONE current_setting('log_timezone'),"
    " 'HH24:MI:SS.US')"
)


def _seconds(clock: str) -> float:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _logging(url: str, on: bool) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    setting = "SET log_min_duration_statement = 0" if on else "RESET log_min_duration_statement"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(name)))


def timeline(log: Path, offset: int, database: str, started: float) -> list[tuple]:
    """(seconds after `started`, backend pid, ms, statement's start) of the database's
    statements logged after byte `offset` of the log."""
    rows = []
    with log.open(errors="replace") as lines:
        lines.seek(offset)
        for line in lines:
            match = _LINE.match(line.rstrip("\n"))
            if match is None or match["db"] != database:
                continue
            ended = _seconds(match["at"]) - started
            rows.append((ended, int(match["pid"]), float(match["ms"]), match["text"][:70]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--engine", choices=("numpy", "sql"), default="numpy")
    parser.add_argument(
        "--log", type=Path, default=Path("/var/log/postgresql/postgresql-15-main.log")
    )
    parser.add_argument("--min-ms", type=float, default=1.0, help="shorter statements left out")
    args = parser.parse_args(argv)
    url = stamps_database(args.server, args.killmails)
    database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    chosen = pick_types(url, 0.10)
    base = dict(_q(url, "SELECT type_id, sell FROM market_prices WHERE sell IS NOT NULL"))
    stale = [NEW, "run", "--mode", "stale", "--procs", "2", "--engine", args.engine]
    with tempfile.TemporaryDirectory() as tmp:
        prices = Path(tmp) / "prices.csv"
        import_prices(url, {t: base[t] * 1.5 for t in chosen}, prices)
        vacuum(url)
        _logging(url, True)
        try:
            started = _seconds(_q(url, _LOG_CLOCK)[0][0])
            offset = args.log.stat().st_size
            began = time.perf_counter()
            run = subprocess.run(stale + ["--database-url", url], capture_output=True, text=True)
            seconds = time.perf_counter() - began
        finally:
            _logging(url, False)
        if run.returncode != 0:
            raise SystemExit(f"the stale job failed: {run.stderr.strip()[-400:]}")
        rows = timeline(args.log, offset, database, started)
        import_prices(url, base, prices)
        subprocess.run(stale + ["--database-url", url], capture_output=True, check=True)
    print(f"run --mode stale --engine {args.engine}: {seconds:.2f} s")
    pids = {}
    for ended, pid, ms, text in rows:
        pids.setdefault(pid, []).append((ended, ms, text))
    for pid, statements in pids.items():
        first = statements[0][0] - statements[0][1] / 1000
        print(f"backend {pid}: {len(statements)} statements, {first:.3f}-{statements[-1][0]:.3f} s")
        for ended, ms, text in statements:
            if ms >= args.min_ms:
                print(f"  {ended - ms / 1000:7.3f} {ms:9.1f} ms  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
