"""measured ceilings

Revision ID: 0003_ceilings
Revises: 0002_energy
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ceilings"
down_revision = "0002_energy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ceilings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=80), nullable=False),
        sa.Column("hardware_class", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_ceilings_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_ceilings_trial_id_trials")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ceilings")),
        sa.UniqueConstraint(
            "campaign_id", "hardware_class", "key", name=op.f("uq_ceilings_campaign_id")
        ),
    )
    with op.batch_alter_table("ceilings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ceilings_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ceilings_hardware_class"), ["hardware_class"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ceilings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ceilings_hardware_class"))
        batch_op.drop_index(batch_op.f("ix_ceilings_campaign_id"))

    op.drop_table("ceilings")
