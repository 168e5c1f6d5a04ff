"""`run`, `queue` and `work`: the commands that value killmails."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import click

from bulk import config
from bulk.cli import options, render
from bulk.engine import rules as rule_sets
from bulk.engine.valuation import Valuation
from bulk.queue import settings
from bulk.redact import mask_url
from bulk.run import RunJob, run_local


def _match(selected: int) -> str:
    return f"{render.plural(selected, 'killmail')} match{'es' if selected == 1 else ''}"


def _rules_part(rules: str) -> str:
    # seed is the default and what the replaced system did: named only when it is not.
    return "" if rules == rule_sets.DEFAULT_RULES else f", rules {rules}"


def _prices_from(rules: str, price_column: str) -> str:
    return f"prices from {price_column}" if rule_sets.uses_price_column(rules) else f"rules {rules}"


def _valuation(
    price_column: str,
    touch_updated_at: bool,
    engine: str,
    rules: str,
    price_refresh: float | None = None,
) -> Valuation:
    """How every batch of the job is valued, from the options run and work share."""
    return Valuation(
        price_column=price_column,
        touch_updated_at=touch_updated_at,
        engine=engine,
        price_refresh=price_refresh,
        rules=rules,
    )


def _failed_file(ctx, param, value: str | None) -> Path | None:
    """Refused before the run, not after it: a run's list must have somewhere to go."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value!r} is a directory; give a file name", ctx, param)
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the directory {str(folder)!r} does not exist", ctx, param)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write in the directory {str(folder)!r}", ctx, param)
    return path


def _write_failed(failures: list, path: Path | None) -> str:
    """Every failed killmail, one `ID<TAB>error` line each, sorted by ID; the file's name.

    Written beside its final name and renamed into place, so a reader (or a full
    disk) never sees half a list. With no path, a new file in the temporary directory.
    """
    if path is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        fd, name = tempfile.mkstemp(prefix=f"bulk-backfill-run-failed-{stamp}-", suffix=".tsv")
        target = Path(name)
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        target = path
    try:
        if path is not None:
            # mkstemp's file is private; the one asked for gets the mode a new file gets.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for failure in sorted(failures, key=lambda f: f.killmail_id):
                out.write(f"{failure.killmail_id}\t{' '.join(failure.error.split())}\n")
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return str(target)


def _metrics_options(command):
    """--metrics-port and --metrics-address (run and work)."""
    command = click.option(
        "--metrics-address",
        default="0.0.0.0",
        show_default=True,
        help="Address the metrics port listens on.",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve Prometheus metrics of every process on this port (/metrics) while it runs.",
    )(command)


@click.command("run")
@options.database_option
@options.selection_options
@options.procs_option
@options.price_options
@options.rules_option()
@options.engine_option
@options.touch_updated_at_option
@options.db_patience_option
@click.option(
    "--failed-file",
    metavar="PATH",
    callback=_failed_file,
    help="Write every failed killmail here (ID, a tab, the error; sorted), even none. "
    "Without it, a failed list too long for the summary goes to a file the summary names.",
)
@options.json_option
@_metrics_options
def run_cmd(
    database_url,
    procs,
    price_column,
    allow_empty_prices,
    allow_incomplete,
    rules,
    engine,
    touch_updated_at,
    batch_size,
    db_patience,
    failed_file,
    as_json,
    metrics_port,
    metrics_address,
    **selection,
):
    """Value killmails on this machine with N processes, no broker needed.

    Ctrl+C finishes the batches in hand and stops; the summary says how to resume.

    \b
    Example:
        bulk-backfill run --mode zero --procs 2
    """
    url = config.database_url(database_url)
    sel = options.to_selection(**selection)

    def announce(selected: int) -> None:
        click.echo(
            f"run: mode {sel.mode}, {_match(selected)}, "
            f"{render.plural(procs, 'process')}, "
            f"batch size {batch_size}, {_prices_from(rules, price_column)}, engine {engine}, "
            f"database {mask_url(url)}",
            err=True,
        )

    job = RunJob(
        url=url,
        selection=sel,
        valuation=_valuation(price_column, touch_updated_at, engine, rules),
        procs=procs,
        batch_size=batch_size,
        allow_empty_prices=allow_empty_prices,
        allow_incomplete=allow_incomplete,
        db_patience=db_patience,
    )
    summary = run_local(
        job,
        announce=announce,
        metrics_at=None if metrics_port is None else (metrics_address, metrics_port),
    )
    # The summary names the first failures; the whole list goes to --failed-file, or,
    # when the summary cuts it and --json does not hold it, to a file of its own.
    written = unwritten = None
    if failed_file is not None or (not as_json and render.failures_cut(summary.failures)):
        try:
            written = _write_failed(summary.failures, failed_file)
        except OSError as exc:
            unwritten = f"could not write the list of failed killmails: {exc}"
    if as_json:
        click.echo(json.dumps(render.run_json(summary, written), indent=2))
    else:
        render.run_summary(summary, written)
    if unwritten:
        click.echo(f"bulk-backfill: error: {unwritten}", err=True)
    if summary.book_note:
        click.echo(f"note: {summary.book_note}", err=True)
    if summary.stopped_early:
        raise click.ClickException(
            f"{summary.stopped_early}; " + render.resume_hint("run", summary.resume_after, "valued")
        )
    # With --json, stdout is the JSON object alone: the hints go to stderr.
    if summary.interrupted and summary.resume_after is not None:
        click.echo(
            f"interrupted: resume with the same command and --after-id {summary.resume_after}",
            err=as_json,
        )
    elif summary.interrupted:
        click.echo(
            "interrupted before the first batch finished: run the same command again", err=as_json
        )
    # As for work: a stop by signal exits 0; the summary lists what failed before it.
    if (summary.failures and not summary.interrupted) or (unwritten and failed_file is not None):
        raise click.exceptions.Exit(1)


