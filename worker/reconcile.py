"""Reconciliation: re-read an account's recent window from Stripe (`transacted_at[gte]`) and heal
what the database holds of it: rows missing or differing are rewritten through the sync's own
upsert (newest `updated` wins), pending rows Stripe no longer lists are marked vanished, never
deleted. It never moves the cursor and takes no sync lease: every write it makes is the
upsert's guarded one, which a sync running at the same time makes too (README Operations)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypedDict, TypeVar

from sqlalchemy.orm import Session

from worker import metrics, page_store, reconcile_store, repository
from worker.accounts import from_ts, retrieve_or_mark_gone, stripe_context
from worker.errors import ErrorCode, PermanentError
from worker.intents import Intent, ReconcileDue
from worker.records import Sweep
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.stripe_payloads import check_page_for_sync

DAY_S = 86_400
# Stripe lists up to the last 180 days of an account's transactions.
MAX_DAYS = 180
# Pages one reconciliation reads at most (50,000 rows; about 25 s of requests at the default
# 20 requests/s, well inside the task's 540 s soft limit). A window holding more is repaired as
# far as it was read and marks nothing vanished: it was not seen whole.
MAX_PAGES = 500
# How long a sweep holds the accounts whose reconciliation it is sending: one that could not
# send (broker down) or died before it was done leaves them due at a sweep after this, not a
# period later. Sending a batch (FCSYNC_SWEEP_BATCH messages) takes seconds, far less.
HOLD_S = 600
# Vanished ids a report names (the count is always whole): pending rows are few, a list of
# thousands would say that something else is wrong, and the count says that already.
REPORTED_IDS = 100

Outcome = Literal["reconciled", "truncated", "gone"]
R = TypeVar("R")


class Runs(Protocol):
    """What runs a reconciliation's units of work: worker/runtime.py's Runtime (one
    transaction each, a permanent failure recorded on the account)."""

    def run(
        self,
        account_id: str | None,
        work: Callable[[Session, StripeGateway, datetime], R],
        *,
        stripe_key: str | None = None,
    ) -> R: ...


class ReconcileReport(TypedDict):
    account: str
    outcome: Outcome
    days: int
    # The window's start: transacted_at[gte], Unix seconds.
    since: int
    pages: int
    listed: int
    inserted: int
    updated: int
    vanished: int
    vanished_ids: list[str]


@dataclass(frozen=True)
class ReconcileStart:
    stripe_account: str | None
    since: int
    started_at: datetime


@dataclass(frozen=True)
class ReconcilePage:
    ids: tuple[str, ...] = ()
    inserted: int = 0
    updated: int = 0
    # Where the next page starts; None: this was the last.
    next_after: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class ReconcileResult:
    vanished_ids: tuple[str, ...] = ()


def start_reconcile(
    session: Session, account_id: str, *, days: int, now: datetime, stripe_account: str | None
) -> ReconcileStart:
    """The window (the last `days` days up to `now`) and the context its pages go out in."""
    context = stripe_context(session, account_id, stripe_account)
    account = repository.get_account(session, account_id)
    if account is None:
        raise PermanentError(
            f"account {account_id} is not known to fcsync; track it first",
            code=ErrorCode.UNKNOWN_ACCOUNT,
        )
    if not account.transactions_tracked:
        raise PermanentError(
            f"account {account_id} is tracked without transactions, so there are none to "
            f"reconcile: fcsync track {account_id} --features transactions,... first",
            code=ErrorCode.TRANSACTIONS_NOT_TRACKED,
        )
    return ReconcileStart(context, int(now.timestamp()) - days * DAY_S, now)


def reconcile_page(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    start: ReconcileStart,
    starting_after: str | None,
    seen_last_ids: list[str],
    now: datetime,
) -> ReconcilePage:
    """Read one page of the window and write it with the repairing upsert (page_store)."""
    try:
        page = gateway.list_transactions_since(
            account_id,
            stripe_account=start.stripe_account,
            transacted_gte=start.since,
            starting_after=starting_after,
        )
    except PermanentError as exc:
        if exc.code == ErrorCode.RESOURCE_MISSING and (
            retrieve_or_mark_gone(
                session, gateway, account_id, stripe_account=start.stripe_account, now=now
            )
            is None
        ):
            metrics.reconcile_ended(session, "gone")
            return ReconcilePage(gone=True)
        raise
    check_page_for_sync(
        page, account_id, starting_after=starting_after, seen_last_ids=seen_last_ids
    )
    inserted, updated = page_store.upsert_transactions(
        session, page.transactions, now=now, stripe_account=start.stripe_account, repair=True
    )
    metrics.reconcile_rows(session, "inserted", inserted)
    metrics.reconcile_rows(session, "updated", updated)
    return ReconcilePage(
        tuple(t.id for t in page.transactions),
        inserted,
        updated,
        page.last_id if page.has_more else None,
    )


def finish_reconcile(
    session: Session,
    account_id: str,
    *,
    start: ReconcileStart,
    listed: set[str] | None,
    inserted: int,
    updated: int,
    now: datetime,
) -> ReconcileResult:
    """Mark what Stripe no longer lists (`listed` None: the window was not read whole, nothing
    is marked) and record the run's counts on the account (`fcsync status`)."""
    vanished: list[str] = []
    if listed is not None:
        vanished = reconcile_store.mark_vanished(
            session, account_id, since=start.since, listed=listed, before=start.started_at, now=now
        )
    metrics.reconcile_rows(session, "vanished", len(vanished))
    metrics.reconcile_ended(session, "reconciled" if listed is not None else "truncated")
    account = repository.get_account(session, account_id)
    if account is not None:
        account.reconciled_at = now
        account.reconcile_inserted = inserted
        account.reconcile_updated = updated
        account.reconcile_vanished = len(vanished)
    return ReconcileResult(tuple(vanished))


