"""The only module that talks to Stripe: calls, paging, error mapping, webhook verification, DTOs.

Everything above it sees frozen dataclasses and fcsync's two error roots, never SDK objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import stripe

from worker import log_context, metrics
from worker.errors import ConfigurationError, PermanentError, RateLimitedError, TransientError
from worker.event_envelope import (
    InvalidEventError,
    check_envelope,
    is_fc_event_type,
    load_event_json,
)
from worker.read_ahead import PagesAhead
from worker.records import EventPage, FCAccount, FCEvent, TransactionPage
from worker.settings import STRIPE_API_VERSION, Settings
from worker.stripe_payloads import (
    parse_account,
    parse_account_answer,
    parse_events_page,
    parse_transactions_page,
)

log = logging.getLogger(__name__)

# Endpoints as metrics name them: templated paths, so no label ever holds an id.
ACCOUNT_PATH = "/v1/financial_connections/accounts/{account}"

# Stripe's maximum page size: fewest requests per synced row.
PAGE_LIMIT = 100

TRANSACTIONS_PATH = "/v1/financial_connections/transactions"
EVENTS_PATH = "/v1/events"

# Error codes that mean "the same call can succeed later" even though they arrive as 4xx.
TRANSIENT_CODES = frozenset({"lock_timeout", "rate_limit", "idempotency_key_in_use"})


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Wait for a turn in the budget; how long it waited (seconds)."""
        ...


class WebhookSignatureError(PermanentError):
    """The payload is not a Stripe event signed with any configured secret."""


def account_from_dict(data: object) -> FCAccount:
    """Parse an account after checking it (see stripe_payloads): raises InvalidStripeResponse."""
    return parse_account(data)


