"""One account's transactions: compact parallel columns in list order, plus the indexes
that make a page cost the same at 1,000 rows or 1,000,000 (bisect, never scan)."""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from emulator.identifiers import TransactionIds

PENDING, POSTED, VOID = 0, 1, 2
STATUS_NAMES = ("pending", "posted", "void")
DAY_S = 86_400
HISTORY_S = 180 * DAY_S
# Rows younger than this at account creation may still be pending, like a real card feed.
PENDING_WINDOW_S = 3 * DAY_S

# (description, smallest, largest) in cents; the sign says which way the money moves.
OUTFLOWS = (
    ("Rocket Rides", 800, 6_500),
    ("Blue Bottle Coffee", 350, 1_800),
    ("Whole Foods Market", 1_500, 24_000),
    ("Shell Oil", 2_500, 9_000),
    ("Amazon.com", 900, 25_000),
    ("Netflix", 1_549, 1_549),
    ("Spotify", 1_199, 1_199),
    ("Uber Eats", 1_400, 6_000),
    ("Comcast Internet", 7_999, 7_999),
    ("PG&E Utilities", 4_000, 22_000),
    ("Parkside Apartments Rent", 185_000, 245_000),
    ("Target", 1_200, 18_000),
    ("Walgreens", 500, 6_000),
    ("Delta Air Lines", 12_000, 90_000),
    ("Trader Joe's", 1_800, 12_000),
    ("ATM Withdrawal", 2_000, 40_000),
)
INFLOWS = (
    ("Payroll Acme Corp", 180_000, 420_000),
    ("Venmo Cashout", 1_000, 50_000),
    ("Interest Payment", 1, 900),
    ("Refund Amazon.com", 900, 12_000),
    ("Mobile Check Deposit", 5_000, 150_000),
)
MERCHANTS = tuple((d, -hi, -lo) for d, lo, hi in OUTFLOWS) + INFLOWS
INFLOW_SHARE = 0.2


