"""An FC account's Stripe account context (the platform, or a Connect connected account reached
with `Stripe-Account`): stored on its rows, sent on every request about it (seen on the wire by
a stand-in in front of the emulator), and a request naming another context refused unsent."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from tasks.refresh import poll_refresh_task, refresh_account_task
from tasks.sync import sync_transactions_task
from tasks.tracking import track_account_task, untrack_account_task
from tests.service.conftest import TaskRig
from tests.service.connect import CONNECTED, OTHER_CONNECTED, create_account_in
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC
from tests.service.standin import StandIn
from worker import contract, reports
from worker.cli.status_view import status_cells
from worker.db import session_scope
from worker.errors import ErrorCode, PermanentError

# Three pages: the second and third are read ahead while the one before is written.
HISTORY = 254


def contexts(
    session: Session, model: type[Refresh] | type[Transaction], account_id: str
) -> set[str | None]:
    """The contexts stored on the account's refresh or transaction rows."""
    return set(session.scalars(select(model.stripe_account).where(model.account_id == account_id)))


def test_stripe_account_context_every_request_of_a_connected_account_carries_it(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    connected = create_account_in(fc, CONNECTED, transactions=HISTORY)
    platform = fc.create_account(transactions=20)

    # Tracking names the context once; every later task finds it on the stored row.
    assert track_account_task(connected, stripe_account=CONNECTED)["outcome"] == "subscribed"
    assert track_account_task(platform)["outcome"] == "subscribed"
    fc.advance(REFRESH_DELAY_S)
    assert poll_refresh_task(connected)["outcome"] == "succeeded"
    [sync_due] = [
        f for f in rig.take(contract.SYNC_TRANSACTIONS) if f.kwargs["account_id"] == connected
    ]
    report = sync_transactions_task(**sync_due.kwargs)
    assert (report["outcome"], report["pages"]) == ("done", 3)
    assert report["inserted"] == len(fc.truth(connected)) >= HISTORY
    fc.advance(REFRESH_COOLDOWN_S)
    assert refresh_account_task(connected, source="manual")["outcome"] == "started"
    assert untrack_account_task(connected)["outcome"] == "untracked"

    sent = standin.about(connected)
    kinds = {(s.method, s.path.split("?")[0].rsplit("/", 1)[-1]) for s in sent}
    assert {
        ("GET", connected),
        ("POST", "subscribe"),
        ("POST", "refresh"),
        ("POST", "unsubscribe"),
        ("GET", "transactions"),
    } <= kinds
    assert sum(s.path.startswith("/v1/financial_connections/transactions") for s in sent) == 3
    assert {s.stripe_account for s in sent} == {CONNECTED}
    # The platform's own account never carries the header.
    assert standin.about(platform) and {s.stripe_account for s in standin.about(platform)} == {None}

    with session_scope(rig.engine) as session:
        assert session.get(Account, connected).stripe_account == CONNECTED  # type: ignore[union-attr]
        assert session.get(Account, platform).stripe_account is None  # type: ignore[union-attr]
        assert contexts(session, Refresh, connected) == {CONNECTED}
        assert contexts(session, Transaction, connected) == {CONNECTED}
        assert contexts(session, Refresh, platform) == {None}
        assert fc.mismatches(session, connected) == []
        rows = {r["id"]: r for r in reports.account_status(session, now=fc.now())}
    assert rows[connected]["stripe_account"] == CONNECTED
    assert rows[platform]["stripe_account"] is None
    assert status_cells(rows[connected])["context"] == CONNECTED
    assert status_cells(rows[platform])["context"] == "platform"


@pytest.mark.parametrize(
    "call",
    [
        lambda a: track_account_task(a, stripe_account=CONNECTED),
        lambda a: untrack_account_task(a, stripe_account=CONNECTED),
        lambda a: refresh_account_task(a, stripe_account=CONNECTED),
        lambda a: poll_refresh_task(a, stripe_account=CONNECTED),
        lambda a: sync_transactions_task(a, stripe_account=CONNECTED),
    ],
    ids=["track", "untrack", "refresh", "poll", "sync"],
)
def test_stripe_account_context_a_task_naming_another_context_is_refused_unsent(
    call: object, fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    standin.seen.clear()
    with pytest.raises(PermanentError) as raised:
        call(account_id)  # type: ignore[operator]
    assert raised.value.code == ErrorCode.STRIPE_ACCOUNT_MISMATCH
    assert "platform, not acct_1ConnectedA" in str(raised.value)
    assert standin.seen == []
    with session_scope(rig.engine) as session:
        account = session.get(Account, account_id)
        assert account is not None and account.stripe_account is None
        # The request was wrong, not the account: nothing recorded on it.
        assert account.last_error_code is None and account.tracked


def test_stripe_account_context_the_platform_task_of_a_connected_account_uses_its_context(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    """Beat and follow-ups send only `account_id`: the stored context goes out regardless."""
    account_id = create_account_in(fc, CONNECTED, transactions=20)
    track_account_task(account_id, subscribe=False, stripe_account=CONNECTED)
    assert refresh_account_task(account_id, source="beat")["outcome"] == "started"
    with pytest.raises(PermanentError) as raised:
        refresh_account_task(account_id, stripe_account=OTHER_CONNECTED)
    assert raised.value.code == ErrorCode.STRIPE_ACCOUNT_MISMATCH
    assert {s.stripe_account for s in standin.about(account_id)} == {CONNECTED}


def test_stripe_account_context_a_failed_track_keeps_the_context_it_tried(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    """A mistyped account: Stripe's 404 is recorded on an `unknown` row in the context tried,
    and a retry in another context is not held to it (Stripe never confirmed either)."""
    missing = "fca_1NoSuchAccount"
    with pytest.raises(PermanentError):
        track_account_task(missing, stripe_account=CONNECTED)
    assert context_of(rig, missing) == ("unknown", CONNECTED)
    # Stripe's second 404 for the stored row marks it gone (no error), in the new context.
    assert track_account_task(missing, stripe_account=OTHER_CONNECTED)["outcome"] == "gone"
    assert context_of(rig, missing) == ("unknown", OTHER_CONNECTED)
    assert [s.stripe_account for s in standin.about(missing)] == [CONNECTED, OTHER_CONNECTED]


def context_of(rig: TaskRig, account_id: str) -> tuple[str, str | None]:
    with session_scope(rig.engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.status, account.stripe_account
