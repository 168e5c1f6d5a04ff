"""Every message between a job's parent and its child processes, one class each.

They cross a multiprocessing pipe (pickled), so they are plain frozen data. `run`'s
parent hands each child batches and its children answer each one; `work`'s
children report what they did and the parent only ever asks them to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- run: parent -> child -------------------------------------------------


@dataclass(frozen=True)
class ValueBatch:
    """Value these killmails (one batch of the job's scan)."""

    ids: list[int]


@dataclass(frozen=True)
class Stop:
    """Finish what is in hand and exit (run's children and work's alike)."""


# -- run: child -> parent -------------------------------------------------


@dataclass(frozen=True)
class BatchDone:
    """A batch handed over is finished: written, skipped, or failed killmail by killmail."""

    killmails: int
    updated: int
    skipped: int
    no_victim: int
    no_victim_sample: list[int]
    failures: list[tuple[int, str]]  # (killmail_id, error) of the killmails that failed


@dataclass(frozen=True)
class JobStopped:
    """No retry can help (the database refuses the job, or is gone for good): the
    batch was not tried, and the job must stop before it."""

    reason: str


# -- work: child -> parent ------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The child's imports are done: from here on the parent's stall clock applies."""


@dataclass(frozen=True)
class Alive:
    """Still waiting out an outage: not a stall."""


@dataclass(frozen=True)
class Idle:
    """The child has nothing in hand (True) or took a message (False)."""

    idle: bool


@dataclass(frozen=True)
class Written:
    """A batch was written (dead 0), or dead-lettered (dead = its killmails)."""

    killmails: int
    updated: int
    skipped: int
    no_victim: int
    dead: int


@dataclass(frozen=True)
class Acked:
    """Messages acked after their batch's COMMIT (or dead letter, or republish)."""

    messages: int


@dataclass(frozen=True)
class Timed:
    """How long a batch took, from its message to its COMMIT."""

    seconds: float


@dataclass(frozen=True)
class Retried:
    """Killmails republished for another try."""

    killmails: int


@dataclass(frozen=True)
class Split:
    """A batch that used its tries was split in halves."""


@dataclass(frozen=True)
class Invalid:
    """Messages dead-lettered as invalid."""

    messages: int


@dataclass(frozen=True)
class Redelivered:
    """Batches that came back unacked, counted as a failed try."""

    batches: int


@dataclass(frozen=True)
class Retry:
    """One retry, by the kind of error behind it (bulk.engine.errors.ErrorKind's
    values, or the broker's "refused")."""

    kind: str


@dataclass(frozen=True)
class DatabaseUp:
    """Whether the child's database answers."""

    up: bool


@dataclass(frozen=True)
class Note:
    """A line for the operator, printed by the parent and kept for the summary."""

    text: str


@dataclass(frozen=True)
class Fatal:
    """An error no retry can fix: the child stops, and so does the job."""

    reason: str
