"""The gathering of the replaced system's single-killmail messages into batches.

Old workers published one message per killmail; `work` takes them too, holds them
unacked, and values them as one batch per mode and rule set once enough have come
(--singles-per-batch) or the first has waited long enough. Pure bookkeeping: the
consumer (bulk.queue.consume) acks and values.
"""

from __future__ import annotations

import time

GATHER_SECONDS = 0.5  # longest wait for more single messages to fill a batch


class Singles:
    """The single-killmail messages in hand, by (mode, rule set): (delivery tag, killmail id)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.pending: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.since = 0.0  # when the oldest message in hand came

    def __bool__(self) -> bool:
        return bool(self.pending)

    def add(self, mode: str, rules: str, tag: int, killmail_id: int) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.setdefault((mode, rules), []).append((tag, killmail_id))

    def due(self) -> bool:
        """Whether the messages in hand make a batch: enough of them, or waited enough."""
        return bool(self.pending) and (
            sum(map(len, self.pending.values())) >= self.batch_size
            or time.monotonic() - self.since >= GATHER_SECONDS
        )

    def take(self) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """Every message in hand, by (mode, rule set); none are left."""
        pending, self.pending = self.pending, {}
        return pending

    def forget(self) -> None:
        """Drop them (a closed connection gives unacked deliveries back by itself)."""
        self.pending = {}
