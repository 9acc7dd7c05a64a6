"""What a chaos run must never break, measured against the emulator's ground truth: lost and
duplicated transactions, refreshes asked too early, and cursors that ran ahead of the stored rows
or moved backwards (watched while the faults happen, not only at the end)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models import Account, Transaction
from worker.playground import truth
from worker.playground.stack import Stack
from worker.reports import stored_transactions

# How often the watch reads every account's cursor while a scenario runs.
WATCH_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Snapshot:
    """An account's cursor and the rows stored with it, read in one transaction."""

    account_id: str
    cursor: str
    rows: Mapping[str, int]  # transaction id -> stored `updated`


@dataclass
class CursorWatch:
    """Samples every account's cursor on a thread; a snapshot of the rows is kept each time the
    cursor changes, to check later (against the final truth) that it never ran ahead of them."""

    engine: Engine
    accounts: Sequence[str]
    snapshots: list[Snapshot] = field(default_factory=list)
    # Set when sampling broke: the run cannot claim its cursors were watched.
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CursorWatch:
        self._thread = threading.Thread(target=self._run, name="cursor-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()

    def _run(self) -> None:
        try:
            while not self._stop.wait(WATCH_INTERVAL_S):
                self.sample()
        except Exception as exc:
            self.error = repr(exc)

    def sample(self) -> None:
        last = {s.account_id: s.cursor for s in self.snapshots}
        try:
            # One snapshot for the cursor and the rows: on PostgreSQL, READ COMMITTED would let a
            # commit land between the two reads and show a cursor ahead that never was.
            with (
                self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
                Session(bind=conn) as session,
            ):
                cursors = dict(
                    session.execute(
                        select(Account.id, Account.cursor_refresh_id).where(
                            Account.id.in_(self.accounts), Account.cursor_refresh_id.is_not(None)
                        )
                    ).all()
                )
                for account_id, cursor in cursors.items():
                    if cursor is None or last.get(account_id) == cursor:
                        continue
                    rows = dict(
                        session.execute(
                            select(Transaction.id, Transaction.updated).where(
                                Transaction.account_id == account_id
                            )
                        ).all()
                    )
                    self.snapshots.append(Snapshot(account_id, cursor, rows))
        except DBAPIError:
            # The infrastructure scenarios kill database connections on purpose; the next tick
            # reads again.
            return


@dataclass(frozen=True)
class Verdict:
    """The invariants of one run; `problems` names each broken one (first few of each kind)."""

    accounts: int
    transactions: int
    lost: int
    duplicated: int
    violations: int
    problems: list[str]


def cursor_order_problems(
    snapshots: Sequence[Snapshot],
    refresh_order: Mapping[str, Sequence[str]],
    truth_rows: Mapping[str, Sequence[dict[str, Any]]],
) -> list[str]:
    """A cursor moved backwards (in Stripe's order of the account's refreshes), or was stored
    while a row that its refresh (or an earlier one) last changed was missing or older."""
    problems: list[str] = []
    position: dict[str, int] = {}
    for snap in snapshots:
        order = list(refresh_order[snap.account_id])
        if snap.cursor not in order:
            problems.append(f"{snap.account_id}: cursor {snap.cursor} is no refresh of Stripe's")
            continue
        at = order.index(snap.cursor)
        if at < position.get(snap.account_id, -1):
            problems.append(f"{snap.account_id}: cursor moved back to {snap.cursor}")
        position[snap.account_id] = at
        covered = set(order[: at + 1])
        behind = [
            t["id"]
            for t in truth_rows[snap.account_id]
            if t["transaction_refresh"] in covered and snap.rows.get(t["id"]) != t["updated"]
        ]
        if behind:
            problems.append(
                f"{snap.account_id}: cursor {snap.cursor} stored ahead of {len(behind)} rows "
                f"(e.g. {behind[0]})"
            )
    return problems


def judge(stack: Stack, watch: CursorWatch) -> Verdict:
    """Compare the stack's database with the emulator's truth after a run."""
    refreshes = {a: stack.emulator_refreshes(a) for a in stack.accounts}
    truth_rows = {a: stack.ctl.transactions(a) for a in stack.accounts}
    lost = duplicated = 0
    problems: list[str] = []
    with stack.session() as session:
        for account_id in stack.accounts:
            diff = truth.compare_transactions(
                stored_transactions(session, account_id), truth_rows[account_id]
            )
            lost += len(diff.missing) + len(diff.differing)
            duplicated += len(diff.unexpected)
            problems += [f"{account_id}: {line}" for line in diff.lines(limit=3)]
        stack.sample_cursors(session)
        cursor = truth.problems_of_cursors(
            session,
            stack.accounts,
            refreshes_at_stripe=refreshes,
            cursors_seen=stack.cursors_seen,
        )
    ordering = cursor_order_problems(
        watch.snapshots, {a: list(r) for a, r in refreshes.items()}, truth_rows
    )
    gating = int(stack.ctl.stats()["gating_violations"])
    if gating:
        problems.append(f"{gating} refreshes were requested too early")
    if watch.error is not None:
        ordering.append(f"the cursor watch failed: {watch.error}")
    problems += cursor + ordering
    return Verdict(
        accounts=len(stack.accounts),
        transactions=sum(len(rows) for rows in truth_rows.values()),
        lost=lost,
        duplicated=duplicated,
        violations=gating + len(cursor) + len(ordering),
        problems=problems,
    )
