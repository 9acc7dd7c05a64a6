"""Waiting in the playground: polls with a deadline, and whether an account has caught up with
Stripe (a phase of a scenario is over when every account has)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from emulator import EmulatorControl
from models import Account
from worker.playground.truth import row_problems

T = TypeVar("T")


class StackFailure(AssertionError):
    """The stack did not reach the expected state; the message says why."""


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll until `predicate()` is truthy and return it; StackFailure naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Phase:
    """The state when every account had caught up after one step of the scenario."""

    name: str
    stats: dict[str, Any]
    # Per account: the truth as {transaction id: updated}, and Stripe's latest refresh.
    truth: dict[str, dict[str, int]]
    refresh: dict[str, dict[str, Any] | None]
    elapsed_s: float


def lag(
    session: Session, control: EmulatorControl, account_id: str, previous: str | None = None
) -> str | None:
    """Why the account is not yet in sync with Stripe, or None when it is. `previous` is the
    refresh it was in sync with before: a day is done only after a newer one."""
    row = session.get(Account, account_id)
    if row is None:
        return "not tracked yet"
    stripe_account = control.account(account_id)
    if stripe_account["status"] != "active":
        # Refreshing an inactive account is a permanent error: recorded, not retried.
        return None if row.last_error_code else "error not recorded yet"
    theirs = stripe_account["transaction_refresh"]
    if theirs is None or theirs["status"] == "pending":
        return "refresh pending at Stripe"
    if theirs["id"] == previous:
        return (
            f"no refresh since {previous} (Stripe: {theirs['status']}, subscriptions "
            f"{stripe_account['subscriptions']}, next allowed "
            f"{theirs['next_refresh_available_at']}, now {control.now()}; fcsync: "
            f"{row.refresh_status} {row.refresh_id}, subscriptions {row.subscriptions}, "
            f"next_due_at {row.next_due_at}, error {row.last_error_code})"
        )
    if theirs["status"] == "succeeded" and row.cursor_refresh_id != theirs["id"]:
        return f"{theirs['id']} not synced yet (cursor {row.cursor_refresh_id})"
    if theirs["status"] == "failed" and (
        row.refresh_id != theirs["id"] or row.refresh_status != "failed"
    ):
        return f"failed refresh {theirs['id']} not observed yet"
    if row.sync_target_refresh_id is not None:
        return "sync in progress"
    if row_problems(session, control, account_id, limit=1):
        return "rows differ"
    return None
