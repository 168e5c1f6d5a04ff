"""What the CLI prints: summaries, tables and JSON of each command's result."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import click

from bulk.audit import reference
from bulk.engine import rules as rule_sets
from bulk.prices.market import MAX_PRICE
from bulk.queue import names

if TYPE_CHECKING:  # only named in annotations: status need not import run's engine
    from bulk import readiness
    from bulk.audit import status, verify
    from bulk.prices import fetch
    from bulk.queue import supervise
    from bulk.run import RunSummary


def queue_flag(queue: str) -> str:
    """--queue for a command line the user copies; quoted, since a name may hold spaces."""
    return "" if queue == names.DEFAULT_QUEUE else f" --queue {shlex.quote(queue)}"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith(("ch", "s")) else "s")


def resume_hint(command: str, after: int | None, done: str, dry_run: bool = False) -> str:
    """Where a stopped run or queue goes on: the last confirmed ID and the command."""
    if dry_run:
        return "count again with the same command"
    if after is None:
        return f"nothing was {done} for sure: {command} again with the same command"
    return (
        f"last confirmed killmail_id {after} (every match up to it is {done}): "
        f"resume with the same command and --after-id {after}"
    )


def sample(ids, n: int = 10, total: int | None = None) -> str:
    """The first `n` of `ids`, then how many more there are: of `total`, when `ids` is
    only a sample of them."""
    total = len(ids) if total is None else max(total, len(ids))
    shown = ", ".join(str(i) for i in ids[:n])
    more = total - min(n, len(ids))
    return shown + (f", ... ({more:,} more)" if more > 0 else "")


_REASON_LABELS = {
    "never_valued": "never valued",
    "no_stamp": "valued, no stamp",
    "other_rules": "other rules",
    "book_rebuilt": "book rebuilt",
    "now_priced": "now priced",
    "prices_changed": "prices changed",
}


def valuation_lines(v: status.ValuationStatus) -> list[str]:
    lines = ["valuations (stamps: the rules that valued each killmail)"]
    for key, count in v.by_rules.items():
        lines.append(f"  {key:<19} {count:>12,}  ({v.unpriced[key]:,} with an unpriced line)")
    if not v.by_rules:
        lines.append("  (no stamps yet)")
    lines.append(f"stale under {v.book} (run --mode stale revalues them)")
    for reason, count in v.stale.items():
        lines.append(f"  {_REASON_LABELS[reason]:<19} {count:>12,}")
    lines.append(f"  total               {v.stale_total:>12,}")
    if v.book_rows_pending:
        lines.append(
            f"  book rows pending   {v.book_rows_pending:>12,}  (a price change: the next job"
            " rebuilds them, and may find more killmails stale)"
        )
    return lines


def status_lines(result: status.Status) -> list[str]:
    est = set(result.estimates)
    d, p, q = result.database, result.prices, result.queue
    lines = []
    if q is not None and not q.exists:
        lines += [
            f"queue {q.name}",
            "  does not exist on this broker (status creates no queue)",
            f"  dead letters        {q.dead_letters:>12,}",
        ]
    elif q is not None:
        unacked = f"{q.unacked:,}" if q.unacked is not None else "?"
        lines += [
            f"queue {q.name}",
            f"  ready messages      {q.ready:>12,}",
            f"  unacked messages    {unacked:>12}  ({q.unacked_note})",
            f"  consumers           {q.consumers:>12,}",
            f"  killmails waiting   {q.killmails_waiting:>12,}  "
            + (
                "(exact: counted in the ready messages)"
                if q.killmails_waiting_exact
                else "(estimate: ready messages times the IDs in the first one)"
            ),
            f"  dead letters        {q.dead_letters:>12,}",
        ]
    share = "-" if p.priced_share is None else f"{p.priced_share:.1%}"
    sampled = "  (estimate: 2% sample of killmail_items)" if "prices.types_used" in est else ""
    lines += [
        "database",
        f"  killmails           {d.killmails:>12,}",
        f"  valued              {d.valued:>12,}",
        f"  NULL (not valued)   {d.null_value:>12,}",
        f"  zero                {d.zero_value:>12,}",
        f"  without a victim    {d.no_victim:>12,}  (never valued: nothing to value)",
        "prices",
        f"  rows                {p.rows:>12,}",
        f"  types in killmails  {p.types_used:>12,}{sampled}",
        f"  priced              {p.types_priced:>12,}  ({share} have {p.price_column} > 0)",
        f"  oldest update       {p.oldest_update or '-':>19}",
        f"  newest update       {p.newest_update or '-':>19}",
    ]
    if result.valuations is not None:
        lines += valuation_lines(result.valuations)
    if result.readiness is not None:
        lines += readiness_lines(result.readiness)
    lines += [f"warning: {w}" for w in result.warnings]
    return lines


def readiness_lines(r: readiness.Readiness) -> list[str]:
    """The readiness section of status: type data and price coverage of the used types."""
    source = f"prices from {r.price_column}" if r.price_column else "kill-date history"
    coverage = "-" if r.coverage is None else f"{r.coverage:.1%}"
    if r.price_column:
        others = "; ".join(f"{c} {n:,}" for c, n in r.by_column.items() if c != r.price_column)
        priced = (
            f"({coverage} have a usable {r.price_column} price{'; ' + others if others else ''})"
        )
    else:
        priced = f"({coverage} have history on or before the last kill date, or an override)"
    return [
        f"readiness (rules {r.rules}, {source})",
        f"  used types          {r.used_types:>12,}",
        f"  missing types       {len(r.missing_types):>12,}",
        f"  missing groups      {len(r.missing_groups):>12,}",
        f"  missing categories  {len(r.missing_categories):>12,}",
        f"  priced              {r.priced:>12,}  {priced}",
    ]


def verify_json(report: verify.VerifyReport) -> dict:
    return {
        "checked": report.checked,
        "mismatches": report.mismatch_count,
        "ok": report.ok,
        # A kill-date rule set reads the history, not a price column.
        "price_column": report.price_column if rule_sets.uses_price_column(report.rules) else None,
        "rules": report.rules,
        "by_stamps": report.by_stamps,
        "by_rules": report.by_rules,
        "unstamped": report.unstamped,
        "sample": None
        if report.sample_size is None
        else {"size": report.sample_size, "seed": report.seed, "digest": report.sample_digest},
        "first_mismatches": [
            {
                "killmail_id": m.killmail_id,
                "stored": dict(zip(("total", "destroyed", "dropped"), m.stored)),
                "expected": dict(zip(("total", "destroyed", "dropped"), m.expected)),
            }
            for m in report.mismatches
        ],
        "distribution": {k: report.distribution[k] for k in reference.BANDS},
        "biggest": report.distribution["biggest"],
        "notes": report.notes,
    }


def verify_lines(report: verify.VerifyReport) -> list[str]:
    what = (
        "every valued killmail"
        if report.sample_size is None
        else f"a sample (seed {report.seed}, digest {report.sample_digest})"
    )
    reference_of = (
        f"reference prices: {report.price_column}"
        if rule_sets.uses_price_column(report.rules)
        else f"reference rules: {report.rules}"
    )
    lines = [
        f"checked     {report.checked:>12,}  ({what}; {reference_of})",
        f"mismatches  {report.mismatch_count:>12,}",
    ]
    if report.by_stamps and report.by_rules:
        books = ", ".join(f"{b} {n:,}" for b, n in report.by_rules.items())
        lines.append(
            f"by rules    {books}  (as stamped; {report.unstamped:,} without a stamp"
            f" under {rule_sets.book_key(report.rules, report.price_column)})"
        )
    for m in report.mismatches:
        lines.append(f"  {m.killmail_id}: stored {isk(m.stored)}; expected {isk(m.expected)}")
    if report.mismatch_count > len(report.mismatches):
        lines.append(f"  ... and {report.mismatch_count - len(report.mismatches):,} more")
    lines += [f"note: {n}" for n in report.notes]
    lines.append("value distribution (total_value, ISK, every killmail):")
    for band, label in zip(reference.BANDS, reference.BAND_LABELS):
        lines.append(f"  {label:<9} {report.distribution[band]:>12,}")
    return lines


def isk(values: tuple) -> str:
    names = ("total", "destroyed", "dropped")
    return ", ".join(
        # repr: the shortest text that round-trips, so two floats that differ
        # in the last bit never print alike.
        f"{n} {'NULL' if v is None else repr(v)}"
        for n, v in zip(names, values)
    )


def work_summary(summary: supervise.WorkSummary) -> None:
    other_skips = summary.skipped - summary.no_victim - summary.dead
    lines = [
        f"messages   {summary.messages:>12,}  (acked: batches and old single-killmail messages)",
        f"batches    {summary.batches:>12,}  (valued or dead-lettered)",
        f"processed  {summary.processed:>12,}",
        f"updated    {summary.updated:>12,}",
        f"skipped    {summary.skipped:>12,}  (no victim {summary.no_victim:,}; "
        f"no longer matching the mode {other_skips:,}; dead-lettered {summary.dead:,})",
        f"elapsed    {summary.elapsed:>12.1f} s  ({summary.rate:,.0f} killmails/s)",
    ]
    if summary.retried:
        lines.append(f"retried    {summary.retried:>12,}  killmails republished after an error")
    if summary.redelivered:
        lines.append(
            f"redelivered{summary.redelivered:>12,}  batches came back unacked"
            " (republished as a failed try)"
        )
    if summary.invalid:
        lines.append(f"invalid    {summary.invalid:>12,}  messages dead-lettered as invalid")
    dead_queue = names.dead_letter_queue(summary.queue)
    if summary.dead or summary.invalid:
        lines.append(
            f"dead letters are in {dead_queue}: bulk-backfill dead list{queue_flag(summary.queue)}"
        )
    if summary.restarts:
        lines.append(f"worker processes restarted: {summary.restarts}")
    if summary.stall_restarts:
        lines.append(f"worker processes restarted after a stall: {summary.stall_restarts}")
    if summary.interrupted:
        lines.append("stopped on request; unfinished messages are back in the queue")
    lines += gaps_lines(summary.with_gaps)
    click.echo("\n".join(lines))


def run_summary(summary: RunSummary, failed_file: str | None = None) -> None:
    """The text summary of a run; `failed_file` names where the full failed list was written."""
    other_skips = summary.skipped - summary.no_victim - len(summary.failures)
    lines = [
        f"selected   {summary.selected:>12,}",
        f"processed  {summary.processed:>12,}",
        f"updated    {summary.updated:>12,}",
        f"skipped    {summary.skipped:>12,}  (no victim {summary.no_victim:,}; "
        f"no longer matching the mode {other_skips:,}; failed {len(summary.failures):,})",
        f"elapsed    {summary.elapsed:>12.1f} s  ({summary.rate:,.0f} killmails/s)",
    ]
    if summary.no_victim_sample:
        lines.append(f"no victim: {sample(summary.no_victim_sample, total=summary.no_victim)}")
    lines += failure_lines(summary.failures)
    if failed_file is not None:
        lines.append(
            f"full list of the {plural(len(summary.failures), 'failed killmail')}: {failed_file}"
        )
    if summary.restarts:
        lines.append(f"child processes restarted: {summary.restarts}")
    if summary.scan_reconnects:
        lines.append(f"scan reconnected to the database: {summary.scan_reconnects}")
    lines += gaps_lines(summary.with_gaps)
    click.echo("\n".join(lines))


def run_json(summary: RunSummary, failed_file: str | None = None) -> dict:
    """run --json: the summary's counts and every failed killmail, however many."""
    return {
        "selected": summary.selected,
        "processed": summary.processed,
        "updated": summary.updated,
        "skipped": summary.skipped,
        "no_victim": summary.no_victim,
        "no_victim_sample": summary.no_victim_sample,
        "failed": len(summary.failures),
        "failures": [
            {"killmail_id": f.killmail_id, "error": f.error}
            for f in sorted(summary.failures, key=lambda f: f.killmail_id)
        ],
        "failed_file": failed_file,
        "elapsed": round(summary.elapsed, 3),
        "interrupted": summary.interrupted,
        "stopped_early": summary.stopped_early,
        "resume_after": summary.resume_after,
        "restarts": summary.restarts,
        "scan_reconnects": summary.scan_reconnects,
        "incomplete": summary.with_gaps,
    }


