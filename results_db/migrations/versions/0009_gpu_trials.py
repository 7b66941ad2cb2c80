"""per-GPU trials (`each: gpu`, `each: gpu_pair`): the GPU's position on its node, a pair's
destination, and the measured GPU's UUID

Revision ID: 0009_gpu_trials
Revises: 0008_baselines
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_gpu_trials"
down_revision = "0008_baselines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("gpu_peer", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("gpu_uuid", sa.String(length=96), nullable=True))
        batch_op.create_index("ix_trials_gpu_uuid", ["gpu_uuid"])


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_gpu_uuid")
        batch_op.drop_column("gpu_uuid")
        batch_op.drop_column("gpu_peer")
        batch_op.drop_column("gpu_index")
