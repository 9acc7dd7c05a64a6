"""What may never be printed: passwords inside URLs and Stripe secrets, masked in one place
for every log line, CLI message and stored error."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Stripe secret and restricted keys, webhook signing secrets, and client secrets of sessions.
_STRIPE_SECRET = re.compile(r"\b(sk|rk|whsec)_(?:(?:test|live)_)?[A-Za-z0-9]{6,}")
# `scheme://user:password@host` in any text (an exception message, a kombu error).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*(?=@)")


def mask_url(url: str) -> str:
    """The URL with its password replaced, for messages that name a database or broker."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(text: str) -> str:
    """`text` with URL passwords and anything shaped like a Stripe secret masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _STRIPE_SECRET.sub(lambda m: f"{m.group(1)}_{MASK}", text)
