"""`status`: how far along the backfill is, in the queue, the database and the price table.

Every figure is exact unless its name is listed in `estimates`. The queue's
unacked count needs RabbitMQ's management API; without it that figure is
None and a note says why.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

import pika
import psycopg

from bulk import readiness, redact, sqlfiles
from bulk.engine import book, modes, stale
from bulk.engine import rules as rule_sets
from bulk.queue import broker, messages

# Above this many item rows (about 200,000 killmails), the types used in killmails
# are read from a 2% block sample: the exact distinct scan of tens of millions of
# rows takes seconds.
_EXACT_ITEMS_UP_TO = 5_000_000
# Up to this many ready messages, status reads them all (and gives them back) and
# counts the killmails waiting exactly; a short queue's last batch is often far
# from full, so ready times the head's IDs can be off by nearly a batch a message.
_EXACT_QUEUE_UP_TO = 100
_ITEM_SOURCES = {
    "all": "killmail_items",
    "sample": "killmail_items TABLESAMPLE SYSTEM (2) REPEATABLE (1)",
}


@dataclass
class QueueStatus:
    name: str
    ready: int
    consumers: int
    dead_letters: int
    killmails_waiting: int  # exact for a short queue, else ready times the IDs in the first
    unacked: int | None = None
    unacked_note: str | None = None
    killmails_waiting_exact: bool = False
    # False: no queue of this name on the broker (a typo, or no `queue` run yet);
    # status only looks, so it is not created and every figure is 0.
    exists: bool = True


@dataclass
class DatabaseStatus:
    killmails: int
    valued: int
    null_value: int
    zero_value: int
    no_victim: int


@dataclass
class ValuationStatus:
    """The stamps: what valued the killmails, and which are stale under `book`."""

    book: str  # the book stale is measured against: --rules (with --price-column)
    by_rules: dict[str, int]  # stamped killmails per book
    unpriced: dict[str, int]  # of those, valued with a line priced by the fallback
    stale: dict[str, int]  # per reason (bulk.engine.stale.REASONS), never_valued included
    stale_total: int
    # Book rows a price command marked stale: the next job rebuilds them and
    # may then find more killmails stale (status only reads).
    book_rows_pending: int


@dataclass
class PriceStatus:
    rows: int
    price_column: str
    types_used: int
    types_priced: int
    oldest_update: str | None
    newest_update: str | None

    @property
    def priced_share(self) -> float | None:
        return self.types_priced / self.types_used if self.types_used else None


@dataclass
class Status:
    database: DatabaseStatus
    prices: PriceStatus
    queue: QueueStatus | None
    readiness: readiness.Readiness | None = None
    valuations: ValuationStatus | None = None
    warnings: list[str] = field(default_factory=list)
    estimates: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["prices"]["priced_share"] = self.prices.priced_share
        data["readiness"] = None if self.readiness is None else readiness_json(self.readiness)
        return data


def readiness_json(r: readiness.Readiness) -> dict:
    listed = 100  # IDs listed per gap; the counts are whole
    problems = r.problems()
    return {
        "rules": r.rules,
        "price_column": r.price_column,
        "used_types": r.used_types,
        "missing_types": len(r.missing_types),
        "missing_groups": len(r.missing_groups),
        "missing_categories": len(r.missing_categories),
        "missing_type_ids": r.missing_types[:listed],
        "missing_group_ids": r.missing_groups[:listed],
        "missing_category_ids": r.missing_categories[:listed],
        "priced_types": r.priced,
        "price_coverage": r.coverage,
        "priced_by_column": r.by_column or None,
        "better_price_column": r.better_column(),
        "ready": not problems,
        "problems": problems,
    }


def database_status(conn: psycopg.Connection) -> DatabaseStatus:
    row = conn.execute(sqlfiles.load("status_killmails")).fetchone()
    return DatabaseStatus(*row)


def valuation_status(
    conn: psycopg.Connection, rules: str, price_column: str
) -> ValuationStatus | None:
    """The stamps per book and the stale killmails per reason; None where the tool's
    tables are missing or older than this version (no job of it has run)."""
    if book.missing_table(conn):
        return None
    by_rules, unpriced = {}, {}
    for key, killmails, with_unpriced in conn.execute(sqlfiles.load("status_valuations")):
        by_rules[key], unpriced[key] = killmails, with_unpriced
    counts = stale.count(conn, rules, price_column)
    key = rule_sets.book_key(rules, price_column)
    (pending,) = conn.execute(sqlfiles.load("status_book_pending"), {"book": key}).fetchone()
    return ValuationStatus(
        book=key,
        by_rules=by_rules,
        unpriced=unpriced,
        stale={reason: counts.get(reason, 0) for reason in stale.REASONS},
        stale_total=sum(counts.values()),
        book_rows_pending=pending,
    )


def price_status(conn: psycopg.Connection, price_column: str) -> tuple[PriceStatus, bool]:
    """The price table's figures, and whether the type share is a sample's estimate."""
    (items,) = conn.execute(
        sqlfiles.load("table_rows_estimate"), {"table": "killmail_items"}
    ).fetchone()
    sampled = items > _EXACT_ITEMS_UP_TO
    statement = sqlfiles.load("status_prices").format(
        items=_ITEM_SOURCES["sample" if sampled else "all"],
        price_column=modes.price_column(price_column),
    )
    rows, oldest, newest, used, priced = conn.execute(statement).fetchone()
    return (
        PriceStatus(rows, price_column, used, priced, _iso(oldest), _iso(newest)),
        sampled,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def queue_status(amqp_url: str, queue: str, management_url: str | None) -> QueueStatus:
    """The queue's figures; a BrokerError for a name the broker cannot take as it is."""
    broker.check_queue_name(queue)
    broker.allow_deep_header_tables()  # it reads messages anyone may have written
    connection = broker.connect(amqp_url)
    with broker.closed_after(connection):
        depth = _existing_depth(connection.channel(), queue)
        dead = _existing_depth(connection.channel(), broker.dead_letter_queue(queue))
        dead_letters = 0 if dead is None else dead.ready
        if depth is None:
            return _absent(queue, dead_letters, "no such queue")
        try:
            waiting, exact = _killmails_waiting(connection, queue, depth)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            return _absent(queue, dead_letters, "no such queue (deleted while status read it)")
    status = QueueStatus(
        name=queue,
        ready=depth.ready,
        consumers=depth.consumers,
        dead_letters=dead_letters,
        killmails_waiting=waiting,
        killmails_waiting_exact=exact,
    )
    status.unacked, status.unacked_note = _unacked(amqp_url, queue, management_url)
    return status


