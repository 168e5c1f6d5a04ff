"""`init-db`, `demo-data`, `import-killmails` and `demo`: getting a killboard to work on."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from bulk import config, db, importer
from bulk.audit import reference
from bulk.cli import options, render
from bulk.demo import generate
from bulk.demo import run as demo
from bulk.demo.load import load_demo
from bulk.redact import mask_url


@click.command("init-db")
@options.database_option
def init_db_cmd(database_url):
    """Create the killboard tables that are missing. Never drops or alters existing data.

    \b
    Example:
        DATABASE_URL=postgresql://postgres@127.0.0.1/killboard bulk-backfill init-db
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        created = db.init_db(conn)
    if created:
        click.echo(f"created tables: {', '.join(created)} in {mask_url(url)}")
    else:
        click.echo(f"all killboard tables already exist in {mask_url(url)}; nothing changed")


@click.command("demo-data")
@options.database_option
@click.option("--killmails", type=click.IntRange(min=1), required=True, help="How many.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same data.")
@click.option(
    "--no-history",
    is_flag=True,
    help="Leave market_price_history and price_overrides alone (faster).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=generate.MAX_DAYS),
    help="Pack the kills into the last N days of the 18 years they spread over by default"
    f" (up to {generate.spread_first_day(1)}), as densely as a real killboard: 300000 over"
    " 60 days is 5,000 a day. Market history is then daily from"
    f" {generate.HISTORY_LEAD_DAYS} days before the first kill.",
)
def demo_data_cmd(database_url, killmails, seed, no_history, days):
    """Fill an empty killboard with generated killmails, items, types and prices.

    Also market history (daily for three years up to the newest kill, one day
    in 30 before; with --days, daily from 60 days before the first kill) and two
    price overrides, where init-db made those tables.

    \b
    Example:
        bulk-backfill demo-data --killmails 100000 --seed 7
        bulk-backfill demo-data --killmails 300000 --days 60
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        history = False if no_history else None
        result = load_demo(conn, killmails, seed, history=history, days=days)
    spread = f"seed {seed}"
    if days is not None:
        first = generate.spread_first_day(days)
        spread += f", over {render.plural(days, 'day')} from {first} to {first + (days - 1)}"
    line = f"loaded {killmails:,} killmails with {result.items:,} item rows ({spread})"
    if result.history:
        line += (
            f", {result.history_rows:,} market history rows and "
            f"{render.plural(result.overrides, 'price override')}"
        )
    click.echo(line)
    if not result.history and not no_history:
        click.echo(
            "no market history written: the database lacks market_price_history and "
            "price_overrides (bulk-backfill init-db adds them)"
        )


@click.command("import-killmails")
@options.database_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--zkb",
    "zkb_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON lines of zKillboard API records {killmail_id, zkb}: the hashes of killmails"
    " whose line has no zkb block (for a target whose killmail_hash is NOT NULL).",
)
@click.option(
    "--top-level-only",
    is_flag=True,
    help="Store only the top-level items, not the contents of containers (as killreport does).",
)
def import_killmails_cmd(database_url, file, zkb_file, top_level_only):
    """Load ESI-format killmails from a JSON-lines file (bare, or zKillboard/RedisQ wrapped).

    Columns the target has beyond the tool's schema are filled from the line:
    killmail_hash from zkb.hash, solar_system_id, the victim's corporation_id
    and damage_taken, created_at/updated_at with the import's time.

    \b
    Example:
        bulk-backfill import-killmails killmails.jsonl
        bulk-backfill import-killmails killmails.jsonl --zkb zkb.jsonl --top-level-only
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        db.require_schema(conn)
        result = importer.import_killmails(
            conn, file, zkb_path=zkb_file, top_level_only=top_level_only
        )
    click.echo(
        f"read {result.read:,} killmails: imported {result.imported:,} "
        f"with {result.items:,} item rows"
    )
    if result.nested_skipped:
        click.echo(f"left out {result.nested_skipped:,} items inside containers (--top-level-only)")
    if result.already_present:
        click.echo(
            f"skipped {len(result.already_present):,} already present: "
            + render.sample(result.already_present)
        )
    if result.repeated_in_file:
        click.echo(
            f"skipped {len(result.repeated_in_file):,} repeated in the file: "
            + render.sample(result.repeated_in_file)
        )


@click.command("demo")
@click.option(
    "--killmails",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="How many killmails to generate.",
)
@click.option(
    "--procs",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Processes that value killmails.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Same seed, same generated data."
)
@click.option(
    "--database",
    default="bulk_backfill_demo",
    show_default=True,
    help="Name of the demo database (re-created; an existing one only if a demo created it).",
)
@click.option(
    "--datadir",
    type=click.Path(file_okay=False, path_type=Path),
    default=demo.DEFAULT_DATADIR,
    show_default=True,
    help="Where the embedded PostgreSQL keeps its data when DATABASE_URL is not set.",
)
@options.rules_option(
    "The rule set to value the demo killboard under (a kill-date one adds 3 years of history)."
)
def demo_cmd(killmails, procs, seed, database, datadir, rules):
    """Run the whole job end to end on a generated killboard.

    With DATABASE_URL set it uses a database named bulk_backfill_demo on that
    server; without it, an embedded PostgreSQL (pip install 'bulk-backfill[demo]').

    \b
    Example:
        bulk-backfill demo --killmails 20000
    """
    result = demo.run_demo(
        killmails=killmails,
        procs=procs,
        seed=seed,
        database=database,
        server_url=demo.server_url_from_env(),
        datadir=datadir,
        rules=rules,
        say=click.echo,
    )
    render.run_summary(result.summary)
    click.echo("\nvalue distribution (total_value, ISK):")
    for band, label in zip(reference.BANDS, reference.BAND_LABELS):
        click.echo(f"  {label:<9} {result.distribution[band]:>10,}")
    click.echo(f"  biggest   {result.distribution['biggest'] or 0:>22,.2f}")
    if result.embedded:
        click.echo(
            "\nnext steps (the embedded PostgreSQL stops with this command):\n"
            "  # the same demo on your own server, where you can look around afterwards:\n"
            "  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres bulk-backfill demo\n"
            "  # then on your killboard:\n"
            "  export DATABASE_URL=postgresql://USER@HOST/KILLBOARD\n"
            "  bulk-backfill run --mode null --procs 2"
        )
    else:
        click.echo(
            "\nnext steps:\n"
            # Quoted for the shell: the demo's --database name may hold a quote.
            f"  export DATABASE_URL={shlex.quote(mask_url(result.url))}\n"
            "  bulk-backfill run --mode all --procs 2     # recalculate everything\n"
            '  psql "$DATABASE_URL" -c \'SELECT killmail_id, total_value FROM killmails'
            " ORDER BY total_value DESC NULLS LAST LIMIT 5'"
        )
    if result.summary.failures:
        raise click.exceptions.Exit(1)
