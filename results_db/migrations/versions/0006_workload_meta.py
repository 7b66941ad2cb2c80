"""What each trial's workload declared: version, primary metric, sweep params, defaults;
and per metric the ceiling (peak key) it is measured against

Revision ID: 0006_workload_meta
Revises: 0005_tail_percentiles
Create Date: 2026-11-22
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006_workload_meta"
down_revision = "0005_tail_percentiles"
branch_labels = None
depends_on = None

# The rules readers inferred before this revision, frozen here to backfill stored rows (a
# migration never imports live workload code). Defaults were not stored then: NULL, and
# displays then show every param of those rows.
PRIMARY = {
    "memory.stream": "bandwidth",
    "memory.copy": "bandwidth",
    "kernel.gemm": "throughput",
    "kernel.attention": "throughput",
    "kernel.conv2d": "throughput",
    "kernel.norm": "bandwidth",
    "network.p2p": "latency",
    "inference.decode": "tpot",
    "inference.serving": "output_throughput",
    **{
        f"collective.{op}": "busbw"
        for op in (
            "all_reduce",
            "all_gather",
            "reduce_scatter",
            "all_to_all",
            "broadcast",
            "reduce",
            "send_recv",
        )
    },
}
SIZE_PARAMS = ("size_mib", "size_bytes", "seq_len", "kv_len", "m", "rows")
MATMUL_BOUND = ("kernel.gemm", "kernel.attention", "kernel.conv2d", "inference.decode")
BANDWIDTH_BOUND = ("memory.stream", "kernel.norm", "inference.decode")


def _peak_key(workload: str, metric: str, params: dict) -> str | None:
    device = "cuda" if str(params.get("device", "cpu")).startswith("cuda") else "cpu"
    if metric == "bandwidth":
        if workload in BANDWIDTH_BOUND:
            return f"bandwidth:{device}"
        if (
            workload == "memory.copy"
            and params.get("direction") == "d2d"
            and params.get("count") == "read_write"
        ):
            return "bandwidth:cuda"
        return None
    if metric == "throughput" and workload in MATMUL_BOUND and params.get("dtype"):
        return f"throughput:{device}:{params['dtype']}"
    return None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("workload_version", sa.String(40), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("primary_metric", sa.String(80), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("workload_meta", sa.JSON(), nullable=True))
        batch_op.create_index("ix_trials_workload_version", ["workload_version"])
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ceiling", sa.String(64), nullable=True))
    bind = op.get_bind()
    trials = sa.table(
        "trials",
        sa.column("id", sa.Integer),
        sa.column("workload", sa.String),
        sa.column("params", sa.JSON),
        sa.column("workload_version", sa.String),
        sa.column("primary_metric", sa.String),
        sa.column("workload_meta", sa.JSON),
    )
    metrics = sa.table(
        "metrics",
        sa.column("id", sa.Integer),
        sa.column("trial_id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("ceiling", sa.String),
    )
    rows = bind.execute(sa.select(trials.c.id, trials.c.workload, trials.c.params)).all()
    for tid, workload, params in rows:
        params = json.loads(params) if isinstance(params, str) else (params or {})
        bind.execute(
            trials.update()
            .where(trials.c.id == tid)
            .values(
                workload_version="1" if workload in PRIMARY else "",
                primary_metric=PRIMARY.get(workload, ""),
                workload_meta={"sweep_params": [p for p in SIZE_PARAMS if p in params]},
            )
        )
        for mid, name in bind.execute(
            sa.select(metrics.c.id, metrics.c.name).where(metrics.c.trial_id == tid)
        ):
            key = _peak_key(workload, name, params)
            if key:
                bind.execute(metrics.update().where(metrics.c.id == mid).values(ceiling=key))


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_column("ceiling")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_workload_version")
        batch_op.drop_column("workload_meta")
        batch_op.drop_column("primary_metric")
        batch_op.drop_column("workload_version")
