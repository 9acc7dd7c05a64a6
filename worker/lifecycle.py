"""An account's lifecycle as people must act on it: Stripe expecting it to need a relink by a
date, its deactivation, reactivation (a relink) and disconnection, its account numbers changing.
Each change fcsync sees becomes one notice (a NotifyAccount intent), sent once after the unit of
work that saw it commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from models import Account
from worker.intents import Intent, NotifyAccount
from worker.records import FCEvent

RELINK_REQUIRED = "relink_required"
# The causes Stripe documents for status_details.active (it may add others).
CAUSES = ("access_expired", "institution_requirement", "unspecified")
# What a change of Stripe's status is called in a notice; other (new) statuses have no name.
STATUS_CHANGES = {
    "inactive": "deactivated",
    "active": "reactivated",
    "disconnected": "disconnected",
}
# Observing an account happens in three services and nine places; what it finds is a fact of
# the mirror itself, so it rides on the unit of work (as metrics' committed facts do) and
# Runtime.run sends it with the work's own intents, after the commit.
_NOTICES = "fcsync_lifecycle_notices"


@dataclass(frozen=True)
class Seen:
    """The lifecycle facts of a stored account, before a fresh view of it is folded in."""

    status: str
    action: str | None
    cause: str | None
    expected_deactivation_date: int | None


def seen(account: Account | None) -> Seen | None:
    """The account's stored lifecycle facts; None for one Stripe never confirmed."""
    if account is None or account.status == "unknown":
        return None
    return Seen(
        account.status,
        account.status_details_action,
        account.status_details_cause,
        account.expected_deactivation_date,
    )


def needs_relink(account: Account) -> bool:
    """Active, and Stripe asks for a relink before it deactivates the account."""
    return account.status == "active" and account.status_details_action == RELINK_REQUIRED


def note_changes(session: Session, account: Account, before: Seen | None) -> None:
    """Notices for what changed since `before`: a status change (never for an account seen for
    the first time), and a relink asked for (anew, or with another cause or date)."""
    after = seen(account)
    assert after is not None
    kinds: list[str] = []
    if before is not None and before.status != after.status:
        change = STATUS_CHANGES.get(after.status)
        if change is not None:
            kinds.append(change)
    if after.action == RELINK_REQUIRED and (
        before is None
        or (before.action, before.cause, before.expected_deactivation_date)
        != (after.action, after.cause, after.expected_deactivation_date)
    ):
        kinds.append(RELINK_REQUIRED)
    for kind in kinds:
        _add(session, _notice(account, kind))


def note_event(session: Session, account: Account, event: FCEvent) -> None:
    """An account numbers event (`account_numbers_updated`, `upcoming_account_number_expiry`):
    nothing for a transactions sync to do, everything for whoever uses the account's numbers."""
    kind = event.type.rsplit(".", 1)[-1]
    expiry = event.account.account_number_expiry if event.account is not None else None
    _add(session, _notice(account, kind, expected_expiry_date=expiry, event_id=event.id))


def pending(session: Session) -> tuple[Intent, ...]:
    """The notices the unit of work found (for Runtime.run to send after its commit)."""
    return tuple(session.info.pop(_NOTICES, ()))


def _notice(
    account: Account,
    kind: str,
    *,
    expected_expiry_date: int | None = None,
    event_id: str | None = None,
) -> NotifyAccount:
    return NotifyAccount(
        account_id=account.id,
        kind=kind,
        status=account.status,
        action=account.status_details_action,
        cause=account.status_details_cause,
        expected_deactivation_date=account.expected_deactivation_date,
        expected_expiry_date=expected_expiry_date,
        event_id=event_id,
        stripe_account=account.stripe_account,
    )


def _add(session: Session, notice: NotifyAccount) -> None:
    session.info.setdefault(_NOTICES, []).append(notice)
