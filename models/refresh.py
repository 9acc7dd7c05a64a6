"""The `refreshes` table: one row per transaction refresh fcsync requested or observed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class Refresh(Base):
    __tablename__ = "refreshes"
    __table_args__ = (Index("ix_refreshes_account_requested", "account_id", "requested_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    # The account's Stripe account context (NULL = the platform), see Account.stripe_account.
    stripe_account: Mapped[str | None] = mapped_column(String(64))
    # The account's Stripe key name (NULL = `default`), see Account.stripe_key.
    stripe_key: Mapped[str | None] = mapped_column(String(64))
    # manual | beat | webhook | task | subscription
    source: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    last_attempted_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[datetime | None]
    synced_at: Mapped[datetime | None]
    inserted: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
