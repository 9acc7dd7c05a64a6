"""stripe_account on accounts, refreshes and transactions: the Stripe account context (a Connect
connected account `acct_...`, or NULL for the platform). Existing rows stay the platform's.

Revision ID: 0004_stripe_account_context
Revises: 0003_gone_and_sync_retry
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_stripe_account_context"
down_revision: str | None = "0003_gone_and_sync_retry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("accounts", "refreshes", "transactions")


def upgrade() -> None:
    # Nullable with no default: every existing row reads NULL, the platform, without a rewrite
    # of the (possibly large) transactions table.
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("stripe_account", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("stripe_account")
