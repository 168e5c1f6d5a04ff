"""Settings from flags and the environment: the database URL, checked before use."""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

from bulk import redact
from bulk.errors import UserError


def database_url(flag: str | None) -> str:
    """--database-url, else DATABASE_URL; a clear error when neither is set."""
    url = flag or os.environ.get("DATABASE_URL")
    if not url:
        raise UserError(
            "no database given: set DATABASE_URL or pass --database-url "
            "(e.g. postgresql://postgres@127.0.0.1:5432/killboard)"
        )
    redact.remember(url)
    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"not a PostgreSQL URL: {redact.mask_url(url)}")
    check_libpq_url(url)
    return url


def check_libpq_url(url: str) -> None:
    """A UserError when libpq cannot read the URL; its own message would echo the URL whole."""
    try:
        conninfo_to_dict(url)
    except Exception:
        raise UserError(
            "the database URL cannot be parsed by libpq (not shown: it may hold a password); "
            "percent-encode special characters in it, e.g. @ as %40, # as %23, / as %2F"
        ) from None
