"""Errors the CLI turns into one line on stderr and a non-zero exit."""

from bulk import redact

MAX_ERROR_TEXT = 2000  # longest error text a report line or dead-letter header carries


class UserError(Exception):
    """Bad input or an unusable environment: the message is shown as is, no traceback."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none."""
    return redact.scrub(" ".join(str(exc).split())) or type(exc).__name__


def describe(exc: BaseException) -> str:
    """'Type: message' on one line, for reports and dead-letter headers.

    Passwords are masked: a database error can quote a connection URL.
    """
    text = f"{type(exc).__name__}: {redact.scrub(' '.join(str(exc).split()))}"
    # A trigger may raise a megabyte of text; a report line or header needs the start.
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."
