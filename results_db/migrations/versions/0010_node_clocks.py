"""each node's clock offset to the driver at a campaign's start and end

Revision ID: 0010_node_clocks
Revises: 0009_gpu_trials
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_node_clocks"
down_revision = "0009_gpu_trials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clock", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_nodes", schema=None) as batch_op:
        batch_op.drop_column("clock")
