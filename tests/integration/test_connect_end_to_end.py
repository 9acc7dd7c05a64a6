"""Connect end to end: real worker, beat and receiver processes keep the platform's FC accounts
and those of two connected accounts (reached with `Stripe-Account`) equal to Stripe's truth,
with Stripe's daily refreshes announced on the platform's endpoint and on its Connect endpoint;
no request about a connected account's FC account goes out without its context (Stripe, like
the emulator, answers 404 there, and the account would never converge)."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from sqlalchemy import select

from models import Account, Transaction, WebhookEvent
from tests.emulator.conftest import API_KEY
from worker.inbox import REFRESHED_TRANSACTIONS as REFRESHED
from worker.playground.stack import Stack, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

PLATFORM = None
TENANT_A = "acct_1TenantA"
TENANT_B = "acct_1TenantB"
CONTEXTS = (PLATFORM, TENANT_A, TENANT_B)
# Two accounts per context, one on a page boundary, subscribed to Stripe's daily refreshes.
SIZES = (100, 137)
BACKFILL_TIMEOUT_S = 90.0
DAY_TIMEOUT_S = 60.0


def bank() -> list[dict[str, object]]:
    return [
        {"transactions": n, **({"stripe_account": context} if context else {})}
        for context in CONTEXTS
        for n in SIZES
    ]


def platform_sees(base_url: str, account_id: str) -> bool:
    """Whether the FC account answers without a `Stripe-Account` header (Stripe: 404 for a
    connected account's)."""
    answer = requests.get(
        f"{base_url}/v1/financial_connections/accounts/{account_id}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    return answer.status_code != 404


def test_connect_end_to_end_platform_and_two_connected_accounts_converge(
    stack_options: StackOptions,
) -> None:
    with Stack(stack_options, bank()) as stack:
        context_of = dict(zip(stack.accounts, [c for c in CONTEXTS for _ in SIZES], strict=True))
        # The emulator keeps them where Stripe does: a tenant's accounts are not the platform's.
        assert [platform_sees(stack.ctl.base_url, a) for a in stack.accounts] == [
            c is None for c in context_of.values()
        ]
        stack.track_all()
        stack.converge("backfill", timeout_s=BACKFILL_TIMEOUT_S)
        stack.run_days(1, timeout_s=DAY_TIMEOUT_S)
        problems = stack.problems()
        assert not problems, "\n".join(problems[:40])
        with stack.session() as session:
            accounts = {a.id: a for a in session.scalars(select(Account))}
            stored = {
                (account_id, context)
                for account_id, context in session.execute(
                    select(Transaction.account_id, Transaction.stripe_account).distinct()
                )
            }
            announced = Counter(
                (context, outcome)
                for context, outcome in session.execute(
                    select(WebhookEvent.stripe_account, WebhookEvent.outcome).where(
                        WebhookEvent.type == REFRESHED
                    )
                )
            )
    for account_id, context in context_of.items():
        account = accounts[account_id]
        # A request without the context would have met Stripe's 404 and parked it as gone.
        assert account.gone_at is None and account.last_error_code is None, account_id
        assert account.stripe_account == context
    assert stored == set(context_of.items())
    # Each tenant's daily refreshes came through the Connect endpoint, in the tenant's context,
    # and were acted on (an event of the wrong context would be stored as ignored).
    for context in CONTEXTS:
        assert announced[(context, "processed")] >= len(SIZES), announced
    assert not [key for key in announced if key[1] != "processed"], announced
