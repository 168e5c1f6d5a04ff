"""`types import` and `types fetch`: filling types, item_groups and categories."""

from __future__ import annotations

from pathlib import Path

import click

from bulk import config, db
from bulk.cli import options
from bulk.cli.prices import esi_client, esi_options
from bulk.prices import esi
from bulk.typedata import fetch, load

_TABLES = (("types", "types"), ("item_groups", "groups"), ("categories", "categories"))


@click.command("import")
@options.database_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def types_import_cmd(database_url, files):
    """Upsert types, groups and categories from SDE or CSV files, in one transaction.

    Reads CCP's static data export (types.jsonl, groups.jsonl, categories.jsonl,
    or the .yaml files), Fuzzwork's invTypes.csv, invGroups.csv and
    invCategories.csv, or a type_id,group_id,category_id,category_name CSV. Only
    IDs, names, groups and categories are read; a bad line stops the import with
    its file and line, and nothing is written.

    \b
    Example:
        bulk-backfill types import types.jsonl groups.jsonl categories.jsonl
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        db.require_schema(conn)
        result = load.import_types(conn, list(files))
    for table, noun in _TABLES:
        click.echo(
            f"{noun:<11}{result.read[table]:>9,} read: {result.inserted[table]:,} new, "
            f"{result.updated[table]:,} changed"
        )


@click.command("fetch")
@options.database_option
@click.option(
    "--used-types",
    is_flag=True,
    help="Every type a killmail uses that types lacks, then the groups and categories"
    " they lack (the default when no --type-id is given).",
)
@options.type_ids_option(
    "This type (repeat), whether types has it or not; then the missing groups and categories."
)
@esi_options
def types_fetch_cmd(database_url, used_types, type_ids, concurrency, esi_url, user_agent, timeout):
    """Fetch from ESI the types, groups and categories that killmails use and types lacks.

    Answers are written as they come; after Ctrl+C the same command asks only for
    what is still missing.

    \b
    Example:
        bulk-backfill types fetch --used-types --user-agent 'kb.example; me@example.com'
    """
    if used_types and type_ids:
        raise click.UsageError("give --used-types or --type-id, not both")
    url = config.database_url(database_url)
    client = esi_client(esi_url, esi.DEFAULT_REGION, user_agent, timeout)

    def announce(kind: str, n: int) -> None:
        click.echo(f"types fetch: {n:,} {kind} from {esi_url}, {concurrency} at a time", err=True)

    summary = fetch.fetch_types(
        url, client, type_ids=list(type_ids) or None, concurrency=concurrency, announce=announce
    )
    for kind in fetch.KINDS:
        if kind in summary.asked:
            click.echo(
                f"{kind:<11}{summary.asked[kind]:>9,} missing: {summary.written[kind]:,} written"
            )
    for kind, id_, reason in summary.failed[:20]:
        click.echo(f"failed {kind} {id_}: {reason}")
    if len(summary.failed) > 20:
        click.echo(f"... and {len(summary.failed) - 20:,} more failed")
    click.echo(
        f"{summary.stats.requests:,} requests, {summary.stats.retries:,} retries"
        f" in {summary.elapsed:.1f} s"
    )
    if summary.interrupted:
        click.echo("interrupted: run the same command again to fetch what is still missing")
    if summary.failed or summary.interrupted:
        raise click.exceptions.Exit(1)
