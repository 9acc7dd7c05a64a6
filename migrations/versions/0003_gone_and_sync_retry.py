"""accounts.gone_at (Stripe stopped knowing the account) and accounts.sync_retry_at (a sync
that failed permanently is swept again only then)

Revision ID: 0003_gone_and_sync_retry
Revises: 0002_webhook_event_sweeps
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0003_gone_and_sync_retry"
down_revision: str | None = "0002_webhook_event_sweeps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sync_retry_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("gone_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("gone_at")
        batch_op.drop_column("sync_retry_at")
