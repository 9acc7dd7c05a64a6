"""What a control request is: its handler's signature, its refusal (ControlRequestError, with
the status to answer), and the checks of its body and of what it names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.accounts import ACCOUNT_STATUSES, Account
from emulator.bank import Bank
from emulator.scopes import DEFAULT_PLATFORM, STRIPE_ACCOUNT, Scope

Handler = Callable[[Bank, dict[str, Any], dict[str, str]], Any]


class ControlRequestError(Exception):
    """A control request the emulator refuses; answered as {"error": {"message"}} with `status`
    (the client raises it as emulator.ControlError)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_body(body: dict[str, Any], types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    for key, value in body.items():
        allowed = types.get(key)
        if allowed is None:
            raise ControlRequestError(400, f"unknown key: {key}")
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ControlRequestError(
                400, f"{key} must be {' or '.join(t.__name__ for t in allowed)}"
            )
    return body


NUMBER = (int, float)


TUNABLES = {
    "refresh_delay_s": NUMBER,
    "refresh_cooldown_s": NUMBER,
    "failure_rate": NUMBER,
}


def check_tunables(body: dict[str, Any]) -> None:
    for key in ("refresh_delay_s", "refresh_cooldown_s"):
        if body.get(key, 0) < 0:
            raise ControlRequestError(400, f"{key} must be >= 0")
    if not 0 <= body.get("failure_rate", 0) <= 1:
        raise ControlRequestError(400, "failure_rate must be in [0, 1]")
    if body.get("status", "active") not in ACCOUNT_STATUSES:
        raise ControlRequestError(400, f"status must be one of {', '.join(ACCOUNT_STATUSES)}")


def requested_platform(bank: Bank, body: dict[str, Any]) -> str:
    platform = body.get("platform", DEFAULT_PLATFORM)
    if not bank.known_platform(platform):
        raise ControlRequestError(404, f"no such platform: {platform}")
    return str(platform)


def requested_scope(bank: Bank, body: dict[str, Any]) -> Scope:
    """The scope `platform` and `stripe_account` name (default: the emulator's platform)."""
    stripe_account = body.get("stripe_account")
    if stripe_account is not None and not STRIPE_ACCOUNT.match(stripe_account):
        raise ControlRequestError(400, "stripe_account must look like acct_ and letters or digits")
    return Scope(False, requested_platform(bank, body), stripe_account)


def requested_account(bank: Bank, account_id: str) -> Account:
    account = bank.find_account(account_id)
    if account is None:
        raise ControlRequestError(404, f"no such account: {account_id}")
    return account
