"""stripe_account on webhook_events: the Stripe account context an event came from (its
`account`, set on a Connect event; NULL for the platform's own), with an index to find each
context's newest event (where the events sweep starts reading `GET /v1/events`).

Revision ID: 0005_webhook_event_context
Revises: 0004_stripe_account_context
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_webhook_event_context"
down_revision: str | None = "0004_stripe_account_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: events stored before it read as the platform's, without a rewrite.
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_account", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_webhook_events_context_created", ["stripe_account", "created"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_context_created")
        batch_op.drop_column("stripe_account")
