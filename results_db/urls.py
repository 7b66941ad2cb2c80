"""Database URLs: masked for every message, and every secret they hold known for scrubbing.

A credential can sit in a URL in several forms SQLAlchemy and libpq accept: the userinfo
(``user:SECRET@host``, percent-encoded or not), and query parameters passed on to libpq
(``?password=SECRET``, ``?sslpassword=SECRET``). Masking works on the text as given, not on
SQLAlchemy's parse, because a parse can split a secret (an unencoded ``@`` in the password
makes part of it the host). ``passfile`` names a file we never read.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

MASK = "***"
# libpq connection keywords holding secrets; SQLAlchemy passes query parameters through.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:ssl)?password=)([^&#]*)")
_SECRETS: set[str] = set()  # every secret seen in this process, for scrub()


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, rest) of ``scheme://netloc/rest``, or None without ``://``."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return None
    cut = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
    return scheme, after[:cut], after[cut:]


def url_secrets(url: str) -> list[str]:
    """Every secret in ``url``, as written and percent-decoded."""
    found: list[str] = []
    parts = _split(url)
    if parts is not None:
        userinfo, at, _host = parts[1].rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        found += [m.group(2) for m in _SECRET_PARAMS.finditer(parts[2])]
    found += [unquote(s) for s in found]
    return [s for s in dict.fromkeys(found) if s]


def remember_secrets(url: str) -> None:
    """Note the URL's secrets so :func:`scrub` removes them from any later text."""
    _SECRETS.update(url_secrets(url))


def safe_url(url: object) -> str:
    """The URL with every credential masked, for messages and logs."""
    text = str(url)
    parts = _split(text)
    if parts is None:
        return scrub(text)
    scheme, netloc, rest = parts
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    rest = _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, rest)
    return scrub(f"{scheme}://{netloc}{rest}")


def unencoded_at(url: str) -> bool:
    """Whether the userinfo holds an ``@`` that is not percent-encoded (SQLAlchemy would
    read part of the password as the host)."""
    parts = _split(url)
    return parts is not None and parts[1].count("@") > 1


def scrub(text: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with every remembered secret (and ``extra`` ones) replaced by the mask."""
    for secret in sorted({*_SECRETS, *extra}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
