"""Every rule set on the price book, at a real killboard's density (issue 26, item 5).

    .venv/bin/python -m benchmarks.book --killmails 300000 --days 60 --rounds 3 [--out DIR]
    .venv/bin/python -m benchmarks.book --quick      # 30,000 killmails, 6 days, 1 round

On a generated database (`bulk-backfill init-db` + `bulk-backfill demo-data
--killmails N --days D`, built once as bulk_backfill_bench_<N>_d<D>, or the one
--database-url names), once per round and alternating, for each rule set R of
seed, evekill and zkillboard:

- the pure-SQL ceilings of benchmarks/book_ceiling.py, each formulation that
  applies to R, 2 processes, chunks of 500 IDs: build the book the job needs,
  then value by equality join, the build inside the time;
- `bulk-backfill run --procs 2 --mode null --rules R --engine E` for both engines;
- the engine's own build alone (bulk.engine.book.build_for_job, in this
  process, as `run` calls it before its first batch), so the report can say how
  much of the run is the build.

Before each measurement every value is set back to NULL and R's rows are
deleted from the book, so every figure includes building the book. Every
figure is a whole command timed from start to exit; every run and every
ceiling is checked, all rows, against R's independent reference
(sql/reference_*.sql, computed once per database into bench_reference*): any
difference exits 1. Writes book.md and book.json (the engine's commit in both).

On a shared machine: --wait-idle 0.15 waits before each measurement for a quiet
CPU; --resume goes on with a stopped run (book.partial.json, written after each
measurement); --report book.json writes book.md again without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import bulk
from benchmarks import server_url
from benchmarks.book_ceiling import FOR_RULES, job_condition
from benchmarks.command import run_command
from benchmarks.suite import (
    Measurement,
    VerificationFailed,
    _bin,
    _facts,
    as_dicts,
    now_iso,
    reference_table,
    reset,
    reusable,
    verify,
)
from bulk.engine import book, rules

RULE_SETS = ("seed", "evekill", "zkillboard")
ENGINES = ("numpy", "sql")
PROCS = 2
BATCH = 500
RULES_TARGET = 0.7  # run --rules R / run --rules seed, same engine
CEILING_TARGET = 0.9  # run --rules R / R's best ceiling
RSS_LIMIT_MB = 100
QUICK = {"killmails": 30_000, "days": 6, "rounds": 1}


def database_for(server: str, killmails: int, days: int, say) -> str:
    """A generated database of this size and density, built once by the commands, then reused."""
    name = f"bulk_backfill_bench_{killmails}_d{days}"
    url = make_conninfo(server, dbname=name)
    if reusable(server, name, killmails, lambda conn: not book.missing_table(conn)):
        say(f"reusing database {name} ({killmails:,} killmails over {days} days)")
        return url
    say(f"building database {name}: init-db, demo-data --killmails {killmails} --days {days}")
    started = time.monotonic()
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {"DATABASE_URL": url}
    run_command([_bin("bulk-backfill"), "init-db"], env=env)
    run_command(
        [_bin("bulk-backfill"), "demo-data", "--killmails", str(killmails), "--days", str(days)],
        env=env,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    say(f"  built in {time.monotonic() - started:.0f} s")
    return url


def empty_book(url: str, rules_name: str) -> None:
    """Delete the rule set's rows from the price book (and vacuum them away)."""
    with psycopg.connect(url, autocommit=True) as conn:
        key = rules.book_key(rules_name, "sell")
        conn.execute("DELETE FROM bulk_price_book WHERE book = %s", [key])
        conn.execute("VACUUM (ANALYZE) bulk_price_book")


# --wait-idle: before each measurement, wait (up to QUIET_PATIENCE seconds) until the
# whole machine's CPU, sampled over QUIET_WINDOW seconds, is at most this busy.
QUIET = {"max_busy": None}
QUIET_WINDOW = 3.0
QUIET_PATIENCE = 600.0


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def machine_busy(window: float = QUIET_WINDOW) -> float:
    """The fraction of all CPUs busy over `window` seconds (every process, ours too)."""
    busy0, total0 = _cpu_times()
    time.sleep(window)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_quiet() -> dict:
    """Wait for a quiet machine if --wait-idle asked for it; what was seen, for the record."""
    limit = QUIET["max_busy"]
    if limit is None:
        return {}
    started = time.monotonic()
    busy = machine_busy()
    said = False
    while busy > limit and time.monotonic() - started < QUIET_PATIENCE:
        if not said:
            print(f"  waiting for a quiet machine (CPU {busy:.0%} busy)", flush=True)
            said = True
        busy = machine_busy()
    return {"busy_before": busy, "waited_seconds": time.monotonic() - started}


