"""The suite's results as ratios and targets: a JSON file, a markdown table and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

from benchmarks.suite import Measurement, as_dicts, median_rate, now_iso

TARGETS = (
    # (name, ratio key, at least)
    ("run --procs 2 (batch 500) / 2-process chunked SQL ceiling", "run_vs_ceiling", 0.8),
    ("work --procs 2 / run --procs 2", "work_vs_run", 0.9),
    ("run --procs 2 / baseline with 5 processes", "run_vs_baseline5", 25.0),
    ("work --procs 2 / baseline with 5 processes", "work_vs_baseline5", 25.0),
    ("larger database / smaller database, run --procs 2", "scaling", 0.85),
)


def ratios(results: list[Measurement], n: int, small_n: int) -> dict:
    run2 = median_rate(results, "run", 2, 500, n)
    work2 = median_rate(results, "work", 2, 500, n)
    ceiling2 = median_rate(results, "ceiling-chunked", 2, 500, n)
    base5 = median_rate(results, "baseline", 5, n=n)
    small = median_rate(results, "run", 2, 500, small_n)
    return {
        "run_vs_ceiling": run2 / ceiling2,
        "work_vs_run": work2 / run2,
        "run_vs_baseline5": run2 / base5,
        "work_vs_baseline5": work2 / base5,
        "scaling": run2 / small,
    }


def peak_rss(results: list[Measurement]) -> dict[int, float]:
    """The largest worker RSS seen at each batch size of `run`."""
    peaks: dict[int, float] = {}
    for m in results:
        if m.name == "run" and m.peak_rss_mb is not None:
            peaks[m.batch_size] = max(m.peak_rss_mb, peaks.get(m.batch_size, 0.0))
    return dict(sorted(peaks.items()))


def write(results, out: Path, *, command: str, n: int, small_n: int, rounds: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    r = ratios(results, n, small_n)
    rss = peak_rss(results)
    checks = [
        {"target": name, "ratio": r[key], "at_least": floor, "met": r[key] >= floor}
        for name, key, floor in TARGETS
    ]
    checks.append(
        {
            "target": "peak RSS of a worker at batch 500, MB",
            "ratio": rss.get(500),
            "at_most": 100,
            "met": rss.get(500) is not None and rss[500] < 100,
        }
    )
    data = {
        "command": command,
        "when": now_iso(),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "killmails": n,
        "small_killmails": small_n,
        "rounds": rounds,
        "ratios": r,
        "targets": checks,
        "peak_rss_mb_by_batch": rss,
        "every_run_verified_against_reference": all(m.verified for m in results),
        "measurements": as_dicts(results),
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "results.md").write_text(markdown(data, results))
    try:
        plot(results, n, out / "throughput.png")
    except ImportError:
        pass  # matplotlib is the bench extra; the JSON and markdown stand alone
    return data


def _cpus() -> int:
    return os.cpu_count() or 0


def _median_row(results, name, procs, batch, n) -> tuple[float, int]:
    rates = [
        m.rate
        for m in results
        if m.name == name and m.procs == procs and m.batch_size == batch and m.killmails == n
    ]
    return statistics.median(rates), len(rates)


def markdown(data: dict, results: list[Measurement]) -> str:
    n, small_n = data["killmails"], data["small_killmails"]
    base5 = median_rate(results, "baseline", 5, n=n)
    rows = []
    seen = set()
    for m in results:
        key = (m.name, m.procs, m.batch_size, m.killmails)
        if key in seen:
            continue
        seen.add(key)
        rate, count = _median_row(results, *key)
        rss = [
            x.peak_rss_mb
            for x in results
            if (x.name, x.procs, x.batch_size, x.killmails) == key and x.peak_rss_mb
        ]
        peak = f"{max(rss):.0f}" if rss else "-"
        rows.append(
            f"| {m.name} | {m.killmails:,} | {m.procs} | {m.batch_size or '-'} | {rate:,.0f} |"
            f" {rate / base5:,.1f}× | {count} | {peak} |"
        )
    lines = [
        f"Measured {data['when']} on {data['machine']['cpus']} CPUs with `{data['command']}`;"
        f" {n:,} killmails (scaling: {small_n:,}), {data['rounds']} rounds; rates are medians.",
        "",
        "| what | killmails | procs | batch | killmails/s | × baseline (5 procs) | runs |"
        " peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "| target | measured | wanted | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for check in data["targets"]:
        wanted = f">= {check['at_least']}" if "at_least" in check else f"< {check['at_most']}"
        measured = "-" if check["ratio"] is None else f"{check['ratio']:.2f}"
        lines.append(
            f"| {check['target']} | {measured} | {wanted} | {'yes' if check['met'] else 'NO'} |"
        )
    verified = "yes" if data["every_run_verified_against_reference"] else "NO"
    lines += ["", f"Every measured run's values equal the SQL reference: {verified}.", ""]
    return "\n".join(lines)


def plot(results: list[Measurement], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("run", "o-"), ("work", "s-")):
        procs = sorted(
            {
                m.procs
                for m in results
                if m.name == name and m.batch_size == 500 and m.killmails == n
            }
        )
        rates = [median_rate(results, name, p, 500, n) for p in procs]
        ax.plot(procs, rates, style, label=f"{name} (batch 500)")
    ceiling2 = median_rate(results, "ceiling-chunked", 2, 500, n)
    ax.axhline(ceiling2, color="green", linestyle="--", label="SQL ceiling, 2 procs, chunks of 500")
    for procs, style in ((1, ":"), (5, "-.")):
        rate = median_rate(results, "baseline", procs, n=n)
        ax.axhline(
            rate, color="red", linestyle=style, label=f"baseline, {procs} procs ({rate:,.0f}/s)"
        )
    ax.set_xlabel("processes")
    ax.set_ylabel("killmails written per second")
    ax.set_xticks([1, 2, 4])
    ax.set_ylim(bottom=0)
    ax.set_title(f"bulk-backfill throughput, {n:,} killmails")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