def gaps_lines(with_gaps: int | None) -> list[str]:
    """What --allow-incomplete let through (bulk/readiness.py)."""
    if with_gaps is None:
        return []
    return [
        f"incomplete {with_gaps:>12,}  killmails hold a type without type data or a usable"
        " price (--allow-incomplete): bulk-backfill status shows the gaps"
    ]


# A whole job can fail alike (a full disk once failed 19,950 killmails, printed on
# one line of 199,620 characters): the summary names the first few; the rest
# are in run's --failed-file and --json.
FAILED_IDS_SHOWN = 10  # IDs named on one error's line, as many as other samples name
FAILED_ERRORS_SHOWN = 10  # error lines


def failures_by_error(failures: list) -> list[tuple[str, list[int]]]:
    """Each error with its killmails, sorted; the error most killmails share first, then
    by lowest ID, so the same failures always print alike."""
    by_error: dict[str, list[int]] = {}
    for failure in failures:
        by_error.setdefault(failure.error, []).append(failure.killmail_id)
    groups = [(error, sorted(ids)) for error, ids in by_error.items()]
    return sorted(groups, key=lambda group: (-len(group[1]), group[1][0]))


def failures_cut(failures: list) -> bool:
    """Whether failure_lines leaves out some of these killmails."""
    groups = failures_by_error(failures)
    return len(groups) > FAILED_ERRORS_SHOWN or any(
        len(ids) > FAILED_IDS_SHOWN for _, ids in groups
    )


