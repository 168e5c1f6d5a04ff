"""The bulk-backfill command line: a thin shell that parses options and calls the library."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import pika.exceptions
import psycopg

from bulk import (
    broker,
    config,
    db,
    dead_letters,
    demo,
    esi,
    importer,
    prices,
    producer,
    redact,
    reference,
    scan,
    status,
    supervisor,
    verify,
)
from bulk.config import mask_url
from bulk.demo_data import load_demo_data
from bulk.errors import UserError, one_line
from bulk.market import MAX_PRICE
from bulk.pool import RunSummary, run_local
from bulk.sqlfiles import MODE_PREDICATES, PRICE_COLUMNS


class _Moment(click.ParamType):
    """A date (2024-01-31 or 20240131) or a date and time (2024-01-31T18:00[:SS][+HH:MM]).

    killmail_time is a timestamp without time zone holding UTC, so a time with
    an offset is converted to UTC and one without is taken as UTC.
    """

    name = "DATE"

    def __init__(self, end_of_day: bool = False):
        self.end_of_day = end_of_day

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date like 2024-01-31 or 2024-01-31T18:00", param, ctx)
        try:
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            self.fail(f"{value!r} is out of range: years 1 to 9999 in UTC", param, ctx)
        # A bare date, in either ISO form, in --until means to the end of that day.
        if self.end_of_day and _is_bare_date(value):
            if moment.date() == date.max:
                self.fail(f"{value!r} is the last day there is: leave out --until", param, ctx)
            moment += timedelta(days=1)
        return moment


def _is_bare_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


_INT4 = click.IntRange(-(2**31), 2**31 - 1)
# <queue>.dead must fit AMQP's 255-byte limit on queue names too.
_MAX_QUEUE_BYTES = 255 - len(".dead")


def _queue_name(ctx, param, value: str) -> str:
    if not value:
        raise click.BadParameter("must not be empty", ctx, param)
    size = len(value.encode("utf-8"))
    if size > _MAX_QUEUE_BYTES:
        raise click.BadParameter(
            f"is {size} bytes; at most {_MAX_QUEUE_BYTES} (with '.dead', the dead-letter "
            "queue's name, AMQP allows 255)",
            ctx,
            param,
        )
    return value


def database_option(f):
    return click.option(
        "--database-url",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="libpq URL of the killboard database.",
    )(f)


def broker_options(f):
    """--rabbitmq-url and --queue (shared by queue and work)."""
    f = click.option(
        "--queue",
        envvar="BACKFILL_QUEUE",
        show_envvar=True,
        default=broker.DEFAULT_QUEUE,
        show_default=True,
        callback=_queue_name,
        help="Queue name; its dead letters go to <queue>.dead.",
    )(f)
    return click.option(
        "--rabbitmq-url",
        envvar="RABBITMQ_URL",
        show_envvar=True,
        default=broker.DEFAULT_URL,
        show_default="amqp://guest:***@127.0.0.1:5672/%2F",
        help="amqp URL of the broker.",
    )(f)


def price_column_option(help_text: str = "Which market_prices column is the unit price."):
    return click.option(
        "--price-column",
        type=click.Choice(list(PRICE_COLUMNS)),
        default="sell",
        show_default=True,
        help=help_text,
    )


allow_empty_prices_option = click.option(
    "--allow-empty-prices", is_flag=True, help="Go on even with no market prices."
)


def price_options(f):
    return price_column_option()(allow_empty_prices_option(f))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (keys in the README)."
)


def procs_option(f):
    return click.option(
        "--procs",
        type=click.IntRange(1, 64),
        default=2,
        show_default=True,
        help="Child processes; about the number of cores is right.",
    )(f)


db_patience_option = click.option(
    "--db-patience",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    help="Seconds to wait for a lost database connection of the scan before stopping "
    "with a resume point.",
)


def selection_options(f):
    """The options that choose which killmails a job covers (shared by run and queue)."""
    options = [
        click.option(
            "--mode",
            type=click.Choice(list(MODE_PREDICATES)),
            default="null",
            show_default=True,
            help="null: never valued; zero: valued 0; all: every killmail.",
        ),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many killmails."),
        click.option("--id", "ids", type=_INT4, multiple=True, help="Only this killmail (repeat)."),
        click.option(
            "--ship-type", "ship_types", type=_INT4, multiple=True, help="Only this ship (repeat)."
        ),
        click.option(
            "--since",
            type=_Moment(),
            help="killmail_time on or after this; UTC unless it has an offset (+02:00).",
        ),
        click.option(
            "--until",
            type=_Moment(end_of_day=True),
            help="killmail_time before this; a bare date includes that day. UTC unless offset.",
        ),
        click.option(
            "--after-id", type=_INT4, help="Only killmail_id above this (resume a stopped job)."
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 10_000),
            default=500,
            show_default=True,
            help="Killmails per batch.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _selection(mode, limit, ids, ship_types, since, until, after_id) -> scan.Selection:
    if since and until and since >= until:
        raise UserError("--since must be before --until")
    return scan.Selection(
        mode=mode,
        limit=limit,
        ids=tuple(ids),
        ship_types=tuple(ship_types),
        since=since,
        until=until,
        after_id=after_id,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bulk-backfill")
def cli():
    """Compute and write the ISK values of EVE Online killmails in PostgreSQL, in bulk.

    Example: bulk-backfill demo
    """


@cli.command("init-db")
@database_option
def init_db_cmd(database_url):
    """Create the killboard tables that are missing. Never drops or alters existing data.

    Example: DATABASE_URL=postgresql://postgres@127.0.0.1/killboard bulk-backfill init-db
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        created = db.init_db(conn)
    if created:
        click.echo(f"created tables: {', '.join(created)} in {mask_url(url)}")
    else:
        click.echo(f"all killboard tables already exist in {mask_url(url)}; nothing changed")