def _prepare(url: str, rules_name: str) -> dict:
    """Every value NULL, R's book empty, killmails vacuumed, a checkpoint; then --wait-idle."""
    empty_book(url, rules_name)
    reset(url)
    return wait_quiet()


def _busy_during(before: tuple[int, int]) -> float:
    busy0, total0 = before
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def measure_run(url: str, n: int, victims: int, rules_name: str, engine: str, rnd: int):
    quiet = _prepare(url, rules_name)
    cpu = _cpu_times()
    done = run_command(
        [_bin("bulk-backfill"), "run", "--procs", str(PROCS), "--batch-size", str(BATCH),
         "--mode", "null", "--rules", rules_name, "--engine", engine],
        env={"DATABASE_URL": url},
    )  # fmt: skip
    quiet["machine_busy"] = _busy_during(cpu)
    verify(url, victims, rules=rules_name)
    every = max(done.peak_rss_mb.values()) if done.peak_rss_mb else None
    return Measurement.verified_run(
        f"run-{engine}-{rules_name}",
        PROCS,
        BATCH,
        n,
        victims,
        done.seconds,
        rnd,
        done.worker_peak_mb,
        extra={"command_peak_rss_mb": every, **quiet},
    )


def measure_ceiling(url: str, n: int, victims: int, rules_name: str, formulation: str, rnd: int):
    quiet = _prepare(url, rules_name)
    cpu = _cpu_times()
    done = run_command(
        [sys.executable, "-m", "benchmarks.book_ceiling", url, "--rules", rules_name,
         "--formulation", formulation, "--procs", str(PROCS), "--chunk", str(BATCH)]
    )  # fmt: skip
    quiet["machine_busy"] = _busy_during(cpu)
    inside = json.loads(done.stdout.strip().splitlines()[-1])
    verify(url, victims, rules=rules_name)
    return Measurement.verified_run(
        f"ceiling-{formulation}-{rules_name}",
        PROCS,
        BATCH,
        n,
        inside["written"],
        done.seconds,
        rnd,
        extra={
            "build_seconds": inside["build_seconds"],
            "value_seconds": inside["value_seconds"],
            **quiet,
        },
    )


def measure_build(url: str, n: int, rules_name: str, rnd: int) -> Measurement:
    """The engine's job build alone: book.build_for_job as `run` calls it, on an empty book."""
    quiet = _prepare(url, rules_name)
    condition, params = job_condition()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone TO 'UTC'")
        started = time.monotonic()
        built = book.build_for_job(conn, rules_name, "sell", condition, params)
        seconds = time.monotonic() - started
    # Not a valuation: rate is killmails covered per second of building.
    return Measurement(
        f"build-{rules_name}",
        1,
        None,
        n,
        0,
        seconds,
        n / seconds,
        False,
        rnd,
        extra={"book_rows": built, **quiet},
    )


def _say(m: Measurement) -> None:
    if m.name.startswith("build-"):
        print(
            f"  {m.name:<28} {m.extra['book_rows']:>8,} book rows in {m.seconds:7.2f} s", flush=True
        )
        return
    rss = f", peak RSS {m.peak_rss_mb:.0f} MB" if m.peak_rss_mb else ""
    rss += f", load {m.extra['load']:.1f}"
    phases = ""
    if "build_seconds" in m.extra:
        build, value = m.extra["build_seconds"], m.extra["value_seconds"]
        phases = f" (build {build:.2f} s, value {value:.2f} s)"
    print(
        f"  {m.name:<28} {m.written:>8,} in {m.seconds:7.2f} s = {m.rate:>8,.0f}/s{rss}{phases}"
        "  verified",
        flush=True,
    )


