"""`dead list` and `dead requeue`: the dead-letter queue."""

from __future__ import annotations

import click

from bulk.cli import options, render
from bulk.queue import broker, messages
from bulk.queue import dead as dead_letters


@click.group("dead")
def dead_group():
    """Look at and requeue the dead-letter queue <queue>.dead.

    \b
    Example:
        bulk-backfill dead list
    """


@dead_group.command("list")
@options.broker_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many messages.",
)
def dead_list_cmd(rabbitmq_url, queue, limit):
    """Show each dead letter's reason, number of IDs and attempts; nothing is removed.

    \b
    Example:
        bulk-backfill dead list --limit 50
    """
    total, shown = dead_letters.list_dead(rabbitmq_url, queue, limit)
    dead = broker.dead_letter_queue(queue)
    click.echo(f"{dead}: {render.plural(total, 'message')}")
    for n, letter in enumerate(shown, 1):
        ids = "invalid" if letter.ids is None else render.plural(letter.ids, "ID")
        attempts = "-" if letter.attempts is None else letter.attempts
        when = letter.last_failure or "?"
        click.echo(
            f"{n:>4}. {ids}, attempts {attempts}, last failed {when} on {letter.host or '?'}: "
            f"{letter.reason}"
        )
        click.echo(f"      {letter.preview}")
    if total > len(shown):
        click.echo(f"... {total - len(shown):,} more (--limit)")


@dead_group.command("requeue")
@options.broker_options
@click.option("--limit", type=click.IntRange(min=1), help="At most this many dead letters.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, messages.MAX_IDS),
    default=dead_letters.DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Dead letters of the same mode and rule set go back merged into batches of up to "
    "this many killmails.",
)
def dead_requeue_cmd(rabbitmq_url, queue, limit, batch_size):
    """Put dead-lettered batches back on the work queue, once the cause is fixed.

    Dead letters of one mode and rule set are merged into batches (one killmail
    a letter is what a split leaves), each confirmed by the broker before its
    letters leave the dead-letter queue. Invalid messages stay: they would fail again.

    \b
    Example:
        bulk-backfill dead requeue
    """
    summary = dead_letters.requeue_dead(rabbitmq_url, queue, limit, batch_size)
    click.echo(
        f"requeued {render.plural(summary.requeued_messages, 'message')} "
        f"({render.plural(summary.requeued_ids, 'killmail')}) to {queue} "
        f"as {render.plural(summary.batches, 'batch')}; "
        f"{render.plural(summary.remaining, 'message')} left in {broker.dead_letter_queue(queue)}"
        + (f" ({summary.left_invalid:,} invalid)" if summary.left_invalid else "")
    )
