"""bulk.backoff: the one arithmetic of every retry loop."""

import time

from bulk import backoff


def test_jitter_stays_within_the_capped_exponential():
    for attempt in range(12):
        for _ in range(50):
            wait = backoff.jitter(attempt, base=0.5, cap=4.0)
            assert 0 <= wait <= min(4.0, 0.5 * 2**attempt)


def test_a_huge_attempt_count_is_capped_not_an_overflow():
    assert 0 <= backoff.jitter(10_000, base=0.5, cap=3.0) <= 3.0


def test_no_wait_runs_past_the_deadline_and_expired_says_when_it_passed():
    b = backoff.Backoff(base=100.0, cap=100.0, patience=0.2)
    assert not b.expired()
    b.start_clock()
    for _ in range(20):
        assert b.delay() <= 0.2
    time.sleep(0.25)
    assert b.expired()
    assert b.delay() == 0.0


def test_reset_starts_again_from_the_shortest_wait_with_a_new_clock():
    b = backoff.Backoff(base=0.1, cap=10.0, patience=5.0)
    b.start_clock()
    for _ in range(5):
        b.delay()
    b.reset()
    assert b.since is None and b.attempt == 0
    assert b.delay() <= 0.1
