"""Loads the sql/*.sql files shipped in the package: one file, one statement or
fragment, read once. Filling their placeholders is the engine's job
(bulk/engine/statements.py), from fixed tables only."""

from __future__ import annotations

import hashlib
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path


def _sql_dir():
    try:
        return resources.files("bulk.sql")
    except ModuleNotFoundError:
        # Imported from a source checkout (tests run in the repo): sql/ sits beside bulk/.
        return Path(__file__).resolve().parents[1] / "sql"


@cache
def load(name: str) -> str:
    """The statement in sql/NAME.sql, without its whole-line comments.

    The comments document placeholders and parameters by name; dropping them
    keeps those names from being filled in or counted as parameters.
    """
    text = _sql_dir().joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


@lru_cache(maxsize=16)
def statement_name(text: bytes) -> bytes:
    """A prepared statement's name from its text: the same text, the same name."""
    return b"bulk_" + hashlib.blake2b(text, digest_size=8).hexdigest().encode()