def _runs(results: list[Measurement], name: str) -> list[Measurement]:
    return [m for m in results if m.name == name]


def _median(results: list[Measurement], name: str, what=lambda m: m.rate) -> float:
    return statistics.median(what(m) for m in _runs(results, name))


def _range(results: list[Measurement], name: str) -> list[float]:
    rates = [m.rate for m in _runs(results, name)]
    return [min(rates), max(rates)]


def summarize(results: list[Measurement]) -> dict:
    """Medians, ratios and targets, by rule set."""
    loads = [m.extra["load"] for m in results if "load" in m.extra]
    out: dict = {"rules": {}, "targets": [], "load": [min(loads), max(loads)] if loads else None}
    before = [m.extra["busy_before"] for m in results if "busy_before" in m.extra]
    if before:
        waited = sum(m.extra["waited_seconds"] for m in results if "waited_seconds" in m.extra)
        out["busy_before"] = [min(before), max(before)]
        out["waited_seconds"] = waited
    for r in RULE_SETS:
        ceilings = {
            f: {
                "rate": _median(results, f"ceiling-{f}-{r}"),
                "seconds": _median(results, f"ceiling-{f}-{r}", lambda m: m.seconds),
                "build_seconds": _median(
                    results, f"ceiling-{f}-{r}", lambda m: m.extra["build_seconds"]
                ),
                "value_seconds": _median(
                    results, f"ceiling-{f}-{r}", lambda m: m.extra["value_seconds"]
                ),
                "range": _range(results, f"ceiling-{f}-{r}"),
                "runs": len(_runs(results, f"ceiling-{f}-{r}")),
            }
            for f in FOR_RULES[r]
        }
        best = max(ceilings, key=lambda f: ceilings[f]["rate"])
        engines = {}
        for e in ENGINES:
            name = f"run-{e}-{r}"
            engines[e] = {
                "rate": _median(results, name),
                "seconds": _median(results, name, lambda m: m.seconds),
                "worker_peak_rss_mb": max(m.peak_rss_mb or 0 for m in _runs(results, name)),
                "command_peak_rss_mb": max(
                    m.extra.get("command_peak_rss_mb") or 0 for m in _runs(results, name)
                ),
                "range": _range(results, name),
                "runs": len(_runs(results, name)),
            }
        out["rules"][r] = {
            "ceilings": ceilings,
            "best_ceiling": best,
            "engines": engines,
            "build_seconds": _median(results, f"build-{r}", lambda m: m.seconds),
            "book_rows": _median(results, f"build-{r}", lambda m: m.extra["book_rows"]),
        }
    for r in RULE_SETS:
        info = out["rules"][r]
        ceiling = info["ceilings"][info["best_ceiling"]]["rate"]
        for e in ENGINES:
            rate = info["engines"][e]["rate"]
            info["engines"][e]["x_ceiling"] = rate / ceiling
            info["engines"][e]["x_seed"] = rate / out["rules"]["seed"]["engines"][e]["rate"]
            if r != "seed":
                out["targets"].append(
                    _target(
                        f"{r}, {e} engine: run / run --rules seed",
                        info["engines"][e]["x_seed"],
                        ">=",
                        RULES_TARGET,
                    )
                )
            out["targets"].append(
                _target(
                    f"{r}, {e} engine: run / its pure-SQL book ceiling",
                    info["engines"][e]["x_ceiling"],
                    ">=",
                    CEILING_TARGET,
                )
            )
        worst = max(
            max(v["worker_peak_rss_mb"], v["command_peak_rss_mb"]) for v in info["engines"].values()
        )
        out["targets"].append(
            _target(f"{r}: peak RSS of any process of run, MB", worst, "<", RSS_LIMIT_MB)
        )
    return out


def _target(what: str, measured: float, op: str, wanted: float) -> dict:
    met = measured >= wanted if op == ">=" else measured < wanted
    return {"target": what, "measured": measured, "wanted": f"{op} {wanted}", "met": met}


