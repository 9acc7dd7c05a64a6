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

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(
            method, f"{self.base_url}/_emulator{path}", json=body, timeout=self.timeout
        )
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise ControlError(response.status_code, str(message))
        return response.json()

    def create_account(self, **spec: Any) -> dict[str, Any]:
        """Keys: transactions, status, permissions, refresh_delay_s, refresh_cooldown_s,
        failure_rate, customer. Returns the account as Stripe renders it."""
        return dict(self._call("POST", "/accounts", spec))

    def accounts(self) -> list[dict[str, Any]]:
        """Every account of both modes as Stripe renders it now, oldest first (not an API
        request)."""
        return list(self._call("GET", "/accounts"))

    def account(self, account_id: str) -> dict[str, Any]:
        """The account as Stripe renders it now, without counting as an API request."""
        return dict(self._call("GET", f"/accounts/{account_id}"))

    def update_account(self, account_id: str, **changes: Any) -> dict[str, Any]:
        """Keys: status (emits deactivated/reactivated/disconnected), refresh_delay_s,
        refresh_cooldown_s, failure_rate, fail_next_refreshes (the next n transaction refreshes
        to complete fail), next_refresh_changes (the next succeeded transaction refresh changes
        exactly that many rows: pending rows settle first, new rows arrive for the rest)."""
        return dict(self._call("POST", f"/accounts/{account_id}", changes))

    def delete_account(self, account_id: str) -> None:
        """Make Stripe forget the account: from now on the API answers 404 for it."""
        self._call("DELETE", f"/accounts/{account_id}")

    def set_account_status(self, account_id: str, status: str) -> dict[str, Any]:
        return self.update_account(account_id, status=status)

    def transactions(self, account_id: str) -> list[dict[str, Any]]:
        """The ground truth: every transaction the API shows for the account now, newest first."""
        return list(self._call("GET", f"/accounts/{account_id}/transactions"))

    def advance(self, seconds: float) -> int:
        """Move emulator time forward, running everything that falls due; returns the new now."""
        return int(self._call("POST", "/clock", {"advance_s": seconds})["now"])

    def now(self) -> int:
        return int(self._call("GET", "/clock")["now"])

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/faults", faults))

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "/faults"))

    def add_webhook_endpoint(self, url: str, secret: str) -> dict[str, Any]:
        return dict(self._call("POST", "/webhook_endpoints", {"url": url, "secret": secret}))

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
