"""python -m benchmarks [--quick | --killmails N] [--rounds R] [--out DIR]

Builds (once) generated databases with demo-data, then measures the
per-killmail baseline, the pure-SQL ceiling, run, queue + work, worker RSS
and scaling, all in one run on the same data, and writes results.json,
results.md and throughput.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks import report, server_url
from benchmarks.suite import Suite, SuiteConfig, VerificationFailed, as_dicts

DEFAULT_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[2]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="50,000 killmails, a few minutes")
    size.add_argument(
        "--killmails", type=int, default=300_000, help="database size (default 300,000)"
    )
    parser.add_argument(
        "--rounds", type=int, help="repeats of the headline comparisons (3; quick 2)"
    )
    parser.add_argument("--baseline-sample", type=int, help="killmails the baseline values")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is not met")
    parser.add_argument(
        "--scale",
        help="instead: run and queue + work for both engines at these sizes, e.g."
        " 60000,300000,1000000 (results in scale.md and scale.json)",
    )
    args = parser.parse_args(argv)

    killmails = 50_000 if args.quick else args.killmails
    if killmails < 5_000:
        parser.error("--killmails must be at least 5,000 (the scaling run uses a fifth of it)")
    rounds = args.rounds or (2 if args.quick else 3)
    config = SuiteConfig(
        server_url=server_url(),
        killmails=killmails,
        rounds=rounds,
        baseline_sample=args.baseline_sample or (4_000 if args.quick else 10_000),
        rabbitmq_url=os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ),
        say=lambda text: print(text, flush=True),
    )
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    suite = Suite(config)
    if args.scale:
        return _scale(suite, [int(x) for x in args.scale.split(",")], args.out, command.strip())
    try:
        suite.measure_all()
    except VerificationFailed as exc:
        print(f"benchmarks: a measured run wrote wrong values: {exc}", file=sys.stderr)
        return 1
    data = report.write(
        suite.results,
        args.out,
        command=command.strip(),
        n=killmails,
        small_n=suite.small_n,
        rounds=rounds,
    )
    print((args.out / "results.md").read_text())
    print(
        f"written: {args.out / 'results.json'}, {args.out / 'results.md'}, "
        f"{args.out / 'throughput.png'}"
    )
    unmet = [c["target"] for c in data["targets"] if not c["met"]]
    if unmet:
        print(f"targets not met: {'; '.join(unmet)}")
    return 2 if unmet and args.strict else 0


def _scale(suite: Suite, sizes: list[int], out: Path, command: str) -> int:
    try:
        suite.measure_scale(sizes)
    except VerificationFailed as exc:
        print(f"benchmarks: a measured run wrote wrong values: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    text = report.scale_markdown(suite.results, command)
    (out / "scale.md").write_text(text)
    (out / "scale.json").write_text(json.dumps(as_dicts(suite.results), indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
