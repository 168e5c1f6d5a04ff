"""Prometheus metrics of a `work` fleet or a `run`, served by the parent on one port.

The children send their events to the parent over their pipes (bulk.procs);
the parent turns them into these counters and gauges, so one scrape sees the
whole fleet of one host. Everything lives in a registry of its own: two jobs
in one process (tests) never share a counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from bulk import events
from bulk.errors import UserError

PREFIX = "bulk_backfill"
# Batch seconds: a batch of 500 takes well under a second; a slow trigger or a
# full disk takes minutes.
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))


class _JobMetrics:
    """What every job's parent exports: valued killmails, children, the last commit."""

    def __init__(self, children: str, in_hand: str, database_up: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.killmails = Counter(
            f"{PREFIX}_killmails_valued", "Killmails valued and committed.", registry=r
        )
        self.children = Gauge(f"{PREFIX}_children_alive", children, registry=r)
        self.in_hand = Gauge(f"{PREFIX}_batches_in_hand", in_hand, registry=r)
        self.since_commit = Gauge(
            f"{PREFIX}_seconds_since_last_commit",
            "Seconds since a batch was last committed (or since start).",
            registry=r,
        )
        self.database_up = Gauge(f"{PREFIX}_database_reachable", database_up, registry=r)
        self.last_commit = time.monotonic()
        self.since_commit.set_function(lambda: time.monotonic() - self.last_commit)
        self.database_up.set(1)

    def committed(self) -> None:
        self.last_commit = time.monotonic()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        serve(self.registry, port, address)


class RunMetrics(_JobMetrics):
    """The metrics of one `run` parent: what run has of work's (no broker, no dead letters)."""

    def __init__(self) -> None:
        super().__init__(
            children="Child processes alive.",
            in_hand="Batches handed to children and not answered.",
            database_up="1 until the run stops because the database cannot take it.",
        )
        r = self.registry
        self.failed = Counter(
            f"{PREFIX}_killmails_failed", "Killmails that failed alone (not written).", registry=r
        )
        self.batches = Counter(f"{PREFIX}_batches_done", "Batches committed.", registry=r)

    def batch_done(self, killmails: int, failed: int) -> None:
        self.batches.inc()
        self.killmails.inc(killmails - failed)
        self.failed.inc(failed)
        self.committed()


class WorkMetrics(_JobMetrics):
    """The metrics of one `work` parent."""

    def __init__(self) -> None:
        super().__init__(
            children="Worker processes alive.",
            in_hand="Worker processes busy with a batch.",
            database_up="1 while the database answers the workers.",
        )
        r = self.registry
        self.acked = Counter(f"{PREFIX}_batches_acked", "Messages acked after COMMIT.", registry=r)
        self.split = Counter(f"{PREFIX}_batches_split", "Batches split in halves.", registry=r)
        self.dead = Counter(
            f"{PREFIX}_batches_dead_lettered", "Batches sent to <queue>.dead.", registry=r
        )
        self.redelivered = Counter(
            f"{PREFIX}_batches_redelivered",
            "Batches that came back unacked (a worker died, froze or lost the broker).",
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}_retries",
            "Tries again after an error, by its class.",
            ["error"],
            registry=r,
        )
        self.broker_up = Gauge(
            f"{PREFIX}_broker_reachable", "1 while the broker answers the parent.", registry=r
        )
        self.ready = Gauge(f"{PREFIX}_queue_ready_messages", "Ready messages.", registry=r)
        self.unacked = Gauge(
            f"{PREFIX}_queue_unacked_messages",
            "Unacked messages, from the management API (NaN where it cannot be read).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "Seconds to value and commit one batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.unacked.set(float("nan"))


def serve(registry: CollectorRegistry, port: int, address: str) -> None:
    """Serve /metrics from a thread of this process; a port in use is one clear line."""
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        reason = exc.strerror or exc
        raise UserError(f"cannot serve metrics on {address}:{port}: {reason}") from None


def count_event(metrics: WorkMetrics | None, event: object, busy: Callable[[], int]) -> None:
    """Turn one child event (bulk.events, from bulk.queue.consume) into metrics."""
    if metrics is None:
        return
    if isinstance(event, events.Written):
        if event.dead:
            metrics.dead.inc()  # one batch (or one killmail of a split) dead-lettered
        else:
            metrics.killmails.inc(event.killmails)
            metrics.committed()
            metrics.database_up.set(1)
    elif isinstance(event, events.Acked):
        metrics.acked.inc(event.messages)
    elif isinstance(event, events.Timed):
        metrics.batch_seconds.observe(event.seconds)
    elif isinstance(event, events.Split):
        metrics.split.inc()
    elif isinstance(event, events.Invalid):
        metrics.dead.inc(event.messages)  # dead-lettered as invalid
    elif isinstance(event, events.Redelivered):
        metrics.redelivered.inc(event.batches)
    elif isinstance(event, events.Retry):
        metrics.retries.labels(error=event.kind).inc()
    elif isinstance(event, events.DatabaseUp):
        metrics.database_up.set(1 if event.up else 0)
    elif isinstance(event, events.Idle):
        metrics.in_hand.set(busy())
