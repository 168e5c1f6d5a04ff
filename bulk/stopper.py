"""Clean shutdown on SIGINT/SIGTERM: the first asks for a stop, a second one quits at once."""

from __future__ import annotations

import signal
from collections.abc import Callable


class Stopper:
    """First SIGINT/SIGTERM asks for a clean stop; a second one quits at once."""

    def __init__(self, on_first: Callable[[], None]):
        self.requested = False
        self._on_first = on_first
        self._previous: dict = {}

    def __enter__(self) -> Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._on_first()
