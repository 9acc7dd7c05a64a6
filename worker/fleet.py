"""The accounts seen whole, for the gauges /metrics computes at scrape time: how many in each
freshness state, the oldest pending refresh, and the largest sync lag."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account
from worker.freshness import State, account_freshness
from worker.metrics import FleetSnapshot

# States in which fcsync is expected to keep an account synced. An untracked, inactive,
# disconnected or relink-required account cannot sync, so it would only hold the lag up
# forever; its own state's count shows it instead.
SYNCING_STATES = frozenset(
    {State.FRESH, State.REFRESHING, State.COOLING_DOWN, State.STALE, State.FAILING}
)


def snapshot(session: Session, *, now: datetime) -> FleetSnapshot:
    """Sync lag: the time since an account's last completed sync (since it was first stored,
    if it never synced), over the accounts in SYNCING_STATES."""
    states = account_freshness(session, now=now)
    counts = dict.fromkeys((str(state) for state in State), 0)
    for fresh in states.values():
        counts[str(fresh.state)] += 1
    pending = [f.refresh_pending_since for f in states.values() if f.refresh_pending_since]
    lags = [
        (now - (synced or created)).total_seconds()
        for account_id, synced, created in session.execute(
            select(Account.id, Account.last_synced_at, Account.created_at)
        )
        if account_id in states and states[account_id].state in SYNCING_STATES
    ]
    return FleetSnapshot(
        accounts=counts,
        oldest_pending_refresh_s=max(0.0, (now - min(pending)).total_seconds()) if pending else 0,
        max_sync_lag_s=max([0.0, *lags]),
    )
