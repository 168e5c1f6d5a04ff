"""One batch of `work`: value it under its rules, then ack it or hand it on (a retry,
its halves, a dead letter) as bulk.engine.policy decides.

The handler does no broker I/O of its own: it asks its Outlet (the consumer,
bulk.queue.consume.Worker) to ack, publish, give back, wait and report, the way a
dramatiq middleware sits between the consumer and the actor.
"""

from __future__ import annotations

import reprlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import psycopg

from bulk import events, readiness
from bulk.engine.batch import BatchResult, process_batch
from bulk.engine.errors import ErrorKind
from bulk.engine.policy import Action, decide
from bulk.engine.retry import ConnectionHolder, Retrying, Stopped, value_with_retries
from bulk.engine.rules import DEFAULT_RULES
from bulk.errors import UserError, describe
from bulk.queue import messages
from bulk.queue.settings import WorkSettings

_RULES_RECHECK = 60.0  # seconds before a message's rule set is checked here again
HEADER_TEXT = 2000  # longest text kept in a header we write
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, 200, 200


class FatalError(Exception):
    """An error no retry can fix (a missing table, a permission): the worker stops."""


class StopAsked(Exception):
    """A stop was asked for while waiting out an outage; the batch goes back unacked."""


class Refused(Exception):
    """The broker refused a republish or dead letter; the original goes back to the queue."""


class DatabaseLost(Exception):
    """The database cannot be reached from here: what is in hand goes back to the queue."""


def _count_header(headers: dict, name: str) -> int:
    """A count from a header anyone may have written: an int in range, else 0."""
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), messages.MAX_ATTEMPTS)


def headers_text(headers: dict) -> str:
    """Headers anyone may have written, as bounded text (reprlib stops at a depth)."""
    with messages.shallow_recursion():
        return _REPR.repr(headers)[:HEADER_TEXT]


