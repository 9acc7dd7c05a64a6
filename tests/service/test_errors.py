"""Transient versus permanent failures, injected by the emulator: the service raises the right
root, records what is permanent on the account, and the tasks retry only what is transient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Retry
from celery.signals import task_retry
from freezegun import freeze_time
from sqlalchemy.orm import Session

from models import Account
from tasks.refresh import refresh_account_task
from tests.rows import account_row
from tests.service.conftest import TaskRig, make_settings
from tests.service.harness import RETRIEVE_ACCOUNT, EmulatedFC
from worker import refresh, sync
from worker.db import session_scope
from worker.errors import PermanentError, RateLimitedError, TransientError
from worker.stripe_gateway import gateway_from_settings


def request(fc: EmulatedFC, session: Session, account_id: str) -> refresh.RefreshDecision:
    return refresh.request_refresh(
        session, fc.gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
    )


def test_errors_rate_limit_is_transient_and_loses_no_sync_progress(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=150)
    fc.track(session, account_id)
    polled = fc.refresh(session, account_id)
    fc.sync(session, account_id)  # the baseline cursor
    newer = fc.refresh(session, account_id)
    started = sync.start_sync(
        session, account_id, full=False, owner="o", now=fc.now(), settings=fc.settings
    )
    assert started.outcome == "started"
    session.commit()

    fc.control.set_faults(rate_limit_rate=1.0)
    with pytest.raises(RateLimitedError) as raised:
        request(fc, session, account_id)
    assert isinstance(raised.value, TransientError)
    session.rollback()
    assert fc.refresh_posts() == 2  # the two refreshes above; none while rate limited
    with pytest.raises(RateLimitedError):
        sync.sync_page(
            session, fc.gateway, account_id, owner="o", now=fc.now(), settings=fc.settings
        )
    session.rollback()
    account = account_row(session, account_id)
    assert account.cursor_refresh_id == polled.refresh_id
    assert account.sync_target_refresh_id == newer.refresh_id
    assert account.sync_starting_after is None

    fc.control.set_faults(rate_limit_rate=0.0)
    fc.finish_sync(session, account_id, owner="o")
    assert account_row(session, account_id).cursor_refresh_id == newer.refresh_id
    assert fc.mismatches(session, account_id) == []


def test_errors_server_error_is_transient_after_the_sdks_own_retries(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=5)
    gateway = gateway_from_settings(
        make_settings(fc.emulator.base_url, fcsync_max_network_retries=1)
    )
    fc.control.set_faults(server_error_rate=1.0)
    with pytest.raises(TransientError) as raised:
        refresh.request_refresh(
            session, gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
        )
    assert not isinstance(raised.value, RateLimitedError)
    assert raised.value.code == "http_500"
    stats = fc.control.stats()
    assert stats["server_errors"] == stats["requests"][RETRIEVE_ACCOUNT] == 2
    assert fc.refresh_posts() == 0


def test_errors_unknown_account_is_permanent_and_stores_nothing(
    fc: EmulatedFC, session: Session
) -> None:
    with pytest.raises(PermanentError) as raised:
        request(fc, session, "fca_1NoSuchAccount0000000000")
    assert not isinstance(raised.value, TransientError)
    assert raised.value.code == "resource_missing"
    session.rollback()
    assert session.get(Account, "fca_1NoSuchAccount0000000000") is None
    assert fc.refresh_posts() == 0


@pytest.mark.parametrize("status", ["inactive", "disconnected"])
def test_errors_inactive_account_is_recorded_and_not_refreshed(
    fc: EmulatedFC, session: Session, status: str
) -> None:
    account_id = fc.create_account(transactions=5)
    fc.track(session, account_id)
    fc.control.set_account_status(account_id, status)
    decision = request(fc, session, account_id)
    session.commit()
    assert decision.outcome == "inactive"
    account = account_row(session, account_id)
    assert (account.status, account.last_error_code) == (status, "account_inactive")
    assert fc.refresh_posts() == 0


def test_errors_account_without_the_transactions_permission_is_recorded_and_not_refreshed(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=5, permissions=["balances"])
    decision = request(fc, session, account_id)
    session.commit()
    assert decision.outcome == "no_permission"
    assert account_row(session, account_id).last_error_code == "missing_permission"
    assert fc.refresh_posts() == 0


@pytest.fixture
def retries() -> Iterator[list[BaseException]]:
    """The errors behind every retry a task asked Celery for (a `celery.exceptions.Retry`,
    state RETRY) during the test."""
    reasons: list[BaseException] = []

    def record(sender: Any = None, reason: Any = None, **_: Any) -> None:
        assert isinstance(reason, Retry) and reason.exc is not None
        reasons.append(reason.exc)

    task_retry.connect(record, weak=False)
    try:
        yield reasons
    finally:
        task_retry.disconnect(record)


def test_errors_task_retries_a_transient_error(
    fc: EmulatedFC, rig: TaskRig, retries: list[BaseException]
) -> None:
    account_id = fc.create_account(transactions=5)
    fc.control.set_faults(rate_limit_rate=1.0)

    def rate_limit_passes(**_: Any) -> None:
        # The 429s stop once Celery has scheduled the retry, as a real rate limit would.
        fc.control.set_faults(rate_limit_rate=0.0)

    task_retry.connect(rate_limit_passes, weak=False)
    try:
        result = refresh_account_task.apply(kwargs={"account_id": account_id, "source": "manual"})
    finally:
        task_retry.disconnect(rate_limit_passes)
    assert [type(r) for r in retries] == [RateLimitedError]
    assert result.state == "SUCCESS"
    assert result.result["outcome"] == "started"
    assert fc.refresh_posts() == 1


def test_errors_task_gives_up_on_a_lasting_transient_error_after_max_retries(
    fc: EmulatedFC, rig: TaskRig, retries: list[BaseException]
) -> None:
    account_id = fc.create_account(transactions=5)
    fc.control.set_faults(rate_limit_rate=1.0)
    result = refresh_account_task.apply(kwargs={"account_id": account_id, "source": "manual"})
    assert len(retries) == refresh_account_task.max_retries
    assert result.state == "FAILURE"
    assert isinstance(result.result, RateLimitedError)
    assert fc.requests(RETRIEVE_ACCOUNT) == refresh_account_task.max_retries + 1
    assert fc.refresh_posts() == 0


def test_errors_task_permanent_error_fails_at_once_and_is_recorded(
    fc: EmulatedFC, rig: TaskRig, retries: list[BaseException]
) -> None:
    account_id = fc.create_account(transactions=5)
    with session_scope(rig.engine) as session:
        fc.track(session, account_id)
    now = fc.now()
    fc.store_failed_refresh(account_id, now=now)

    with freeze_time(now):
        result = refresh_account_task.apply(kwargs={"account_id": account_id, "source": "manual"})
    assert result.state == "FAILURE"
    assert isinstance(result.result, PermanentError)
    assert retries == []
    assert fc.refresh_posts() == 2  # the one by hand, then the task's once: no retry
    with session_scope(rig.engine) as session:
        account = account_row(session, account_id)
        assert account.last_error_code == "financial_connections_account_inactive"
        assert account_id in (account.last_error_message or "")
