"""The reconciliation task (one account's recent window re-read and healed) and its slow beat
sweep, which gives every tracked account its own slot in FCSYNC_RECONCILE_INTERVAL_S."""

from __future__ import annotations

from tasks.arguments import bounded_int, stripe_account_id, stripe_id, stripe_key_name
from tasks.base import FcsyncTask, fcsync_task
from tasks.refresh import SweepReport
from worker import contract, reconcile
from worker.intents import ReconcileDue
from worker.reconcile import ReconcileReport


@fcsync_task(contract.RECONCILE_ACCOUNT)
def reconcile_account_task(
    self: FcsyncTask,
    account_id: str,
    days: int | None = None,
    stripe_account: str | None = None,
    stripe_key: str | None = None,
) -> ReconcileReport:
    """`days`: the window, the last N days (default FCSYNC_RECONCILE_DAYS)."""
    account_id = stripe_id(account_id, "fca_")
    window = None if days is None else bounded_int(days, "days", 1, reconcile.MAX_DAYS)
    context = stripe_account_id(stripe_account)
    key = stripe_key_name(stripe_key)
    rt = self.runtime
    return reconcile.run_reconcile(
        rt,
        account_id,
        days=rt.settings.fcsync_reconcile_days if window is None else window,
        stripe_account=context,
        stripe_key=key,
    )


@fcsync_task(contract.RECONCILE_DUE_ACCOUNTS, max_retries=3)
def reconcile_due_accounts_task(self: FcsyncTask) -> SweepReport:
    """Claim and send, then move the slots of what was sent: a send that fails leaves the
    accounts held only briefly (reconcile.HOLD_S), due again at a later sweep."""
    rt = self.runtime
    swept_at = rt.clock.now()
    result = rt.run(
        None, lambda s, gw, now: reconcile.due_reconciles(s, now=swept_at, settings=rt.settings)
    )
    sent = [intent.account_id for intent in result.intents if isinstance(intent, ReconcileDue)]
    if sent:
        rt.run(
            None,
            lambda s, gw, now: reconcile.reconciles_sent(
                s, sent, swept_at=swept_at, settings=rt.settings
            ),
        )
    return {"enqueued": len(result.intents)}
