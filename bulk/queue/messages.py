"""The queue's message formats: encoding v1 batches and validating whatever arrives.

Pure: no broker, no database. A message that cannot be valued is an
InvalidMessage with a reason an operator can act on; it is dead-lettered,
never silently acked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from bulk.engine.modes import MODE_PREDICATES, PRICE_COLUMNS
from bulk.engine.rules import DEFAULT_RULES, RULES
from bulk.jsontext import shallow_recursion

MAX_IDS = 10_000
MAX_ATTEMPTS = 1_000_000  # far above any retry count; bounds what a header or body can claim
_MAX_ID = 2**31 - 1  # killmail_id is an int4


class InvalidMessage(ValueError):
    """A message that is not a valid batch; str() is the reason."""


@dataclass(frozen=True)
class Batch:
    """A v1 batch message: up to MAX_IDS killmail IDs, the mode they were selected with,
    and the rule set to value them under (a message without one means seed)."""

    ids: tuple[int, ...]
    mode: str
    attempts: int = 0
    queued_at: str | None = None
    source: str | None = None
    rules: str = DEFAULT_RULES
    # A stale batch of seed's rules: the price column its killmails were found
    # stale under; a worker with another --price-column refuses it.
    price_column: str | None = None


@dataclass(frozen=True)
class Single:
    """An old single-killmail message of the system being replaced. `rules` is None
    where it names none: work values it under its --rules (seed by default)."""

    killmail_id: int
    mode: str = "null"
    rules: str | None = None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def encode_batch(
    ids: list[int],
    mode: str,
    source: str,
    *,
    attempts: int = 0,
    queued_at: str | None = None,
    rules: str = DEFAULT_RULES,
    price_column: str | None = None,
) -> bytes:
    """A v1 batch body; `rules` travels in every message, beside the mode, and the
    price column in a stale batch of seed's."""
    if rules not in RULES:  # a programming error: the CLI only offers RULES
        raise ValueError(f"unknown rules {rules!r}")
    body: dict = {"v": 1, "ids": list(ids), "mode": mode, "rules": rules}
    if price_column is not None:
        body["price_column"] = price_column
    body["queued_at"] = queued_at or now_iso()
    body["source"] = source
    if attempts:
        body["attempts"] = attempts
    return json.dumps(body, separators=(",", ":")).encode()


def decode(body: bytes) -> Batch | Single:
    """A Batch or Single from a message body; InvalidMessage with the reason otherwise.

    Whatever a body holds, the only exception that leaves is InvalidMessage:
    a worker that died on a body would meet it again on every redelivery.
    """
    try:
        with shallow_recursion():
            return _decode(body)
    except InvalidMessage:
        raise
    except RecursionError:
        raise InvalidMessage("not JSON this tool reads: nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any failure is a reason, never a crash
        text = " ".join(str(exc).split())[:200]
        raise InvalidMessage(f"undecodable: {type(exc).__name__}: {text}") from None


def _decode(body: bytes) -> Batch | Single:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidMessage(f"not JSON this tool reads: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"wrong shape: a JSON {type(data).__name__}, not an object")
    if "killmailId" in data and "ids" not in data:
        return Single(
            _killmail_id(data["killmailId"], "killmailId"),
            _mode(data, default="null"),
            _rules(data) if "rules" in data else None,
        )
    version = data.get("v")
    if not (_is_int(version) and version == 1):  # true and 1.0 equal 1 in Python, not in JSON
        raise InvalidMessage(
            'wrong shape: neither a v1 batch ({"v": 1, "ids": [...], "mode": ...})'
            ' nor a single-killmail message ({"killmailId": N})'
        )
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids:
        raise InvalidMessage("wrong shape: ids must be a non-empty list")
    if len(ids) > MAX_IDS:
        raise InvalidMessage(f"too many IDs: {len(ids):,} (at most {MAX_IDS:,})")
    attempts = data.get("attempts", 0)
    if not _is_int(attempts) or not 0 <= attempts <= MAX_ATTEMPTS:
        raise InvalidMessage(
            f"wrong shape: attempts must be an integer from 0 to {MAX_ATTEMPTS}, "
            f"not {_cut(repr(attempts))}"
        )
    return Batch(
        ids=tuple(_killmail_id(i, "ids") for i in ids),
        mode=_mode(data, default=None),
        attempts=attempts,
        queued_at=data.get("queued_at") if isinstance(data.get("queued_at"), str) else None,
        source=data.get("source") if isinstance(data.get("source"), str) else None,
        rules=_rules(data),
        price_column=_price_column(data),
    )


def _price_column(data: dict) -> str | None:
    column = data.get("price_column")
    if column is not None and (not isinstance(column, str) or column not in PRICE_COLUMNS):
        raise InvalidMessage(
            f"unknown price_column {_cut(repr(column))}"
            f" (expected one of {', '.join(PRICE_COLUMNS)})"
        )
    return column


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _killmail_id(value, field: str) -> int:
    if not _is_int(value):
        raise InvalidMessage(f"{field}: {_cut(repr(value))} is not an integer killmail ID")
    if value < 0:
        raise InvalidMessage(f"{field}: {_cut(str(value))} is negative")
    if value > _MAX_ID:
        raise InvalidMessage(
            f"{field}: {_cut(str(value))} is beyond the largest killmail_id {_MAX_ID}"
        )
    return value


def _mode(data: dict, default: str | None) -> str:
    mode = data.get("mode", default)
    if mode is None:
        raise InvalidMessage("wrong shape: a v1 batch needs a mode")
    if not isinstance(mode, str) or mode not in MODE_PREDICATES:
        raise InvalidMessage(
            f"unknown mode {_cut(repr(mode))} (expected one of {', '.join(MODE_PREDICATES)})"
        )
    return mode


def _rules(data: dict) -> str:
    """The message's rule set; a message from before rule sets existed means seed."""
    rules = data.get("rules", DEFAULT_RULES)
    if not isinstance(rules, str) or rules not in RULES:
        raise InvalidMessage(
            f"unknown rules {_cut(repr(rules))} (expected one of {', '.join(RULES)})"
        )
    return rules
