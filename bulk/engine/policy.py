"""What to do after an error: the one pure decision behind `work`'s and `run`'s retries.

Given what went wrong (an ErrorKind from bulk.engine.errors, or one of the
broker-side kinds below), how many tries were made and how many killmails are
at stake, decide() answers with an Action; the loops in bulk.queue.consume and
bulk.engine.retry carry it out. No I/O here, so every rule is testable alone.
"""

from __future__ import annotations

import enum

from bulk.engine.errors import ErrorKind

REFUSED = "refused publish"  # the broker refused a republish or dead letter
INVALID = "invalid message"  # a message that is not a valid batch
CONTENTION_TRIES = 5  # tries of a part that meets serialization failures or deadlocks
MAX_ATTEMPTS = 3  # work: tries of a whole batch (republished) before it is split


class Action(enum.Enum):
    ACK = "ack"  # done: acknowledge (work) or count (run)
    RETRY = "retry"  # the same work again, here, after a backoff
    REQUEUE = "requeue"  # work: republish the batch with its attempt count raised
    SPLIT = "split"  # halves, each tried on its own
    DEAD_LETTER = "dead-letter"  # work: a killmail alone (or a bad message) to <queue>.dead
    FAIL = "fail"  # run: a killmail alone is reported failed; its neighbours are written
    # work: the database is out of reach from this host; hand the batches back to the
    # queue, where another host may take them, and take none until it answers.
    GIVE_BACK = "give-back"
    STOP = "stop"  # no retry can help: stop, leaving the work undone (queued / resumable)


def decide(
    kind: ErrorKind | str | None,
    *,
    size: int,
    attempts: int = 0,
    contention: int = 0,
    lost: int = 0,
    expired: bool = False,
    queue: bool = True,
    max_attempts: int = MAX_ATTEMPTS,
) -> Action:
    """The action for a batch of `size` killmails after an error of `kind` (None: success).

    `attempts`: tries of the whole batch so far, this one included (work's
    message header); `contention`: contention errors met so far, this one
    included; `lost`: connections lost on this batch so far, this one included;
    `expired`: a lost connection, or a server short of resources, has outlasted
    its patience (run; work waits for as long as it takes);
    `queue`: whether a broker holds the batch (work) or not (run).
    """
    if kind is None:
        return Action.ACK
    if kind == INVALID:
        return Action.DEAD_LETTER
    if kind == REFUSED:
        return Action.RETRY  # the original goes back to the queue; back off, go on
    if kind is ErrorKind.ENVIRONMENT:
        return Action.STOP  # splitting would fail every killmail alike
    if kind is ErrorKind.CONNECTION and queue and lost > 1:
        # work retries once on a new connection; a second loss means this host
        # cannot reach the database, and its batches are better off elsewhere.
        return Action.GIVE_BACK
    if kind in (ErrorKind.CONNECTION, ErrorKind.RESOURCES):
        return Action.STOP if expired else Action.RETRY
    if kind is ErrorKind.CONTENTION and contention < CONTENTION_TRIES:
        return Action.RETRY
    # A batch error (contention that kept on counts as one).
    if queue and attempts < max_attempts:
        return Action.REQUEUE
    if size > 1:
        # The whole batch has had its retries, so a failure is not a passing
        # fluke: each half gets one try, and a half that fails splits again.
        return Action.SPLIT
    return Action.DEAD_LETTER if queue else Action.FAIL
