"""baseline

Revision ID: 0001_baseline
Revises: (none)
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("playbook_path", sa.Text(), nullable=False),
        sa.Column("playbook_text", sa.Text(), nullable=False),
        sa.Column("playbook_hash", sa.String(length=64), nullable=False),
        sa.Column("effective", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("harness_version", sa.String(length=40), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("driver_host", sa.String(length=200), nullable=False),
        sa.Column("cluster", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_campaigns_playbook_hash"), ["playbook_hash"], unique=False
        )

    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("hardware_class", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("cpu_model", sa.String(length=255), nullable=False),
        sa.Column("cpu_cores", sa.Integer(), nullable=True),
        sa.Column("cpu_threads", sa.Integer(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("gpu_model", sa.String(length=255), nullable=False),
        sa.Column("os", sa.String(length=255), nullable=False),
        sa.Column("python", sa.String(length=40), nullable=False),
        sa.Column("torch", sa.String(length=80), nullable=False),
        sa.Column("cuda", sa.String(length=40), nullable=False),
        sa.Column("driver", sa.String(length=40), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_nodes_fingerprint")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nodes_hardware_class"), ["hardware_class"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_nodes_hostname"), ["hostname"], unique=False)

    op.create_table(
        "campaign_nodes",
        sa.Column("campaign_id", sa.String(length=80), nullable=False),
        sa.Column("ray_node_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_nodes_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_campaign_nodes_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("campaign_id", "ray_node_id", name=op.f("pk_campaign_nodes")),
    )
    with op.batch_alter_table("campaign_nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaign_nodes_node_id"), ["node_id"], unique=False)

    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=80), nullable=False),
        sa.Column("trial_key", sa.String(length=64), nullable=False),
        sa.Column("benchmark", sa.String(length=200), nullable=False),
        sa.Column("workload", sa.String(length=120), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("ray_node_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_phase", sa.String(length=32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("warmup_iterations", sa.Integer(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("measure_seconds", sa.Float(), nullable=True),
        sa.Column("timer", sa.String(length=32), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=True),
        sa.Column("window_end", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_trials_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_trials_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint(
            "campaign_id", "trial_key", "attempt", name=op.f("uq_trials_campaign_id")
        ),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trials_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trials_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trials_params_hash"), ["params_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_trials_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_trials_trial_key"), ["trial_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_trials_workload"), ["workload"], unique=False)

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("median", sa.Float(), nullable=True),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("std", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("p5", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("cv", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("ci_level", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_metrics_trial_id_trials"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("trial_id", "name", name=op.f("uq_metrics_trial_id")),
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metrics_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_metrics_trial_id"), ["trial_id"], unique=False)

    op.create_table(
        "source_statuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_source_statuses_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_statuses")),
    )
    with op.batch_alter_table("source_statuses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_source_statuses_trial_id"), ["trial_id"], unique=False)

    op.create_table(
        "telemetry_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_telemetry_samples_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_samples")),
    )
    with op.batch_alter_table("telemetry_samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_samples_trial_metric", ["trial_id", "metric"], unique=False
        )

    op.create_table(
        "telemetry_summaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("peak", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_telemetry_summaries_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_summaries")),
    )
    with op.batch_alter_table("telemetry_summaries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_telemetry_summaries_trial_id"), ["trial_id"], unique=False
        )

    op.create_table(
        "samples",
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["metric_id"],
            ["metrics.id"],
            name=op.f("fk_samples_metric_id_metrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("metric_id", "idx", name=op.f("pk_samples")),
    )


def downgrade() -> None:
    op.drop_table("samples")
    with op.batch_alter_table("telemetry_summaries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_telemetry_summaries_trial_id"))

    op.drop_table("telemetry_summaries")
    with op.batch_alter_table("telemetry_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_samples_trial_metric")

    op.drop_table("telemetry_samples")
    with op.batch_alter_table("source_statuses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_statuses_trial_id"))

    op.drop_table("source_statuses")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metrics_trial_id"))
        batch_op.drop_index(batch_op.f("ix_metrics_name"))

    op.drop_table("metrics")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trials_workload"))
        batch_op.drop_index(batch_op.f("ix_trials_trial_key"))
        batch_op.drop_index(batch_op.f("ix_trials_status"))
        batch_op.drop_index(batch_op.f("ix_trials_params_hash"))
        batch_op.drop_index(batch_op.f("ix_trials_node_id"))
        batch_op.drop_index(batch_op.f("ix_trials_campaign_id"))

    op.drop_table("trials")
    with op.batch_alter_table("campaign_nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_nodes_node_id"))

    op.drop_table("campaign_nodes")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_hostname"))
        batch_op.drop_index(batch_op.f("ix_nodes_hardware_class"))

    op.drop_table("nodes")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_playbook_hash"))
        batch_op.drop_index(batch_op.f("ix_campaigns_name"))

    op.drop_table("campaigns")
