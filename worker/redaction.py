"""What may never be printed: passwords inside URLs and Stripe secrets, masked in one place
for every log line, CLI message and stored error."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Stripe secret and restricted keys and webhook signing secrets.
_STRIPE_SECRET = re.compile(r"\b(sk|rk|whsec)_(?:(?:test|live)_)?[A-Za-z0-9_]{6,}")
# `scheme://user:password@host` in any text (an exception message, a kombu error). Parsers
# disagree on a raw `@` in a password: SQLAlchemy ends it at the first `@`, urllib and
# redis-py at the last one before the path. Masking up to the last `@` that no `/`, `?`, `#`
# or space separates covers both (and never crosses into a following URL, which opens `//`).
# Every record passes through here, so the cost stays linear in the text: a scheme is read
# from the start of its run, a password never spans another `://`, nothing read is given back.
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.\-])[A-Za-z0-9+.\-]++://[^:/@\s]*+:)"
    r"(?:(?!://)[^@\s])*+(?:@[^@\s/?#]*+(?=@))*+(?=@)"
)
# `?password=...` in a URL's query: redis-py and libpq accept the password there too.
_QUERY_PASSWORD = re.compile(
    r"(?P<head>[?&](?:[A-Za-z_]{0,32}password|passwd|pwd)=)[^&\s#]*", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """The URL with its password replaced, for messages that name a database or broker.
    A failover list (`redis://:pw@a;redis://:pw@b`, as Celery takes) is masked URL by URL;
    whatever urllib does not read as a password (SQLAlchemy's reading of a raw `/`, a query
    parameter) is masked by `redact` after."""
    return redact(";".join(_mask_password(part) for part in url.split(";")))


def _mask_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return url
    if password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{user}:{MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(text: str) -> str:
    """`text` with URL passwords and anything shaped like a Stripe secret masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _STRIPE_SECRET.sub(lambda m: f"{m.group(1)}_{MASK}", text)
