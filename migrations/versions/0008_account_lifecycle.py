"""Stripe's status_details.active on accounts: the action, cause and expected deactivation date
Stripe reports for an active account it expects to become inactive (NULL: nothing expected).

Revision ID: 0008_account_lifecycle
Revises: 0007_account_features
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_account_lifecycle"
down_revision: str | None = "0007_account_features"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: stored accounts read as "nothing expected" until the next time
    # fcsync reads them from Stripe, without a rewrite.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_details_action", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("status_details_cause", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expected_deactivation_date", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("expected_deactivation_date")
        batch_op.drop_column("status_details_cause")
        batch_op.drop_column("status_details_action")
