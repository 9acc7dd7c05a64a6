"""The accounts seen whole, for the gauges /metrics computes at scrape time: how many in each
freshness state, the oldest pending refresh, and the largest sync lag."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account
from worker.freshness import Facts, State, freshness, refresh_facts
from worker.metrics import FleetSnapshot

# States in which fcsync is expected to keep an account synced. An untracked, inactive,
# disconnected or relink-required account cannot sync, so it would only hold the lag up
# forever; its own state's count shows it instead.
SYNCING_STATES = frozenset(
    {State.FRESH, State.REFRESHING, State.COOLING_DOWN, State.STALE, State.FAILING}
)


def snapshot(session: Session, *, now: datetime) -> FleetSnapshot:
    """Sync lag: the time since an account's last completed sync (since it was first stored,
    if it never synced), over the accounts in SYNCING_STATES. One pass over the accounts."""
    facts = refresh_facts(session)
    counts = dict.fromkeys((str(state) for state in State), 0)
    pending: list[datetime] = []
    lags = [0.0]
    for account in session.scalars(select(Account)):
        fresh = freshness(account, facts.get(account.id, Facts()), now=now)
        counts[str(fresh.state)] += 1
        if fresh.refresh_pending_since is not None:
            pending.append(fresh.refresh_pending_since)
        if fresh.state in SYNCING_STATES:
            synced = account.last_synced_at or account.created_at
            lags.append((now - synced).total_seconds())
    return FleetSnapshot(
        accounts=counts,
        oldest_pending_refresh_s=max(0.0, (now - min(pending)).total_seconds()) if pending else 0,
        max_sync_lag_s=max(lags),
    )
