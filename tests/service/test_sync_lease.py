"""One sync per account at a time: a request that finds the lease taken is followed up by the
holder (a newer refresh, a full request), and a lease whose worker died is taken over where its
last commit left off."""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from tests.rows import account_row
from tests.service.harness import EmulatedFC, sync_requests
from worker import sync
from worker.intents import SyncDue


def start(
    fc: EmulatedFC, session: Session, account_id: str, owner: str, *, full: bool = False
) -> sync.SyncStart:
    result = sync.start_sync(
        session, account_id, full=full, owner=owner, now=fc.now(), settings=fc.settings
    )
    session.commit()
    return result


def one_page(fc: EmulatedFC, session: Session, account_id: str, owner: str) -> sync.SyncStep:
    step = sync.sync_page(
        session, fc.gateway, account_id, owner=owner, now=fc.now(), settings=fc.settings
    )
    session.commit()
    return step


def synced_account(fc: EmulatedFC, session: Session) -> tuple[str, str]:
    account_id = fc.create_account(transactions=250)
    fc.track(session, account_id)
    polled = fc.refresh(session, account_id)
    assert polled.refresh_id is not None
    return account_id, polled.refresh_id


def test_sync_lease_request_while_held_is_merged_into_a_followup(
    fc: EmulatedFC, session: Session
) -> None:
    account_id, first_refresh = synced_account(fc, session)
    assert start(fc, session, account_id, "a").outcome == "started"
    assert one_page(fc, session, account_id, "a").outcome == "page"
    # A newer refresh lands and its sync is asked for while "a" still holds the lease.
    second = fc.refresh(session, account_id)
    assert sync_requests(second.intents)
    assert start(fc, session, account_id, "b").outcome == "busy"

    # Finishing at the refresh it began with, "a" follows up on the newer one itself.
    steps = fc.finish_sync(session, account_id, owner="a")
    assert account_row(session, account_id).cursor_refresh_id == first_refresh
    assert sync_requests(steps[-1].intents) == [SyncDue(account_id)]

    followup_start, _ = fc.sync(session, account_id, owner="c")
    assert (followup_start.outcome, followup_start.target_refresh_id) == (
        "started",
        second.refresh_id,
    )
    account = account_row(session, account_id)
    assert account.cursor_refresh_id == second.refresh_id
    assert account.sync_requested is False
    assert fc.mismatches(session, account_id) == []


def test_sync_lease_trigger_for_the_refresh_being_synced_asks_for_no_followup(
    fc: EmulatedFC, session: Session
) -> None:
    # A refresh's webhook and its poll each ask for its sync: the second finds the first
    # running, and nothing is left to do once it finishes.
    account_id, refresh_id = synced_account(fc, session)
    assert start(fc, session, account_id, "webhook").outcome == "started"
    assert start(fc, session, account_id, "poll").outcome == "busy"
    steps = fc.finish_sync(session, account_id, owner="webhook")
    assert account_row(session, account_id).cursor_refresh_id == refresh_id
    assert sync_requests(steps[-1].intents) == []
    assert fc.mismatches(session, account_id) == []


def test_sync_lease_full_request_while_held_runs_right_after(
    fc: EmulatedFC, session: Session
) -> None:
    account_id, refresh_id = synced_account(fc, session)
    fc.sync(session, account_id, owner="a")
    # Nothing new at Stripe: only the merged request can make anything run again.
    assert start(fc, session, account_id, "a", full=True).outcome == "started"
    assert start(fc, session, account_id, "b", full=True).outcome == "busy"
    steps = fc.finish_sync(session, account_id, owner="a")
    (requested,) = sync_requests(steps[-1].intents)
    assert requested == SyncDue(account_id, full=True)

    calls_before = fc.list_calls()
    merged, merged_steps = fc.sync(session, account_id, owner="c", full=requested.full)
    assert (merged.outcome, merged.target_refresh_id) == ("started", refresh_id)
    pages = math.ceil(len(fc.truth(account_id)) / 100)
    assert fc.list_calls() - calls_before == len(merged_steps) == pages
    assert sync_requests(merged_steps[-1].intents) == []


def test_sync_lease_expired_lease_is_taken_over_and_resumes_from_the_last_committed_page(
    fc: EmulatedFC, session: Session
) -> None:
    account_id, refresh_id = synced_account(fc, session)
    assert start(fc, session, account_id, "crashed").outcome == "started"
    first_page = one_page(fc, session, account_id, "crashed")
    assert (first_page.outcome, first_page.inserted) == ("page", 100)
    resume_after = account_row(session, account_id).sync_starting_after
    assert resume_after is not None
    # Its worker is gone; until the lease runs out nobody else may sync the account.
    assert start(fc, session, account_id, "next").outcome == "busy"

    fc.advance(fc.settings.fcsync_sync_lease_s + 1)
    taken = start(fc, session, account_id, "next")
    assert (taken.outcome, taken.target_refresh_id) == ("resumed", refresh_id)
    assert account_row(session, account_id).sync_starting_after == resume_after
    calls_before = fc.list_calls()
    steps = fc.finish_sync(session, account_id, owner="next")

    pages = math.ceil(len(fc.truth(account_id)) / 100)
    assert fc.list_calls() - calls_before == len(steps) == pages - 1
    assert sum(s.inserted for s in steps) == len(fc.truth(account_id)) - 100
    assert account_row(session, account_id).cursor_refresh_id == refresh_id
    assert fc.mismatches(session, account_id) == []
    # The old owner, back from the dead, finds the lease gone and writes nothing.
    assert one_page(fc, session, account_id, "crashed").outcome == "lost_lease"
