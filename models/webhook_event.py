"""The `webhook_events` table: the inbox of verified Stripe events, keyed by event id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_unprocessed", "processed_at", "received_at"),
        # Each context's newest event: where the events sweep starts reading.
        Index("ix_webhook_events_context_created", "stripe_account", "created"),
        # Each key's contexts' newest event (the events sweep runs per key and context).
        Index("ix_webhook_events_key_context_created", "stripe_key", "stripe_account", "created"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The Stripe account context the event came from: a Connect event's `account` (acct_...),
    # NULL for the platform's own.
    stripe_account: Mapped[str | None] = mapped_column(String(64))
    # The configured Stripe key whose webhook secret verified it (or whose GET /v1/events
    # listed it); NULL = `default`.
    stripe_key: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(default=False)
    created: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    # processed | ignored | failed
    outcome: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # Sweeps that re-enqueued it, and when the next one may: a row that keeps failing backs
    # off and never crowds a lost event out of a sweep's batch.
    sweeps: Mapped[int] = mapped_column(default=0, server_default="0")
    next_sweep_at: Mapped[datetime | None]
