"""The only module that talks to Stripe: calls, paging, error mapping, webhook verification, DTOs.

Everything above it sees frozen dataclasses and fcsync's two error roots, never SDK objects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import stripe

from worker.errors import ConfigurationError, PermanentError, RateLimitedError, TransientError
from worker.records import (
    FCAccount,
    FCEvent,
    FCTransaction,
    TransactionPage,
    TransactionRefreshState,
)
from worker.settings import STRIPE_API_VERSION, Settings

log = logging.getLogger(__name__)

# Stripe's maximum page size: fewest requests per synced row.
PAGE_LIMIT = 100

# Error codes that mean "the same call can succeed later" even though they arrive as 4xx.
TRANSIENT_CODES = frozenset({"lock_timeout", "rate_limit", "idempotency_key_in_use"})


class RateLimiter(Protocol):
    def acquire(self) -> None: ...


class WebhookSignatureError(PermanentError):
    """The payload is not a Stripe event signed with any configured secret."""


def _get(obj: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    value = obj.get(key, default)
    return default if value is None else value


def account_from_dict(data: Mapping[str, Any]) -> FCAccount:
    """Parse an account leniently: unknown fields and new enum values are accepted."""
    refresh = data.get("transaction_refresh")
    holder = data.get("account_holder") or {}
    customer = holder.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return FCAccount(
        id=str(data["id"]),
        livemode=bool(data.get("livemode", False)),
        institution_name=str(_get(data, "institution_name", "")),
        display_name=data.get("display_name"),
        last4=data.get("last4"),
        category=str(_get(data, "category", "other")),
        subcategory=str(_get(data, "subcategory", "other")),
        status=str(_get(data, "status", "active")),
        permissions=tuple(_get(data, "permissions", ())),
        subscriptions=tuple(_get(data, "subscriptions", ())),
        customer=customer,
        created=data.get("created"),
        transaction_refresh=None
        if not refresh
        else TransactionRefreshState(
            id=str(refresh["id"]),
            status=str(refresh["status"]),
            last_attempted_at=int(refresh["last_attempted_at"]),
            next_refresh_available_at=refresh.get("next_refresh_available_at"),
        ),
    )


def transaction_from_dict(data: Mapping[str, Any]) -> FCTransaction:
    transitions = data.get("status_transitions") or {}
    return FCTransaction(
        id=str(data["id"]),
        account=str(data["account"]),
        amount=int(data["amount"]),
        currency=str(data["currency"]),
        description=str(_get(data, "description", "")),
        status=str(data["status"]),
        posted_at=transitions.get("posted_at"),
        void_at=transitions.get("void_at"),
        transacted_at=int(data["transacted_at"]),
        transaction_refresh=str(data["transaction_refresh"]),
        updated=int(data["updated"]),
        livemode=bool(data.get("livemode", False)),
    )


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    return dict(obj)


def map_stripe_error(exc: stripe.StripeError) -> TransientError | PermanentError:
    """Stripe's error tree (keyed by HTTP status) onto retry-or-record."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "code", None)
    status = exc.http_status
    text = f"Stripe {status or 'error'}{f' {code}' if code else ''}: {exc.user_message or exc}"
    if isinstance(exc, stripe.RateLimitError):
        return RateLimitedError(text, code=code or "rate_limit")
    if isinstance(exc, stripe.APIConnectionError):
        return TransientError(f"cannot reach Stripe: {exc.user_message or exc}", code="connection")
    if code in TRANSIENT_CODES:
        return TransientError(text, code=code)
    if isinstance(exc, stripe.AuthenticationError):
        # A key Stripe does not accept is our configuration, not a fact about any account.
        return ConfigurationError(
            f"STRIPE_API_KEY was refused: {text}", code=code or "authentication"
        )
    if isinstance(exc, stripe.PermissionError):
        return PermanentError(text, code=code or "authentication")
    if isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError | stripe.CardError):
        return PermanentError(text, code=code or "invalid_request")
    # APIError covers 409, 5xx and anything else the SDK could not classify.
    return TransientError(text, code=code or f"http_{status}")


