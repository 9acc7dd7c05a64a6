"""Balances and ownership: the refresh state of each optional feature an account is tracked
with (`account_features`), the balance history (`balances`, one row per refreshed balance)
and the owners of each account's latest ownership (`account_owners`). New tables only: existing
accounts keep tracking transactions alone.

Revision ID: 0007_account_features
Revises: 0006_stripe_key_names
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0007_account_features"
down_revision: str | None = "0006_stripe_key_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=f"fk_{table}_account_id_accounts",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "account_features",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("feature", sa.String(length=16), nullable=False),
        sa.Column("refresh_status", sa.String(length=16), nullable=True),
        sa.Column("refresh_last_attempted_at", sa.BigInteger(), nullable=True),
        sa.Column("refresh_next_available_at", sa.BigInteger(), nullable=True),
        sa.Column("stored_refresh_at", sa.BigInteger(), nullable=True),
        sa.Column("ownership_id", sa.String(length=64), nullable=True),
        sa.Column("next_due_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.String(length=128), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("last_error_at", models.base.UTCDateTime(timezone=True), nullable=True),
        _account_fk("account_features"),
        sa.PrimaryKeyConstraint("account_id", "feature", name="pk_account_features"),
    )
    op.create_index("ix_account_features_due", "account_features", ["next_due_at"])
    op.create_table(
        "balances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("current", sa.JSON(), nullable=False),
        sa.Column("cash_available", sa.JSON(), nullable=True),
        sa.Column("credit_used", sa.JSON(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        _account_fk("balances"),
        sa.PrimaryKeyConstraint("id", name="pk_balances"),
        sa.UniqueConstraint("account_id", "as_of", name="uq_balances_account_id"),
    )
    op.create_table(
        "account_owners",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("ownership", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("raw_address", sa.Text(), nullable=True),
        sa.Column("refreshed_at", sa.BigInteger(), nullable=True),
        _account_fk("account_owners"),
        sa.PrimaryKeyConstraint("id", name="pk_account_owners"),
    )
    op.create_index("ix_account_owners_account", "account_owners", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_account_owners_account", table_name="account_owners")
    op.drop_table("account_owners")
    op.drop_table("balances")
    op.drop_index("ix_account_features_due", table_name="account_features")
    op.drop_table("account_features")