def _payload(obj: Any) -> Any:
    """What Stripe sent as plain JSON values; a body that is no JSON object stays what it is
    (the SDK hands back `[]` or `42` as such), for the checks to reject."""
    if isinstance(obj, stripe.StripeResponse):
        return obj.data
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def map_stripe_error(exc: stripe.StripeError) -> TransientError | PermanentError:
    """Stripe's error tree (keyed by HTTP status) onto retry-or-record."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "code", None)
    # Only a string is a Stripe code; a proxy's answer can put anything there.
    code = code if isinstance(code, str) and code else None
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
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        self._api_key = api_key
        self._http_client = http_client
        self._api_base = api_base
        self._max_network_retries = max_network_retries
        self._timeout_s = timeout_s
        self._limiter = limiter
        self._stripe: stripe.StripeClient | None = None
        # The reading ahead of each account being synced.
        self._ahead = PagesAhead(self._read_page)

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
            http_client=self._http_client or stripe.RequestsClient(timeout=self._timeout_s),
        )
        return self._stripe

    @property
    def _fc(self) -> Any:
        return self._client.v1.financial_connections

    def _request(self, endpoint: str, call: Callable[[], Any]) -> Any:
        """One Stripe request within the shared budget: what Stripe sent as plain JSON, Stripe's
        errors mapped; its request id (what Stripe's support asks for) goes on the rest of the
        unit of work's log lines. `endpoint` names it in metrics (a templated path, no id)."""
        if self._limiter is not None:
            try:
                metrics.rate_limiter_waited(self._limiter.acquire())
            except RateLimitedError:
                metrics.rate_limiter_refused()
                raise
        # Until Stripe answers, no line may name the previous request as this one.
        log_context.forget("stripe_request_id")
        started = time.monotonic()
        try:
            obj = call()
        except stripe.StripeError as exc:
            metrics.stripe_request(endpoint, exc.http_status, time.monotonic() - started)
            log_context.note(stripe_request_id=exc.request_id)
            raise map_stripe_error(exc) from exc
        except AttributeError as exc:
            metrics.stripe_request(endpoint, None, time.monotonic() - started)
            # The SDK reads an error body's `error` as Stripe's error object (or an OAuth code):
            # a proxy's `{"error": "Bad Gateway"}` fails there, with no status to map.
            raise TransientError(
                f"Stripe's error answer cannot be read: {exc}", code="unreadable_error"
            ) from exc
        response = (
            obj if isinstance(obj, stripe.StripeResponse) else getattr(obj, "last_response", None)
        )
        metrics.stripe_request(
            endpoint, getattr(response, "code", None) or 200, time.monotonic() - started
        )
        log_context.note(stripe_request_id=getattr(response, "request_id", None))
        return _payload(obj)

    def _account(
        self, endpoint: str, account_id: str, stripe_account: str | None, call: Callable[[], Any]
    ) -> FCAccount:
        account = parse_account_answer(self._request(endpoint, call), account_id)
        refresh = account.transaction_refresh
        log_context.note(refresh_id=refresh.id if refresh is not None else None)
        # Stripe's account object does not say which context answered: the one asked in does.
        return replace(account, stripe_account=stripe_account)

    # Every call about an FC account takes its Stripe account context, keyword-only and without
    # a default: a call that forgot it does not type-check, so a connected account's account is
    # never asked about on the platform (where Stripe answers 404, or worse, another account).

    def retrieve_account(self, account_id: str, *, stripe_account: str | None) -> FCAccount:
        return self._account(
            "GET " + ACCOUNT_PATH,
            account_id,
            stripe_account,
            lambda: self._fc.accounts.retrieve(account_id, options=_options(stripe_account)),
        )

    def refresh_transactions(
        self, account_id: str, *, stripe_account: str | None, idempotency_key: str
    ) -> FCAccount:
        return self._account(
            f"POST {ACCOUNT_PATH}/refresh",
            account_id,
            stripe_account,
            lambda: self._fc.accounts.refresh(
                account_id,
                {"features": ["transactions"]},
                {**_options(stripe_account), "idempotency_key": idempotency_key},
            ),
        )

    def subscribe_transactions(self, account_id: str, *, stripe_account: str | None) -> FCAccount:
        return self._account(
            f"POST {ACCOUNT_PATH}/subscribe",
            account_id,
            stripe_account,
            lambda: self._fc.accounts.subscribe(
                account_id, {"features": ["transactions"]}, _options(stripe_account)
            ),
        )

    def unsubscribe_transactions(self, account_id: str, *, stripe_account: str | None) -> FCAccount:
        return self._account(
            f"POST {ACCOUNT_PATH}/unsubscribe",
            account_id,
            stripe_account,
            lambda: self._fc.accounts.unsubscribe(
                account_id, {"features": ["transactions"]}, _options(stripe_account)
            ),
        )

    def list_transactions_page(
        self,
        account_id: str,
        *,
        stripe_account: str | None,
        after_refresh: str | None,
        starting_after: str | None,
        limit: int = PAGE_LIMIT,
    ) -> TransactionPage:
        """One page of the account's transactions: the one read ahead for exactly these
        parameters if it arrives whole, otherwise a request now (so any error, and its request
        id, comes from a request made at this moment, as without reading ahead)."""
        params = _list_params(account_id, stripe_account, after_refresh, starting_after, limit)
        ahead = self._noted(self._ahead.take(account_id, params, wait=True))
        if ahead is None:
            return parse_transactions_page(self._list_body(params))
        return ahead

    def arrived_transactions_page(
        self,
        account_id: str,
        *,
        stripe_account: str | None,
        after_refresh: str | None,
        starting_after: str,
        accept: Callable[[TransactionPage], bool],
        wait: bool = False,
        limit: int = PAGE_LIMIT,
    ) -> TransactionPage | None:
        """The page after `starting_after` if the read-ahead has already brought it whole (or
        brings it: `wait`) and `accept` takes it; None otherwise, at once when the reading
        ahead will not bring it (it is then asked for with `list_transactions_page`, which
        gets a refused page without asking Stripe again)."""
        params = _list_params(account_id, stripe_account, after_refresh, starting_after, limit)
        return self._noted(self._ahead.take(account_id, params, wait=wait, accept=accept))

    def read_ahead_transactions_pages(
        self,
        account_id: str,
        *,
        stripe_account: str | None,
        after_refresh: str | None,
        starting_after: str,
        pages: int,
        limit: int = PAGE_LIMIT,
    ) -> None:
        """Fetch up to `pages` pages after `starting_after` one after the other in a background
        thread, while this one writes: the sync's waits for Stripe overlap its database work,
        and pages that arrive faster than they are written wait to be written together. Only
        pages the sync will ask for (never past a run's last page), so it costs no extra
        request. One reading per account; asked again for the page it will bring next, it goes
        on as it is."""
        params = _list_params(account_id, stripe_account, after_refresh, starting_after, limit)
        self._ahead.start(account_id, params, pages)

    def stop_reading_ahead(self, account_id: str) -> None:
        """The sync run is over: its reading ahead makes no further request."""
        self._ahead.stop(account_id)

    def _noted(self, taken: tuple[TransactionPage, str | None] | None) -> TransactionPage | None:
        """A page read ahead, its request id now on the unit of work's log lines."""
        if taken is None:
            return None
        page, request_id = taken
        log_context.forget("stripe_request_id")
        log_context.note(stripe_request_id=request_id)
        return page

    def _read_page(self, params: dict[str, Any]) -> tuple[TransactionPage, str | None]:
        """A page read ahead, with its request id (kept in the reading thread's own context;
        it is noted where the page is used)."""
        with log_context.bound():
            page = parse_transactions_page(self._list_body(params))
            return page, log_context.current().get("stripe_request_id")

    def list_events_page(
        self,
        *,
        types: Sequence[str],
        created_gt: int,
        starting_after: str | None = None,
        stripe_account: str | None = None,
        limit: int = PAGE_LIMIT,
    ) -> EventPage:
        """One page of the events of `types` created after `created_gt`, newest first, of the
        platform's own account or (`stripe_account`, acct_...) a connected account's."""
        params: dict[str, Any] = {"types": list(types), "created": {"gt": created_gt}}
        params["limit"] = limit
        if starting_after:
            params["starting_after"] = starting_after
        if stripe_account:
            params["stripe_account"] = stripe_account  # sent as the Stripe-Account header
        body = self._request(
            "GET " + EVENTS_PATH, lambda: self._client.raw_request("get", EVENTS_PATH, **params)
        )
        return parse_events_page(body)

    def _list_body(self, params: dict[str, Any]) -> Any:
        # The page's JSON as the SDK received it (same request, retries and typed errors as
        # `transactions.list`), parsed straight into DTOs: building a StripeObject per row and
        # turning it back into a dict cost four times the HTTP request itself.
        return self._request(
            "GET " + TRANSACTIONS_PATH,
            lambda: self._client.raw_request("get", TRANSACTIONS_PATH, **params),
        )


def _options(stripe_account: str | None) -> dict[str, Any]:
    """stripe-python's request options for the context: `stripe_account` becomes the
    `Stripe-Account` header; the platform's own requests carry none."""
    return {"stripe_account": stripe_account} if stripe_account else {}


def _list_params(
    account_id: str,
    stripe_account: str | None,
    after_refresh: str | None,
    starting_after: str | None,
    limit: int,
) -> dict[str, Any]:
    """The list request's parameters with its request options (`raw_request` takes both as
    keywords and splits them): a page read ahead is used only for the same context too."""
    params: dict[str, Any] = {"account": account_id, "limit": limit, **_options(stripe_account)}
    if after_refresh:
        params["transaction_refresh"] = {"after": after_refresh}
    if starting_after:
        params["starting_after"] = starting_after
    return params


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