class Ledger:
    """Rows sorted by (transacted_at, id) ascending; row position is part of the id.

    New rows are always dated at or after the newest one and get larger ids, so rows are only
    ever appended and positions never move. Sentinel 0 in `refresh`/`updated` means "the
    refresh that first discovered the initial history", so discovery writes no per-row data."""

    def __init__(self, ids: TransactionIds) -> None:
        self.ids = ids
        self.transacted_at = array("q")
        self.amount = array("q")
        self.merchant = array("B")
        self.status = bytearray()
        self.posted_at = array("Q")
        self.void_at = array("Q")
        self.updated = array("Q")
        self.refresh = array("I")
        self.pending: list[int] = []
        # Pending rows Stripe dropped (they never posted): listed and retrieved no more.
        self.dropped: set[int] = set()
        # One entry per succeeded refresh that changed rows, in refresh order.
        self.change_seqs: list[int] = []
        self.change_rows: list[list[int]] = []
        # Net amount posted since the account was linked; the balance moves by it.
        self.posted_total = 0

    def __len__(self) -> int:
        return len(self.transacted_at)

    def seed_history(self, rng: random.Random, count: int, end: int) -> None:
        """`count` rows spread over the 180 days before `end`, in one O(count) pass."""
        start = end - HISTORY_S
        step = HISTORY_S / max(count, 1)
        merchants = len(OUTFLOWS)
        rand = rng.random
        ta_append, amount_append = self.transacted_at.append, self.amount.append
        merchant_append, status_append = self.merchant.append, self.status.append
        posted_append, void_append = self.posted_at.append, self.void_at.append
        for i in range(count):
            # Jitter stays inside each row's slot, so the column comes out sorted without a sort.
            ta = start + int((i + rand()) * step)
            if rand() < INFLOW_SHARE:
                m = merchants + int(rand() * len(INFLOWS))
            else:
                m = int(rand() * merchants)
            _, low, high = MERCHANTS[m]
            amount = low + int(rand() * (high - low + 1))
            roll = rand()
            ta_append(ta)
            amount_append(amount)
            merchant_append(m)
            if roll < 0.01:
                status_append(VOID)
                posted_append(0)
                void_append(min(ta + int(roll * 100 * DAY_S), end))
            elif end - ta < PENDING_WINDOW_S and roll < 0.6:
                status_append(PENDING)
                posted_append(0)
                void_append(0)
                self.pending.append(i)
            else:
                status_append(POSTED)
                posted_append(min(ta + int(roll * 2 * DAY_S), end))
                void_append(0)
        self.updated.extend(array("Q", bytes(8 * count)))
        self.refresh.extend(array("I", bytes(4 * count)))

    def apply_refresh(
        self, rng: random.Random, seq: int, at: int, *, changes: int | None = None
    ) -> list[int]:
        """A succeeded refresh at `at`: most pending rows settle, 0-10 new rows arrive.

        `changes`: exactly this many rows change instead, the oldest pending rows settling
        first and new rows arriving for the rest (a bank catching up after a gap).
        Returns the changed positions; they are remembered for transaction_refresh[after]."""
        changed: list[int] = []
        still_pending: list[int] = []
        for index, pos in enumerate(self.pending):
            roll = rng.random()
            ta = self.transacted_at[pos]
            if changes is not None:
                # Settle (posted or void) while changes remain; the rest stay pending.
                roll = roll * 0.85 if index < changes else 1.0
            if roll < 0.75:
                self.status[pos] = POSTED
                self.posted_at[pos] = ta + int(rng.random() * max(at - ta, 0))
                self.posted_total += self.amount[pos]
            elif roll < 0.85:
                self.status[pos] = VOID
                self.void_at[pos] = ta + int(rng.random() * max(at - ta, 0))
            else:
                still_pending.append(pos)
                continue
            self.updated[pos] = at
            self.refresh[pos] = seq
            changed.append(pos)
        newest = self.transacted_at[-1] if len(self) else at - DAY_S
        first_new = len(self)
        arrivals = rng.randint(0, 10) if changes is None else max(changes - len(changed), 0)
        dates = sorted(newest + int(rng.random() * max(at - newest, 0)) for _ in range(arrivals))
        for offset, ta in enumerate(dates):
            if rng.random() < INFLOW_SHARE:
                m = len(OUTFLOWS) + int(rng.random() * len(INFLOWS))
            else:
                m = int(rng.random() * len(OUTFLOWS))
            _, low, high = MERCHANTS[m]
            amount = low + int(rng.random() * (high - low + 1))
            pending = rng.random() < 0.4
            self.transacted_at.append(ta)
            self.amount.append(amount)
            self.merchant.append(m)
            self.status.append(PENDING if pending else POSTED)
            self.posted_at.append(0 if pending else ta + int(rng.random() * (at - ta)))
            self.void_at.append(0)
            self.updated.append(at)
            self.refresh.append(seq)
            if pending:
                still_pending.append(first_new + offset)
            else:
                self.posted_total += amount
            changed.append(first_new + offset)
        self.pending = still_pending
        if changed:
            self.change_seqs.append(seq)
            self.change_rows.append(changed)
        return changed

    def window(self, transacted_at: int | dict[str, int] | None) -> range:
        """Positions whose transacted_at matches the filter, found by bisecting the column."""
        column = self.transacted_at
        if transacted_at is None:
            return range(len(column))
        if isinstance(transacted_at, int):
            return range(bisect_left(column, transacted_at), bisect_right(column, transacted_at))
        lo, hi = 0, len(column)
        if "gt" in transacted_at:
            lo = max(lo, bisect_right(column, transacted_at["gt"]))
        if "gte" in transacted_at:
            lo = max(lo, bisect_left(column, transacted_at["gte"]))
        if "lt" in transacted_at:
            hi = min(hi, bisect_left(column, transacted_at["lt"]))
        if "lte" in transacted_at:
            hi = min(hi, bisect_right(column, transacted_at["lte"]))
        return range(lo, max(lo, hi))

    def drop(self, pos: int) -> None:
        """Stripe drops a pending transaction that never posts: it leaves every list."""
        if self.status[pos] != PENDING:
            raise ValueError("only a pending transaction can be dropped")
        self.pending.remove(pos)
        self.dropped.add(pos)

    def listed(self, keys: range | list[int]) -> range | list[int]:
        """`keys` without the dropped rows. Drops are rare (a control-API action), so only a
        window holding one pays for a pass over it; any other stays a range."""
        if not keys or not any(keys[0] <= p <= keys[-1] for p in self.dropped):
            return keys
        return [p for p in keys if p not in self.dropped]

    def changed_after(self, seq: int, window: range) -> list[int]:
        """Positions last changed by a refresh later than `seq`, ascending, inside `window`.

        Costs what the later refreshes changed, independent of the account's size."""
        rows: set[int] = set()
        for changed in self.change_rows[bisect_right(self.change_seqs, seq) :]:
            rows.update(changed)
        return sorted(p for p in rows if window.start <= p < window.stop)

    def render(
        self,
        pos: int,
        *,
        account_id: str,
        livemode: bool,
        refresh_id: Callable[[int], str],
        discovered_at: int,
    ) -> dict[str, Any]:
        posted_at = self.posted_at[pos]
        void_at = self.void_at[pos]
        return {
            "id": self.ids.make(pos),
            "object": "financial_connections.transaction",
            "account": account_id,
            "amount": self.amount[pos],
            "currency": "usd",
            "description": MERCHANTS[self.merchant[pos]][0],
            "livemode": livemode,
            "status": STATUS_NAMES[self.status[pos]],
            "status_transitions": {
                "posted_at": posted_at or None,
                "void_at": void_at or None,
            },
            "transacted_at": self.transacted_at[pos],
            "transaction_refresh": refresh_id(self.refresh[pos]),
            "updated": self.updated[pos] or discovered_at,
        }
