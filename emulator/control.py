"""A small typed client for the control API (/_emulator/...), for tests, benchmarks and demos."""

from __future__ import annotations

from typing import Any

import requests


class ControlError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EmulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        response = self._http.request(
            method,
            f"{self.base_url}/_emulator{path}",
            json=body,
            params=query,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise ControlError(response.status_code, str(message))
        return response.json()

    def register_platform(self, keys: list[str], platform_id: str | None = None) -> str:
        """Another Stripe account beside the emulator's own, reached by `keys` (which then
        see only its objects); returns its `acct_` id (minted unless given)."""
        body: dict[str, Any] = {"keys": keys}
        if platform_id is not None:
            body["id"] = platform_id
        return str(self._call("POST", "/platforms", body)["id"])

    def platforms(self) -> dict[str, list[str]]:
        """Every registered platform's id and keys (the emulator's own is not listed)."""
        return {p["id"]: p["keys"] for p in self._call("GET", "/platforms")}

    def create_account(self, **spec: Any) -> dict[str, Any]:
        """Keys: transactions, status, permissions, refresh_delay_s, refresh_cooldown_s,
        failure_rate, customer, stripe_account (a connected account's `acct_` id: the API
        shows it only with that `Stripe-Account` header), platform (a registered platform's
        id). Returns the account as Stripe renders it."""
        return dict(self._call("POST", "/accounts", spec))

    def accounts(
        self, *, stripe_account: str | None = None, platform: str | None = None
    ) -> list[dict[str, Any]]:
        """Every account of every scope as Stripe renders it now, oldest first (not an API
        request); or those of one connected account (`stripe_account=""`: the platform's
        own) and/or one registered platform."""
        query = {"stripe_account": stripe_account, "platform": platform}
        return list(
            self._call("GET", "/accounts", query={k: v for k, v in query.items() if v is not None})
        )

    def account(self, account_id: str) -> dict[str, Any]:
        """The account as Stripe renders it now, without counting as an API request."""
        return dict(self._call("GET", f"/accounts/{account_id}"))

    def update_account(self, account_id: str, **changes: Any) -> dict[str, Any]:
        """Keys: status (emits deactivated/reactivated/disconnected), refresh_delay_s,
        refresh_cooldown_s, failure_rate, fail_next_refreshes (the next n transaction refreshes
        to complete fail), next_refresh_changes (the next succeeded transaction refresh changes
        exactly that many rows: pending rows settle first, new rows arrive for the rest),
        balance (the shape the next balance refresh reports: Stripe's balance without as_of),
        owners (what the next ownership refresh reads: [{name, email, phone, raw_address}])."""
        return dict(self._call("POST", f"/accounts/{account_id}", changes))

    def delete_account(self, account_id: str) -> None:
        """Make Stripe forget the account: from now on the API answers 404 for it."""
        self._call("DELETE", f"/accounts/{account_id}")

    def set_account_status(self, account_id: str, status: str) -> dict[str, Any]:
        return self.update_account(account_id, status=status)

    def expect_deactivation(
        self,
        account_id: str,
        *,
        cause: str = "unspecified",
        expected_deactivation_date: int | None = None,
        action: str = "relink_required",
    ) -> dict[str, Any]:
        """Stripe expects the active account to become inactive at the date (default: in 30
        days): its `status_details.active`. It is deactivated then, unless relinked first."""
        body: dict[str, Any] = {"action": action, "cause": cause}
        if expected_deactivation_date is not None:
            body["expected_deactivation_date"] = expected_deactivation_date
        return dict(self._call("POST", f"/accounts/{account_id}/expect_deactivation", body))

    def deactivate(self, account_id: str) -> dict[str, Any]:
        """Inactive now (emits `deactivated`)."""
        return dict(self._call("POST", f"/accounts/{account_id}/deactivate"))

    def relink(self, account_id: str) -> dict[str, Any]:
        """The user linked it again: active, same id and history (`reactivated` if it was
        inactive), nothing expected of it any more."""
        return dict(self._call("POST", f"/accounts/{account_id}/relink"))

    def disconnect(self, account_id: str) -> dict[str, Any]:
        """Disconnected for good (emits `disconnected`)."""
        return dict(self._call("POST", f"/accounts/{account_id}/disconnect"))

    def account_numbers_changed(
        self, account_id: str, type_: str, expected_expiry_date: int | None = None
    ) -> dict[str, Any]:
        """The account's tokenized account number changed (`type_`: the full event type,
        `...account_numbers_updated` or `...upcoming_account_number_expiry`); returns the event."""
        body: dict[str, Any] = {"type": type_}
        if expected_expiry_date is not None:
            body["expected_expiry_date"] = expected_expiry_date
        return dict(self._call("POST", f"/accounts/{account_id}/account_numbers", body))

    def transactions(self, account_id: str) -> list[dict[str, Any]]:
        """The ground truth: every transaction the API shows for the account now, newest first."""
        return list(self._call("GET", f"/accounts/{account_id}/transactions"))

    def drop_transaction(self, transaction_id: str) -> None:
        """Drop a pending transaction, as Stripe drops one that never posts: it leaves every
        list and retrieve answers 404 (no event). A posted or void one: ControlError 400."""
        self._call("DELETE", f"/transactions/{transaction_id}")

    def owners(self, account_id: str) -> list[dict[str, Any]]:
        """The owners of the account's latest ownership (empty before its first refresh)."""
        return list(self._call("GET", f"/accounts/{account_id}/owners"))

    def advance(self, seconds: float) -> int:
        """Move emulator time forward, running everything that falls due; returns the new now."""
        return int(self._call("POST", "/clock", {"advance_s": seconds})["now"])

    def now(self) -> int:
        return int(self._call("GET", "/clock")["now"])

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/faults", faults))

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "/faults"))

    def add_webhook_endpoint(
        self,
        url: str,
        secret: str,
        *,
        connect: bool = False,
        platform: str | None = None,
        api_version: str | None = None,
    ) -> dict[str, Any]:
        """An account endpoint (the platform's own events) or, with `connect`, a Connect
        endpoint (its connected accounts' events, which carry `account`); its events come at
        `api_version` (default: the account's default version)."""
        body: dict[str, Any] = {"url": url, "secret": secret, "connect": connect}
        if platform is not None:
            body["platform"] = platform
        if api_version is not None:
            body["api_version"] = api_version
        return dict(self._call("POST", "/webhook_endpoints", body))

    def trigger_event(self, type_: str, account_id: str) -> dict[str, Any]:
        """Emit an account event of `type_` for the account as it is now (nothing else
        changes), delivered like any event; returns the event."""
        return dict(self._call("POST", "/events", {"type": type_, "account": account_id}))

    def resend_event(self, event_id: str) -> int:
        """Send a stored event again, as first emitted, to every endpoint now (outside the
        webhook faults); returns how many endpoints it goes to."""
        return int(self._call("POST", f"/events/{event_id}/resend")["endpoints"])

    def complete_session(self, session_id: str, accounts: int = 1) -> dict[str, Any]:
        """Link `accounts` new accounts to a Session, as if the user finished the flow."""
        return dict(self._call("POST", f"/sessions/{session_id}/complete", {"accounts": accounts}))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats"))

    def reset(self) -> None:
        self._call("POST", "/reset")

    def close(self) -> None:
        self._http.close()
