"""Keeping the LLM's credentials out of every message photoscribe prints or stores.

Some servers quote the key they refused ("Incorrect API key provided: sk-…"), a base URL
may carry a password (``https://user:pass@host/v1``) and extra headers may hold tokens.
Every error text built from a server's answer or a URL goes through a ``Redactor``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
MIN_SECRET = 4  # shorter values would blank out ordinary words
NOT_SECRET = frozenset({"", "not-needed"})


def public_url(url: str) -> str:
    """``url`` without a user name or password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def secrets_of(api_key: str, base_url: str, headers: Mapping[str, str] | None) -> list[str]:
    """The values that must never be shown: the key, the URL's password, header values."""
    found = [api_key, *(headers or {}).values()]
    with contextlib.suppress(ValueError):  # not a URL: nothing to take from it
        found.append(urlsplit(base_url).password or "")
    return found


class Redactor:
    """Replaces each secret (longest first) by ``***`` in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        kept = {s for s in secrets if s not in NOT_SECRET and len(s) >= MIN_SECRET}
        self._secrets = sorted(kept, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, HIDDEN)
        return text
