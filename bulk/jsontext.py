"""JSON from outside the tool, decoded under Python's default recursion limit.

json recurses in C on nesting. A process that has raised its recursion limit
(a worker does, so pika can read deep header tables) would overflow the C stack
on a body nested 100,000 deep instead of raising RecursionError, and how deep a
file may nest would depend on what the process did before. Every decoder of
outside JSON runs under the default limit, whatever the process set.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SHALLOW_RECURSION = 1_000  # Python's default: deep enough for any valid document


@contextmanager
def shallow_recursion(limit: int = SHALLOW_RECURSION) -> Iterator[None]:
    """Python's default recursion limit for a while, around code that recurses in C."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(min(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def loads(text: str | bytes):
    """json.loads under the default recursion limit (RecursionError when nested too deep)."""
    with shallow_recursion():
        return json.loads(text)
