"""Events: each change to an account as Stripe records it, kept 30 days for GET /v1/events,
published to the webhook endpoints the moment it is emitted and resent on request."""

from __future__ import annotations

import json
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
    )
)


@dataclass(frozen=True)
class Origin:
    """The API request that caused a change, as recorded on the events it emits."""

    api_version: str
    request_id: str | None = None
    idempotency_key: str | None = None


class Events:
    """The event log of one emulated Stripe account and its hand-off to webhook delivery."""

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
        self._position: dict[str, int] = {}

    def emit(
        self,
        type_: str,
        account: Account,
        at: float,
        origin: Origin | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record `type_` with the account as it is now, and queue it for every endpoint."""
        data: dict[str, Any] = {"object": account.render()}
        if previous is not None:
            data["previous_attributes"] = previous
        event: dict[str, Any] = {
            "id": self._ids.make("evt_"),
            "object": "event",
            "api_version": origin.api_version if origin else self._api_version,
            "created": int(at),
            "data": data,
            "livemode": account.livemode,
            "pending_webhooks": len(self._webhooks.endpoints()),
            "request": {
                "id": origin.request_id if origin else None,
                "idempotency_key": origin.idempotency_key if origin else None,
            },
            "type": type_,
        }
        self._position[event["id"]] = len(self._events)
        self._events.append(event)
        body = json.dumps(event, indent=2).encode()
        self._webhooks.publish(event["id"], body, self._faults.settings, at=at)
        return event

    def resend(self, event_id: str) -> int | None:
        """Send a stored event once more to every endpoint (as it was emitted, so its account
        may be long out of date); how many endpoints it is due to reach, None if unknown."""
        position = self._position.get(event_id)
        if position is None:
            return None
        event = self._events[position]
        body = json.dumps(event, indent=2).encode()
        endpoints = self._webhooks.resend(event_id, body)
        event["pending_webhooks"] += endpoints
        return endpoints

    def delivered(self, event_id: str) -> None:
        """One endpoint took the event: one fewer pending webhook."""
        position = self._position.get(event_id)
        if position is not None:
            event = self._events[position]
            event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)

    def all(self) -> Sequence[dict[str, Any]]:
        """Every event of both modes, oldest first, retention ignored."""
        return self._events

    def page(self, params: dict[str, Any], livemode: bool, *, now: float) -> dict[str, Any]:
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
            for i, e in enumerate(self._events)
            if e["livemode"] == livemode
            and e["created"] >= since
            and wanted(e["type"])
            and _in_range(e["created"], created)
            and (
                "delivery_success" not in params
                or params["delivery_success"] == (e["pending_webhooks"] == 0)
            )
        ]
        chosen, has_more = page_by_id(keys, params, self._position, "event")
        return list_object([self._events[i] for i in chosen], has_more, "/v1/events")

    def get(self, event_id: str, livemode: bool) -> dict[str, Any]:
        position = self._position.get(event_id)
        if position is None or self._events[position]["livemode"] != livemode:
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
