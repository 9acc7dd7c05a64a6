"""Incremental transaction sync: page Stripe's list into the database, one checkpoint per page.

A sync belongs to one owner at a time (a lease in the accounts row that expires if its worker
dies); a request that finds the lease taken is never dropped: the holder follows up on any
refresh newer than the one it syncs, and a full request is remembered for a run after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from models import Account, Refresh
from worker import (
    due_accounts,
    failpoints,
    inbox,
    metrics,
    page_store,
    refresh_store,
    repository,
    sync_store,
)
from worker.accounts import USABILITY_ERRORS, retrieve_or_mark_gone, stripe_context
from worker.errors import ErrorCode, PermanentError
from worker.intents import Intent, NotifySynced, SyncDue
from worker.records import Sweep, TransactionPage
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.stripe_payloads import InvalidStripeResponse, check_page_for_sync

StartOutcome = Literal["started", "resumed", "busy", "up_to_date", "untracked"]
StepOutcome = Literal["page", "done", "lost_lease", "gone"]


@dataclass(frozen=True)
class SyncStart:
    outcome: StartOutcome
    target_refresh_id: str | None = None


@dataclass(frozen=True)
class SyncStep:
    outcome: StepOutcome
    inserted: int = 0
    updated: int = 0
    intents: tuple[Intent, ...] = field(default=())
    # Where each page this step stored ended (the pages it committed at once, in order).
    last_ids: tuple[str, ...] = ()
    # Pages this step counts for (a step that stored none, e.g. the lease lost, counts one).
    pages: int = 1


def start_sync(
    session: Session,
    account_id: str,
    *,
    full: bool,
    owner: str,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
    handoff: str | None = None,
    gateway: StripeGateway | None = None,
    read_ahead: int = 0,
    read_until: float | None = None,
) -> SyncStart:
    """Take the lease and fix what this sync is for: the refresh that has succeeded by now.
    `stripe_account`, when the request names one, must be the account's stored context.
    `handoff`: the token the previous run handed the lease on to (this is its continuation).
    `read_ahead`: how many pages the run will ask for, fetched in the background from the
    cursor on (`gateway`'s reading ahead) while this commits and the first pages are written;
    the first to arrive at or after `read_until` (time.monotonic()) is the last."""
    stripe_context(session, account_id, stripe_account)
    leased = sync_store.acquire_sync_lease(
        session,
        account_id,
        owner,
        now=now,
        lease_s=settings.fcsync_sync_lease_s,
        handoff=handoff,
    )
    # Read after the lease's UPDATE: the row as the previous holder committed it.
    account = repository.get_account(session, account_id)
    if account is None:
        raise PermanentError(
            f"account {account_id} is not known to fcsync; track it first",
            code=ErrorCode.UNKNOWN_ACCOUNT,
        )
    if not account.transactions_tracked:
        # Tracked without transactions: nothing of them is stored any more, nor merged for later.
        if leased:
            sync_store.release_sync_lease(session, account_id, owner)
        return SyncStart("untracked")
    if not leased:
        # The run holding the lease syncs to the refresh that had succeeded when it began and,
        # finishing, follows up on any newer one itself (the failed-sync sweep does, should it
        # die): only a full request adds something to remember. Merging every busy trigger
        # made a poll and a webhook of one refresh cost a third, empty sync task.
        if full:
            account.sync_requested = True
            account.sync_requested_full = True
        return SyncStart("busy")
    if account.sync_target_refresh_id is not None:
        if full:
            # Finish the sync in progress first; the full one runs right after it.
            account.sync_requested = True
            account.sync_requested_full = True
        _read_from_cursor(gateway, account, read_ahead, read_until)
        return SyncStart("resumed", account.sync_target_refresh_id)
    full = full or account.sync_requested_full
    account.sync_requested = False
    account.sync_requested_full = False
    target = refresh_store.latest_succeeded_refresh(session, account_id)
    if target is None or (not full and target.id == account.cursor_refresh_id):
        sync_store.release_sync_lease(session, account_id, owner)
        return SyncStart("up_to_date", account.cursor_refresh_id)
    account.sync_target_refresh_id = target.id
    account.sync_target_refresh_at = target.last_attempted_at
    account.sync_after_refresh_id = None if full else account.cursor_refresh_id
    account.sync_starting_after = None
    account.sync_inserted = 0
    account.sync_updated = 0
    _read_from_cursor(gateway, account, read_ahead, read_until)
    return SyncStart("started", target.id)


def _read_from_cursor(
    gateway: StripeGateway | None, account: Account, pages: int, until: float | None
) -> None:
    """Start fetching the run's pages from where the sync stands; the steps take them."""
    if gateway is not None and pages > 0:
        gateway.read_ahead_transactions_pages(
            account.id,
            stripe_account=account.stripe_account,
            after_refresh=account.sync_after_refresh_id,
            starting_after=account.sync_starting_after,
            pages=pages,
            until=until,
        )


def sync_page(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    owner: str,
    now: datetime,
    settings: Settings,
    seen_last_ids: Collection[str] = (),
    read_ahead: int = 0,
    read_until: float | None = None,
    max_pages: int = 1,
    wait_pages: int = 0,
) -> SyncStep:
    """Fetch and store the next page, with the pages after it that have already arrived (up
    to `max_pages` in all, one commit); on the last page move the cursor in the same commit.
    The first `wait_pages` pages after it are waited for, if they are being read ahead.

    `seen_last_ids`: where this run's earlier pages ended; a page ending there again is a
    loop, refused before it is written (as is a page of another account's rows).
    `read_ahead`: how many pages after this one the run will ask for, fetched in the
    background while this one is written (the cursor still moves only with the last page's
    rows; the progress stored is that of the last page committed, so a killed run resumes
    after it), the first to arrive at or after `read_until` (time.monotonic()) the last."""
    account = repository.get_account(session, account_id)
    if account is None or account.sync_lease_owner != owner:
        return SyncStep("lost_lease")
    account.sync_lease_expires_at = now + timedelta(seconds=settings.fcsync_sync_lease_s)
    after_refresh = account.sync_after_refresh_id
    try:
        page = gateway.list_transactions_page(
            account_id,
            stripe_account=account.stripe_account,
            after_refresh=after_refresh,
            starting_after=account.sync_starting_after,
        )
    except PermanentError as exc:
        missing = exc.code == ErrorCode.RESOURCE_MISSING
        if after_refresh is None or not missing:
            # Which id was missing? Only the account's own 404 ends the sync for good.
            if missing and (
                retrieve_or_mark_gone(
                    session, gateway, account_id, stripe_account=account.stripe_account, now=now
                )
                is None
            ):
                sync_store.release_sync_lease(session, account_id, owner)
                return SyncStep("gone")
            raise
        # Stripe no longer knows the cursor's refresh: fall back to the whole history.
        account.sync_after_refresh_id = None
        account.sync_starting_after = None
        return SyncStep("page")
    check_page_for_sync(
        page, account_id, starting_after=account.sync_starting_after, seen_last_ids=seen_last_ids
    )
    if read_ahead and page.has_more and page.last_id is not None:
        gateway.read_ahead_transactions_pages(
            account_id,
            stripe_account=account.stripe_account,
            after_refresh=after_refresh,
            starting_after=page.last_id,
            pages=read_ahead,
            until=read_until,
        )
    pages = [
        page,
        *_arrived_pages(
            gateway,
            account_id,
            page,
            after_refresh,
            stripe_account=account.stripe_account,
            most=max_pages - 1,
            wait=wait_pages,
            seen_last_ids=[*seen_last_ids],
        ),
    ]
    with session.no_autoflush:
        # The lease renewal above and the progress below reach the database as one UPDATE of
        # the account (one round trip less a page); both commit with the pages' rows.
        inserted, updated = page_store.upsert_pages(
            session,
            [p.transactions for p in pages],
            now=now,
            stripe_account=account.stripe_account,
            stripe_key=account.stripe_key,
        )
    metrics.sync_page_stored(session, inserted, updated, pages=len(pages))
    account.sync_inserted += inserted
    account.sync_updated += updated
    last_ids = tuple(p.last_id for p in pages if p.last_id is not None)
    last = pages[-1]
    if last.has_more and last.last_id is not None:
        account.sync_starting_after = last.last_id
        return SyncStep("page", inserted, updated, last_ids=last_ids, pages=len(pages))
    step = _finish(session, account_id, owner=owner, now=now, inserted=inserted, updated=updated)
    return replace(step, last_ids=last_ids, pages=len(pages))


def _arrived_pages(
    gateway: StripeGateway,
    account_id: str,
    page: TransactionPage,
    after_refresh: str | None,
    *,
    stripe_account: str | None,
    most: int,
    wait: int,
    seen_last_ids: list[str],
) -> list[TransactionPage]:
    """The pages after `page` the read-ahead has already brought, or brings (the first
    `wait` of them), at most `most`, each checked like the first. A page that fails its
    check ends the list before it: the pages before it are stored, and it stays read ahead,
    to be refused as the next step's first."""
    arrived: list[TransactionPage] = []
    while len(arrived) < most and page.has_more and page.last_id is not None:
        starting_after = page.last_id
        seen_last_ids.append(starting_after)

        def passes(candidate: TransactionPage, after: str = starting_after) -> bool:
            try:
                check_page_for_sync(
                    candidate, account_id, starting_after=after, seen_last_ids=seen_last_ids
                )
            except InvalidStripeResponse:
                return False
            return True

        nxt = gateway.arrived_transactions_page(
            account_id,
            stripe_account=stripe_account,
            after_refresh=after_refresh,
            starting_after=starting_after,
            accept=passes,
            wait=len(arrived) < wait,
        )
        if nxt is None:
            break
        arrived.append(nxt)
        page = nxt
    return arrived


def _finish(
    session: Session,
    account_id: str,
    *,
    owner: str,
    now: datetime,
    inserted: int,
    updated: int,
) -> SyncStep:
    account = repository.get_account(session, account_id)
    assert account is not None and account.sync_target_refresh_id is not None
    target_id = account.sync_target_refresh_id
    target_at = account.sync_target_refresh_at or 0
    sync_store.advance_cursor(session, account_id, target_id, target_at)
    total_inserted, total_updated = account.sync_inserted, account.sync_updated
    refresh = session.get(Refresh, target_id)
    if refresh is not None:
        if refresh.synced_at is None:
            announced = inbox.refresh_announced_at(session, account_id, target_id)
            if announced is not None:
                metrics.rows_stored_after_event(session, (now - announced).total_seconds())
        refresh.synced_at = now
        refresh.inserted += total_inserted
        refresh.updated += total_updated
    account.last_synced_at = now
    account.sync_target_refresh_id = None
    account.sync_target_refresh_at = None
    account.sync_after_refresh_id = None
    account.sync_starting_after = None
    account.sync_retry_at = None
    if account.last_error_code not in USABILITY_ERRORS:
        repository.clear_error(account)
    intents: list[Intent] = []
    newer = refresh_store.latest_succeeded_refresh(session, account_id)
    if account.sync_requested or (newer is not None and newer.id != account.cursor_refresh_id):
        intents.append(SyncDue(account_id, full=account.sync_requested_full))
    intents.append(NotifySynced(account_id, target_id, total_inserted, total_updated))
    sync_store.release_sync_lease(session, account_id, owner)
    failpoints.failpoint("sync.before_cursor_commit")
    return SyncStep("done", inserted, updated, tuple(intents))


def abandon_run(session: Session, account_id: str, owner: str) -> None:
    """Hand the lease back (the sync's progress stays, so the next run resumes it)."""
    sync_store.release_sync_lease(session, account_id, owner)


def continue_run(
    session: Session, account_id: str, owner: str, *, now: datetime, settings: Settings
) -> SyncDue:
    """End a run at FCSYNC_PAGES_PER_RUN pages: the lease goes on to a fresh token that only the
    continuation message carries, so the account has one chain of runs in the queue. Released
    instead, any other trigger queued meanwhile (an event, a sweep) would resume the sync and
    re-enqueue itself too: a second chain, and the account twice the turns of the others.
    Triggers that find the lease held are merged (`sync_requested`) into a run after the last."""
    token = f"handoff/{uuid.uuid4().hex}"
    sync_store.hand_on_sync_lease(
        session, account_id, owner, token, now=now, lease_s=settings.fcsync_sync_lease_s
    )
    return SyncDue(account_id, handoff=token)


def park_failed_run(
    session: Session, account_id: str, owner: str, *, now: datetime, settings: Settings
) -> None:
    """Hand the lease back after a permanent failure: the same page would fail the same way,
    so the failed-sync sweep retries it once per FCSYNC_UNUSABLE_RECHECK_S, not every sweep."""
    account = repository.get_account(session, account_id)
    if account is not None:
        account.sync_retry_at = now + timedelta(seconds=settings.fcsync_unusable_recheck_s)
    sync_store.release_sync_lease(session, account_id, owner)


def resync_candidates(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Syncs that failed, died with their worker, or were never enqueued."""
    return Sweep(
        tuple(
            SyncDue(account_id)
            for account_id in due_accounts.unsynced_account_ids(
                session, now=now, limit=settings.fcsync_sweep_batch
            )
        )
    )
