"""The bulk-backfill command line: a thin shell that parses options and calls the library."""

from __future__ import annotations

import sys

import click

from bulk import redact
from bulk.cli.lazy import LazyGroup
from bulk.errors import UserError, one_line

# Each command's module is imported only when that command runs (bulk/cli/lazy.py);
# the second field is the first line of its docstring, which --help lists.
COMMANDS = {
    "init-db": (
        "bulk.cli.setup:init_db_cmd",
        "Create the killboard tables that are missing. Never drops or alters existing data.",
    ),
    "demo-data": (
        "bulk.cli.setup:demo_data_cmd",
        "Fill an empty killboard with generated killmails, items, types and prices.",
    ),
    "import-killmails": (
        "bulk.cli.setup:import_killmails_cmd",
        "Load ESI-format killmails from a JSON-lines file (bare, or zKillboard/RedisQ wrapped).",
    ),
    "run": (
        "bulk.cli.jobs:run_cmd",
        "Value killmails on this machine with N processes, no broker needed.",
    ),
    "queue": (
        "bulk.cli.jobs:queue_cmd",
        "Publish the matching killmails to RabbitMQ as batches for `work`.",
    ),
    "work": (
        "bulk.cli.jobs:work_cmd",
        "Consume batches from RabbitMQ with N processes and write the values.",
    ),
    "status": (
        "bulk.cli.inspect:status_cmd",
        "Queue depth, valuation progress and price freshness, in about a second.",
    ),
    "verify": (
        "bulk.cli.inspect:verify_cmd",
        "Recompute written values with the independent SQL reference; exit 1 on any mismatch.",
    ),
    "prices": (
        "bulk.cli:prices_group",
        "Fill market_prices (fetch, import), the daily history and the price overrides.",
    ),
    "types": (
        "bulk.cli:types_group",
        "Fill types, item_groups and categories (import files, fetch from ESI).",
    ),
    "dead": ("bulk.cli.dead:dead_group", "Look at and requeue the dead-letter queue <queue>.dead."),
    "demo": ("bulk.cli.setup:demo_cmd", "Run the whole job end to end on a generated killboard."),
}

PRICES_COMMANDS = {
    "import": (
        "bulk.cli.prices:prices_import_cmd",
        "Upsert prices from ESI /markets/prices/ JSON or a CSV file, in one transaction.",
    ),
    "fetch": (
        "bulk.cli.prices:prices_fetch_cmd",
        "Fetch buy, sell, average and volume from ESI market orders for every type used.",
    ),
    "history": (
        "bulk.cli.history:history_group",
        "Daily market history (market_price_history): import files or fetch from ESI.",
    ),
    "override": (
        "bulk.cli.history:override_group",
        "Fixed prices (price_overrides) for types the market cannot price.",
    ),
}


TYPES_COMMANDS = {
    "import": (
        "bulk.cli.types:types_import_cmd",
        "Upsert types, groups and categories from SDE or CSV files, in one transaction.",
    ),
    "fetch": (
        "bulk.cli.types:types_fetch_cmd",
        "Fetch from ESI the types, groups and categories that killmails use and types lacks.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="bulk-backfill")
def cli():
    """Compute and write the ISK values of EVE Online killmails in PostgreSQL, in bulk.

    \b
    Example:
        bulk-backfill demo
    """


@click.group("prices", cls=LazyGroup, lazy=PRICES_COMMANDS)
def prices_group():
    """Fill market_prices (fetch, import), the daily history and the price overrides.

    \b
    Example:
        bulk-backfill prices fetch --user-agent 'kb.example; me@example.com'
    """


@click.group("types", cls=LazyGroup, lazy=TYPES_COMMANDS)
def types_group():
    """Fill types, item_groups and categories (import files, fetch from ESI).

    The capsule, SKIN, ore and blueprint-copy rules read a type's group and
    category: without them those killmails are valued at market or the fallback.

    \b
    Example:
        bulk-backfill types import types.csv
    """


def main(args: list[str] | None = None) -> None:
    """Entry point: every error is one line on stderr and a non-zero exit, no traceback."""
    sys.exit(invoke(args))


def invoke(args: list[str] | None = None) -> int:
    """Run the CLI on args (default: sys.argv) and return its exit code; tests call this
    in-process with the same error handling as the console script."""
    try:
        # Without standalone mode click returns (not raises) the code of an Exit.
        code = cli.main(args, prog_name="bulk-backfill", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"bulk-backfill: error: {redact.scrub(exc.format_message())}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("bulk-backfill: interrupted", err=True)
        return 130
    except UserError as exc:
        click.echo(f"bulk-backfill: error: {redact.scrub(str(exc))}", err=True)
        return 2
    except BrokenPipeError:
        return 1
    except Exception as exc:
        # Database and broker errors, without importing psycopg and pika for every command.
        kind = _service_error(exc)
        if kind is None:
            raise
        click.echo(f"bulk-backfill: {kind} error: {one_line(exc)}", err=True)
        return 1


def _service_error(exc: Exception) -> str | None:
    for module, base, kind in (
        ("psycopg", "Error", "database"),
        ("pika.exceptions", "AMQPError", "broker"),
    ):
        error = getattr(sys.modules.get(module), base, None)
        if error is not None and isinstance(exc, error):
            return kind
    return None