def _text_header(headers: dict, name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value[:64] if isinstance(value, str) else None


class Outlet(Protocol):
    """What the handler needs of the consumer that took the batch's messages."""

    host: str

    def report(self, event: object) -> None: ...
    def note(self, text: str) -> None: ...
    def say_now_and_then(self, kind: str, text: str) -> None: ...
    def pause(self, seconds: float) -> None: ...
    def serving_broker(self, step: Callable, *args): ...
    def source(self) -> str: ...
    def ack(self, tags: list[int]) -> None: ...
    def give_back(self, tags: list[int]) -> None: ...
    def republish(
        self,
        parts: list[list[int]],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str,
    ) -> None: ...
    def dead_letter(
        self, body: bytes, headers: dict, *, reason: str, attempts: int, tags: list[int]
    ) -> None: ...


class BatchHandler:
    """Values the batches one worker takes, on its database connection."""

    def __init__(self, settings: WorkSettings, db: ConnectionHolder, out: Outlet):
        self.settings = settings
        self.db = db
        self.out = out
        # Per rule set of a message: when this database was last checked for its
        # tables, and what was missing (None: nothing).
        self.rules_seen: dict[str, tuple[float, str | None]] = {}

    def do(
        self,
        ids: list[int],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str = DEFAULT_RULES,
        *,
        found_under: str | None = None,
    ) -> None:
        """Value one batch and ack its messages, or hand it on (retry, split, dead letter).

        The rule set travels on with the batch: a retry, a half or a dead letter
        is valued under the rules it was queued with. `found_under` is the price
        column a stale batch was selected under; a worker of another column
        dead-letters it rather than stamp it under its own, which the next
        `queue --mode stale` would find stale again.
        """
        unusable = self._rules_unusable(rules)
        reason = None
        if unusable is not None:
            reason = f"rule set {rules} cannot run on this database: {unusable}"
        elif found_under is not None and found_under != self.settings.valuation.price_column:
            reason = (
                f"the batch was queued as stale under --price-column {found_under} and this"
                f" worker values with {self.settings.valuation.price_column}: run work"
                f" --price-column {found_under}, then bulk-backfill dead requeue"
            )
        if reason is not None:
            # Stopping would stop every worker that takes this message, on every host,
            # and the message would go back to the head of the queue for the next one.
            body = messages.encode_batch(sorted(set(ids)), mode, self.out.source(), rules=rules)
            self.out.dead_letter(body, {}, reason=reason, attempts=attempts, tags=tags)
            count = len(set(ids))
            self.out.report(events.Written(count, 0, count, 0, count))
            self.out.say_now_and_then(
                f"rules {rules}", f"dead-lettered a batch of {count}: {reason}"
            )
            self.out.ack(tags)
            return
        started = time.monotonic()
        outcome = self._value(ids, mode, tags, rules)
        if isinstance(outcome, BatchResult):
            self.out.report(events.Timed(time.monotonic() - started))
            # Reported at COMMIT, before the ack: if the ack is lost with the
            # connection, the redelivered batch finds its rows written and counts
            # them as skipped, so "updated" stays the number of rows changed.
            self.out.report(
                events.Written(
                    outcome.updated + outcome.skipped,
                    outcome.updated,
                    outcome.skipped,
                    outcome.no_victim,
                    0,
                )
            )
            self.out.ack(tags)
            return
        self.hand_on(outcome, ids, mode, attempts, headers, tags, rules)

    def hand_on(
        self,
        error: str,
        ids: list[int],
        mode: str,
        attempts: int,
        headers: dict,
        tags: list[int],
        rules: str,
    ) -> None:
        """A batch that failed (or came back): republish it, its halves, or dead-letter it."""
        unique = sorted(set(ids))
        now = messages.now_iso()
        failure_headers = {
            "x-first-failure": _text_header(headers, "x-first-failure") or now,
            "x-last-failure": now,
            "x-error": error[:HEADER_TEXT],
            "x-host": self.out.host,
            # every try of these IDs, across retries and splits
            "x-attempts": min(_count_header(headers, "x-attempts") + 1, messages.MAX_ATTEMPTS),
        }
        attempts += 1
        action = decide(
            ErrorKind.BATCH,
            size=len(unique),
            attempts=attempts,
            max_attempts=self.settings.max_attempts,
        )
        if action is Action.REQUEUE:
            self.out.republish([unique], mode, attempts, failure_headers, tags, rules)
            self.out.report(events.Retry(ErrorKind.BATCH.value))
        elif action is Action.SPLIT:
            self.out.report(events.Split())
            middle = len(unique) // 2
            halves = [unique[:middle], unique[middle:]]
            self.out.republish(
                halves, mode, self.settings.max_attempts - 1, failure_headers, tags, rules
            )
        else:
            body = messages.encode_batch(
                unique,
                mode,
                self.out.source(),
                attempts=min(attempts, messages.MAX_ATTEMPTS),
                rules=rules,
            )
            self.out.dead_letter(
                body,
                failure_headers,
                reason=error,
                attempts=failure_headers["x-attempts"],
                tags=tags,
            )
            self.out.report(events.Written(1, 0, 1, 0, 1))
            self.out.ack(tags)
            return
        self.out.report(events.Retried(len(unique)))
        self.out.ack(tags)

    def _value(self, ids: list[int], mode: str, tags: list[int], rules: str) -> BatchResult | str:
        """The batch written, or the text of a batch error (bulk.engine.retry's loop)."""
        valuation = replace(self.settings.valuation, rules=rules)

        def value(session) -> BatchResult:
            return self.out.serving_broker(process_batch, session, ids, mode, valuation)

        retrying = Retrying(queue=True, pause=self.out.pause, on_retry=self._retrying)
        try:
            return value_with_retries(self.db, value, len(ids), retrying)
        except Stopped as stop:
            self.out.give_back(tags)
            if stop.action is Action.GIVE_BACK:
                # A new connection failed as well. Holding the batches while the
                # database is out of reach would only keep them from other hosts.
                self.out.report(events.Retry(stop.kind.value))
                self.out.report(events.DatabaseUp(False))
                raise DatabaseLost(str(stop)) from None
            raise FatalError(str(stop)) from None
        except StopAsked:
            self.out.give_back(tags)
            raise

    def _retrying(self, kind: ErrorKind, exc: psycopg.Error) -> None:
        """What the operator hears of a retry of work's batch."""
        self.out.report(events.Retry(kind.value))
        if kind is ErrorKind.CONNECTION:
            self.out.note(f"database unavailable ({describe(exc)}); retrying")
        elif kind is ErrorKind.RESOURCES:
            # Every batch would fail alike: hold this one (and so take no other)
            # until the server has room again, instead of splitting a whole job
            # into dead letters. The broker connection is kept alive meanwhile.
            self.out.say_now_and_then(
                "resources",
                f"the database is short of resources ({describe(exc)});"
                " holding the batch and retrying until it has room",
            )

    def _rules_unusable(self, rules: str) -> str | None:
        """Why this database cannot run `rules` (its tables are missing), or None."""
        if rules == self.settings.valuation.rules:
            return None  # work checked its own rule set before it started
        seen = self.rules_seen.get(rules)
        if seen is not None and time.monotonic() - seen[0] < _RULES_RECHECK:
            return seen[1]
        try:
            readiness.require_rule_prices(self.db.get(), rules, allow_empty=True)
            reason = None
        except UserError as exc:
            reason = str(exc)
        except psycopg.Error:
            return None  # the database's own trouble: valuing the batch meets it and says so
        self.rules_seen[rules] = (time.monotonic(), reason)
        return reason
