"""The `transactions` table: Stripe FC transactions with Stripe's names and units."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        Index("ix_transactions_account_transacted_at", "account_id", "transacted_at"),
        Index("ix_transactions_account_status", "account_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    # The account's Stripe account context (NULL = the platform), see Account.stripe_account.
    stripe_account: Mapped[str | None] = mapped_column(String(64))
    # The account's Stripe key name (NULL = `default`), see Account.stripe_key.
    stripe_key: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    posted_at: Mapped[int | None] = mapped_column(BigInteger)
    void_at: Mapped[int | None] = mapped_column(BigInteger)
    transacted_at: Mapped[int] = mapped_column(BigInteger)
    transaction_refresh: Mapped[str] = mapped_column(String(64))
    updated: Mapped[int] = mapped_column(BigInteger)
    livemode: Mapped[bool] = mapped_column(default=False)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    # A pending row Stripe stopped listing (it drops pending transactions that never post), as a
    # reconciliation found it; kept, never deleted. Cleared if Stripe lists the row again.
    vanished_at: Mapped[datetime | None]
