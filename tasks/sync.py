"""The sync task: bounded pages per run, then re-enqueue; plus the failed-sync sweep."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from tasks.arguments import flag, handoff_token, stripe_account_id, stripe_id, stripe_key_name
from tasks.base import FcsyncTask, fcsync_task
from tasks.refresh import SweepReport
from worker import contract, event_handlers, sync, sync_run
from worker.records import Sweep
from worker.stripe_gateway import StripeGateway
from worker.sync_run import SyncReport


@fcsync_task(contract.SYNC_TRANSACTIONS)
def sync_transactions_task(
    self: FcsyncTask,
    account_id: str,
    full: bool = False,
    stripe_account: str | None = None,
    handoff: str | None = None,
    stripe_key: str | None = None,
) -> SyncReport:
    account_id = stripe_id(account_id, "fca_")
    full = flag(full, "full")
    context = stripe_account_id(stripe_account)
    token = handoff_token(handoff)
    key = stripe_key_name(stripe_key)
    # One owner per execution, not per task id: a broker redelivers a message (a visibility
    # timeout passed, a connection dropped) with its id while the first copy may still run, and
    # two copies sharing a lease would page side by side and report the sync twice. A retry or a
    # crashed run's redelivery finds the lease released (every failure hands it back) or expired.
    owner = f"{self.request.id or 'inline'}/{uuid.uuid4().hex[:12]}"
    return sync_run.run_sync(
        self.runtime,
        account_id,
        full=full,
        owner=owner,
        stripe_account=context,
        stripe_key=key,
        handoff=token,
    )


@fcsync_task(contract.RETRY_FAILED_SYNCS, max_retries=3)
def retry_failed_syncs_task(self: FcsyncTask) -> SweepReport:
    settings = self.runtime.settings

    def sweep(s: Session, gw: StripeGateway, now: datetime) -> Sweep:
        syncs = sync.resync_candidates(s, now=now, settings=settings)
        events = event_handlers.unhandled_events(s, now=now, settings=settings)
        return Sweep(syncs.intents + events.intents)

    result = self.runtime.run(None, sweep)
    return {"enqueued": len(result.intents)}