def run_reconcile(
    runner: Runs,
    account_id: str,
    *,
    days: int,
    stripe_account: str | None = None,
    stripe_key: str | None = None,
) -> ReconcileReport:
    """The whole window, a page a transaction (a crash loses at most one page's work, and the
    next run redoes it), then the vanished rows and the counts in a last one. `stripe_key`, a
    name the request gives, must be the account's stored key (the runner checks it once; every
    unit of work reads with the stored key's gateway)."""
    start = runner.run(
        account_id,
        lambda s, gw, now: start_reconcile(
            s, account_id, days=days, now=now, stripe_account=stripe_account
        ),
        stripe_key=stripe_key,
    )
    report: ReconcileReport = {
        "account": account_id,
        "outcome": "reconciled",
        "days": days,
        "since": start.since,
        "pages": 0,
        "listed": 0,
        "inserted": 0,
        "updated": 0,
        "vanished": 0,
        "vanished_ids": [],
    }
    listed: set[str] = set()
    seen: list[str] = []
    after: str | None = None
    while True:

        def read(
            s: Session, gw: StripeGateway, now: datetime, after: str | None = after
        ) -> ReconcilePage:
            return reconcile_page(
                s, gw, account_id, start=start, starting_after=after, seen_last_ids=seen, now=now
            )

        page = runner.run(account_id, read)
        if page.gone:
            report["outcome"] = "gone"
            return report
        report["pages"] += 1
        report["inserted"] += page.inserted
        report["updated"] += page.updated
        listed.update(page.ids)
        if page.next_after is None:
            break
        if report["pages"] >= MAX_PAGES:
            report["outcome"] = "truncated"
            break
        seen.append(page.next_after)
        after = page.next_after
    report["listed"] = len(listed)
    complete = report["outcome"] == "reconciled"
    result = runner.run(
        account_id,
        lambda s, gw, now: finish_reconcile(
            s,
            account_id,
            start=start,
            listed=listed if complete else None,
            inserted=report["inserted"],
            updated=report["updated"],
            now=now,
        ),
    )
    report["vanished"] = len(result.vanished_ids)
    report["vanished_ids"] = list(result.vanished_ids[:REPORTED_IDS])
    return report


def next_slot(account_id: str, *, after: datetime, interval_s: int) -> datetime:
    """The account's next reconciliation time after `after`: its own phase in every period, a
    hash of its id, so a fleet's reconciliations spread evenly over the period and an account
    keeps its slot across restarts and sweeps."""
    phase = int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:8], "big") % interval_s
    ts = int(after.timestamp())
    return from_ts(phase + ((ts - phase) // interval_s + 1) * interval_s)


def due_reconciles(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Accounts whose slot has come: a ReconcileDue each, the account held HOLD_S until
    `reconciles_sent` moves its slot a period on once the messages are out. One never given a
    slot (new, or reconciliation just enabled) gets its slot, not a run now: a fleet enabling
    it must not reconcile all at once."""
    interval = settings.fcsync_reconcile_interval_s
    if interval == 0:
        return Sweep()
    intents: list[Intent] = []
    hold = held_until(now)
    for account in reconcile_store.claim_reconcile_due(
        session, now=now, limit=settings.fcsync_sweep_batch
    ):
        if account.next_reconcile_at is None:
            account.next_reconcile_at = next_slot(account.id, after=now, interval_s=interval)
        else:
            intents.append(ReconcileDue(account.id))
            account.next_reconcile_at = hold
    return Sweep(tuple(intents))


def held_until(swept_at: datetime) -> datetime:
    return swept_at + timedelta(seconds=HOLD_S)


def reconciles_sent(
    session: Session, account_ids: Collection[str], *, swept_at: datetime, settings: Settings
) -> None:
    """The sweep at `swept_at` sent these accounts' reconciliations: each slot a period on from
    it. An account whose hold ran out and that a later sweep claimed meanwhile keeps that
    sweep's hold (it sends again, and moves the slot itself)."""
    interval = settings.fcsync_reconcile_interval_s
    for account in reconcile_store.held_accounts(session, account_ids, until=held_until(swept_at)):
        account.next_reconcile_at = next_slot(account.id, after=swept_at, interval_s=interval)
