"""The lifecycle end to end: a real `celery worker`, beat and webhook receiver on Redis and
PostgreSQL. An account Stripe expects to need a relink by a date is told to the account task
(read back from its queue on the broker) once; its deactivation and relink arrive by webhook
and are told too; after the relink, syncing resumes from the stored cursor: same id, history
kept, no row twice, the new refresh's rows listed incrementally."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import select

from models import Account
from worker import contract, repository
from worker.playground.measures import WITHOUT_RECONCILE, requests_between
from worker.playground.stack import Stack, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

ACCOUNT_TASK = "lifecycle_tests.account_changed"
ACCOUNT_QUEUE = "lifecycle_tests"
TRANSACTIONS = 450
TRANSACTIONS_LIST = "GET /v1/financial_connections/transactions"
DAY_S = 86_400


class Notices:
    """The account task's messages as another service's worker would receive them."""

    def __init__(self, broker_url: str) -> None:
        self._connection = Connection(broker_url)
        self._queue = self._connection.SimpleQueue(ACCOUNT_QUEUE)

    def close(self) -> None:
        self._queue.close()
        self._connection.close()

    def take(self, count: int, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The next `count` notices' kwargs, then none more within a second."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            wanted = len(got) < count
            try:
                message = self._queue.get(timeout=1 if wanted else 0.5)
            except self._queue.Empty:
                if wanted:
                    continue
                return got
            assert message.headers["task"] == ACCOUNT_TASK
            _args, kwargs, _embed = message.decode()
            message.ack()
            got.append(kwargs)
        return got


def test_relink_required_then_inactive_then_relinked_end_to_end(
    stack_options: StackOptions,
) -> None:
    options = replace(
        stack_options,
        env={
            "FCSYNC_ON_ACCOUNT_TASK": ACCOUNT_TASK,
            "FCSYNC_ON_ACCOUNT_QUEUE": ACCOUNT_QUEUE,
            # The relinked account's day costs exactly one listing: no reconciliation's.
            **WITHOUT_RECONCILE,
        },
    )
    with Stack(options, [{"transactions": TRANSACTIONS}]) as stack:
        notices = Notices(options.broker_url)
        try:
            walk(stack, notices)
        finally:
            notices.close()


def walk(stack: Stack, notices: Notices) -> None:
    (account_id,) = stack.accounts
    stack.track_all()
    stack.converge("backfill", timeout_s=90)

    deadline = stack.ctl.now() + 10 * DAY_S
    stack.ctl.expect_deactivation(
        account_id, cause="access_expired", expected_deactivation_date=deadline
    )
    # Another service asks for a refresh by name (Stripe's cooldown refuses it): fcsync reads
    # the account and sees what Stripe expects of it.
    stack.send(contract.REFRESH_ACCOUNT, account_id=account_id, source="manual")
    (relink,) = notices.take(1)
    assert relink == {
        "account": account_id,
        "kind": "relink_required",
        "status": "active",
        "action": "relink_required",
        "cause": "access_expired",
        "expected_deactivation_date": datetime.fromtimestamp(deadline, tz=UTC).isoformat(),
        "expected_expiry_date": None,
        "event": None,
        "stripe_account": None,
    }

    stack.ctl.deactivate(account_id)
    (deactivated,) = notices.take(1)
    assert (deactivated["kind"], deactivated["status"]) == ("deactivated", "inactive")
    with stack.session() as session:
        cursor = session.scalars(
            select(Account.cursor_refresh_id).where(Account.id == account_id)
        ).one()
        kept = repository.count_transactions(session, account_id)
    assert kept == len(stack.ctl.transactions(account_id)) and cursor is not None

    stack.ctl.relink(account_id)
    (reactivated,) = notices.take(1)
    assert (reactivated["kind"], reactivated["status"]) == ("reactivated", "active")
    stack.advance_day()
    stack.converge("relinked", timeout_s=60)

    problems = stack.problems()
    assert not problems, "\n".join(problems[:40])
    with stack.session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert (account.status, account.tracked, account.status_details_action) == (
            "active",
            True,
            None,
        )
        assert account.cursor_refresh_id != cursor
        stored = repository.count_transactions(session, account_id)
    assert stored == len(stack.ctl.transactions(account_id)) > kept
    # Incremental from the stored cursor: the day's changes fit on one page, not all 5+.
    listed = requests_between(stack.phase("backfill"), stack.phase("relinked"), TRANSACTIONS_LIST)
    assert listed == 1, listed
    assert notices.take(0) == []
