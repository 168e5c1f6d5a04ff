"""Passwords out of every text the tool shows: URLs, keyword strings and error messages.

Two defences, so that neither a parser's reading nor a library's message can
fool them:

- structural: the userinfo of anything that looks like a URL (up to the LAST
  `@`, because a password may hold `#`, `?`, `/` or `@`), `password=` query
  parameters and libpq `password=` keywords become `***`, whatever they hold;
- by value: every password this process has seen (in a URL it was given, in
  PGPASSWORD, in DATABASE_URL or RABBITMQ_URL) is replaced wherever it appears,
  raw and percent-encoded, however a parser split the URL.

This module imports nothing from bulk, so errors.py can use it.
"""

from __future__ import annotations

import functools
import os
import re
from urllib.parse import quote, quote_plus, unquote

from psycopg.conninfo import conninfo_to_dict

MASK = "***"

# libpq keyword form: password=value or password='quoted value'
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)
# URL query form, as libpq splits it: the value runs to the next '&'.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
# A URL inside free text: the scheme, then everything up to the last '@' of the text.
# The scheme's length is bounded: unbounded, every start in a long run of letters
# scans to its end, and a database error of 1 MB of text took an hour to mask.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}://)([^@]*@(?:.*@)?)", re.DOTALL)

# A libpq keyword string starts with a keyword and '='; a URL never does.
_KEYWORD_STRING = re.compile(r"\s*[A-Za-z_]+\s*=")

_seen: set[str] = set()
_ENV_URLS = ("DATABASE_URL", "RABBITMQ_URL")


def mask_url(url: str) -> str:
    """The URL (or libpq keyword string) with any password replaced by ***.

    The userinfo is taken to end at the last '@' so that a password holding
    '#', '?', '/' or '@' (which libpq accepts raw) is masked whole; a query or
    path with an '@' in it then loses part of its text, never a password.
    """
    if _KEYWORD_STRING.match(url):
        return _KEYWORD_PASSWORD.sub(rf"\1{MASK}", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        # No scheme ("guest:secret@host" or "guest:secret"): not a URL anything here
        # reads, and what follows the first colon may be a password holding '@'.
        user, colon, _ = url.partition(":")
        return f"{user}:{MASK}" if colon else url
    rest = _QUERY_PASSWORD.sub(rf"\1{MASK}", rest)
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}@{hostpart}" if colon else f"{userinfo}@{hostpart}"
    return f"{scheme}{sep}{rest}"


@functools.lru_cache(maxsize=64)
def passwords_in(url: str) -> frozenset[str]:
    """Every string that some reading of the URL or keyword string takes as its password."""
    found: set[str] = set()
    scheme, sep, rest = url.partition("://")
    if _KEYWORD_STRING.match(url):
        for match in _KEYWORD_PASSWORD.finditer(url):
            value = match.group(2)
            found.add(value)
            if value.startswith("'"):
                found.add(re.sub(r"\\(.)", r"\1", value.strip("'")))
    elif sep:
        userinfo, at, _ = rest.rpartition("@")
        user = userinfo.partition(":")[0]
        # The colon belongs to a userinfo only if no '/' or '@' comes before it.
        if at and ":" in userinfo and "/" not in user and "@" not in user:
            password = userinfo.partition(":")[2]
            found.add(password)
            # A parser that ends the userinfo at the first '@' or '/' reads the rest of
            # the password as host, port or database name, which error messages quote.
            found.update(p for p in re.split(r"[@/?#&:]", password) if len(p) >= 4)
        for match in _QUERY_PASSWORD.finditer(rest):
            found.add(match.group(0).split("=", 1)[1])
        if scheme.lower() in ("amqp", "amqps"):
            # Imported here: pika is 14 ms of every process's start, and run's
            # children (and most commands) never read a broker URL.
            import pika

            try:
                found.add(pika.URLParameters(url).credentials.password)
            except Exception:  # pika cannot read it: the readings above stand
                pass
    elif ":" in url:
        password = url.partition(":")[2]  # "user:password[@host]", no scheme
        found.add(password)
        found.update(p for p in re.split(r"[@/?#&:]", password) if len(p) >= 4)
    try:
        password = conninfo_to_dict(url).get("password")
        if password:
            found.add(password)
    except Exception:  # not something libpq can read: the readings above stand
        pass
    return frozenset(p for p in found if p and p != MASK)


def _mask_userinfo(match: re.Match) -> str:
    userinfo = match.group(2)[:-1]
    user, colon, _ = userinfo.partition(":")
    return match.group(1) + (f"{user}:{MASK}@" if colon else f"{userinfo}@")


def _forms(password: str) -> set[str]:
    decoded = unquote(password)
    forms = {password, decoded}
    for p in (password, decoded):
        forms |= {quote(p, safe=""), quote(p), quote_plus(p), repr(p)[1:-1]}
    return {f for f in forms if f}


def remember(*urls: str | None) -> None:
    """Note the passwords of URLs this process was given, so no message shows them."""
    for url in urls:
        if url:
            for password in passwords_in(url):
                _seen.update(_forms(password))


def known_passwords() -> set[str]:
    known = set(_seen)
    for name in _ENV_URLS:
        if os.environ.get(name):
            for password in passwords_in(os.environ[name]):
                known |= _forms(password)
    if os.environ.get("PGPASSWORD"):
        known |= _forms(os.environ["PGPASSWORD"])
    return known


def scrub(text: str, *urls: str | None) -> str:
    """The text with URL userinfo, password parameters and every known password masked."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _QUERY_PASSWORD.sub(rf"\1{MASK}", text)
    text = _KEYWORD_PASSWORD.sub(rf"\1{MASK}", text)
    known = known_passwords()
    for url in urls:
        if url:
            for password in passwords_in(url):
                known |= _forms(password)
    # Longest first, so a password that contains another is replaced whole.
    for password in sorted(known, key=len, reverse=True):
        if password != MASK:
            text = text.replace(password, MASK)
    return text
