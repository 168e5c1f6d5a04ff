"""Two installs, the same job, alternately: has a change cost throughput?

    python -m benchmarks.ab --old /tmp/pre/.venv/bin/bulk-backfill --killmails 300000

`run --mode all --procs 2 --engine E` of this tree (or `--new`) and of another
install (`--old`, built from the commit before the change as benchmarks/README.md
says), on one generated database (built once as bulk_backfill_stamps_<N>, shared
with benchmarks.stamps), one warm-up round of each and then `--rounds` rounds,
the tables vacuumed before every run. The result is the ratio of the medians,
new over old, per engine: both sides ran in the same minutes on the same data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.stamps import NEW, RESULTS, SERVER, rate_of, timed, vacuum
from benchmarks.suite import database_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="bulk-backfill of the install to compare")
    parser.add_argument("--new", default=NEW, help="bulk-backfill of this tree (default)")
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--out", type=Path, default=RESULTS / "ab.json")
    args = parser.parse_args(argv)
    url = database_for(
        args.server, args.killmails, print, prefix="bulk_backfill_stamps", history=False
    )
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
    args.out.write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
