"""Capped full-jitter backoff with an optional deadline: the arithmetic of every retry loop."""

from __future__ import annotations

import random
import time


def jitter(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 64)))


class Backoff:
    """The waits of one retry loop: jittered, growing per try, never past the deadline.

    The deadline is `patience` seconds after start_clock() (the first failure
    that counts against it); without patience there is none. The loop keeps its
    own stop conditions and asks expired() when it wants to know.
    """

    def __init__(self, *, base: float = 0.2, cap: float = 10.0, patience: float | None = None):
        self.base = base
        self.cap = cap
        self.patience = patience
        self.attempt = 0
        self.since: float | None = None  # when the patience clock started

    def start_clock(self) -> None:
        """Start counting against the patience, unless it already runs."""
        if self.since is None:
            self.since = time.monotonic()

    def waited(self) -> float:
        """Seconds since the clock started (0 if it has not)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        if self.patience is None or self.since is None:
            return False
        return self.waited() >= self.patience

    def delay(self) -> float:
        """The next wait, in seconds; it ends at the deadline at the latest."""
        wait = jitter(self.attempt, base=self.base, cap=self.cap)
        self.attempt += 1
        if self.patience is not None and self.since is not None:
            wait = min(wait, max(0.0, self.patience - self.waited()))
        return wait

    def reset(self) -> None:
        """After a success: the next failure starts from the shortest wait, with a new clock."""
        self.attempt = 0
        self.since = None