def markdown(payload: dict) -> str:
    """The report of a run (book.json's content)."""
    summary, n, days = payload["summary"], payload["killmails"], payload["days"]
    lines = [
        f"Measured {payload['measured']} with `{payload['command']}`",
        f"({payload['minutes']:.0f} minutes); {n:,} killmails over {days} days"
        f" (demo-data --days, about {n // days:,} a day); medians of {payload['rounds']}"
        " round(s) of",
        "whole commands timed from start to exit, 2 processes, batches / chunks of 500,",
        "the book of the rule set emptied before each, so every figure includes its build;",
        "every run and every ceiling checked, all rows, against its rule set's reference.",
    ]
    if payload.get("code"):
        lines.append(f"Engine code measured: {payload['code']}.")
    if summary["load"]:
        low, high = summary["load"]
        lines.append(
            f"The machine's load average (1 min) after each measurement: {low:.1f} to {high:.1f}"
            f" on {payload['cpus']} CPUs."
        )
    if summary.get("busy_before"):
        low, high = summary["busy_before"]
        lines.append(
            f"With --wait-idle, the machine's CPU was {low:.0%} to {high:.0%} busy in the 3 s"
            f" before each measurement ({summary['waited_seconds']:.0f} s waited in all)."
        )
    lines += [
        "",
        "| rule set | what | killmails/s | range over rounds | seconds | × seed, same engine"
        " | × best ceiling | worker peak RSS MB | build s | value s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in RULE_SETS:
        info = summary["rules"][r]
        best_rate = info["ceilings"][info["best_ceiling"]]["rate"]
        for f, c in info["ceilings"].items():
            mark = " (best)" if f == info["best_ceiling"] else ""
            lines.append(
                f"| {r} | ceiling `{f}`{mark} | {c['rate']:,.0f} | {_span(c)} | {c['seconds']:.1f}"
                " | - |"
                f" {c['rate'] / best_rate:.2f} | - | {c['build_seconds']:.1f}"
                f" | {c['value_seconds']:.1f} |"
            )
        for e, v in info["engines"].items():
            lines.append(
                f"| {r} | `run --engine {e}` | {v['rate']:,.0f} | {_span(v)} | {v['seconds']:.1f} |"
                f" {v['x_seed']:.2f} | {v['x_ceiling']:.2f} | {v['worker_peak_rss_mb']:.0f}"
                f" | {info['build_seconds']:.1f}¹ | - |"
            )
    lines += [
        "",
        "¹ The engine's build alone: `book.build_for_job` timed in the benchmark's own",
        "process on the same data with the book emptied, as `run` calls it before its first",
        "batch (the run prints no phase times). Book rows built: "
        + ", ".join(f"{r} {summary['rules'][r]['book_rows']:,.0f}" for r in RULE_SETS)
        + ". The ceilings' build and value seconds are measured inside their processes.",
        "",
        "| target (issue 26) | measured | wanted | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for t in summary["targets"]:
        shown = f"{t['measured']:.0f}" if t["target"].endswith("MB") else f"{t['measured']:.3f}"
        lines.append(f"| {t['target']} | {shown} | {t['wanted']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def code_version() -> str:
    """Which engine was measured: the commit of the checkout (or snapshot) bulk is
    imported from, and whether bulk/ or sql/ held changes not committed."""
    root = Path(bulk.__file__).resolve().parents[1]
    if (root / "COMMIT").exists():  # a snapshot made with `git archive` (README)
        return f"{(root / 'COMMIT').read_text().strip()} (a snapshot at {root})"
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "bulk", "sql"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"unknown ({root})"
    return commit + (" with changes not committed in bulk/ or sql/" if dirty else "")


def _span(row: dict) -> str:
    low, high = row["range"]
    return f"{low:,.0f}–{high:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.book", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="30,000 killmails over 6 days, 1 round (a smoke run)"
    )
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        help="measure this database instead of building one (it must hold demo-data's"
        " killmails and history, and the book's table)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--wait-idle",
        type=float,
        metavar="BUSY",
        help="before each measurement, wait (up to 10 minutes) until at most this fraction"
        " of the machine's CPU is busy over 3 s, e.g. 0.15 (a shared machine)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="measure nothing: write book.md again from a book.json (its results, its command)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the measurements of a stopped run of this command (DIR/book.partial.json)",
    )
    args = parser.parse_args(argv)
    if args.report:
        payload = json.loads(args.report.read_text())
        results = [Measurement(**m) for m in payload["results"]]
        payload["summary"] = summarize(results)
        return _write(payload, args.out)
    QUIET["max_busy"] = args.wait_idle
    code = code_version()
    print(f"engine code: {code}", flush=True)
    if args.quick:
        args.killmails, args.days, args.rounds = QUICK["killmails"], QUICK["days"], QUICK["rounds"]
    started = time.monotonic()
    if args.database_url:
        url = args.database_url
        with psycopg.connect(url) as conn:
            (n,) = conn.execute("SELECT count(*) FROM killmails").fetchone()
            (first, last) = conn.execute(
                "SELECT min(killmail_time)::date, max(killmail_time)::date FROM killmails"
            ).fetchone()
        args.killmails, args.days = n, (last - first).days + 1
        print(
            f"measuring {conninfo_to_dict(url).get('dbname')}: {n:,} killmails over"
            f" {args.days} days",
            flush=True,
        )
    else:
        url = database_for(server_url(), args.killmails, args.days, print)
    n = args.killmails
    _, victims = _facts(url)
    for r in RULE_SETS:
        print(f"reference of {r} (once per database)", flush=True)
        t = time.monotonic()
        reference_table(url, r)
        print(f"  {time.monotonic() - t:.1f} s", flush=True)
    print(
        f"killmails {n:,} (victims {victims:,}); rounds {args.rounds}; cpus {os.cpu_count()}"
        f"; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.book", *given])
    partial = args.out / "book.partial.json"
    results: list[Measurement] = []
    earlier_minutes = 0.0
    if args.resume:
        # The same command stopped part way (a shared machine's clean-ups kill
        # long jobs): keep its measurements, measure only the rest.
        before = json.loads(partial.read_text())
        if before["code"] != code or before["killmails"] != n or before["days"] != args.days:
            parser.error(f"{partial} measured other code or data: {before['code']}")
        results = [Measurement(**m) for m in before["results"]]
        earlier_minutes = before["minutes"]
        command = before["command"]
        print(f"resuming: {len(results)} measurements kept from {partial}", flush=True)
    done = {(m.round, m.name) for m in results}

    def payload() -> dict:
        return {
            "command": command,
            "measured": now_iso(),
            "code": code,
            "killmails": n,
            "days": args.days,
            "rounds": args.rounds,
            "minutes": earlier_minutes + (time.monotonic() - started) / 60,
            "cpus": os.cpu_count(),
            "results": as_dicts(results),
        }

    def keep(m: Measurement) -> None:
        m.extra["load"] = os.getloadavg()[0]
        results.append(m)
        _say(m)
        args.out.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(payload(), indent=2, default=str) + "\n")

    try:
        for rnd in range(1, args.rounds + 1):
            print(f"round {rnd} of {args.rounds}", flush=True)
            for r in RULE_SETS:
                steps = [(measure_ceiling, f"ceiling-{f}-{r}", f) for f in FOR_RULES[r]]
                steps += [(measure_run, f"run-{e}-{r}", e) for e in ENGINES]
                for measure, name, how in steps:
                    if (rnd, name) not in done:
                        keep(measure(url, n, victims, r, how, rnd))
                if (rnd, f"build-{r}") not in done:
                    keep(measure_build(url, n, r, rnd))
            print(f"  load {os.getloadavg()[0]:.1f}", flush=True)
    except VerificationFailed as exc:
        print(f"benchmarks.book: a measured run wrote wrong values: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or "").splitlines()[-15:])
        print(
            f"benchmarks.book: {' '.join(exc.cmd)} failed (exit {exc.returncode}):\n{tail}",
            file=sys.stderr,
        )
        return 1
    final = payload()
    final["summary"] = summarize(results)
    status = _write(final, args.out)
    partial.unlink(missing_ok=True)
    return status


def _write(payload: dict, out: Path) -> int:
    """book.md and book.json in `out`; the report printed, and the targets missed."""
    text = markdown(payload)
    out.mkdir(parents=True, exist_ok=True)
    (out / "book.md").write_text(text)
    (out / "book.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(text)
    missed = [t["target"] for t in payload["summary"]["targets"] if not t["met"]]
    if missed:
        print("targets not met: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
