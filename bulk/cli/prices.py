"""`prices import` and `prices fetch`: filling market_prices."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from bulk import config, db
from bulk.cli import options, render
from bulk.engine.modes import PRICE_COLUMNS
from bulk.prices import esi, fetch, load

_ESI_COLUMN = click.Choice(list(PRICE_COLUMNS))


def esi_options(f):
    """The options of every command that asks ESI: how many at once, where, who, how long."""
    for option in reversed(
        [
            click.option(
                "--concurrency",
                type=click.IntRange(1, 100),
                default=20,
                show_default=True,
                help="Requests to ESI at the same time.",
            ),
            click.option(
                "--esi-url", default=esi.DEFAULT_ESI, show_default=True, help="Base URL of ESI."
            ),
            click.option(
                "--user-agent",
                help="Who to contact about these requests, e.g. "
                "'killboard.example; admin@example.com'.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0.1),
                default=10,
                show_default=True,
                help="Seconds a whole request may take, body included, before it is retried.",
            ),
        ]
    ):
        f = option(f)
    return f


def esi_client(esi_url: str, region: int, user_agent: str | None, timeout: float) -> esi.Client:
    """A polite ESI client that says who runs it."""
    agent = f"bulk-backfill/{_version()}" + (f" ({user_agent})" if user_agent else "")
    return esi.Client(esi_url, region, user_agent=agent, timeout=timeout)


@click.command("import")
@options.database_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--average-as",
    type=_ESI_COLUMN,
    help="ESI JSON: the column average_price fills [default: average].",
)
@click.option("--adjusted-as", type=_ESI_COLUMN, help="ESI JSON: the column adjusted_price fills.")
def prices_import_cmd(database_url, file, average_as, adjusted_as):
    """Upsert prices from ESI /markets/prices/ JSON or a CSV file, in one transaction.

    CSV needs a header: type_id plus any of buy, sell, average, volume. A bad
    row stops the import with its line number and nothing is written. An ESI
    entry without the field a column needs is skipped and counted.

    \b
    Example:
        bulk-backfill prices import esi_prices.json --average-as sell
    """
    mapping = {}
    if average_as or not adjusted_as:
        mapping["average_price"] = average_as or "average"
    if adjusted_as:
        mapping["adjusted_price"] = adjusted_as
    if len(set(mapping.values())) != len(mapping):
        raise click.UsageError("--average-as and --adjusted-as must fill different columns")
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        db.require_schema(conn)
        result = load.import_prices(conn, file, mapping)
    click.echo("\n".join(_import_lines(file, result)))
    if "sell" not in result.columns:
        click.echo(
            "note: values use market_prices.sell unless --price-column says otherwise"
            " (e.g. run --price-column average)"
        )


@click.command("fetch")
@options.database_option
@click.option(
    "--region",
    type=click.IntRange(min=1),
    default=esi.DEFAULT_REGION,
    show_default=True,
    help="ESI region whose market orders are read (10000002 is The Forge, Jita's region).",
)
@options.type_ids_option("Only this type (repeat). Default: every type the killmails use.")
@esi_options
def prices_fetch_cmd(database_url, region, type_ids, concurrency, esi_url, user_agent, timeout):
    """Fetch buy, sell, average and volume from ESI market orders for every type used.

    buy = highest buy order, sell = lowest sell order (0 for a side without
    orders), average = (buy + sell) / 2, volume = sum of volume_remain. A type
    with no orders keeps its old row.

    \b
    Example:
        bulk-backfill prices fetch --user-agent 'kb.example; me@example.com'
    """
    url = config.database_url(database_url)
    client = esi_client(esi_url, region, user_agent, timeout)

    def announce(n: int) -> None:
        click.echo(
            f"prices fetch: {render.plural(n, 'type')} from {esi_url} region {region}, "
            f"{concurrency} at a time",
            err=True,
        )

    summary = fetch.fetch_prices(
        url, client, type_ids=list(type_ids) or None, concurrency=concurrency, announce=announce
    )
    click.echo("\n".join(_with_types_lines(render.fetch_lines(summary), summary.not_in_types)))
    if summary.failed or summary.interrupted:
        raise click.exceptions.Exit(1)


def _import_lines(file: Path, result: load.ImportSummary) -> list[str]:
    line = (
        f"imported {render.plural(result.written, 'price row')} from {file} "
        f"into {', '.join(result.columns)} (updated_at set to now)"
    )
    if result.skipped:
        fields = " or ".join(result.needed)
        entries = f"{result.skipped:,} {'entry' if result.skipped == 1 else 'entries'}"
        line += f"; skipped {entries} without {fields}"
    if result.empty:
        line += f"; skipped {render.plural(result.empty, 'row')} with no price"
    return _with_types_lines([line], result.not_in_types)


def _with_types_lines(lines: list[str], not_in_types: list[int]) -> list[str]:
    """The price rows left out for types `types` lacks, before any 'next:' hint."""
    if not not_in_types:
        return lines
    ids = sorted(not_in_types)
    extra = [
        f"not in types {len(ids):>6,}  (skipped: market_prices.type_id references types)",
        f"not in types: {render.sample(ids)}",
    ]
    at = next((i for i, line in enumerate(lines) if line.startswith("next:")), len(lines))
    return lines[:at] + extra + lines[at:]


def _version() -> str:
    try:
        return version("bulk-backfill")
    except PackageNotFoundError:
        return "dev"
