"""Each kill-date rule set against a pure-SQL ceiling that applies the same rules (issue 14).

    .venv/bin/python -m benchmarks.rules --killmails 20000 --rounds 3 [--out benchmarks/results]

On a generated database with demo-data's market history (three years of
daily averages for every type, so every kill date has prices) and overrides,
at demo-data's default spread (18 years), for each of evekill and zkillboard,
once per round and alternating:
- the price-book ceiling formulations of benchmarks/book_ceiling.py, 2 processes;
- `bulk-backfill run --rules R --procs 2 --engine E` for both engines.
Before each, the values are reset and R's rows are deleted from the price book,
so every figure includes building the book (benchmarks/book.py measures the
same at a killboard's density, with seed beside them). Every figure is a whole
command timed from start to exit; every run is checked, all rows, against the
independent reference of its rule set (sql/reference_<rules>.sql, computed
once into bench_reference_<rules>), and the peak RSS of each worker is read
from /proc. Writes rules.md and rules.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks import server_url
from benchmarks.book import measure_ceiling, measure_run
from benchmarks.book_ceiling import FOR_RULES
from benchmarks.suite import (
    Measurement,
    _facts,
    as_dicts,
    database_for,
    now_iso,
    reference_table,
)

RULE_SETS = ("evekill", "zkillboard")
ENGINES = ("numpy", "sql")
TARGET = 0.8  # run --procs 2 / the ceiling of the same rule set
RSS_LIMIT_MB = 100


def _ceiling(url: str, n: int, victims: int, rules: str, formulation: str, rnd: int):
    m = measure_ceiling(url, n, victims, rules, formulation, rnd)
    m.name = f"ceiling-{rules}-{formulation}"
    return m


def _run(url: str, n: int, victims: int, rules: str, engine: str, rnd: int):
    return measure_run(url, n, victims, rules, engine, rnd)


def _median(results: list[Measurement], name: str) -> float:
    return statistics.median(m.rate for m in results if m.name == name)


def report(results: list[Measurement], command: str, n: int) -> tuple[str, list[str]]:
    """The markdown report and the targets not met."""
    lines = [
        f"Measured {now_iso()} with `{command}`;",
        f"{n:,} killmails with three years of history; medians of whole commands timed",
        "from start to exit, 2 processes, batches / chunks of 500, the rule set's book",
        "emptied before each (its build inside the time), each run checked against its",
        "rule set's reference; ceilings: benchmarks/book_ceiling.py.",
        "",
        "| rule set | what | killmails/s | × its ceiling | runs | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    missed = []
    targets = ["", "| target (issue 14) | measured | wanted | met |", "| --- | ---: | ---: | --- |"]
    for rules in RULE_SETS:
        ceilings = {f: _median(results, f"ceiling-{rules}-{f}") for f in FOR_RULES[rules]}
        worst_rss = 0.0
        best = max(ceilings.values())
        for f, rate in ceilings.items():
            runs = sum(m.name == f"ceiling-{rules}-{f}" for m in results)
            lines.append(
                f"| {rules} | ceiling `{f}` | {rate:,.0f} | {rate / best:.2f} | {runs} | - |"
            )
        for engine in ENGINES:
            name = f"run-{engine}-{rules}"
            rate = _median(results, name)
            rss = max(m.peak_rss_mb or 0 for m in results if m.name == name)
            worst_rss = max(worst_rss, rss)
            runs = sum(m.name == name for m in results)
            lines.append(
                f"| {rules} | `run --engine {engine}` | {rate:,.0f} | {rate / best:.2f} | {runs}"
                f" | {rss:.0f} |"
            )
            met = rate / best >= TARGET
            targets.append(
                f"| {rules}, {engine} engine: run --procs 2 / ceiling | {rate / best:.2f}"
                f" | >= {TARGET} | {'yes' if met else 'NO'} |"
            )
            if not met:
                missed.append(f"{rules} {engine} {rate / best:.2f}")
        if worst_rss >= RSS_LIMIT_MB:
            missed.append(f"{rules} RSS {worst_rss:.0f} MB")
        targets.append(
            f"| {rules}: peak RSS of a worker, MB | {worst_rss:.0f} | < {RSS_LIMIT_MB} |"
            f" {'yes' if worst_rss < RSS_LIMIT_MB else 'NO'} |"
        )
    return "\n".join(lines + targets) + "\n", missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rules")
    parser.add_argument("--killmails", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    url = database_for(server_url(), args.killmails, print)
    _, victims = _facts(url)
    for rules in RULE_SETS:
        print(f"reference of {rules} (once per database)", flush=True)
        reference_table(url, rules)
    results: list[Measurement] = []
    for rnd in range(1, args.rounds + 1):
        print(f"round {rnd} of {args.rounds}", flush=True)
        for rules in RULE_SETS:
            steps = [(_ceiling, f) for f in FOR_RULES[rules]] + [(_run, e) for e in ENGINES]
            for measure, how in steps:
                m = measure(url, args.killmails, victims, rules, how, rnd)
                results.append(m)
                rss = f", peak RSS {m.peak_rss_mb:.0f} MB" if m.peak_rss_mb else ""
                print(
                    f"  {m.name:<28} {m.written:>8,} in {m.seconds:7.2f} s"
                    f" = {m.rate:>8,.0f}/s{rss}  verified",
                    flush=True,
                )
    command = "python -m benchmarks.rules " + " ".join(argv if argv is not None else sys.argv[1:])
    text, missed = report(results, command.strip(), args.killmails)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rules.md").write_text(text)
    (args.out / "rules.json").write_text(
        json.dumps({"command": command.strip(), "results": as_dicts(results)}, indent=2) + "\n"
    )
    print(text)
    if missed:
        print("targets not met: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