class StripeGateway:
    """Financial Connections calls over one `StripeClient`, built once per process."""

    def __init__(
        self,
        api_key: str | None,
        *,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout_s: float = 30.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_base = api_base
        self._max_network_retries = max_network_retries
        self._timeout_s = timeout_s
        self._limiter = limiter
        self._stripe: stripe.StripeClient | None = None

    @property
    def _client(self) -> stripe.StripeClient:
        """Built on first use, so work that never calls Stripe needs no key."""
        if self._stripe is not None:
            return self._stripe
        if not self._api_key:
            raise ConfigurationError(
                "STRIPE_API_KEY is not set: fcsync needs a Stripe secret or restricted key",
                code="missing_setting",
            )
        addresses: dict[str, str] = {"api": self._api_base} if self._api_base else {}
        # StripeClient defaults to 0 network retries; we want the SDK to retry 409/5xx and
        # connection errors (with its reused idempotency key) before a Celery retry kicks in.
        self._stripe = stripe.StripeClient(
            self._api_key,
            base_addresses=addresses,  # type: ignore[arg-type]
            stripe_version=STRIPE_API_VERSION,
            max_network_retries=self._max_network_retries,
            http_client=stripe.RequestsClient(timeout=self._timeout_s),
        )
        return self._stripe

    @property
    def _fc(self) -> Any:
        return self._client.v1.financial_connections

    @contextmanager
    def _call(self) -> Iterator[None]:
        if self._limiter is not None:
            self._limiter.acquire()
        try:
            yield
        except stripe.StripeError as exc:
            raise map_stripe_error(exc) from exc

    def retrieve_account(self, account_id: str) -> FCAccount:
        with self._call():
            obj = self._fc.accounts.retrieve(account_id)
        return account_from_dict(_as_dict(obj))

    def refresh_transactions(self, account_id: str, *, idempotency_key: str) -> FCAccount:
        with self._call():
            obj = self._fc.accounts.refresh(
                account_id,
                {"features": ["transactions"]},
                {"idempotency_key": idempotency_key},
            )
        return account_from_dict(_as_dict(obj))

    def subscribe_transactions(self, account_id: str) -> FCAccount:
        with self._call():
            obj = self._fc.accounts.subscribe(account_id, {"features": ["transactions"]})
        return account_from_dict(_as_dict(obj))

    def unsubscribe_transactions(self, account_id: str) -> FCAccount:
        with self._call():
            obj = self._fc.accounts.unsubscribe(account_id, {"features": ["transactions"]})
        return account_from_dict(_as_dict(obj))

    def list_transactions_page(
        self,
        account_id: str,
        *,
        after_refresh: str | None,
        starting_after: str | None,
        limit: int = PAGE_LIMIT,
    ) -> TransactionPage:
        params: dict[str, Any] = {"account": account_id, "limit": limit}
        if after_refresh:
            params["transaction_refresh"] = {"after": after_refresh}
        if starting_after:
            params["starting_after"] = starting_after
        with self._call():
            page = self._fc.transactions.list(params)
        data = _as_dict(page)
        return TransactionPage(
            transactions=tuple(transaction_from_dict(t) for t in data.get("data", [])),
            has_more=bool(data.get("has_more", False)),
        )


def gateway_from_settings(
    settings: Settings, *, limiter: RateLimiter | None = None
) -> StripeGateway:
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    return StripeGateway(
        key,
        api_base=settings.stripe_api_base,
        max_network_retries=settings.fcsync_max_network_retries,
        timeout_s=settings.fcsync_http_timeout_s,
        limiter=limiter,
    )


def verify_webhook(
    payload: bytes, sig_header: str | None, secrets: Sequence[str], *, tolerance: int
) -> tuple[FCEvent, dict[str, Any]]:
    """Check the signature against every configured secret; return the event and its JSON."""
    if not sig_header:
        raise WebhookSignatureError("missing Stripe-Signature header", code="signature_missing")
    last_error: Exception | None = None
    for secret in secrets:
        try:
            stripe.Webhook.construct_event(payload, sig_header, secret, tolerance=tolerance)
            break
        except stripe.SignatureVerificationError as exc:
            last_error = exc
        except ValueError as exc:
            raise WebhookSignatureError(f"payload is not JSON: {exc}", code="bad_json") from exc
    else:
        raise WebhookSignatureError(
            f"signature verification failed: {last_error}", code="signature_invalid"
        )
    return parse_event(payload)


def parse_event(payload: bytes | str) -> tuple[FCEvent, dict[str, Any]]:
    try:
        data = json.loads(payload)
        obj = (data.get("data") or {}).get("object") or {}
        account = (
            account_from_dict(obj) if obj.get("object") == "financial_connections.account" else None
        )
        event = FCEvent(
            id=str(data["id"]),
            type=str(data["type"]),
            created=int(data["created"]),
            livemode=bool(data.get("livemode", False)),
            account=account,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WebhookSignatureError(f"not a Stripe event: {exc}", code="bad_event") from exc
    return event, data
