"""The balance and ownership features of an account: the refresh state fcsync keeps per tracked
feature (`account_features`), the balance history (`balances`) and the owners of the latest
ownership (`account_owners`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class AccountFeature(Base):
    """One optional feature (`balances` or `ownership`) tracked for an account; `transactions`
    lives on the account row itself. Mirrors Stripe's `balance_refresh` / `ownership_refresh`."""

    __tablename__ = "account_features"
    __table_args__ = (Index("ix_account_features_due", "next_due_at"),)

    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(16), primary_key=True)
    refresh_status: Mapped[str | None] = mapped_column(String(16))
    refresh_last_attempted_at: Mapped[int | None] = mapped_column(BigInteger)
    refresh_next_available_at: Mapped[int | None] = mapped_column(BigInteger)
    # The last refresh whose data is stored (Unix seconds it was attempted): the freshness.
    stored_refresh_at: Mapped[int | None] = mapped_column(BigInteger)
    # Ownership only: the `fcaowns_...` whose owners `account_owners` holds.
    ownership_id: Mapped[str | None] = mapped_column(String(64))
    # Refreshes of the feature that failed in a row (0 after a success): the retry backoff's
    # exponent (worker/refresh_backoff.py).
    refresh_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    next_due_at: Mapped[datetime | None]
    last_error_code: Mapped[str | None] = mapped_column(String(128))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]


class Balance(Base):
    """One refreshed balance, in Stripe's shape: amounts are currency-keyed maps of integer
    minor units (positive = owed to the holder)."""

    __tablename__ = "balances"
    __table_args__ = (UniqueConstraint("account_id", "as_of"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    as_of: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(16))  # open enum: cash | credit
    current: Mapped[dict[str, Any]] = mapped_column(JSON)
    cash_available: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    credit_used: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The first currency of `current` (lowercase ISO code), for filtering without JSON.
    currency: Mapped[str | None] = mapped_column(String(8))


class AccountOwner(Base):
    """An owner of the account's latest ownership (`fcaown_...`), as Stripe lists it."""

    __tablename__ = "account_owners"
    __table_args__ = (Index("ix_account_owners_account", "account_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    ownership: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    raw_address: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[int | None] = mapped_column(BigInteger)
