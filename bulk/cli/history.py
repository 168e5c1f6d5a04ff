"""`prices history import/fetch` and `prices override set/list/import`: kill-date prices."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from bulk import config, db
from bulk.cli import options, render
from bulk.cli.prices import esi_client, esi_options
from bulk.prices import esi, history, history_fetch, overrides
from bulk.redact import mask_url

_REGION_HELP = "10000002 is The Forge, Jita's region"


class _Day(click.ParamType):
    """A UTC date written YYYY-MM-DD."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if isinstance(value, date):
            return value
        try:
            return overrides.parse_day(value.strip(), "")
        except ValueError:
            self.fail(f"{value!r} is not a date like 2024-01-31", param, ctx)


def _created_line(created: list[str], url: str) -> list[str]:
    return [f"created tables: {', '.join(created)} in {mask_url(url)}"] if created else []


@click.group("history")
def history_group():
    """Daily market history (market_price_history): import files or fetch from ESI.

    Only these commands, `prices override` and init-db create the history
    tables; run and work never do.

    \b
    Example:
        bulk-backfill prices history import market-history-2025-01-01.csv.bz2
    """


@history_group.command("import")
@options.database_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type-id",
    type=click.IntRange(1, 2**31 - 1),
    help="The type of ESI history files (JSON, or CSV without region_id,type_id).",
)
@click.option(
    "--region",
    type=click.IntRange(1, 2**31 - 1),
    default=esi.DEFAULT_REGION,
    show_default=True,
    help=f"The region of ESI history files; of EVE Ref files, the one kept ({_REGION_HELP}).",
)
@click.option("--all-regions", is_flag=True, help="EVE Ref files: keep the rows of every region.")
def history_import_cmd(database_url, files, type_id, region, all_regions):
    """Upsert daily history from EVE Ref CSV dumps (plain or .bz2) and ESI history files.

    EVE Ref's market-history CSV has the columns average, date, highest,
    lowest, order_count, volume, http_last_modified, region_id, type_id (one
    file per day, every region: only --region's rows are kept unless
    --all-regions). ESI's history JSON, or the same days as CSV without
    region_id and type_id, is one type's: give --type-id. Every file is
    checked before anything is written: a bad line stops the import with its
    file and line, and nothing is written. A day already stored with the same
    values is not written again.

    \b
    Example:
        bulk-backfill prices history import market-history-2025-01-0*.csv.bz2
        bulk-backfill prices history import orca.json --type-id 28606
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        summary = history.import_history_files(
            conn,
            files,
            region=region,
            type_id=type_id,
            all_regions=all_regions,
            progress=True,
        )
    written = summary.written
    line = (
        f"imported {render.plural(summary.rows, 'history row')} from "
        f"{render.plural(summary.files, 'file')}: {written.new:,} new, "
        f"{written.changed:,} changed, {written.unchanged:,} unchanged"
    )
    if summary.other_regions:
        line += (
            f"; skipped {render.plural(summary.other_regions, 'row')} of other regions "
            f"than {region} (--all-regions keeps them)"
        )
    lines = _created_line(summary.tables_created, url) + [line]
    rate = summary.rows / max(summary.elapsed, 1e-9)
    lines.append(
        f"elapsed {summary.elapsed:.1f} s ({rate:,.0f} rows/s; reading and staging "
        f"{summary.staging_seconds:.1f} s, writing {summary.upsert_seconds:.1f} s)"
    )
    click.echo("\n".join(lines))


@history_group.command("fetch")
@options.database_option
@click.option(
    "--region",
    type=click.IntRange(1, 2**31 - 1),
    default=esi.DEFAULT_REGION,
    show_default=True,
    help=f"ESI region whose history is read ({_REGION_HELP}).",
)
@click.option(
    "--type-id",
    "type_ids",
    type=click.IntRange(1, 2**31 - 1),
    multiple=True,
    help="This type (repeat).",
)
@click.option("--used-types", is_flag=True, help="Every type the killmails use.")
@esi_options
def history_fetch_cmd(
    database_url, region, type_ids, used_types, concurrency, esi_url, user_agent, timeout
):
    """Fetch daily history from ESI's /markets/{region}/history/, incrementally.

    A type whose stored history already reaches yesterday (UTC), the newest
    day ESI can have, is not asked for again; the days of the others are
    written as they arrive, so a fetch stopped by Ctrl+C goes on where it
    stopped when run again. Same politeness as `prices fetch`.

    \b
    Example:
        bulk-backfill prices history fetch --used-types --user-agent 'kb.example; me@example.com'
    """
    if bool(type_ids) == used_types:
        raise click.UsageError("say which types: --type-id N (repeat it) or --used-types")
    url = config.database_url(database_url)
    client = esi_client(esi_url, region, user_agent, timeout)

    def announce(summary: history_fetch.HistoryFetchSummary) -> None:
        click.echo(
            f"history fetch: {render.plural(summary.asked, 'type')} from {esi_url} region "
            f"{region}, {concurrency} at a time ({len(summary.up_to_date):,} already up to "
            f"{summary.latest.isoformat()})",
            err=True,
        )

    summary = history_fetch.fetch_history(
        url,
        client,
        type_ids=list(type_ids),
        used_types=used_types,
        concurrency=concurrency,
        announce=announce,
    )
    click.echo("\n".join(_created_line(summary.tables_created, url) + _fetch_lines(summary)))
    if summary.failed or summary.interrupted:
        raise click.exceptions.Exit(1)


def _fetch_lines(summary: history_fetch.HistoryFetchSummary) -> list[str]:
    written = summary.written
    lines = [
        f"up to date {len(summary.up_to_date):>8,}  (not asked: stored through "
        f"{summary.latest.isoformat()}, the newest day ESI has)",
        f"fetched    {summary.fetched:>8,}  (days: {written.new:,} new, {written.changed:,} "
        f"changed, {written.unchanged:,} unchanged)",
        f"no history {len(summary.no_history):>8,}",
        f"failed     {len(summary.failed):>8,}",
        f"bad days   {summary.bad_days:>8,}  (skipped: a price not a number from 0 to 1e+15 ISK,"
        " a count not a whole number, or no date)",
        f"requests   {summary.stats.requests:>8,}  ({summary.stats.retries:,} retried; "
        f"{summary.stats.pauses:,} pauses for ESI's error limit)",
        f"elapsed    {summary.elapsed:>8.1f} s",
    ]
    if summary.no_history:
        lines.append(f"no history: {render.sample(summary.no_history)}")
    if summary.bad_day_types:
        lines.append(f"bad days in types: {render.sample(sorted(summary.bad_day_types))}")
    if summary.future_days:
        lines.append(
            f"future days: skipped {render.plural(summary.future_days, 'day')} dated after "
            f"{summary.newest_allowed.isoformat()} (tomorrow in UTC: no market has them yet)"
            f" in types: {render.sample(sorted(summary.future_day_types))}"
        )
    for type_id, reason in summary.failed[:20]:
        lines.append(f"failed {type_id}: {reason}")
    if summary.interrupted:
        lines.append("interrupted: the types fetched so far are written; run again for the rest")
    return lines


@click.group("override")
def override_group():
    """Fixed prices (price_overrides) for types the market cannot price.

    \b
    Example:
        bulk-backfill prices override set --type-id 3514 --price 1e11 --note 'Revenant'
    """


@override_group.command("set")
@options.database_option
@click.option("--type-id", type=click.IntRange(1, 2**31 - 1), required=True, help="The type.")
@click.option("--price", type=float, required=True, help="ISK a unit: a number from 0 to 1e15.")
@click.option("--from", "valid_from", type=_Day(), help="First UTC day it holds [default: open].")
@click.option("--to", "valid_to", type=_Day(), help="Last UTC day it holds [default: open].")
@click.option("--note", help="Where the price comes from.")
def override_set_cmd(database_url, type_id, price, valid_from, valid_to, note):
    """Set a type's price over a range of kill dates (both ends included, open by default).

    An override of the same type and the same range is replaced. Where
    several cover a kill date, the latest --from wins, then the newest set.

    \b
    Example:
        bulk-backfill prices override set --type-id 3514 --price 1e11 --to 2024-12-31
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        result = overrides.set_override(conn, type_id, price, valid_from, valid_to, note)
    line = f"set override {result.ids[0]}: type {type_id} at {_isk(price)} ISK, {_span(result)}"
    if result.replaced:
        line += f" (replaced {render.plural(result.replaced, 'override')} of the same range)"
    click.echo(line)


