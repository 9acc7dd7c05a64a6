"""What a playground run cost: Stripe requests between recorded phases, against the bound of
one refresh plus one listing page per 100 changed transactions, per account and emulated day."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from worker.playground.convergence import Phase

PAGE = 100
# The reconciliation sweep re-reads each account's recent window once a week, in a slot of its
# own (a hash of its id): listings, and repairs, no refresh asked for. A run that crosses an
# emulated day meets some account's slot about once in seven, so a run that counts a sync's
# listings or rows exactly turns it off; the reconciliation's own tests measure it.
WITHOUT_RECONCILE = {"FCSYNC_RECONCILE_INTERVAL_S": "0"}


def requests_between(first: Phase, last: Phase, prefix: str = "") -> int:
    def total(phase: Phase) -> int:
        return sum(n for k, n in phase.stats["requests"].items() if k.startswith(prefix))

    return total(last) - total(first)


def changed(before: Phase, after: Phase, account_id: str) -> int:
    """Transactions the account's refreshes created or changed between two phases."""
    old, new = before.truth[account_id], after.truth[account_id]
    return sum(1 for i, updated in new.items() if old.get(i) != updated)


def steady_state(
    phases: Sequence[Phase], accounts: Sequence[str], first: str, last: str
) -> dict[str, Any]:
    """Stripe requests per account per emulated day between two phases, against the bound
    1 + ceil(changed/100) summed over every account and day."""
    names = [p.name for p in phases]
    window = phases[names.index(first) : names.index(last) + 1]
    days = len(window) - 1
    bound = 0
    changed_total = 0
    pages = 0
    for before, after in itertools.pairwise(window):
        for account_id in accounts:
            n = changed(before, after, account_id)
            changed_total += n
            bound += 1 + math.ceil(n / PAGE)
            pages += max(1, math.ceil(n / PAGE))
    requests_total = requests_between(window[0], window[-1])
    by_endpoint = {
        k: n - window[0].stats["requests"].get(k, 0)
        for k, n in window[-1].stats["requests"].items()
        if n != window[0].stats["requests"].get(k, 0)
    }
    per = max(1, len(accounts) * days)
    return {
        "accounts": len(accounts),
        "days": days,
        "requests": requests_total,
        "requests_by_endpoint": by_endpoint,
        "requests_per_account_day": round(requests_total / per, 3),
        "bound": round(bound / per, 3),
        "bound_requests": bound,
        "transaction_pages_expected": pages,
        "changed_transactions": changed_total,
    }
