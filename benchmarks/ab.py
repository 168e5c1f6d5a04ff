"""Two installs, the same job, alternately: has a change cost throughput?

    python -m benchmarks.ab --old /tmp/pre/.venv/bin/bulk-backfill --killmails 300000

`run --mode all --procs 2 --engine E` of this tree (or `--new`) and of another
install (`--old`, built from the commit before the change as benchmarks/README.md
says), on one generated database (built once as bulk_backfill_stamps_<N>, shared
with benchmarks.stamps), one warm-up round of each and then `--rounds` rounds,
the tables vacuumed before every run. The result is the ratio of the medians,
new over old, per engine: both sides ran in the same minutes on the same data.

    python -m benchmarks.ab --old /tmp/pre/.venv/bin/bulk-backfill --stale --rounds 8

`--stale` times a stale job instead: before each `run --mode stale` a price import
moves the types benchmarks.stamps picks (10% of the killmails hold one) by x1.5,
then back by /1.5 before the next (prices never compound); then `run --mode all`.
Each install's stale and all seconds, as medians, and its stale/all ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.stamps import (
    NEW,
    RESULTS,
    SERVER,
    _q,
    import_prices,
    pick_types,
    rate_of,
    stamps_database,
    timed,
    vacuum,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="bulk-backfill of the install to compare")
    parser.add_argument("--new", default=NEW, help="bulk-backfill of this tree (default)")
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--stale", action="store_true", help="time stale jobs (see above)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    url = stamps_database(args.server, args.killmails)
    if args.stale:
        return stale_ab(args, url)
    rates: dict[str, list[float]] = {}
    for rnd in range(-1, args.rounds):
        for engine in ("numpy", "sql"):
            for which, binary in (("old", args.old), ("new", args.new)):
                vacuum(url)
                argv_ = [binary, "run", "--mode", "all", "--procs", "2", "--engine", engine]
                rate = rate_of(timed(argv_, url)[1])
                print(f"round {rnd} {engine:5} {which} {rate:>9,.0f} killmails/s", flush=True)
                if rnd >= 0:  # the warm-up round is left out (benchmarks.stamps says why)
                    rates.setdefault(f"{engine}-{which}", []).append(rate)
    summary = {
        engine: {
            "old": statistics.median(rates[f"{engine}-old"]),
            "new": statistics.median(rates[f"{engine}-new"]),
            "ratio": statistics.median(rates[f"{engine}-new"])
            / statistics.median(rates[f"{engine}-old"]),
        }
        for engine in ("numpy", "sql")
    }
    result = {"killmails": args.killmails, "rounds": args.rounds, "old": args.old, "rates": rates}
    out = args.out or RESULTS / "ab.json"
    out.write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def stale_ab(args, url: str) -> int:
    # pick_types counts valued killmails: on a database built a moment ago that
    # is none, and it would pick every type.
    timed([args.new, "run", "--mode", "all", "--procs", "2"], url)
    chosen = pick_types(url, 0.10)
    tmp = Path("/tmp") / f"bench_ab_stale_{args.killmails}.csv"
    moves = 0

    def move() -> None:
        nonlocal moves
        factor = 1.5 if moves % 2 == 0 else 1 / 1.5
        moves += 1
        now = dict(
            _q(url, "SELECT type_id, sell FROM market_prices WHERE type_id = ANY(%s)", [chosen])
        )
        import_prices(url, {t: round(float(now[t]) * factor, 2) for t in chosen}, tmp)

    pairs = (("old", args.old), ("new", args.new))
    seconds: dict[str, list[float]] = {}
    for rnd in range(-1, args.rounds):
        for mode in ("stale", "all"):
            # Each round starts with the other install, so neither always runs second.
            for which, binary in pairs if rnd % 2 == 0 else pairs[::-1]:
                if mode == "stale":
                    move()
                vacuum(url)
                took, _ = timed([binary, "run", "--mode", mode, "--procs", "2"], url)
                print(f"round {rnd} {mode:5} {which} {took:.2f} s", flush=True)
                if rnd >= 0:
                    seconds.setdefault(f"{mode}-{which}", []).append(took)
    summary = {}
    for which, _ in pairs:
        stale_s = statistics.median(seconds[f"stale-{which}"])
        all_s = statistics.median(seconds[f"all-{which}"])
        summary[which] = {"stale": stale_s, "all": all_s, "ratio": stale_s / all_s}
    result = {"killmails": args.killmails, "rounds": args.rounds, "old": args.old}
    out = args.out or RESULTS / "ab_stale.json"
    out.write_text(json.dumps({**result, "seconds": seconds, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
