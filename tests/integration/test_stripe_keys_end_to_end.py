"""Several Stripe keys end to end: real worker, beat and receiver processes keep the FC accounts
of two configured keys (STRIPE_API_KEY, and `b` from an FCSYNC_STRIPE_ACCOUNTS file, the
emulator's second platform; one of `b`'s accounts in a connected account) equal to Stripe's
truth, with each key's webhooks on its own endpoints; every request about an account carries
its own key only (the emulator counts requests by key), and every row names the key."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from emulator.scopes import masked
from models import Account, Refresh, Transaction, WebhookEvent
from worker.inbox import REFRESHED_TRANSACTIONS as REFRESHED
from worker.playground.emulator_env import API_KEY, FCSYNC_RPS
from worker.playground.stack import Stack, StackKey, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

KEY_B = StackKey(
    name="b",
    api_key="sk_test_fcsync_second_key",
    platform="acct_1SecondPlatform",
    webhook_secret="whsec_fcsync_second_key",
    connect_webhook_secret="whsec_fcsync_second_key_connect",
)
TENANT = "acct_1TenantOfB"
# (key name, connected account, transactions): a page boundary and a second page each.
BANK = (
    ("default", None, 100),
    ("default", None, 137),
    ("b", None, 137),
    ("b", TENANT, 100),
)
BACKFILL_TIMEOUT_S = 90.0
DAY_TIMEOUT_S = 60.0


def spec(key: str, context: str | None, transactions: int) -> dict[str, object]:
    named: dict[str, object] = {"transactions": transactions}
    if key != "default":
        named["stripe_key"] = key
    if context is not None:
        named["stripe_account"] = context
    return named


def test_stripe_keys_end_to_end_two_keys_and_a_connected_account_converge(
    stack_options: StackOptions,
) -> None:
    stack_options.keys = (KEY_B,)
    # The emulator limits all its platforms as one: the two keys' budgets share its 25/s.
    stack_options.env["FCSYNC_REQUESTS_PER_SECOND"] = f"{FCSYNC_RPS / 2:g}"
    with Stack(stack_options, [spec(*row) for row in BANK]) as stack:
        key_of = dict(zip(stack.accounts, [row[0] for row in BANK], strict=True))
        context_of = dict(zip(stack.accounts, [row[1] for row in BANK], strict=True))
        stack.track_all()
        stack.converge("backfill", timeout_s=BACKFILL_TIMEOUT_S)
        stack.run_days(1, timeout_s=DAY_TIMEOUT_S)
        problems = stack.problems()
        assert not problems, "\n".join(problems[:40])
        by_key = stack.ctl.stats()["requests_by_key"]
        with stack.session() as session:
            accounts = {a.id: a for a in session.scalars(select(Account))}
            stored = {
                row
                for model in (Refresh, Transaction)
                for row in session.execute(select(model.account_id, model.stripe_key).distinct())
            }
            announced = Counter(
                (key, outcome)
                for key, outcome in session.execute(
                    select(WebhookEvent.stripe_key, WebhookEvent.outcome).where(
                        WebhookEvent.type == REFRESHED
                    )
                )
            )
    stored_key = {a: None if k == "default" else k for a, k in key_of.items()}
    for account_id, key in stored_key.items():
        account = accounts[account_id]
        # A request with the other key would have met Stripe's 404 and parked it as gone.
        assert account.gone_at is None and account.last_error_code is None, account_id
        assert (account.stripe_key, account.stripe_account) == (key, context_of[account_id])
    assert stored == set(stored_key.items())
    # Each key's requests went out with that key alone.
    shown = {"default": masked(API_KEY), "b": masked(KEY_B.api_key)}
    for account_id, key in key_of.items():
        askers = {k for k, counts in by_key.items() if account_id in counts}
        assert askers == {shown[key]}, (account_id, askers)
    # Each key's daily refreshes came through its own endpoints (the connected account's on
    # `b`'s Connect endpoint), stored with the key and acted on.
    for key, count in ((None, 2), ("b", 2)):
        assert announced[(key, "processed")] >= count, announced
    assert not [k for k in announced if k[1] != "processed"], announced
