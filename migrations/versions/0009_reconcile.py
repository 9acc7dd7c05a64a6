"""Reconciliation: when each account is next reconciled and what its last reconciliation
repaired (accounts), and when Stripe stopped listing a pending transaction (transactions).

Revision ID: 0009_reconcile
Revises: 0008_account_lifecycle
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0009_reconcile"
down_revision: str | None = "0008_account_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # All nullable, no default: existing accounts read as never reconciled (the sweep gives each
    # its slot in the week), existing rows as never vanished, without a rewrite.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_reconcile_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reconciled_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("reconcile_inserted", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reconcile_updated", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reconcile_vanished", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_accounts_reconcile", ["tracked", "next_reconcile_at"], unique=False
        )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vanished_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_column("vanished_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_accounts_reconcile")
        batch_op.drop_column("reconcile_vanished")
        batch_op.drop_column("reconcile_updated")
        batch_op.drop_column("reconcile_inserted")
        batch_op.drop_column("reconciled_at")
        batch_op.drop_column("next_reconcile_at")