@click.command("queue")
@options.database_option
@options.broker_options
@options.selection_options
@click.option("--dry-run", is_flag=True, help="Count the batches; publish nothing.")
@options.allow_empty_prices_option
@options.allow_incomplete_option
@options.rules_option(
    "The rule set the workers value these batches under; it travels in every message."
)
@options.price_column_option(
    "The workers' --price-column: under seed, the prices --mode stale compares with."
)
@click.option(
    "--broker-patience",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    help="Seconds to wait for a lost broker before stopping with a resume point.",
)
@options.db_patience_option
def queue_cmd(
    database_url,
    rabbitmq_url,
    queue,
    batch_size,
    dry_run,
    allow_empty_prices,
    allow_incomplete,
    rules,
    price_column,
    broker_patience,
    db_patience,
    **sel,
):
    """Publish the matching killmails to RabbitMQ as batches for `work`.

    Every message is persistent and confirmed by the broker. The summary
    gives the last confirmed killmail_id; --after-id resumes from there.

    \b
    Example:
        bulk-backfill queue --mode zero --since 2024-01-01
    """
    url = config.database_url(database_url)
    selection = options.to_selection(**sel)

    def announce(selected: int, batches: int) -> None:
        target = "dry run, nothing published" if dry_run else mask_url(rabbitmq_url)
        click.echo(
            f"queue: mode {selection.mode}{_rules_part(rules)}, {_match(selected)}, queue {queue}, "
            f"batch size {batch_size} ({render.plural(batches, 'batch')}), {target}",
            err=True,
        )

    # Here, not at the top: pika costs every `run` 20 ms.
    from bulk.queue import publish

    summary = publish.queue_killmails(
        url,
        rabbitmq_url,
        selection,
        queue=queue,
        batch_size=batch_size,
        dry_run=dry_run,
        rules=rules,
        price_column=price_column,
        allow_empty_prices=allow_empty_prices,
        allow_incomplete=allow_incomplete,
        broker_patience=broker_patience,
        db_patience=db_patience,
        announce=announce,
    )
    verb = "would queue" if dry_run else "queued"
    click.echo(
        f"{verb} {summary.queued:,} killmails in {render.plural(summary.batches, 'batch')} "
        f"to {queue} in {summary.elapsed:.1f} s"
    )
    for line in render.gaps_lines(summary.with_gaps):
        click.echo(line)
    if summary.reconnects:
        click.echo(f"lost the broker and reconnected {render.plural(summary.reconnects, 'time')}")
    if summary.last_confirmed_id is not None and not dry_run:
        click.echo(f"last confirmed killmail_id: {summary.last_confirmed_id}")
    if summary.scan_reconnects:
        click.echo(
            f"lost the scan's database connection and reconnected "
            f"{render.plural(summary.scan_reconnects, 'time')}"
        )
    if summary.stopped_early and not summary.unconfirmed:
        raise click.ClickException(
            f"{summary.stopped_early}; "
            + render.resume_hint("queue", summary.last_confirmed_id, "queued", dry_run)
        )
    if not summary.complete:
        unconfirmed = len(summary.unconfirmed)
        resume = (
            f"queue again with --after-id {summary.last_confirmed_id}"
            if summary.last_confirmed_id is not None
            else "queue again with the same command"
        )
        why = f" ({summary.stopped_early})" if summary.stopped_early else ""
        raise click.ClickException(
            f"{unconfirmed:,} batch{'es were' if unconfirmed != 1 else ' was'} not confirmed "
            f"by the broker{why}; {resume}"
        )
    if not dry_run and summary.queued:
        click.echo(
            "start the workers (on this machine or on several):\n"
            f"  bulk-backfill work --procs 2{render.queue_flag(queue)}"
            # The stale killmails were found under this column: the workers' must match.
            + (f" --price-column {price_column}" if price_column != "sell" else "")
        )


