"""Stripe's Financial Connections API as fcsync calls it: accounts, refreshes, paging (with
reading ahead) and events, as DTOs. With stripe_requests.py (one request, errors mapped) and
stripe_events.py (webhook signatures), the only modules that import stripe: everything above
sees frozen dataclasses and fcsync's two error roots, never SDK objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import stripe

from worker import log_context
from worker.errors import PermanentError
from worker.feature_payloads import feature_fields, parse_owners_page
from worker.read_ahead import Arrival, PagesAhead
from worker.records import EventPage, FCAccount, OwnerPage, TransactionPage
from worker.settings import Settings
from worker.stripe_keys import key_prefix
from worker.stripe_payloads import (
    parse_account_answer,
    parse_events_page,
    parse_transactions_page,
)
from worker.stripe_requests import RateLimiter, StripeRequester

log = logging.getLogger(__name__)

# Endpoints as metrics name them: templated paths, so no label ever holds an id.
ACCOUNT_PATH = "/v1/financial_connections/accounts/{account}"

# Stripe's maximum page size: fewest requests per synced row.
PAGE_LIMIT = 100

TRANSACTIONS_PATH = "/v1/financial_connections/transactions"
EVENTS_PATH = "/v1/events"


class StripeGateway(StripeRequester):
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
        stripe_key: str | None = None,
        key_origin: str | None = None,
    ) -> None:
        super().__init__(
            api_key,
            api_base=api_base,
            max_network_retries=max_network_retries,
            timeout_s=timeout_s,
            limiter=limiter,
            http_client=http_client,
            stripe_key=stripe_key,
            key_origin=key_origin,
        )
        # The reading ahead of each account being synced.
        self._ahead = PagesAhead(self._read_page)

    @property
    def livemode(self) -> bool | None:
        """The `livemode` of the events this key's account sends; None when no key is set."""
        found = key_prefix(self._api_key) if self._api_key else None
        return None if found is None else found[1] == "live"

    @property
    def _fc(self) -> Any:
        return self._client.v1.financial_connections

    def _account(
        self, endpoint: str, account_id: str, stripe_account: str | None, call: Callable[[], Any]
    ) -> FCAccount:
        body = self._request(endpoint, call)
        account = parse_account_answer(body, account_id)
        refresh = account.transaction_refresh
        log_context.note(refresh_id=refresh.id if refresh is not None else None)
        # Stripe's account object does not say which context answered, nor with which key: the
        # ones asked with do.
        return replace(
            account,
            stripe_account=stripe_account,
            stripe_key=self.stripe_key,
            **feature_fields(body, account_id),
        )

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
        return self.refresh_feature(
            account_id,
            "transactions",
            stripe_account=stripe_account,
            idempotency_key=idempotency_key,
        )

    def refresh_feature(
        self, account_id: str, feature: str, *, stripe_account: str | None, idempotency_key: str
    ) -> FCAccount:
        """POST .../refresh for one of Stripe's features: balance | ownership | transactions."""
        return self._account(
            f"POST {ACCOUNT_PATH}/refresh",
            account_id,
            stripe_account,
            lambda: self._fc.accounts.refresh(
                account_id,
                {"features": [feature]},
                {**_options(stripe_account), "idempotency_key": idempotency_key},
            ),
        )

    def list_owners_page(
        self,
        account_id: str,
        *,
        stripe_account: str | None,
        ownership: str,
        starting_after: str | None,
    ) -> OwnerPage:
        params: dict[str, Any] = {"ownership": ownership, "limit": PAGE_LIMIT}
        if starting_after is not None:
            params["starting_after"] = starting_after
        body = self._request(
            f"GET {ACCOUNT_PATH}/owners",
            lambda: self._fc.accounts.owners.list(account_id, params, _options(stripe_account)),
        )
        return parse_owners_page(body, ownership)

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
        starting_after: str | None,
        pages: int,
        until: float | None = None,
        limit: int = PAGE_LIMIT,
    ) -> None:
        """Fetch up to `pages` pages after `starting_after` (None: from the first) one after
        the other in a background thread, while this one writes: the sync's waits for Stripe
        overlap its database work, and pages that arrive faster than they are written wait to
        be written together. The first page to arrive at or after `until` (time.monotonic())
        is the last. Only pages the sync will ask for (never past a run's last page), so it
        costs no extra request. One reading per account; asked again for the page it will
        bring next, it goes on as it is."""
        params = _list_params(account_id, stripe_account, after_refresh, starting_after, limit)
        self._ahead.start(account_id, params, pages, until)

    def reads_ahead(self, account_id: str) -> bool:
        """Whether the account's reading ahead has pages waiting or is still fetching."""
        return self._ahead.brings_more(account_id)

    def list_transactions_since(
        self,
        account_id: str,
        *,
        stripe_account: str | None,
        transacted_gte: int,
        starting_after: str | None,
        limit: int = PAGE_LIMIT,
    ) -> TransactionPage:
        """One page of the account's transactions transacted at or after `transacted_gte`
        (`transacted_at[gte]`), whatever refresh last changed them: a reconciliation's window.
        Never from a sync's reading ahead (other parameters; taking from it would cancel it)."""
        params = _list_params(account_id, stripe_account, None, starting_after, limit)
        params["transacted_at"] = {"gte": transacted_gte}
        return parse_transactions_page(self._list_body(params))

    def stop_reading_ahead(self, account_id: str) -> None:
        """The sync run is over: its reading ahead makes no further request."""
        self._ahead.stop(account_id)

    def _noted(self, taken: tuple[Arrival, str | None] | None) -> TransactionPage | None:
        """A page read ahead, its request id now on the unit of work's log lines; a page
        Stripe refused for good raises its error here, as the request would have."""
        if taken is None:
            return None
        page, request_id = taken
        log_context.forget("stripe_request_id")
        log_context.note(stripe_request_id=request_id)
        if isinstance(page, PermanentError):
            raise page
        return page

    def _read_page(self, params: dict[str, Any]) -> tuple[Arrival, str | None]:
        """A page read ahead, or the permanent error Stripe's answer was, with its request id
        (kept in the reading thread's own context; it is noted where the page is used)."""
        with log_context.bound():
            try:
                page: Arrival = parse_transactions_page(self._list_body(params))
            except PermanentError as exc:
                page = exc
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
        # The SDK's own parse, not the pages' faster one: an event's body is kept as its JSON,
        # whose integers must survive exactly (orjson reads one past 64 bits as a float).
        body = self._request(
            "GET " + EVENTS_PATH, lambda: self._client.raw_request("get", EVENTS_PATH, **params)
        )
        return parse_events_page(body)

    def _list_body(self, params: dict[str, Any]) -> Any:
        # The page's JSON (same request, retries and typed errors as `transactions.list`),
        # parsed straight into DTOs: building a StripeObject per row and turning it back into
        # a dict cost four times the HTTP request itself.
        return self._get_json(
            "GET " + TRANSACTIONS_PATH, self._fc.transactions, TRANSACTIONS_PATH, params
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
    """The list request's parameters with its request options (`_get_json` splits them off):
    a page read ahead is used only for the same context too."""
    params: dict[str, Any] = {"account": account_id, "limit": limit, **_options(stripe_account)}
    if after_refresh:
        params["transaction_refresh"] = {"after": after_refresh}
    if starting_after:
        params["starting_after"] = starting_after
    return params


def gateway_from_settings(
    settings: Settings, *, limiter: RateLimiter | None = None
) -> StripeGateway:
    """The gateway of STRIPE_API_KEY, the key named `default`."""
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    return gateway_for_key(settings, key, None, limiter=limiter)


def gateway_for_key(
    settings: Settings,
    api_key: str | None,
    stripe_key: str | None,
    *,
    limiter: RateLimiter | None = None,
    key_origin: str | None = None,
) -> StripeGateway:
    """The gateway of one configured key (`stripe_key`: its name as the columns hold it;
    `key_origin`: its name and where it is set, StripeKey.origin)."""
    return StripeGateway(
        api_key,
        api_base=settings.stripe_api_base,
        max_network_retries=settings.fcsync_max_network_retries,
        timeout_s=settings.fcsync_http_timeout_s,
        limiter=limiter,
        stripe_key=stripe_key,
        key_origin=key_origin,
    )
