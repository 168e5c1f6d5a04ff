"""Shared option decorators and parameter types of the CLI."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import click

from bulk.engine import scan, stale
from bulk.engine.modes import ENGINES, MODE_PREDICATES, PRICE_COLUMNS
from bulk.engine.rules import DEFAULT_RULES, RULES
from bulk.errors import UserError
from bulk.queue import names


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
    try:
        names.check_queue_name(value)
    except names.BrokerError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    size = len(value.encode("utf-8"))
    if size > _MAX_QUEUE_BYTES:
        raise click.BadParameter(
            f"is {size} bytes; at most {_MAX_QUEUE_BYTES} (with '.dead', the dead-letter "
            "queue's name, AMQP allows 255)",
            ctx,
            param,
        )
    if value.endswith(".dead"):
        # Queueing into a dead-letter queue would declare it with the work queue's
        # arguments (and a stray '<name>.dead.dead'), and the real work queue's
        # next declare would then fail.
        raise click.BadParameter(
            f"{value!r} is a dead-letter queue's name; give the work queue "
            f"({value[: -len('.dead')]!r}): its dead letters are in <queue>.dead",
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
        default=names.DEFAULT_QUEUE,
        show_default=True,
        callback=_queue_name,
        help="Queue name; its dead letters go to <queue>.dead.",
    )(f)
    return click.option(
        "--rabbitmq-url",
        envvar="RABBITMQ_URL",
        show_envvar=True,
        default=names.DEFAULT_URL,
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


def rules_option(help_text: str = "The rule set: seed (today's prices) or a kill-date one."):
    return click.option(
        "--rules",
        type=click.Choice(list(RULES)),
        default=DEFAULT_RULES,
        show_default=True,
        help=help_text,
    )


def type_ids_option(help_text: str):
    """--type-id, repeatable: the types a fetch from ESI asks for."""
    return click.option(
        "--type-id", "type_ids", type=click.IntRange(min=1), multiple=True, help=help_text
    )


allow_empty_prices_option = click.option(
    "--allow-empty-prices", is_flag=True, help="Go on even with no market prices."
)


allow_incomplete_option = click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Go on even if types lack type data or most lack a usable price (the summary"
    " counts the killmails valued with gaps).",
)


def price_options(f):
    return price_column_option()(allow_empty_prices_option(allow_incomplete_option(f)))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (keys in docs/json.md)."
)


def procs_option(f):
    return click.option(
        "--procs",
        type=click.IntRange(1, 64),
        default=2,
        show_default=True,
        help="Child processes; about the number of cores is right.",
    )(f)


engine_option = click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default="numpy",
    show_default=True,
    help="numpy: load each batch's lines, sum them in numpy, write with one UPDATE; "
    "sql: value and write each batch in one set-based statement (faster; docs/operations.md).",
)


touch_updated_at_option = click.option(
    "--no-touch-updated-at",
    "touch_updated_at",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Leave killmails.updated_at alone; by default, where the column exists, "
    "the rows written get the time of the write.",
)


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
            help="null: never valued; zero: valued 0; all: every killmail; stale: those"
            " whose stamp is missing, of other rules, or older than a change of their prices.",
        ),
        click.option(
            "--min-change",
            default="0",
            show_default=True,
            help="With --mode stale: how far a unit price must have moved, as a percentage"
            " (1%), to revalue the killmails that hold it; 0 is any cent.",
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


def to_selection(
    mode, limit, ids, ship_types, since, until, after_id, min_change="0"
) -> scan.Selection:
    if since and until and since >= until:
        raise UserError("--since must be before --until")
    change = stale.parse_min_change(min_change)
    if change and mode != "stale":
        raise UserError("--min-change applies to --mode stale only")
    return scan.Selection(
        mode=mode,
        limit=limit,
        ids=tuple(ids),
        ship_types=tuple(ship_types),
        since=since,
        until=until,
        after_id=after_id,
        min_change=change,
    )