@click.command("work")
@options.database_option
@options.broker_options
@options.procs_option
@options.price_options
@options.rules_option(
    "The rule set for old single-killmail messages, which name none; batches carry their own."
)
@options.engine_option
@click.option(
    "--price-refresh",
    type=click.FloatRange(min=0),
    default=10,
    show_default=True,
    help="Seconds after which each process rechecks today's prices (seed) before its "
    "next batch: a batch that starts later than this after market_prices changed "
    "behind the prices commands uses the new prices (changes through them reach "
    "the next batch at once).",
)
@options.touch_updated_at_option
@click.option(
    "--prefetch",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Batch messages each process holds ahead of the one it works on.",
)
@click.option(
    "--singles-per-batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Old single-killmail messages are gathered into batches of up to this many.",
)
# work's old name of --singles-per-batch, kept for scripts that pass it; in run and
# queue --batch-size is the killmails per batch, which work never chooses.
@click.option("--batch-size", "old_batch_size", type=click.IntRange(1, 10_000), hidden=True)
@click.option("--until-empty", is_flag=True, help="Exit once the queue is drained.")
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=1),
    default=settings.DEFAULT_STALL_TIMEOUT,
    show_default=True,
    help="Kill and restart a process that reports nothing for this many seconds "
    "while it has work in hand.",
)
@_metrics_options
def work_cmd(
    database_url,
    rabbitmq_url,
    queue,
    procs,
    price_column,
    allow_empty_prices,
    allow_incomplete,
    rules,
    engine,
    price_refresh,
    touch_updated_at,
    prefetch,
    singles_per_batch,
    old_batch_size,
    until_empty,
    stall_timeout,
    metrics_port,
    metrics_address,
):
    """Consume batches from RabbitMQ with N processes and write the values.

    Acks each batch after its COMMIT. Ctrl+C (or SIGTERM) finishes the
    batches in hand and exits 0. Run it on as many machines as you like.

    \b
    Example:
        bulk-backfill work --procs 2 --until-empty
    """
    if old_batch_size is not None:
        source = click.get_current_context().get_parameter_source("singles_per_batch")
        if source is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError(
                "give --singles-per-batch only: --batch-size is its old name in work"
            )
        click.echo(
            "note: work's --batch-size is now --singles-per-batch (the gathering of old"
            " single-killmail messages); the old name still works",
            err=True,
        )
        singles_per_batch = old_batch_size
    work_settings = settings.WorkSettings(
        db_url=config.database_url(database_url),
        amqp_url=rabbitmq_url,
        queue=queue,
        prefetch=prefetch,
        singles_per_batch=singles_per_batch,
        valuation=_valuation(price_column, touch_updated_at, engine, rules, price_refresh),
    )

    def announce(ready: int) -> None:
        ending = "until the queue is empty" if until_empty else "until stopped"
        click.echo(
            f"work: {render.plural(procs, 'process')} on queue {queue} "
            f"({render.plural(ready, 'message')} ready), "
            f"{ending}, broker {mask_url(rabbitmq_url)}, database {mask_url(work_settings.db_url)}",
            err=True,
        )

    # Here, not at the top: pika and prometheus_client cost every `run` 40 ms.
    from bulk.queue import supervise

    summary = supervise.work(
        work_settings,
        procs=procs,
        until_empty=until_empty,
        allow_empty_prices=allow_empty_prices,
        allow_incomplete=allow_incomplete,
        stall_timeout=stall_timeout,
        announce=announce,
        metrics_at=None if metrics_port is None else (metrics_address, metrics_port),
    )
    render.work_summary(summary)
    if summary.fatal:
        raise click.ClickException(f"workers stopped: {summary.fatal}")
    # Exit 1 says a killmail of the job was dead-lettered; an invalid message is
    # no killmail, so it is reported (and kept in the dead-letter queue) but
    # does not fail the run.
    if until_empty and not summary.interrupted and summary.dead:
        raise click.exceptions.Exit(1)
