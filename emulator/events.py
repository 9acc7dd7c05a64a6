"""Events: each change to an account as Stripe records it, in the account's scope (a connected
account's carry `account`), kept 30 days for GET /v1/events, published to the webhook
endpoints that receive that scope the moment it is emitted, and resent on request."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from emulator import errors
from emulator.accounts import Account
from emulator.faults import FaultInjector
from emulator.identifiers import IdSource
from emulator.ledger import DAY_S
from emulator.paging import list_object, page_by_id
from emulator.scopes import Scope
from emulator.webhooks import WebhookDispatcher

EVENT_RETENTION_S = 30 * DAY_S
# The account events the emulator emits (and the control API may trigger).
ACCOUNT_EVENT_TYPES = frozenset(
    f"financial_connections.account.{kind}"
    for kind in (
        "created",
        "deactivated",
        "reactivated",
        "disconnected",
        "refreshed_balance",
        "refreshed_ownership",
        "refreshed_transactions",
        "account_numbers_updated",
        "upcoming_account_number_expiry",
    )
)
ACCOUNT_NUMBER_EVENT_TYPES = frozenset(
    f"financial_connections.account.{kind}"
    for kind in ("account_numbers_updated", "upcoming_account_number_expiry")
)


@dataclass(frozen=True)
class Origin:
    """The API request that caused a change, as recorded on the events it emits."""

    request_id: str | None = None
    idempotency_key: str | None = None


class Events:
    """The event log of every scope and its hand-off to webhook delivery."""

    def __init__(
        self,
        ids: IdSource,
        *,
        api_version: str,
        webhooks: WebhookDispatcher,
        faults: FaultInjector,
    ) -> None:
        self._ids = ids
        self._api_version = api_version
        self._webhooks = webhooks
        self._faults = faults
        self._events: list[dict[str, Any]] = []
        self._scopes: list[Scope] = []
        self._position: dict[str, int] = {}
        # Each scope's events by position, oldest first: a list reads only its own scope's.
        self._by_scope: dict[Scope, list[int]] = {}

    def emit(
        self,
        type_: str,
        account: Account,
        at: float,
        origin: Origin | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record `type_` with the account as it is now, and queue it for every endpoint."""
        scope = account.scope
        data: dict[str, Any] = {"object": account.render()}
        if previous is not None:
            data["previous_attributes"] = previous
        event: dict[str, Any] = {"id": self._ids.make("evt_"), "object": "event"}
        if scope.stripe_account is not None:
            # Stripe's top-level `account`: whose object it is, for Connect endpoints.
            event["account"] = scope.stripe_account
        event.update(
            {
                # The account's default version, whatever version the causing request used: an
                # endpoint with a version of its own gets the event at that one (webhooks.py).
                "api_version": self._api_version,
                "created": int(at),
                "data": data,
                "livemode": account.livemode,
                "pending_webhooks": len(self._webhooks.endpoints(scope)),
                "request": {
                    "id": origin.request_id if origin else None,
                    "idempotency_key": origin.idempotency_key if origin else None,
                },
                "type": type_,
            }
        )
        position = len(self._events)
        self._position[event["id"]] = position
        self._events.append(event)
        self._scopes.append(scope)
        self._by_scope.setdefault(scope, []).append(position)
        self._webhooks.publish(event, self._faults.settings, at=at, scope=scope)
        return event

    def resend(self, event_id: str) -> int | None:
        """Send a stored event once more to every endpoint that receives its scope (as it was
        emitted, so its account may be long out of date); how many endpoints it is due to
        reach, None if unknown."""
        position = self._position.get(event_id)
        if position is None:
            return None
        event = self._events[position]
        endpoints = self._webhooks.resend(event, self._scopes[position])
        event["pending_webhooks"] += endpoints
        return endpoints

    def delivered(self, event_id: str) -> None:
        """One endpoint took the event: one fewer pending webhook."""
        position = self._position.get(event_id)
        if position is not None:
            event = self._events[position]
            event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)

    def all(self) -> Sequence[dict[str, Any]]:
        """Every event of every scope, oldest first, retention ignored."""
        return self._events

    def page(self, params: dict[str, Any], scope: Scope, *, now: float) -> dict[str, Any]:
        """One page of the scope's events of the last 30 days, newest first (emission order),
        filtered as GET /v1/events documents it."""
        if "type" in params and "types" in params:
            raise errors.StripeError(
                400,
                "You may only specify one of these parameters: type, types.",
                code="parameters_exclusive",
                param="types",
            )
        wanted = _type_filter(params)
        created = params.get("created")
        since = now - EVENT_RETENTION_S
        keys = [
            i
            for i in self._by_scope.get(scope, [])
            if (e := self._events[i])["created"] >= since
            and wanted(e["type"])
            and _in_range(e["created"], created)
            and (
                "delivery_success" not in params
                or params["delivery_success"] == (e["pending_webhooks"] == 0)
            )
        ]
        chosen, has_more = page_by_id(
            keys, params, self._position, "event", lambda p: self._scopes[p] == scope
        )
        return list_object([self._events[i] for i in chosen], has_more, "/v1/events")

    def get(self, event_id: str, scope: Scope, *, now: float) -> dict[str, Any]:
        """The event if it is the scope's and of the last 30 days, as Stripe retrieves one."""
        position = self._position.get(event_id)
        if (
            position is None
            or self._scopes[position] != scope
            or self._events[position]["created"] < now - EVENT_RETENTION_S
        ):
            raise errors.no_such("event", event_id, param="id")
        return self._events[position]


def _in_range(value: int, spec: int | dict[str, int] | None) -> bool:
    if spec is None:
        return True
    if isinstance(spec, int):
        return value == spec
    return (
        value > spec.get("gt", value - 1)
        and value >= spec.get("gte", value)
        and value < spec.get("lt", value + 1)
        and value <= spec.get("lte", value)
    )


def _type_filter(params: dict[str, Any]) -> Callable[[str], bool]:
    """`type` may use `*` as a wildcard (`financial_connections.account.*`); `types` is exact."""
    if "type" in params:
        pattern = re.compile(".*".join(re.escape(p) for p in params["type"].split("*")))
        return lambda t: pattern.fullmatch(t) is not None
    if "types" in params:
        types = frozenset(params["types"])
        return types.__contains__
    return lambda _t: True
