"""webhook_events: sweep count and next sweep time, so rows that keep failing back off

Revision ID: 0002_webhook_event_sweeps
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0002_webhook_event_sweeps"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sweeps", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("next_sweep_at", models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_column("next_sweep_at")
        batch_op.drop_column("sweeps")