def _absent(queue: str, dead_letters: int, note: str) -> QueueStatus:
    return QueueStatus(
        name=queue,
        ready=0,
        consumers=0,
        dead_letters=dead_letters,
        killmails_waiting=0,
        unacked=0,
        unacked_note=note,
        killmails_waiting_exact=True,
        exists=False,
    )


def _killmails_waiting(connection, queue: str, depth: broker.Depth) -> tuple[int, bool]:
    """(killmails in the queue's messages, whether that is exact, not estimated)."""
    # With workers consuming, a count would race them for the messages (and
    # could read its own copies): only the head is read, the rest estimated.
    if depth.ready <= _EXACT_QUEUE_UP_TO and depth.consumers == 0:
        ids, read, copied = _ids_in_messages(connection.channel(), queue, depth.ready)
        # Exact if no worker or publisher took or added messages meanwhile.
        after = _existing_depth(connection.channel(), queue)
        exact = (copied or read == depth.ready) and after == depth
        return (ids if exact or not read else round(ids / read * depth.ready)), exact
    ids, read, _ = _ids_in_messages(connection.channel(), queue, 1)
    return depth.ready * ids, False


def _existing_depth(channel, queue: str) -> broker.Depth | None:
    """The queue's depth, or None where there is no such queue (a passive declare creates none)."""
    try:
        return broker.depth(channel, queue)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise broker.BrokerError(f"cannot read queue {queue!r}: {exc.reply_text}") from None


