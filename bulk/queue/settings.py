"""What a `work` process was asked to do: built once by the CLI, passed whole to every child."""

from __future__ import annotations

from dataclasses import dataclass

from bulk.engine.valuation import Valuation
from bulk.queue import names

# A child that says nothing for this long while it has work in hand is killed
# and restarted. A batch of 500 takes well under a second and one of 10,000 a
# few seconds; a child waiting out a lost database or broker reports each
# retry. Five minutes is far above any sane batch, yet bounds how long a hung
# child can hold its prefetched batches and keep --until-empty from ending.
DEFAULT_STALL_TIMEOUT = 300.0


@dataclass(frozen=True)
class WorkSettings:
    db_url: str
    amqp_url: str
    queue: str = names.DEFAULT_QUEUE
    # Batch messages held beyond the one in hand. One: a worker that dies gives back
    # only its own batch, so a redelivery counts against the batch that was in hand.
    prefetch: int = 1
    singles_per_batch: int = 500  # old single-killmail messages gathered into one batch
    max_attempts: int = 3  # tries of a whole batch before it is split
    # How batches are valued; a message's rule set replaces its rules, and old
    # single-killmail messages, which name none, are valued under these.
    # price_refresh: seconds after which a worker re-reads the prices before its
    # next batch.
    valuation: Valuation = Valuation(price_refresh=10.0)