def failure_lines(failures: list) -> list[str]:
    """The killmails that failed alone, with their errors; killmails sharing an error share
    a line. Up to FAILED_ERRORS_SHOWN errors and FAILED_IDS_SHOWN IDs each, then how many more."""
    groups = failures_by_error(failures)
    lines = []
    for error, ids in groups[:FAILED_ERRORS_SHOWN]:
        if len(ids) == 1:
            lines.append(f"failed {ids[0]}: {error}")
            continue
        listed = ", ".join(map(str, ids[:FAILED_IDS_SHOWN]))
        if len(ids) > FAILED_IDS_SHOWN:
            listed += f", ... and {len(ids) - FAILED_IDS_SHOWN:,} more"
        lines.append(f"failed {len(ids):,} killmails ({listed}): {error}")
    rest = groups[FAILED_ERRORS_SHOWN:]
    if rest:
        killmails = sum(len(ids) for _, ids in rest)
        lines.append(f"... and {plural(len(rest), 'more error')} ({plural(killmails, 'killmail')})")
    return lines


def fetch_lines(summary: fetch.FetchSummary) -> list[str]:
    lines = [
        f"priced     {summary.priced:>8,}  (rows written: {summary.written:,})",
        f"no orders  {len(summary.no_orders):>8,}  (their old rows are kept)",
        f"failed     {len(summary.failed):>8,}",
        f"bad orders {summary.bad_orders:>8,}  (skipped: price not a number from 0 to "
        f"{MAX_PRICE:.0e} ISK, or is_buy_order not true/false)",
        f"requests   {summary.stats.requests:>8,}  ({summary.stats.retries:,} retried; "
        f"{summary.stats.pauses:,} pauses for ESI's error limit)",
        f"elapsed    {summary.elapsed:>8.1f} s",
    ]
    if summary.no_orders:
        lines.append(f"no orders: {sample(summary.no_orders)}")
    if summary.bad_order_types:
        lines.append(f"bad orders in types: {sample(sorted(summary.bad_order_types))}")
    for type_id, reason in summary.failed[:20]:
        lines.append(f"failed {type_id}: {reason}")
    if summary.interrupted:
        lines.append("interrupted: the types fetched so far are written; run again for the rest")
    if summary.priced:
        lines.append(
            "next: bulk-backfill queue --mode stale (or run --mode stale)"
            " to revalue what they change"
        )
    return lines
