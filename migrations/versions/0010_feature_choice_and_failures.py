"""Features chosen per account: whether an account keeps its transactions fresh (accounts), and
how many refreshes of a balances / ownership feature failed in a row (account_features), which
the failed-refresh backoff grows with.

Revision ID: 0010_feature_choice_and_failures
Revises: 0009_reconcile
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_feature_choice_and_failures"
down_revision: str | None = "0009_reconcile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults: every account tracked so far keeps its transactions fresh, and no
    # feature refresh has failed in a row yet, without a rewrite of existing rows.
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "transactions_tracked", sa.Boolean(), server_default=sa.true(), nullable=False
            )
        )
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("refresh_failures", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        batch_op.drop_column("refresh_failures")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("transactions_tracked")