# A republish the broker refuses (a user that may read the queue but not publish
# to it, a queue deleted meanwhile): the message read goes back as it came.
_PUT_BACK_REFUSED = (
    pika.exceptions.ChannelClosedByBroker,
    pika.exceptions.UnroutableError,
    pika.exceptions.NackError,
)
# The headers `work` writes on the batches it republishes (bulk/queue/handle.py):
# text and integers, which pika gives back as they were sent. Another producer's
# header may be a float, which pika decodes as an integer: a copy would change it.
_OWN_HEADERS = frozenset({"x-first-failure", "x-last-failure", "x-error", "x-host", "x-attempts"})


def _copyable(method, properties) -> bool:
    """Whether a copy of a batch would be the batch, as `work` will take it.

    Not one that came back flagged (a worker died holding it: `work` counts that
    try, so it keeps its flag), one that expires (a copy would start its time
    again), one that names its publishing user (the broker refuses that name from
    another), or one with headers of another producer.
    """
    return (
        not method.redelivered
        and properties.expiration is None
        and properties.user_id is None
        and set(properties.headers or ()) <= _OWN_HEADERS
    )


def _ids_in_messages(channel, queue: str, count: int) -> tuple[int, int, bool]:
    """(IDs, messages read, every copy made) of up to `count` messages from the head
    of the queue.

    A message handed back unacked (a nack, or its channel closed) returns flagged
    as redelivered, and `work` counts that flag against a batch as a failed try
    (not against a single-killmail message or an unreadable one): one `status`
    would cost every batch it read an attempt, a republish and a "redelivered"
    line. So a batch read goes back as a copy at the tail of its priority,
    confirmed by the broker before the one read is acked. A batch without a
    priority is copied as it is read: its copy queues behind every message not
    read yet. One with a priority is copied once all are read: its copy would be
    read again before the messages of lower priority (so an interrupt in between
    gives those back flagged). Every other message, and a batch `_copyable`
    refuses, stays unacked and goes back as it came, flagged, when the channel
    closes. Where the broker refuses a copy, nothing more is read or copied.
    """
    total = read = 0
    later = []
    with broker.closed_after(channel):
        channel.confirm_delivery()
        for _ in range(count):
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:  # a worker took the rest
                break
            read += 1
            message = _decoded(body)
            if not isinstance(message, messages.Batch):
                if message is not None:  # a single-killmail message
                    total += 1
                continue
            total += len(message.ids)
            if not _copyable(method, properties):
                continue
            if properties.priority:
                later.append((method, properties, body))
            elif not _put_back(channel, queue, method, properties, body):
                return total, read, False
        for method, properties, body in later:
            if not _put_back(channel, queue, method, properties, body):
                return total, read, False
        return total, read, True


def _put_back(channel, queue: str, method, properties, body: bytes) -> bool:
    """A copy of the message at the tail, confirmed, then the one read acked."""
    try:
        channel.basic_publish("", queue, body, properties, mandatory=True)
    except _PUT_BACK_REFUSED:
        return False
    channel.basic_ack(method.delivery_tag)
    return True


def _decoded(body: bytes) -> messages.Batch | messages.Single | None:
    try:
        return messages.decode(body)
    except messages.InvalidMessage:
        return None


def default_management_url(amqp_url: str) -> str:
    """The management API where a default install has it: TLS (15671) for amqps, else 15672."""
    params = pika.URLParameters(amqp_url)
    host = params.host or "127.0.0.1"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if amqp_url.lower().startswith("amqps://"):
        return f"https://{host}:15671"
    return f"http://{host}:15672"


@dataclass
class _Target:
    base: str  # without userinfo: safe to show
    username: str
    password: str
    refusal: str | None = None  # why the credentials are not sent


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def management_target(amqp_url: str, management_url: str | None) -> _Target:
    """Where to ask, with which credentials, and whether they may be sent there.

    Credentials go only over https, to a loopback host, or to a URL the user
    named with --management-url; never over plain HTTP to a host we guessed.
    """
    params = pika.URLParameters(amqp_url)
    username, password = params.credentials.username, params.credentials.password
    explicit = management_url is not None
    url = management_url if explicit else default_management_url(amqp_url)
    scheme, sep, rest = url.partition("://")
    # Userinfo up to the last '@' before the path: a password may hold '#', '/' or '?'.
    authority_end = len(rest)
    at = rest.rfind("@")
    slash = rest.find("/", at + 1)
    if slash != -1:
        authority_end = slash
    authority, path = rest[:authority_end], rest[authority_end:]
    userinfo, at_sign, hostport = authority.rpartition("@")
    if at_sign:
        user, _, secret = userinfo.partition(":")
        username, password = urllib.parse.unquote(user), urllib.parse.unquote(secret)
        redact.remember(url)
    base = f"{scheme}{sep}{hostport}{path}".rstrip("/")
    target = _Target(base, username, password)
    host = urllib.parse.urlsplit(f"{scheme}://{hostport}").hostname or ""
    if not explicit and scheme.lower() != "https" and not _is_loopback(host):
        target.refusal = (
            f"unknown: the broker's password is not sent over plain HTTP to {host}; "
            "pass --management-url (https://..., or http://... if you accept that) to ask it"
        )
    return target