@cli.command("demo-data")
@database_option
@click.option("--killmails", type=click.IntRange(min=1), required=True, help="How many.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same data.")
def demo_data_cmd(database_url, killmails, seed):
    """Fill an empty killboard with generated killmails, items, types and prices.

    Example: bulk-backfill demo-data --killmails 100000 --seed 7
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        items = load_demo_data(conn, killmails, seed)
    click.echo(f"loaded {killmails:,} killmails with {items:,} item rows (seed {seed})")


@cli.command("import-killmails")
@database_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_killmails_cmd(database_url, file):
    """Load ESI-format killmails from a JSON-lines file (bare, or zKillboard/RedisQ wrapped).

    Example: bulk-backfill import-killmails killmails.jsonl
    """
    url = config.database_url(database_url)
    with db.connect(url) as conn:
        db.require_schema(conn)
        result = importer.import_killmails(conn, file)
    click.echo(
        f"read {result.read:,} killmails: imported {result.imported:,} "
        f"with {result.items:,} item rows"
    )
    if result.already_present:
        click.echo(
            f"skipped {len(result.already_present):,} already present: "
            + _sample(result.already_present)
        )
    if result.repeated_in_file:
        click.echo(
            f"skipped {len(result.repeated_in_file):,} repeated in the file: "
            + _sample(result.repeated_in_file)
        )


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("ch") else "s")


def _resume_hint(command: str, after: int | None, done: str, dry_run: bool = False) -> str:
    """Where a stopped run or queue goes on: the last confirmed ID and the command."""
    if dry_run:
        return "count again with the same command"
    if after is None:
        return f"nothing was {done} for sure: {command} again with the same command"
    return (
        f"last confirmed killmail_id {after} (every match up to it is {done}): "
        f"resume with the same command and --after-id {after}"
    )


def _sample(ids, n: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:n])
    return shown + (f", ... ({len(ids) - n} more)" if len(ids) > n else "")


@cli.command("run")
@database_option
@selection_options
@procs_option
@price_options
@db_patience_option
def run_cmd(
    database_url, procs, price_column, allow_empty_prices, batch_size, db_patience, **selection
):
    """Value killmails on this machine with N processes, no broker needed.

    Ctrl+C finishes the batches in hand and stops; the summary says how to resume.

    Example: bulk-backfill run --mode zero --procs 2
    """
    url = config.database_url(database_url)
    sel = _selection(**selection)

    def announce(selected: int) -> None:
        click.echo(
            f"run: mode {sel.mode}, {selected:,} killmails match, {procs} processes, "
            f"batch size {batch_size}, prices from {price_column}, database {mask_url(url)}",
            err=True,
        )

    summary = run_local(
        url,
        sel,
        procs=procs,
        batch_size=batch_size,
        price_column=price_column,
        allow_empty_prices=allow_empty_prices,
        db_patience=db_patience,
        announce=announce,
    )
    print_summary(summary)
    if summary.stopped_early:
        raise click.ClickException(
            f"{summary.stopped_early}; " + _resume_hint("run", summary.resume_after, "valued")
        )
    if summary.interrupted and summary.resume_after is not None:
        click.echo(
            f"interrupted: resume with the same command and --after-id {summary.resume_after}"
        )
    elif summary.interrupted:
        click.echo("interrupted before any batch finished: run the same command again")
    if summary.failures:
        raise click.exceptions.Exit(1)


@cli.command("queue")
@database_option
@broker_options
@selection_options
@click.option("--dry-run", is_flag=True, help="Count the batches; publish nothing.")
@allow_empty_prices_option
@click.option(
    "--broker-patience",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    help="Seconds to wait for a lost broker before stopping with a resume point.",
)
@db_patience_option
def queue_cmd(
    database_url,
    rabbitmq_url,
    queue,
    batch_size,
    dry_run,
    allow_empty_prices,
    broker_patience,
    db_patience,
    **sel,
):
    """Publish the matching killmails to RabbitMQ as batches for `work`.

    Every message is persistent and confirmed by the broker. The summary
    gives the last confirmed killmail_id; --after-id resumes from there.

    Example: bulk-backfill queue --mode zero --since 2024-01-01
    """
    url = config.database_url(database_url)
    selection = _selection(**sel)

    def announce(selected: int, batches: int) -> None:
        target = "dry run, nothing published" if dry_run else mask_url(rabbitmq_url)
        click.echo(
            f"queue: mode {selection.mode}, {selected:,} killmails match, queue {queue}, "
            f"batch size {batch_size} ({_plural(batches, 'batch')}), {target}",
            err=True,
        )

    summary = producer.queue_killmails(
        url,
        rabbitmq_url,
        selection,
        queue=queue,
        batch_size=batch_size,
        dry_run=dry_run,
        allow_empty_prices=allow_empty_prices,
        broker_patience=broker_patience,
        db_patience=db_patience,
        announce=announce,
    )
    verb = "would queue" if dry_run else "queued"
    click.echo(
        f"{verb} {summary.queued:,} killmails in {_plural(summary.batches, 'batch')} "
        f"to {queue} in {summary.elapsed:.1f} s"
    )
    if summary.reconnects:
        click.echo(f"lost the broker and reconnected {_plural(summary.reconnects, 'time')}")
    if summary.last_confirmed_id is not None and not dry_run:
        click.echo(f"last confirmed killmail_id: {summary.last_confirmed_id}")
    if summary.scan_reconnects:
        click.echo(
            f"lost the scan's database connection and reconnected "
            f"{_plural(summary.scan_reconnects, 'time')}"
        )
    if summary.stopped_early and not summary.unconfirmed:
        raise click.ClickException(
            f"{summary.stopped_early}; "
            + _resume_hint("queue", summary.last_confirmed_id, "queued", dry_run)
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
            f"  bulk-backfill work --procs 2{_queue_flag(queue)}"
        )


def _queue_flag(queue: str) -> str:
    """--queue for a command line the user copies; quoted, since a name may hold spaces."""
    return "" if queue == broker.DEFAULT_QUEUE else f" --queue {shlex.quote(queue)}"


@cli.command("work")
@database_option
@broker_options
@procs_option
@price_options
@click.option(
    "--prefetch",
    type=click.IntRange(1, 1000),
    default=2,
    show_default=True,
    help="Batch messages each process holds ahead of the one it works on.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Old single-killmail messages are gathered into batches of up to this many.",
)
@click.option("--until-empty", is_flag=True, help="Exit once the queue is drained.")
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=1),
    default=supervisor.DEFAULT_STALL_TIMEOUT,
    show_default=True,
    help="Kill and restart a process that reports nothing for this many seconds "
    "while it has work in hand.",
)
def work_cmd(
    database_url,
    rabbitmq_url,
    queue,
    procs,
    price_column,
    allow_empty_prices,
    prefetch,
    batch_size,
    until_empty,
    stall_timeout,
):
    """Consume batches from RabbitMQ with N processes and write the values.

    Acks each batch after its COMMIT. Ctrl+C (or SIGTERM) finishes the
    batches in hand and exits 0. Run it on as many machines as you like.

    Example: bulk-backfill work --procs 2 --until-empty
    """
    settings = supervisor.WorkSettings(
        db_url=config.database_url(database_url),
        amqp_url=rabbitmq_url,
        queue=queue,
        prefetch=prefetch,
        batch_size=batch_size,
        price_column=price_column,
    )

    def announce(ready: int) -> None:
        ending = "until the queue is empty" if until_empty else "until stopped"
        click.echo(
            f"work: {procs} processes on queue {queue} ({ready:,} messages ready), "
            f"{ending}, broker {mask_url(rabbitmq_url)}, database {mask_url(settings.db_url)}",
            err=True,
        )

    summary = supervisor.work(
        settings,
        procs=procs,
        until_empty=until_empty,
        allow_empty_prices=allow_empty_prices,
        stall_timeout=stall_timeout,
        announce=announce,
    )
    print_work_summary(summary)
    if summary.fatal:
        raise click.ClickException(f"workers stopped: {summary.fatal}")
    # Exit 1 says a killmail of the job was dead-lettered; an invalid message is
    # no killmail, so it is reported (and kept in the dead-letter queue) but
    # does not fail the run.
    if until_empty and not summary.interrupted and summary.dead:
        raise click.exceptions.Exit(1)


@cli.command("status")
@database_option
@broker_options
@click.option("--no-queue", is_flag=True, help="Leave out the queue (no RabbitMQ in use).")
@click.option(
    "--management-url",
    help="RabbitMQ management API, for the unacked count [default: http://<broker host>:15672].",
)
@price_column_option("The price column the values are computed from.")
@click.option(
    "--stale-days",
    type=click.FloatRange(min=0),
    default=7,
    show_default=True,
    help="Warn when the newest price is older than this.",
)
@json_option
def status_cmd(
    database_url, rabbitmq_url, queue, no_queue, management_url, price_column, stale_days, as_json
):
    """Queue depth, valuation progress and price freshness, in about a second.

    Example: bulk-backfill status --stale-days 3
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
            stale_days=stale_days,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo("\n".join(_status_lines(result)))


