"""The bulk-backfill command line: a thin shell that parses options and calls the library."""

from __future__ import annotations

import sys

import click
import pika.exceptions
import psycopg

from bulk import redact
from bulk.cli import dead, history, inspect, jobs, prices, setup
from bulk.errors import UserError, one_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bulk-backfill")
def cli():
    """Compute and write the ISK values of EVE Online killmails in PostgreSQL, in bulk.

    \b
    Example:
        bulk-backfill demo
    """


prices.prices_group.add_command(history.history_group)
prices.prices_group.add_command(history.override_group)

for _command in (
    setup.init_db_cmd,
    setup.demo_data_cmd,
    setup.import_killmails_cmd,
    jobs.run_cmd,
    jobs.queue_cmd,
    jobs.work_cmd,
    inspect.status_cmd,
    inspect.verify_cmd,
    prices.prices_group,
    dead.dead_group,
    setup.demo_cmd,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point: every error is one line on stderr and a non-zero exit, no traceback."""
    try:
        # Without standalone mode click returns (not raises) the code of an Exit.
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"bulk-backfill: error: {redact.scrub(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("bulk-backfill: interrupted", err=True)
        sys.exit(130)
    except UserError as exc:
        click.echo(f"bulk-backfill: error: {redact.scrub(str(exc))}", err=True)
        sys.exit(2)
    except psycopg.Error as exc:
        click.echo(f"bulk-backfill: database error: {one_line(exc)}", err=True)
        sys.exit(1)
    except pika.exceptions.AMQPError as exc:
        click.echo(f"bulk-backfill: broker error: {one_line(exc)}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)
