"""energy readings and idle baselines

Revision ID: 0002_energy
Revises: 0001_baseline
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_energy"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idle_baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=80), nullable=False),
        sa.Column("ray_node_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=48), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("flag", sa.Text(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_idle_baselines_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_idle_baselines_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idle_baselines")),
    )
    with op.batch_alter_table("idle_baselines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idle_baselines_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "energy_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=48), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=True),
        sa.Column("avg_power_w", sa.Float(), nullable=True),
        sa.Column("peak_power_w", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("flag", sa.Text(), nullable=False),
        sa.Column("idle_power_w", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_energy_readings_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_readings")),
    )
    with op.batch_alter_table("energy_readings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_energy_readings_trial_id"), ["trial_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("energy_readings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_energy_readings_trial_id"))

    op.drop_table("energy_readings")
    with op.batch_alter_table("idle_baselines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idle_baselines_campaign_id"))

    op.drop_table("idle_baselines")
