"""Stripe's events from their bodies: a webhook's signature checked with the SDK against every
configured secret, then the envelope validated and parsed into an FCEvent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import stripe

from worker.errors import PermanentError
from worker.event_envelope import (
    InvalidEventError,
    check_envelope,
    is_fc_event_type,
    load_event_json,
)
from worker.records import FCAccount, FCEvent
from worker.stripe_payloads import parse_account


class WebhookSignatureError(PermanentError):
    """The payload is not a Stripe event signed with any configured secret."""


def account_from_dict(data: object) -> FCAccount:
    """Parse an account after checking it (see stripe_payloads): raises InvalidStripeResponse."""
    return parse_account(data)


# Stripe sends `t=<unix>,v1=<hex>[,v1=...][,v0=...]`: a few hundred ASCII characters at most.
SIGNATURE_HEADER_MAX = 4096


def verify_webhook(
    payload: bytes, sig_header: str | None, secrets: Sequence[str], *, tolerance: int
) -> tuple[FCEvent, dict[str, Any]]:
    """Check the signature against every configured secret; return the event and its JSON.

    The signature is checked before the body is parsed (only its UTF-8 decoding, which the
    signature is computed over, comes first), so an unsigned sender learns nothing about what
    fcsync would accept."""
    if not sig_header:
        raise WebhookSignatureError("missing Stripe-Signature header", code="signature_missing")
    # The SDK compares signatures with hmac.compare_digest, which raises TypeError on non-ASCII.
    if not sig_header.isascii() or len(sig_header) > SIGNATURE_HEADER_MAX:
        raise WebhookSignatureError("malformed Stripe-Signature header", code="signature_invalid")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"body is not UTF-8: {exc.reason}", code="bad_json") from exc
    last_error: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, sig_header, secret, tolerance)
            break
        except stripe.SignatureVerificationError as exc:
            last_error = exc
    else:
        raise WebhookSignatureError(
            f"signature verification failed: {last_error}", code="signature_invalid"
        )
    return parse_event(text)


def parse_event(payload: bytes | str) -> tuple[FCEvent, dict[str, Any]]:
    """A Stripe event from its JSON body, validated (InvalidEventError says what is wrong)."""
    data = load_event_json(payload)
    obj = check_envelope(data)
    account = None
    # A Connect event names the connected account it happened in (checked by check_envelope).
    stripe_account = data.get("account")
    if is_fc_event_type(data["type"]):
        try:
            account = replace(account_from_dict(obj), stripe_account=stripe_account)
        except PermanentError as exc:
            raise InvalidEventError(f"`data.object` is not a valid account: {exc}") from exc
    event = FCEvent(
        id=data["id"],
        type=data["type"],
        created=data["created"],
        livemode=data["livemode"],
        account=account,
        stripe_account=stripe_account,
    )
    return event, data
