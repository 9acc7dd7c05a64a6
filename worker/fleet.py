"""The accounts seen whole, for the gauges /metrics computes at scrape time: how many in each
freshness state, the oldest pending refresh, the largest sync lag, and by feature (transactions,
balances, ownership) how many in each state and the oldest stored data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, AccountFeature
from worker import lifecycle
from worker.fleet_gauges import FleetSnapshot
from worker.freshness import (
    Facts,
    State,
    feature_state,
    freshness,
    in_transactions_freshness,
    refresh_facts,
)
from worker.refresh_gate import FEATURES

# States in which fcsync is expected to keep an account synced. An untracked, inactive,
# disconnected or relink-required account cannot sync, so it would only hold the lag up
# forever; its own state's count shows it instead.
SYNCING_STATES = frozenset(
    {State.FRESH, State.REFRESHING, State.COOLING_DOWN, State.STALE, State.FAILING}
)


def snapshot(session: Session, *, now: datetime) -> FleetSnapshot:
    """Sync lag: the time since an account's last completed sync (since it was first stored,
    if it never synced), over the accounts in SYNCING_STATES. A feature's age: the time since
    the refresh its stored data came from (transactions: the cursor's), over the same states.
    One pass over the accounts, one over the tracked features."""
    facts = refresh_facts(session)
    counts = dict.fromkeys((str(state) for state in State), 0)
    by_feature = {feature: dict(counts) for feature in FEATURES}
    ages = dict.fromkeys(FEATURES, 0.0)
    pending: list[datetime] = []
    lags = [0.0]
    # Every cause Stripe documents is a series (0 when none), new ones as they appear.
    needing_relink = dict.fromkeys(lifecycle.CAUSES, 0)
    accounts = {a.id: a for a in session.scalars(select(Account))}
    for account in accounts.values():
        if account.tracked and lifecycle.needs_relink(account):
            cause = account.status_details_cause or "unspecified"
            needing_relink[cause] = needing_relink.get(cause, 0) + 1
        if not in_transactions_freshness(
            tracked=account.tracked, transactions_tracked=account.transactions_tracked
        ):
            continue
        fresh = freshness(account, facts.get(account.id, Facts()), now=now)
        counts[str(fresh.state)] += 1
        if fresh.refresh_pending_since is not None:
            pending.append(fresh.refresh_pending_since)
        if fresh.state in SYNCING_STATES:
            synced = account.last_synced_at or account.created_at
            lags.append((now - synced).total_seconds())
            ages["transactions"] = max(
                ages["transactions"], _age(account.cursor_refresh_at, account, now=now)
            )
    by_feature["transactions"] = dict(counts)
    for f in session.scalars(select(AccountFeature)):
        owner = accounts.get(f.account_id)
        if owner is None or f.feature not in by_feature:
            continue
        state = feature_state(owner, f, now=now)
        by_feature[f.feature][str(state)] += 1
        if state in SYNCING_STATES:
            ages[f.feature] = max(ages[f.feature], _age(f.stored_refresh_at, owner, now=now))
    return FleetSnapshot(
        accounts=counts,
        oldest_pending_refresh_s=max(0.0, (now - min(pending)).total_seconds()) if pending else 0,
        max_sync_lag_s=max(lags),
        needing_relink=needing_relink,
        features=by_feature,
        feature_max_age_s=ages,
    )


def _age(refreshed_at: int | None, account: Account, *, now: datetime) -> float:
    """Seconds since the refresh stored data came from; never refreshed: since the account was
    stored (what it has waited for its first)."""
    if refreshed_at is None:
        return max(0.0, (now - account.created_at).total_seconds())
    return max(0.0, now.timestamp() - refreshed_at)
