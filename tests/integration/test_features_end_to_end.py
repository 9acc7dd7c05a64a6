"""Acceptance of balances and ownership: real `celery worker` and `celery beat` processes on
Redis and PostgreSQL, webhooks on, accounts tracked with balances and ownership: the stored
balance history and owners converge to Stripe's (the emulator's) truth, and again after a day,
when beat refreshes each feature at its own due time; never a refresh Stripe would refuse."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from models import AccountFeature
from worker import contract
from worker.feature_reports import stored_balances, stored_owners
from worker.playground.stack import Stack, StackFailure, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

ACCOUNTS = 4
TIMEOUT_S = 90.0
ALL = ["transactions", "balances", "ownership"]
OWNERS = [
    [{"name": f"Owner {i}", "email": f"owner{i}@example.com"}, {"name": f"Partner {i}"}]
    for i in range(ACCOUNTS)
]


def behind(stack: Stack, account_id: str, history: int) -> str | None:
    """Why the stored features of the account differ from Stripe's, or None."""
    truth = stack.ctl.account(account_id)
    with stack.session() as session:
        balances = stored_balances(session, account_id)
        owners = stored_owners(session, account_id)
        pending = session.scalars(
            select(AccountFeature.feature).where(
                AccountFeature.account_id == account_id,
                AccountFeature.refresh_status == "pending",
            )
        ).all()
    if pending:
        return f"{', '.join(pending)} pending"
    if len(balances) < history or not balances or balances[0] != truth["balance"]:
        return f"balances {len(balances)} stored, newest {balances[:1]} != {truth['balance']}"
    expected = sorted(stack.ctl.owners(account_id), key=lambda o: o["name"])
    if owners != expected or owners[0]["ownership"] != truth["ownership"]:
        return "owners differ"
    return None


def converge(stack: Stack, history: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        stack.check_alive()
        reasons = {a: r for a in stack.accounts if (r := behind(stack, a, history)) is not None}
        if not reasons:
            return
        if time.monotonic() > deadline:
            raise StackFailure(f"features still behind: {reasons}")
        time.sleep(0.5)


def test_end_to_end_balances_and_owners_converge_to_stripe(stack_options: StackOptions) -> None:
    specs = [
        {"transactions": 30, "permissions": ["transactions", "balances", "ownership"]}
        for _ in range(ACCOUNTS)
    ]
    with Stack(stack_options, specs) as stack:
        for i, account_id in enumerate(stack.accounts):
            stack.ctl.update_account(account_id, owners=OWNERS[i])
            if i % 2:
                stack.ctl.update_account(
                    account_id,
                    balance={
                        "type": "credit",
                        "current": {"usd": -i},
                        "credit": {"used": {"usd": i}},
                    },
                )
            stack.send(contract.TRACK_ACCOUNT, account_id=account_id, features=ALL)
        stack.converge("backfill", timeout_s=TIMEOUT_S)
        converge(stack, history=1)
        first = {a: stack.ctl.account(a)["ownership"] for a in stack.accounts}

        # A day later beat finds each feature due and refreshes it through its gate.
        for i, account_id in enumerate(stack.accounts):
            stack.ctl.update_account(account_id, owners=OWNERS[i][:1])
        stack.advance_day()
        stack.converge("day 1", timeout_s=TIMEOUT_S)
        converge(stack, history=2)
        assert all(stack.ctl.account(a)["ownership"] != first[a] for a in stack.accounts)

        problems = stack.problems()
        assert not problems, "\n".join(problems[:20])
        stats = stack.ctl.stats()
        print({k: v for k, v in stats["requests"].items() if "accounts/{account}" in k})
        assert stats["gating_violations"] == 0
        assert stats["webhooks"]["sent"] > 0
        assert stats["requests"].get("GET /v1/financial_connections/accounts/{account}/owners")
