"""Reconciliation slots for a fleet (worker/reconcile.py's next_slot): each account keeps its own
phase in the period, so the fleet stays spread over it after a beat outage that left every
account overdue, and an account swept at its slot moves a whole period on."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from worker.reconcile import next_slot

WEEK_S = 7 * 86_400
FLEET = [f"fca_{i:06d}" for i in range(2_100)]


def test_reconcile_slot_keeps_each_accounts_phase_so_an_outage_does_not_bunch_the_fleet() -> None:
    t0 = datetime(2026, 11, 30, 9, 17, 5, tzinfo=UTC)
    first = {a: next_slot(a, after=t0, interval_s=WEEK_S) for a in FLEET}
    # Beat was down three and a half days: every account whose slot passed is swept at once,
    # and the next slots are handed out from the moment it came back.
    back = t0 + timedelta(days=3.5)
    again = {a: next_slot(a, after=back, interval_s=WEEK_S) for a in FLEET}

    for a in FLEET:
        assert t0 < first[a] <= t0 + timedelta(seconds=WEEK_S)
        assert back < again[a] <= back + timedelta(seconds=WEEK_S)
        assert (again[a] - first[a]).total_seconds() % WEEK_S == 0, "its phase moved"
    # Still spread over the period after the outage: about a seventh a day (300 expected).
    days = Counter(int((again[a] - back).total_seconds()) // 86_400 for a in FLEET)
    assert sorted(days) == list(range(7))
    assert all(240 <= n <= 360 for n in days.values()), days


def test_reconcile_slot_after_the_slot_itself_is_a_whole_period_on() -> None:
    for a in FLEET[:50]:
        slot = next_slot(a, after=datetime(2026, 11, 30, tzinfo=UTC), interval_s=3_600)
        assert next_slot(a, after=slot, interval_s=3_600) == slot + timedelta(seconds=3_600)
        assert next_slot(a, after=slot - timedelta(seconds=1), interval_s=3_600) == slot
