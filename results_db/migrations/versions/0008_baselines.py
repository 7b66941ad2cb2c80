"""pinned baselines for `harness check`

Revision ID: 0008_baselines
Revises: 0007_heartbeat
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_baselines"
down_revision = "0007_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_baselines")),
        sa.UniqueConstraint("name", name=op.f("uq_baselines_name")),
    )
    op.create_table(
        "baseline_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("baseline_id", sa.Integer(), nullable=False),
        sa.Column("hardware_class", sa.String(length=64), nullable=False),
        sa.Column("workload", sa.String(length=120), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("workload_version", sa.String(length=40), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("centre", sa.Float(), nullable=False),
        sa.Column("spread", sa.Float(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["baselines.id"],
            name=op.f("fk_baseline_entries_baseline_id_baselines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_baseline_entries")),
        sa.UniqueConstraint(
            "baseline_id",
            "hardware_class",
            "workload",
            "params_hash",
            "metric",
            "workload_version",
            name=op.f("uq_baseline_entries_baseline_id"),
        ),
    )
    with op.batch_alter_table("baseline_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_baseline_entries_baseline_id"), ["baseline_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("baseline_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_baseline_entries_baseline_id"))
    op.drop_table("baseline_entries")
    op.drop_table("baselines")
