"""The `accounts` table: a mirror of each FC account plus fcsync's sync state for it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_due", "tracked", "next_due_at"),
        Index("ix_accounts_refresh_status", "refresh_status"),
        Index("ix_accounts_reconcile", "tracked", "next_reconcile_at"),
    )

    # Mirror of the Stripe object (Stripe's names; Stripe timestamps stay Unix seconds).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The Stripe account context the FC account lives in: a Connect connected account
    # (`acct_...`, sent as `Stripe-Account`), or NULL for the platform itself. Every request to
    # Stripe about the account carries it; `id` alone stays the key (Stripe ids are unique).
    stripe_account: Mapped[str | None] = mapped_column(String(64))
    # The name of the configured Stripe key (FCSYNC_STRIPE_ACCOUNTS) the account is reached
    # with; NULL = `default` (STRIPE_API_KEY), so a single-key setup never names one.
    stripe_key: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(default=False)
    institution_name: Mapped[str] = mapped_column(String(255), default="")
    display_name: Mapped[str | None] = mapped_column(String(255))
    last4: Mapped[str | None] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(32), default="other")
    subcategory: Mapped[str] = mapped_column(String(32), default="other")
    status: Mapped[str] = mapped_column(String(32), default="active")
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    subscriptions: Mapped[list[str]] = mapped_column(JSON, default=list)
    customer: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[int | None] = mapped_column(BigInteger)
    # Stripe's `status_details.active`: what it expects of the active account (its words, new
    # values kept as they come); NULL when nothing is expected.
    status_details_action: Mapped[str | None] = mapped_column(String(64))
    status_details_cause: Mapped[str | None] = mapped_column(String(64))
    expected_deactivation_date: Mapped[int | None] = mapped_column(BigInteger)

    # The latest `transaction_refresh` we have seen on the account.
    refresh_id: Mapped[str | None] = mapped_column(String(64))
    refresh_status: Mapped[str | None] = mapped_column(String(16))
    refresh_last_attempted_at: Mapped[int | None] = mapped_column(BigInteger)
    refresh_next_available_at: Mapped[int | None] = mapped_column(BigInteger)

    # The cursor: the last refresh whose transactions are fully stored, and when it ran.
    cursor_refresh_id: Mapped[str | None] = mapped_column(String(64))
    cursor_refresh_at: Mapped[int | None] = mapped_column(BigInteger)
    last_synced_at: Mapped[datetime | None]

    # Scheduling.
    tracked: Mapped[bool] = mapped_column(default=True)
    # Whether `transactions` is among the features the account is tracked with (the others are
    # rows of account_features): without it, no transaction refresh, sync, backfill,
    # reconciliation or subscription for the account.
    transactions_tracked: Mapped[bool] = mapped_column(default=True, server_default=true())
    refresh_interval_s: Mapped[int] = mapped_column(default=86_400)
    next_due_at: Mapped[datetime | None]

    # A sync in progress (bounded pages per run), its lease, and a merged follow-up request.
    sync_lease_owner: Mapped[str | None] = mapped_column(String(128))
    sync_lease_expires_at: Mapped[datetime | None]
    sync_target_refresh_id: Mapped[str | None] = mapped_column(String(64))
    sync_target_refresh_at: Mapped[int | None] = mapped_column(BigInteger)
    sync_after_refresh_id: Mapped[str | None] = mapped_column(String(64))
    sync_starting_after: Mapped[str | None] = mapped_column(String(64))
    sync_inserted: Mapped[int] = mapped_column(default=0)
    sync_updated: Mapped[int] = mapped_column(default=0)
    sync_requested: Mapped[bool] = mapped_column(default=False)
    sync_requested_full: Mapped[bool] = mapped_column(default=False)
    # A run that failed permanently is swept again only from then on (it would fail the same).
    sync_retry_at: Mapped[datetime | None]

    # When Stripe answered 404 for the account (it no longer knows it): beat leaves it alone
    # until an operator tracks it again or a live read of it succeeds.
    gone_at: Mapped[datetime | None]

    # Reconciliation (worker/reconcile.py): when the sweep reconciles the account next (its own
    # slot in the period), and what the last reconciliation repaired (NULL: never reconciled).
    next_reconcile_at: Mapped[datetime | None]
    reconciled_at: Mapped[datetime | None]
    reconcile_inserted: Mapped[int | None]
    reconcile_updated: Mapped[int | None]
    reconcile_vanished: Mapped[int | None]

    last_error_code: Mapped[str | None] = mapped_column(String(128))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]

    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def subscribed(self) -> bool:
        return "transactions" in (self.subscriptions or [])

    @property
    def has_transactions_permission(self) -> bool:
        return "transactions" in (self.permissions or [])
