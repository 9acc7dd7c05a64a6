"""The rows fcsync stored, read back for assertions."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models import Account


def account_row(session: Session, account_id: str) -> Account:
    """The stored account; the test fails here if fcsync never stored it."""
    account = session.get(Account, account_id)
    assert account is not None, f"no stored account {account_id}"
    return account
