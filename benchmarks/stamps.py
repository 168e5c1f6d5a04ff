"""Valuation stamps (issue 27): what stamping costs, and what `--mode stale` saves.

    python -m benchmarks.stamps --old /tmp/old/.venv/bin/bulk-backfill --killmails 300000

Three measurements, on one generated database (seed rules, `demo-data --killmails N
--no-history`, built once as bulk_backfill_stamps_<N> and reused), in one run:

1. **Stamping's cost.** `run --mode all --procs 2 --engine E` of this tree against
   the same command of the install before stamps (`--old`, built from fa4fbf3 as
   benchmarks/README.md says), alternately, on the same database: the ratio of
   their rates. Before each run killmails and the stamps are vacuumed. A warm-up
   round of each comes first and is left out of the ratios.
2. **A stale job after a price import.** Types priced above 100 ISK, rarest first,
   until 10% of the killmails hold one; a `prices import` of a CSV that moves their
   sell price; then `run --mode stale` and `run --mode all`, timed. The killmails
   rewritten (stamps newer than the job's start) must be exactly those that hold
   one of the types (SQL of this file's own), and every value must equal the
   reference; the ratio is stale's seconds over all's.
3. **The daily refresh.** An import that moves those types by 2% and every other
   price by 0.5%, then `run --mode stale --min-change 1%`: exactly the same
   killmails are rewritten (checked), and its seconds are against `--mode all`'s.

Also the stale search alone (bulk.engine.stale.find), with and without the
index on killmail_items (item_type_id) that killreport has.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.command import run_command
from benchmarks.suite import database_for
from bulk import db
from bulk.audit import reference
from bulk.engine import scan, stale

SERVER = "postgresql://postgres@127.0.0.1:5432"
NEW = str(Path(sys.prefix) / "bin" / "bulk-backfill")
RESULTS = Path(__file__).resolve().parent / "results"


def stamps_database(server: str, killmails: int) -> str:
    """The database the stamp benchmarks share: bulk_backfill_stamps_<N>, built once."""
    return database_for(server, killmails, print, prefix="bulk_backfill_stamps", history=False)


def _q(url: str, query, params=None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) killmails")
        conn.execute(f"VACUUM (ANALYZE) {db.STAMPS_TABLE}")
        conn.execute("CHECKPOINT")


def timed(argv: list[str], url: str) -> tuple[float, str]:
    run = run_command(argv + ["--database-url", url])
    if "error" in run.stderr:
        raise SystemExit(f"{' '.join(argv)} failed: {run.stderr.strip()[-400:]}")
    return run.seconds, run.stdout


def rate_of(stdout: str) -> float:
    for line in stdout.splitlines():
        if line.startswith("elapsed"):
            return float(line.split("(")[1].split()[0].replace(",", ""))
    raise ValueError(f"no rate in {stdout!r}")


def holders(url: str, types: list[int]) -> set[int]:
    """Valued killmails with a victim that hold one of `types` as ship or item."""
    rows = _q(
        url,
        "SELECT k.killmail_id FROM killmails AS k"
        " JOIN victims AS v ON v.killmail_id = k.killmail_id"
        " WHERE k.total_value IS NOT NULL AND (v.ship_type_id = ANY(%(t)s)"
        "   OR k.killmail_id IN (SELECT i.killmail_id FROM killmail_items AS i"
        "                        WHERE i.item_type_id = ANY(%(t)s)))",
        {"t": types},
    )
    return {r[0] for r in rows}


def pick_types(url: str, share: float) -> list[int]:
    """Types priced above 100 ISK, rarest first, until `share` of the killmails hold one."""
    counts = _q(
        url,
        "SELECT u.type_id, count(DISTINCT u.killmail_id) FROM ("
        "  SELECT killmail_id, item_type_id AS type_id FROM killmail_items"
        "  UNION ALL SELECT killmail_id, ship_type_id FROM victims) AS u"
        " JOIN market_prices AS m ON m.type_id = u.type_id AND m.sell > 100"
        " WHERE u.type_id <> 670 GROUP BY 1 ORDER BY 2, 1",
    )
    (total,) = _q(url, "SELECT count(*) FROM killmails")[0]
    chosen, reach = [], 0
    for type_id, n in counts:
        chosen.append(type_id)
        reach += n
        if reach >= share * total * 1.05:  # overlaps: checked exactly below
            got = len(holders(url, chosen))
            if got >= share * total:
                break
            reach = got
    return chosen


def import_prices(url: str, prices: dict[int, float], tmp: Path) -> None:
    tmp.write_text("type_id,sell\n" + "".join(f"{t},{p:.2f}\n" for t, p in prices.items()))
    timed([NEW, "prices", "import", str(tmp)], url)


def rewritten_since(url: str, moment) -> set[int]:
    rows = _q(url, f"SELECT killmail_id FROM {db.STAMPS_TABLE} WHERE valued_at > %s", [moment])
    return {r[0] for r in rows}


def now(url: str):
    return _q(url, "SELECT clock_timestamp()")[0][0]


def check_values(url: str, ids: set[int]) -> None:
    with psycopg.connect(url) as conn:
        wrong = reference.mismatches(conn, sorted(ids), "sell")
    if wrong:
        raise SystemExit(f"{len(wrong)} values differ from the reference: {wrong[:3]}")


def check_set(what: str, got: set[int], expected: set[int]) -> None:
    if got != expected:
        raise SystemExit(
            f"{what}: rewrote {len(got)} killmails, expected {len(expected)}"
            f" ({len(got - expected)} extra, {len(expected - got)} missing)"
        )


def search_seconds(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        stale.find(conn, "seed", "sell", scan.Selection(mode="stale"))
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killmails", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old", required=True, help="bulk-backfill of the install before stamps")
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--out", type=Path, default=RESULTS / "stamps.json")
    args = parser.parse_args(argv)
    url = stamps_database(args.server, args.killmails)
    tmp = Path("/tmp") / f"bench_stamps_{args.killmails}.csv"
    results: dict = {"killmails": args.killmails, "rounds": args.rounds, "runs": []}

    # 1. stamping's cost: the same command of both installs, alternately, after a
    # warm-up round that is reported but left out of the ratios. The first jobs on
    # a freshly loaded database do more than any later one: the killmails' first
    # rewrite cannot be HOT at their fillfactor of 100, and whichever install ran
    # first paid for it (round 0 of an earlier run of this benchmark).
    for rnd in range(-1, args.rounds):
        for engine in ("numpy", "sql"):
            for which, binary in (("before", args.old), ("stamps", NEW)):
                vacuum(url)
                argv_ = [binary, "run", "--mode", "all", "--procs", "2", "--engine", engine]
                seconds, out = timed(argv_, url)
                rate = rate_of(out)
                results["runs"].append(
                    {
                        "what": f"all-{which}-{engine}" + ("-warmup" if rnd < 0 else ""),
                        "round": rnd,
                        "seconds": seconds,
                        "rate": rate,
                    }
                )
                print(f"round {rnd} {engine:5} {which:6} {rate:>9,.0f} killmails/s", flush=True)
    # The stamps of the old install's writes are missing: value everything once.
    timed([NEW, "run", "--mode", "all", "--procs", "2"], url)

    # 2. and 3. stale jobs after price imports.
    chosen = pick_types(url, 0.10)
    expected = holders(url, chosen)
    (total,) = _q(url, "SELECT count(*) FROM killmails")[0]
    results["chosen_types"], results["touched"] = len(chosen), len(expected)
    print(f"{len(chosen)} types, held by {len(expected):,} of {total:,} killmails", flush=True)
    base = dict(_q(url, "SELECT type_id, sell FROM market_prices WHERE sell IS NOT NULL"))
    for rnd in range(args.rounds):
        factor = 1.5 if rnd % 2 == 0 else 1.0
        import_prices(url, {t: base[t] * factor for t in chosen}, tmp)
        vacuum(url)
        before = now(url)
        stale_s, _ = timed([NEW, "run", "--mode", "stale", "--procs", "2"], url)
        got = rewritten_since(url, before)
        check_set("stale", got, expected)
        check_values(url, got)
        vacuum(url)
        all_s, _ = timed([NEW, "run", "--mode", "all", "--procs", "2"], url)
        results["runs"] += [
            {"what": "stale", "round": rnd, "seconds": stale_s},
            {"what": "all", "round": rnd, "seconds": all_s},
        ]
        print(f"round {rnd} stale {stale_s:.2f} s, all {all_s:.2f} s", flush=True)

        # The daily refresh: the chosen types by 2%, every other price by 0.5%.
        moved = {t: p * (1.005 if rnd % 2 == 0 else 1.0) for t, p in base.items() if p >= 10}
        moved.update({t: base[t] * factor * 1.02 for t in chosen})
        import_prices(url, moved, tmp)
        vacuum(url)
        before = now(url)
        daily_s, _ = timed(
            [NEW, "run", "--mode", "stale", "--min-change", "1%", "--procs", "2"], url
        )
        check_set("stale --min-change 1%", rewritten_since(url, before), expected)
        results["runs"].append({"what": "stale-min-change", "round": rnd, "seconds": daily_s})
        print(f"round {rnd} stale --min-change 1% {daily_s:.2f} s", flush=True)
        # Back to every price moved: the next round starts from all values current.
        timed([NEW, "run", "--mode", "stale", "--procs", "2"], url)

    # The search alone, with the killboard's index on item types and without.
    with_index = statistics.median(search_seconds(url) for _ in range(3))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS killmail_items_item_type_id_idx"))
        conn.execute("ANALYZE killmail_items")
    try:
        # Something must be stale for the search to read the lines: move the prices.
        import_prices(url, {t: base[t] * 1.25 for t in chosen}, tmp)
        timed([NEW, "run", "--mode", "stale", "--limit", "1"], url)  # rebuild the book
        without = statistics.median(search_seconds(url) for _ in range(3))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE INDEX IF NOT EXISTS killmail_items_item_type_id_idx"
                " ON killmail_items (item_type_id)"
            )
        timed([NEW, "run", "--mode", "stale", "--procs", "2"], url)
    with_after = statistics.median(search_seconds(url) for _ in range(3))
    # The prices as they were found, and the values with them: else the moves
    # above compound from run to run on the same database (each run left the
    # chosen types at 1.25 times the prices it found, the others at up to 1.005).
    import_prices(url, base, tmp)
    timed([NEW, "run", "--mode", "stale", "--procs", "2"], url)
    results["search_seconds"] = {
        "with_index": with_index,
        "without_index": without,
        "with_index_nothing_stale": with_after,
    }
    results["summary"] = summarize(results["runs"])
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))
    print(json.dumps(results["search_seconds"], indent=2))
    return 0


def summarize(runs: list[dict]) -> dict:
    def med(what: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["what"] == what)

    def paired(num: str, den: str, key: str) -> list[float]:
        """num/den of each round that has both: the rounds' own ratios, which the
        machine's drift from round to round moves less than the medians apart."""
        by_round = {(r["what"], r["round"]): r[key] for r in runs if key in r}
        rounds = sorted({r["round"] for r in runs if r["what"] == num})
        return [by_round[(num, n)] / by_round[(den, n)] for n in rounds if (den, n) in by_round]

    out = {}
    for engine in ("numpy", "sql"):
        before, stamps = med(f"all-before-{engine}", "rate"), med(f"all-stamps-{engine}", "rate")
        rounds = paired(f"all-stamps-{engine}", f"all-before-{engine}", "rate")
        out[f"stamping_{engine}"] = {
            "before": before,
            "stamps": stamps,
            "ratio": stamps / before,
            "round_ratios": rounds,
            "median_round_ratio": statistics.median(rounds),
            "target": ">= 0.90",
        }
    stale_s, all_s, daily_s = (
        med("stale", "seconds"),
        med("all", "seconds"),
        med("stale-min-change", "seconds"),
    )
    rounds = paired("stale", "all", "seconds")
    out["stale"] = {
        "seconds": stale_s,
        "all_seconds": all_s,
        "ratio": stale_s / all_s,
        "round_ratios": rounds,
        "median_round_ratio": statistics.median(rounds),
        "target": "<= 0.30",
    }
    out["stale_min_change"] = {"seconds": daily_s, "ratio": daily_s / all_s}
    return out


if __name__ == "__main__":
    sys.exit(main())