@override_group.command("list")
@options.database_option
@click.option(
    "--type-id",
    "type_ids",
    type=click.IntRange(1, 2**31 - 1),
    multiple=True,
    help="Only this type (repeat).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON list (keys in docs/json.md).")
def override_list_cmd(database_url, type_ids, as_json):
    """Show the price overrides, by type, in the order the rules rank them.

    \b
    Example:
        bulk-backfill prices override list --json
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        found = overrides.list_overrides(conn, list(type_ids) or None)
    if as_json:
        click.echo(json.dumps([o.to_json() for o in found], indent=2))
        return
    if not found:
        click.echo("no price overrides")
        return
    header = f"{'id':>6}  {'type_id':>10}  {'from':<10}  {'to':<10}  {'price (ISK)':>22}  note"
    click.echo(header)
    for o in found:
        click.echo(
            f"{o.id:>6}  {o.type_id:>10}  {_day_text(o.valid_from):<10}  "
            f"{_day_text(o.valid_to):<10}  {_isk(o.price):>22}  {_note_text(o.note)}".rstrip()
        )


@override_group.command("import")
@options.database_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def override_import_cmd(database_url, file):
    """Set the overrides of a CSV file, in one transaction: all of them or none.

    The header names type_id and price, and any of valid_from, valid_to
    (YYYY-MM-DD; empty is open) and note. A bad row stops the import with its
    line number and nothing is written.

    \b
    Example:
        bulk-backfill prices override import overrides.csv
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        result = overrides.import_overrides(conn, file)
    line = f"imported {render.plural(len(result.ids), 'override')} from {file}"
    if result.replaced:
        line += f" (replaced {render.plural(result.replaced, 'override')} of the same range)"
    click.echo(line)


def _span(result: overrides.SetResult) -> str:
    first, last = result.rows[0].valid_from, result.rows[0].valid_to
    if first is None and last is None:
        return "every day"
    return f"from {_day_text(first)} to {_day_text(last)}"


def _note_text(note: str | None) -> str:
    """A note as a terminal may show it: a control character (an escape sequence, a
    carriage return, a newline) is written as Python would escape it, so a note can
    neither redraw the listing nor pass for rows of its own."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in note or "")


def _day_text(day: date | None) -> str:
    return day.isoformat() if day else "open"


def _isk(price: float) -> str:
    """Cents where they say it all, every digit where a price has more."""
    return f"{price:,.2f}" if round(price, 2) == price else f"{price:,}"
