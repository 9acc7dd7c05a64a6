"""stripe_key on accounts, refreshes, transactions and webhook_events: the name of the
configured Stripe key (FCSYNC_STRIPE_ACCOUNTS) an FC account is reached with, or whose webhook
secret verified an event. NULL = `default` (STRIPE_API_KEY): existing rows stay the single key's.

Revision ID: 0006_stripe_key_names
Revises: 0005_webhook_event_context
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_stripe_key_names"
down_revision: str | None = "0005_webhook_event_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("accounts", "refreshes", "transactions", "webhook_events")


def upgrade() -> None:
    # Nullable with no default: every existing row reads NULL, the default key, without a
    # rewrite of the (possibly large) transactions table.
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("stripe_key", sa.String(length=64), nullable=True))
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_events_key_context_created",
            ["stripe_key", "stripe_account", "created"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_key_context_created")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("stripe_key")
