"""Settings from flags and the environment, and masking of secrets in URLs."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

from bulk.errors import UserError

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL (or libpq keyword string) with any password replaced by ***."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        if parts.password is None:
            masked = url
        else:
            userinfo, _, host = parts.netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            masked = urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable URL>"
    return _KEYWORD_PASSWORD.sub(r"\1***", masked)


def password_of(url: str) -> str | None:
    try:
        return urlsplit(url).password if "://" in url else None
    except ValueError:
        return None


def scrub(message: str, url: str) -> str:
    """An error message with the URL's password taken out, in case a library echoed it."""
    password = password_of(url)
    if password:
        message = message.replace(password, "***")
    return message


def database_url(flag: str | None) -> str:
    """--database-url, else DATABASE_URL; a clear error when neither is set."""
    url = flag or os.environ.get("DATABASE_URL")
    if not url:
        raise UserError(
            "no database given: set DATABASE_URL or pass --database-url "
            "(e.g. postgresql://postgres@127.0.0.1:5432/killboard)"
        )
    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"not a PostgreSQL URL: {mask_url(url)}")
    return url
