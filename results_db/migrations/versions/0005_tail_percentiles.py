"""p90 and p99 of every metric (serving latency tails)

Revision ID: 0005_tail_percentiles
Revises: 0004_ranks
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_tail_percentiles"
down_revision = "0004_ranks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before this revision keep NULL tails: their raw samples are still there.
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("p90", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("p99", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_column("p99")
        batch_op.drop_column("p90")
