"""One request to Stripe: the `StripeClient` built once, the shared request budget, Stripe's
errors mapped onto fcsync's two roots, metrics and the request id on the unit of work's log
lines. The gateway's calls (worker/stripe_gateway.py) are made through it."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import requests
import stripe
import urllib3

from worker import log_context, metrics
from worker.errors import ConfigurationError, PermanentError, RateLimitedError, TransientError
from worker.settings import STRIPE_API_VERSION
from worker.stripe_keys import key_origin

# Error codes that mean "the same call can succeed later" even though they arrive as 4xx.
TRANSIENT_CODES = frozenset({"lock_timeout", "rate_limit", "idempotency_key_in_use"})


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Wait for a turn in the budget; how long it waited (seconds)."""
        ...


class PooledHTTPClient(stripe.HTTPClient):
    """stripe-python's HTTP client interface on urllib3's connection pools: the connections
    kept alive and shared by the process's threads (a pool is thread-safe), and none of
    requests' per-request work (preparing, merging settings, hooks, cookies, the environment),
    which was a third of a transaction page's CPU in the reading thread. The SDK keeps its
    headers, retries, idempotency keys and typed errors.

    Answers are read whole inside the request, streamed ones too: a connection lost or timed
    out mid-body is the SDK's `APIConnectionError` and retried by it, never an exception from a
    half-read stream. An egress proxy comes from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, read once
    for Stripe's address; TLS is verified against the SDK's own certificate bundle."""

    name = "urllib3"

    def __init__(self, *, api_base: str, timeout: float) -> None:
        super().__init__()
        # As requests reads a single number: the connect and the read timeout each.
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        proxy = requests.utils.get_environ_proxies(api_base).get(urlsplit(api_base).scheme)
        # Connections kept per host, as requests keeps them: a sync's reading threads and the
        # task's own thread ask at once, and a connection past this many is closed after use.
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(
                proxy, maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=stripe.ca_bundle_path
            )
            if proxy
            else urllib3.PoolManager(
                maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=stripe.ca_bundle_path
            )
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        try:
            answer = self._pool.request(
                method.upper(),
                url,
                body=post_data,
                headers=dict(headers or {}),
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _connection_error(exc) from exc
        return answer.data, answer.status, answer.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        content, status, answer_headers = self.request(method, url, headers, post_data)
        return io.BytesIO(content), status, answer_headers

    def close(self) -> None:
        self._pool.clear()


def _connection_error(exc: urllib3.exceptions.HTTPError) -> stripe.APIConnectionError:
    """As the SDK's own clients say it: a failed TLS verification is not retried (something
    intercepts the connection), a timeout or a refused or lost connection is."""
    retry = not isinstance(exc, urllib3.exceptions.SSLError)
    return stripe.APIConnectionError(  # type: ignore[no-untyped-call]
        f"Unexpected error communicating with Stripe.\n\n(Network error: "
        f"{type(exc).__name__}: {exc})",
        should_retry=retry,
    )


def _streamed_json(answer: stripe.StripeStreamResponse) -> Any:
    """A streamed answer's body parsed: orjson, several times faster than the SDK's
    `json.loads` into OrderedDicts. A body orjson refuses (NaN, Infinity, a lone surrogate)
    is parsed as the SDK parses it, so the checks reject it by name as before; one neither
    reads is the SDK's own error for a body that is no JSON. orjson reads an integer past
    64 bits as a float: for answers whose every number is checked to be an int64 (a page of
    transactions), either is refused alike."""
    body = answer.io.read()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
        return stripe.StripeResponse(text, answer.code, answer.headers).data
    except Exception:
        raise stripe.APIError(
            f"Invalid response body from API: {body!r} (HTTP response code was {answer.code})",
            body,
            answer.code,
            answer.headers,
        ) from None


def _payload(obj: Any) -> Any:
    """What Stripe sent as plain JSON values; a body that is no JSON object stays what it is
    (the SDK hands back `[]` or `42` as such), for the checks to reject."""
    if isinstance(obj, stripe.StripeStreamResponse):
        return _streamed_json(obj)
    if isinstance(obj, stripe.StripeResponse):
        return obj.data
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def map_stripe_error(
    exc: stripe.StripeError, stripe_key: str | None = None, *, origin: str | None = None
) -> TransientError | PermanentError:
    """Stripe's error tree (keyed by HTTP status) onto retry-or-record. `origin`: the key's
    name and where it is set, for a refused key (default: key_origin of `stripe_key`)."""
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
            f"{origin or key_origin(stripe_key)} was refused: {text}",
            code=code or "authentication",
        )
    if isinstance(exc, stripe.PermissionError):
        return PermanentError(text, code=code or "authentication")
    if isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError | stripe.CardError):
        return PermanentError(text, code=code or "invalid_request")
    # APIError covers 409, 5xx and anything else the SDK could not classify.
    return TransientError(text, code=code or f"http_{status}")


class StripeRequester:
    """Requests over one `StripeClient`, built once per process (on first use)."""

    def __init__(
        self,
        api_key: str | None,
        *,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout_s: float = 30.0,
        limiter: RateLimiter | None = None,
        http_client: stripe.HTTPClient | None = None,
        stripe_key: str | None = None,
        key_origin: str | None = None,
    ) -> None:
        # The configured key's name as the `stripe_key` columns hold it (None = `default`):
        # stamped on every account the gateway reads.
        self.stripe_key = stripe_key
        # Its name and where it is set, for a refused key's message (StripeKey.origin).
        self._key_origin = key_origin
        self._api_key = api_key
        self._http_client = http_client
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
            http_client=self._http_client
            or PooledHTTPClient(
                api_base=self._api_base or stripe.DEFAULT_API_BASE, timeout=self._timeout_s
            ),
        )
        return self._stripe

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
            payload = _payload(obj)
        except stripe.StripeError as exc:
            metrics.stripe_request(endpoint, exc.http_status, time.monotonic() - started)
            log_context.note(stripe_request_id=exc.request_id)
            raise map_stripe_error(exc, self.stripe_key, origin=self._key_origin) from exc
        except AttributeError as exc:
            metrics.stripe_request(endpoint, None, time.monotonic() - started)
            # The SDK reads an error body's `error` as Stripe's error object (or an OAuth code):
            # a proxy's `{"error": "Bad Gateway"}` fails there, with no status to map.
            raise TransientError(
                f"Stripe's error answer cannot be read: {exc}", code="unreadable_error"
            ) from exc
        response = (
            obj
            if isinstance(obj, stripe.StripeResponseBase)
            else getattr(obj, "last_response", None)
        )
        metrics.stripe_request(
            endpoint, getattr(response, "code", None) or 200, time.monotonic() - started
        )
        log_context.note(stripe_request_id=getattr(response, "request_id", None))
        return payload

    def _get_json(self, endpoint: str, service: Any, path: str, params: dict[str, Any]) -> Any:
        """GET `path` (one of `service`'s, a `StripeService` of the client) through the SDK,
        with its headers, retries and typed errors, as a streamed answer: the one kind the SDK
        neither parses into OrderedDicts nor formats whole into its debug log line (which it
        does whether or not debug logging is on), together three times a plain parse of a
        100-row page. `params` may hold `stripe_account`, sent as the Stripe-Account header."""
        query = dict(params)
        options = (
            {"stripe_account": query.pop("stripe_account")} if "stripe_account" in query else {}
        )
        return self._request(
            endpoint,
            lambda: service._request_stream("get", path, query, options, base_address="api"),
        )
