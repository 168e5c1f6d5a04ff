"""Errors the CLI turns into one line on stderr and a non-zero exit."""


class UserError(Exception):
    """Bad input or an unusable environment: the message is shown as is, no traceback."""