def _unacked(amqp_url: str, queue: str, management_url: str | None) -> tuple[int | None, str]:
    target = management_target(amqp_url, management_url)
    if target.refusal:
        return None, target.refusal
    base = target.base
    params = pika.URLParameters(amqp_url)
    vhost = urllib.parse.quote(params.virtual_host, safe="")
    request = urllib.request.Request(f"{base}/api/queues/{vhost}/{urllib.parse.quote(queue)}")
    credentials = f"{target.username}:{target.password}"
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            data = json.load(response)
        return int(data.get("messages_unacknowledged", 0)), f"from the management API at {base}"
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 0, f"from the management API at {base} (no such queue)"
        return None, f"unknown: the management API at {base} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact.scrub(str(getattr(exc, "reason", exc)), management_url, amqp_url)
        return None, f"unknown: the management API at {base} is not reachable ({reason})"


def _missing_queue_line(queue: str) -> str:
    return (
        f"no queue named {queue!r} on this broker: check --queue / BACKFILL_QUEUE "
        "(`bulk-backfill queue` creates it; --no-queue leaves the queue out)"
    )


def status(
    conn: psycopg.Connection,
    *,
    amqp_url: str | None,
    queue: str,
    management_url: str | None = None,
    price_column: str = "sell",
    rules: str = rule_sets.DEFAULT_RULES,
    stale_days: float = 7,
    now: datetime | None = None,
) -> Status:
    """Everything `status` shows; amqp_url None leaves the queue out."""
    prices, sampled = price_status(conn, price_column)
    result = Status(
        database=database_status(conn),
        prices=prices,
        queue=None if amqp_url is None else queue_status(amqp_url, queue, management_url),
        readiness=readiness.check(conn, rules, price_column),
        valuations=valuation_status(conn, rules, price_column),
    )
    if result.queue is not None and not result.queue.killmails_waiting_exact:
        result.estimates.append("queue.killmails_waiting")
    if sampled:
        result.estimates += ["prices.types_used", "prices.types_priced", "prices.priced_share"]
    # updated_at holds UTC, as the tool writes it (localtimestamp in a session in UTC).
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)
    result.warnings = _warnings(result, stale_days, now or utc_now)
    return result


def _warnings(result: Status, stale_days: float, now: datetime) -> list[str]:
    found = []
    if result.queue is not None and not result.queue.exists:
        found.append(_missing_queue_line(result.queue.name))
    prices = result.prices
    if prices.rows == 0:
        found.append(
            "market_prices is empty: every value would be 0 (load prices, then redo zero mode)"
        )
    elif prices.newest_update is None:
        found.append("market_prices has no updated_at values: their age is unknown")
    elif datetime.fromisoformat(prices.newest_update) < now - timedelta(days=stale_days):
        found.append(
            f"prices are older than {stale_days:g} days: last updated {prices.newest_update}"
            " (bulk-backfill prices fetch, then queue or run --mode stale)"
        )
    if result.readiness is not None:
        found += result.readiness.problems()
    if result.queue is not None and result.queue.dead_letters:
        found.append(
            f"{result.queue.dead_letters:,} messages in the dead-letter queue "
            "(bulk-backfill dead list)"
        )
    return found


def unacked_count(amqp_url: str, queue: str, management_url: str | None = None) -> int | None:
    """The queue's unacked messages from the management API, or None where it cannot say."""
    return _unacked(amqp_url, queue, management_url)[0]