def _status_lines(result: status.Status) -> list[str]:
    est = set(result.estimates)
    d, p, q = result.database, result.prices, result.queue
    lines = []
    if q is not None:
        unacked = f"{q.unacked:,}" if q.unacked is not None else "?"
        lines += [
            f"queue {q.name}",
            f"  ready messages      {q.ready:>12,}",
            f"  unacked messages    {unacked:>12}  ({q.unacked_note})",
            f"  consumers           {q.consumers:>12,}",
            f"  killmails waiting   {q.killmails_waiting:>12,}  (estimate: ready messages"
            " times the IDs in the first one)",
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
    lines += [f"warning: {w}" for w in result.warnings]
    return lines


@cli.command("verify")
@database_option
@click.option("--sample", type=click.IntRange(min=1), help="Check this many, chosen at random.")
@click.option("--all", "check_all", is_flag=True, help="Check every valued killmail.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same sample.")
@price_column_option("The price column the values were computed from.")
@json_option
def verify_cmd(database_url, sample, check_all, seed, price_column, as_json):
    """Recompute written values with the independent SQL reference; exit 1 on any mismatch.

    Without --sample or --all it checks a sample of 2,000.

    Example: bulk-backfill verify --sample 5000 --seed 42
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
        )
    if as_json:
        click.echo(json.dumps(_verify_json(report), indent=2))
    else:
        click.echo("\n".join(_verify_lines(report)))
    if not report.ok:
        raise click.exceptions.Exit(1)


def _verify_json(report: verify.VerifyReport) -> dict:
    return {
        "checked": report.checked,
        "mismatches": report.mismatch_count,
        "ok": report.ok,
        "price_column": report.price_column,
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


def _verify_lines(report: verify.VerifyReport) -> list[str]:
    what = (
        "every valued killmail"
        if report.sample_size is None
        else f"a sample (seed {report.seed}, digest {report.sample_digest})"
    )
    lines = [
        f"checked     {report.checked:>12,}  ({what}; reference prices: {report.price_column})",
        f"mismatches  {report.mismatch_count:>12,}",
    ]
    for m in report.mismatches:
        lines.append(f"  {m.killmail_id}: stored {_isk(m.stored)}; expected {_isk(m.expected)}")
    if report.mismatch_count > len(report.mismatches):
        lines.append(f"  ... and {report.mismatch_count - len(report.mismatches):,} more")
    lines += [f"note: {n}" for n in report.notes]
    lines.append("value distribution (total_value, ISK, every killmail):")
    for band, label in zip(reference.BANDS, reference.BAND_LABELS):
        lines.append(f"  {label:<9} {report.distribution[band]:>12,}")
    return lines


def _isk(values: tuple) -> str:
    names = ("total", "destroyed", "dropped")
    return ", ".join(
        # repr: the shortest text that round-trips, so two floats that differ
        # in the last bit never print alike.
        f"{n} {'NULL' if v is None else repr(v)}"
        for n, v in zip(names, values)
    )


@cli.group("prices")
def prices_group():
    """Fill market_prices: from ESI (fetch) or from a file (import)."""


_ESI_COLUMN = click.Choice(list(PRICE_COLUMNS))


@prices_group.command("import")
@database_option
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
    row stops the import with its line number and nothing is written.

    Example: bulk-backfill prices import esi_prices.json --average-as sell
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
        result = prices.import_prices(conn, file, mapping)
    click.echo(
        f"imported {_plural(result.rows, 'price row')} from {file} "
        f"into {', '.join(result.columns)} (updated_at set to now)"
    )
    if "sell" not in result.columns:
        click.echo(
            "note: values use market_prices.sell unless --price-column says otherwise"
            " (e.g. run --price-column average)"
        )


@prices_group.command("fetch")
@database_option
@click.option("--region", type=click.IntRange(min=1), default=esi.DEFAULT_REGION, show_default=True)
@click.option(
    "--type-id",
    "type_ids",
    type=click.IntRange(min=1),
    multiple=True,
    help="Only this type (repeat). Default: every type the killmails use.",
)
@click.option("--concurrency", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--esi-url", default=esi.DEFAULT_ESI, show_default=True)
@click.option(
    "--user-agent",
    help="Who to contact about these requests, e.g. 'killboard.example; admin@example.com'.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10,
    show_default=True,
    help="Seconds per request before it is retried.",
)
def prices_fetch_cmd(database_url, region, type_ids, concurrency, esi_url, user_agent, timeout):
    """Fetch buy, sell, average and volume from ESI market orders for every type used.

    buy = highest buy order, sell = lowest sell order, average = (buy + sell) / 2,
    volume = sum of volume_remain. A type with no orders keeps its old row.

    Example: bulk-backfill prices fetch --user-agent 'kb.example; me@example.com'
    """
    url = config.database_url(database_url)
    agent = f"bulk-backfill/{_version()}" + (f" ({user_agent})" if user_agent else "")
    client = esi.Client(esi_url, region, user_agent=agent, timeout=timeout)

    def announce(n: int) -> None:
        click.echo(
            f"prices fetch: {_plural(n, 'type')} from {esi_url} region {region}, "
            f"{concurrency} at a time",
            err=True,
        )

    summary = prices.fetch_prices(
        url, client, type_ids=list(type_ids) or None, concurrency=concurrency, announce=announce
    )
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
        lines.append(f"no orders: {_sample(summary.no_orders)}")
    if summary.bad_order_types:
        lines.append(f"bad orders in types: {_sample(sorted(summary.bad_order_types))}")
    for type_id, reason in summary.failed[:20]:
        lines.append(f"failed {type_id}: {reason}")
    if summary.interrupted:
        lines.append("interrupted: the types fetched so far are written; run again for the rest")
    if summary.priced:
        lines.append("next: bulk-backfill queue --mode zero (or run --mode zero) to value them")
    click.echo("\n".join(lines))
    if summary.failed or summary.interrupted:
        raise click.exceptions.Exit(1)


def _version() -> str:
    try:
        return version("bulk-backfill")
    except PackageNotFoundError:
        return "dev"


@cli.group("dead")
def dead_group():
    """Look at and requeue the dead-letter queue <queue>.dead."""


@dead_group.command("list")
@broker_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def dead_list_cmd(rabbitmq_url, queue, limit):
    """Show each dead letter's reason, number of IDs and attempts; nothing is removed.

    Example: bulk-backfill dead list --limit 50
    """
    total, shown = dead_letters.list_dead(rabbitmq_url, queue, limit)
    dead = broker.dead_letter_queue(queue)
    click.echo(f"{dead}: {_plural(total, 'message')}")
    for n, letter in enumerate(shown, 1):
        ids = "invalid" if letter.ids is None else _plural(letter.ids, "ID")
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
@broker_options
@click.option("--limit", type=click.IntRange(min=1), help="At most this many messages.")
def dead_requeue_cmd(rabbitmq_url, queue, limit):
    """Put dead-lettered batches back on the work queue, once the cause is fixed.

    Invalid messages stay in the dead-letter queue: they would fail again.

    Example: bulk-backfill dead requeue
    """
    summary = dead_letters.requeue_dead(rabbitmq_url, queue, limit)
    click.echo(
        f"requeued {_plural(summary.requeued_messages, 'message')} "
        f"({_plural(summary.requeued_ids, 'killmail')}) to {queue}; "
        f"{_plural(summary.remaining, 'message')} left in {broker.dead_letter_queue(queue)}"
        + (f" ({summary.left_invalid:,} invalid)" if summary.left_invalid else "")
    )


def print_work_summary(summary: supervisor.WorkSummary) -> None:
    other_skips = summary.skipped - summary.no_victim - summary.dead
    lines = [
        f"batches    {summary.batches:>12,}  (messages acked)",
        f"processed  {summary.processed:>12,}",
        f"updated    {summary.updated:>12,}",
        f"skipped    {summary.skipped:>12,}  (no victim {summary.no_victim:,}; "
        f"no longer matching the mode {other_skips:,}; dead-lettered {summary.dead:,})",
        f"elapsed    {summary.elapsed:>12.1f} s  ({summary.rate:,.0f} killmails/s)",
    ]
    if summary.retried:
        lines.append(f"retried    {summary.retried:>12,}  killmails republished after an error")
    if summary.invalid:
        lines.append(f"invalid    {summary.invalid:>12,}  messages dead-lettered as invalid")
    dead_queue = broker.dead_letter_queue(summary.queue)
    if summary.dead or summary.invalid:
        lines.append(
            f"dead letters are in {dead_queue}: bulk-backfill dead list{_queue_flag(summary.queue)}"
        )
    if summary.restarts:
        lines.append(f"worker processes restarted: {summary.restarts}")
    if summary.stall_restarts:
        lines.append(f"worker processes restarted after a stall: {summary.stall_restarts}")
    if summary.interrupted:
        lines.append("stopped on request; unfinished messages are back in the queue")
    click.echo("\n".join(lines))


def print_summary(summary: RunSummary) -> None:
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
        lines.append(f"no victim: {_sample(summary.no_victim_sample)}")
    lines += _failure_lines(summary.failures)
    if summary.restarts:
        lines.append(f"child processes restarted: {summary.restarts}")
    if summary.scan_reconnects:
        lines.append(f"scan reconnected to the database: {summary.scan_reconnects}")
    click.echo("\n".join(lines))


def _failure_lines(failures: list) -> list[str]:
    """Every killmail that failed alone, with its error; killmails sharing an error share a line."""
    by_error: dict[str, list[int]] = {}
    for failure in failures:
        by_error.setdefault(failure.error, []).append(failure.killmail_id)
    lines = []
    for error, ids in by_error.items():
        if len(ids) == 1:
            lines.append(f"failed {ids[0]}: {error}")
        else:
            listed = ", ".join(map(str, sorted(ids)))
            lines.append(f"failed {len(ids):,} killmails ({listed}): {error}")
    return lines


@cli.command("demo")
@click.option("--killmails", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--procs", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
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
def demo_cmd(killmails, procs, seed, database, datadir):
    """Run the whole job end to end on a generated killboard.

    With DATABASE_URL set it uses a database named bulk_backfill_demo on that
    server; without it, an embedded PostgreSQL (pip install 'bulk-backfill[demo]').

    Example: bulk-backfill demo --killmails 20000
    """
    result = demo.run_demo(
        killmails=killmails,
        procs=procs,
        seed=seed,
        database=database,
        server_url=demo.server_url_from_env(),
        datadir=datadir,
        say=click.echo,
    )
    print_summary(result.summary)
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
