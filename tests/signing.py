"""Stripe's webhook signature scheme, for signing test payloads (v1 = HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
