"""Connect on the emulator: FC accounts of a connected account (`acct_...`), created where the
emulator can keep them, and whether it scopes objects by `Stripe-Account` yet."""

from __future__ import annotations

from typing import Any

import requests

from emulator.control import ControlError
from tests.emulator.conftest import API_KEY
from tests.service.harness import EmulatedFC

CONNECTED = "acct_1ConnectedA"
OTHER_CONNECTED = "acct_1ConnectedB"

NOT_SCOPED = (
    "the emulator does not scope FC accounts by Stripe-Account yet (POST /_emulator/accounts "
    "refuses `stripe_account`, or the platform can read a connected account's FC account): "
    "enable after merging the emulator's Connect support (branch emu-connect)"
)


def create_account_in(fc: EmulatedFC, stripe_account: str, **spec: Any) -> str:
    """An FC account of the connected account, where the emulator can create one there;
    otherwise on the platform, where an emulator that ignores `Stripe-Account` answers for it
    whatever the header says (the header is then only observed, not enforced)."""
    try:
        return fc.create_account(stripe_account=stripe_account, **spec)
    except ControlError as exc:
        if exc.status == 400 and "stripe_account" in exc.message:
            return fc.create_account(**spec)
        raise


def platform_cannot_see(base_url: str, account_id: str) -> bool:
    """The 404 check: without `Stripe-Account`, a connected account's FC account is unknown
    (as at Stripe); an emulator that does not scope by the header answers for it."""
    answer = requests.get(
        f"{base_url}/v1/financial_connections/accounts/{account_id}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    return answer.status_code == 404
