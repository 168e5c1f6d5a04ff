"""bulk.engine.policy: every retry decision of work and run, without a broker or a database."""

import pytest

from bulk.engine.errors import ErrorKind
from bulk.engine.policy import CONTENTION_TRIES, INVALID, REFUSED, Action, decide


def test_success_is_acked():
    assert decide(None, size=500) is Action.ACK


@pytest.mark.parametrize("queue", [True, False])
def test_an_environment_error_stops_whatever_the_size_or_attempts(queue):
    for size, attempts in [(1, 0), (500, 0), (500, 2)]:
        action = decide(ErrorKind.ENVIRONMENT, size=size, attempts=attempts, queue=queue)
        assert action is Action.STOP


def test_a_lost_connection_is_retried_until_its_patience_runs_out():
    assert decide(ErrorKind.CONNECTION, size=500) is Action.RETRY
    assert decide(ErrorKind.CONNECTION, size=500, queue=False) is Action.RETRY
    assert decide(ErrorKind.CONNECTION, size=500, expired=True, queue=False) is Action.STOP


def test_work_gives_its_batches_back_when_a_new_connection_is_lost_too():
    assert decide(ErrorKind.CONNECTION, size=500, lost=1) is Action.RETRY
    assert decide(ErrorKind.CONNECTION, size=500, lost=2) is Action.GIVE_BACK
    # run has no queue to give them back to: it waits out its patience.
    assert decide(ErrorKind.CONNECTION, size=500, lost=5, queue=False) is Action.RETRY
    assert decide(ErrorKind.RESOURCES, size=500, lost=2) is Action.RETRY


def test_a_server_short_of_resources_is_waited_out_like_a_lost_connection():
    for attempts in (0, 3, 10):
        assert decide(ErrorKind.RESOURCES, size=1, attempts=attempts) is Action.RETRY
    assert decide(ErrorKind.RESOURCES, size=500, expired=True, queue=False) is Action.STOP


def test_contention_is_retried_a_few_times_then_counts_as_a_batch_error():
    for n in range(1, CONTENTION_TRIES):
        assert decide(ErrorKind.CONTENTION, size=10, contention=n) is Action.RETRY
    last = dict(size=10, contention=CONTENTION_TRIES)
    assert decide(ErrorKind.CONTENTION, **last, attempts=1) is Action.REQUEUE
    assert decide(ErrorKind.CONTENTION, **last, queue=False) is Action.SPLIT


def test_work_requeues_a_failed_batch_until_its_attempts_are_used_then_splits():
    assert decide(ErrorKind.BATCH, size=500, attempts=1) is Action.REQUEUE
    assert decide(ErrorKind.BATCH, size=500, attempts=2) is Action.REQUEUE
    assert decide(ErrorKind.BATCH, size=500, attempts=3) is Action.SPLIT
    assert decide(ErrorKind.BATCH, size=500, attempts=2, max_attempts=2) is Action.SPLIT


def test_a_killmail_that_fails_alone_is_dead_lettered_by_work_and_failed_by_run():
    assert decide(ErrorKind.BATCH, size=1, attempts=3) is Action.DEAD_LETTER
    assert decide(ErrorKind.BATCH, size=1, queue=False) is Action.FAIL
    assert decide(ErrorKind.BATCH, size=2, queue=False) is Action.SPLIT


def test_broker_side_kinds():
    assert decide(INVALID, size=0) is Action.DEAD_LETTER
    assert decide(REFUSED, size=500) is Action.RETRY
