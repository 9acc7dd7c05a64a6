"""Connect on the emulator: FC accounts of a connected account (`acct_...`), which the emulator
keeps in that context (reached only with its `Stripe-Account` header, as at Stripe)."""

from __future__ import annotations

from typing import Any

from tests.service.harness import EmulatedFC

CONNECTED = "acct_1ConnectedA"
OTHER_CONNECTED = "acct_1ConnectedB"


def create_account_in(fc: EmulatedFC, stripe_account: str, **spec: Any) -> str:
    """An FC account of the connected account `stripe_account`."""
    return fc.create_account(stripe_account=stripe_account, **spec)
