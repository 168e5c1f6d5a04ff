"""`status` and `verify`: looking at the database, the queue and the values."""

from __future__ import annotations

import json

import click

from bulk import config, db
from bulk.audit import status, verify
from bulk.cli import options, render


@click.command("status")
@options.database_option
@options.broker_options
@click.option("--no-queue", is_flag=True, help="Leave out the queue (no RabbitMQ in use).")
@click.option(
    "--management-url",
    help="RabbitMQ management API, for the unacked count [default: http://<broker host>:15672].",
)
@options.price_column_option("The price column the values are computed from.")
@options.rules_option("The rule set whose readiness (type data, price coverage) is shown.")
@click.option(
    "--stale-days",
    type=click.FloatRange(min=0),
    default=7,
    show_default=True,
    help="Warn when the newest price is older than this.",
)
@options.json_option
def status_cmd(
    database_url,
    rabbitmq_url,
    queue,
    no_queue,
    management_url,
    price_column,
    rules,
    stale_days,
    as_json,
):
    """Queue depth, valuation progress and price freshness, in about a second.

    Exits 1 when the queue does not exist (a typo in --queue is not an empty queue).

    \b
    Example:
        bulk-backfill status --stale-days 3
    """
    url = config.database_url(database_url)
    with db.connect(url, autocommit=True) as conn:
        db.require_schema(conn)
        result = status.status(
            conn,
            amqp_url=None if no_queue else rabbitmq_url,
            queue=queue,
            management_url=management_url,
            price_column=price_column,
            rules=rules,
            stale_days=stale_days,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo("\n".join(render.status_lines(result)))
    if result.queue is not None and not result.queue.exists:
        raise click.exceptions.Exit(1)


@click.command("verify")
@options.database_option
@click.option("--sample", type=click.IntRange(min=1), help="Check this many, chosen at random.")
@click.option("--all", "check_all", is_flag=True, help="Check every valued killmail.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same sample.")
@options.price_column_option("The price column the values were computed from (seed only).")
@options.rules_option(
    "The rule set of the killmails without a stamp (docs/prices.md); with --ignore-stamps, of all."
)
@click.option(
    "--ignore-stamps",
    is_flag=True,
    help="Audit every killmail under --rules, not under the rules its stamp names.",
)
@options.json_option
def verify_cmd(database_url, sample, check_all, seed, price_column, rules, ignore_stamps, as_json):
    """Recompute written values with the independent SQL reference; exit 1 on any mismatch.

    Without --sample or --all it checks a sample of 2,000. Each killmail is
    audited under the rule set its stamp names (the job that valued it).

    \b
    Example:
        bulk-backfill verify --sample 5000 --seed 42
        bulk-backfill verify --rules zkillboard
    """
    if sample and check_all:
        raise click.UsageError("give --sample N or --all, not both")
    url = config.database_url(database_url)
    with db.connect(url, autocommit=True) as conn:
        db.require_schema(conn)
        report = verify.verify(
            conn,
            sample=None if check_all else (sample or 2_000),
            seed=seed,
            price_column=price_column,
            rules=rules,
            by_stamps=not ignore_stamps,
        )
    if as_json:
        click.echo(json.dumps(render.verify_json(report), indent=2))
    else:
        click.echo("\n".join(render.verify_lines(report)))
    if not report.ok:
        raise click.exceptions.Exit(1)
