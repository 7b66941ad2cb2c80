"""SQLAlchemy 2.0 typed ORM models of the results store.

Parameters and hardware facts are JSON columns SQL can filter (``json_extract`` on SQLite,
``->>`` on PostgreSQL) next to plain columns for the fields people group by.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Integer on SQLite keeps ROWID auto-increment; BIGINT elsewhere for big telemetry tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    playbook_path: Mapped[str] = mapped_column(Text, default="")
    playbook_text: Mapped[str] = mapped_column(Text)
    playbook_hash: Mapped[str] = mapped_column(String(64), index=True)
    effective: Mapped[dict[str, Any]] = mapped_column(JSON)  # the playbook after --set
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written by the driver while it runs; stale on a `running` campaign means abandoned.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    harness_version: Mapped[str] = mapped_column(String(40))
    user: Mapped[str] = mapped_column(String(200), default="")
    driver_host: Mapped[str] = mapped_column(String(200), default="")
    cluster: Mapped[str] = mapped_column(Text, default="")

    trials: Mapped[list[Trial]] = relationship(back_populates="campaign")


class Node(Base):
    """A machine as it was when seen: one row per distinct fingerprint."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    hardware_class: Mapped[str] = mapped_column(String(64), index=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    cpu_model: Mapped[str] = mapped_column(String(255), default="")
    cpu_cores: Mapped[int | None] = mapped_column(Integer)
    cpu_threads: Mapped[int | None] = mapped_column(Integer)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    gpu_model: Mapped[str] = mapped_column(String(255), default="")
    os: Mapped[str] = mapped_column(String(255), default="")
    python: Mapped[str] = mapped_column(String(40), default="")
    torch: Mapped[str] = mapped_column(String(80), default="")
    cuda: Mapped[str] = mapped_column(String(40), default="")
    driver: Mapped[str] = mapped_column(String(40), default="")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CampaignNode(Base):
    """A node as the cluster presented it to one campaign (Ray node id, labels, resources)."""

    __tablename__ = "campaign_nodes"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    ray_node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The node's clock minus the driver's: {"start": {"offset_s", "rtt_s"}, "end": {...}}
    clock: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Trial(Base):
    """One attempt of one trial key; a failed attempt is a row too."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("campaign_id", "trial_key", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    trial_key: Mapped[str] = mapped_column(String(64), index=True)
    benchmark: Mapped[str] = mapped_column(String(200))
    workload: Mapped[str] = mapped_column(String(120), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_hash: Mapped[str] = mapped_column(String(64), index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    ray_node_id: Mapped[str] = mapped_column(String(64), default="")  # rank 0's node
    ranks: Mapped[list[Any] | None] = mapped_column(JSON)  # multi-rank: node of every rank
    # Per-GPU trials (0009): the GPU's position on its node, a pair's destination, and the
    # UUID of the GPU measured (so its history follows the GPU, not the slot).
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    gpu_peer: Mapped[int | None] = mapped_column(Integer)
    gpu_uuid: Mapped[str | None] = mapped_column(String(96), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), index=True)  # ok | failed | timeout | skipped
    failure_phase: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failure_detail: Mapped[str | None] = mapped_column(Text)
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    warmup_iterations: Mapped[int] = mapped_column(Integer, default=0)
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    measure_seconds: Mapped[float | None] = mapped_column(Float)
    timer: Mapped[str | None] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    window_start: Mapped[float | None] = mapped_column(Float)
    window_end: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the workload declared (0006), so readers never import workload code.
    workload_version: Mapped[str] = mapped_column(String(40), default="", index=True)
    primary_metric: Mapped[str] = mapped_column(String(80), default="")
    workload_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # sweep_params, defaults

    campaign: Mapped[Campaign] = relationship(back_populates="trials")
    node: Mapped[Node | None] = relationship()
    metrics: Mapped[list[Metric]] = relationship(back_populates="trial")


class Metric(Base):
    """Summary statistics of one metric of one trial, derived from its raw samples."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("trial_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80), index=True)
    unit: Mapped[str] = mapped_column(String(32))
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    n: Mapped[int] = mapped_column(Integer)
    median: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    p5: Mapped[float | None] = mapped_column(Float)
    p90: Mapped[float | None] = mapped_column(Float)  # added in 0005 (serving latency tails)
    p95: Mapped[float | None] = mapped_column(Float)
    p99: Mapped[float | None] = mapped_column(Float)
    cv: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    ci_level: Mapped[float | None] = mapped_column(Float)  # achieved coverage of [ci_low, ci_high]
    ceiling: Mapped[str | None] = mapped_column(String(64))  # peak key it is a share of (0006)

    trial: Mapped[Trial] = relationship(back_populates="metrics")


class RawSample(Base):
    """One per-iteration value of a metric, in iteration order."""

    __tablename__ = "samples"

    metric_id: Mapped[int] = mapped_column(
        ForeignKey("metrics.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class TelemetrySample(Base):
    __tablename__ = "telemetry_samples"
    __table_args__ = (Index("ix_telemetry_samples_trial_metric", "trial_id", "metric"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16))
    t: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)


class TelemetrySummary(Base):
    __tablename__ = "telemetry_summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    peak: Mapped[float] = mapped_column(Float)


class SourceStatusRow(Base):
    """Whether each requested telemetry source delivered during a trial, and why not."""

    __tablename__ = "source_statuses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    available: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")


class EnergyRow(Base):
    """Energy of one device over a trial's measurement window, with its method."""

    __tablename__ = "energy_readings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(48))  # counter | integrated:<power metric>
    duration_s: Mapped[float] = mapped_column(Float)
    energy_j: Mapped[float | None] = mapped_column(Float)  # null when flagged
    avg_power_w: Mapped[float | None] = mapped_column(Float)
    peak_power_w: Mapped[float | None] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)
    flag: Mapped[str] = mapped_column(Text, default="")
    idle_power_w: Mapped[float | None] = mapped_column(Float)


class IdleBaseline(Base):
    """Idle power of a device, measured on its node before a campaign's trials."""

    __tablename__ = "idle_baselines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    ray_node_id: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    source: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(48))
    duration_s: Mapped[float] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    flag: Mapped[str] = mapped_column(Text, default="")
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Ceiling(Base):
    """A node's measured ceiling for one kind of figure (from a calibration campaign)."""

    __tablename__ = "ceilings"
    __table_args__ = (UniqueConstraint("campaign_id", "hardware_class", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    hardware_class: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(64))  # bandwidth:cuda, throughput:cuda:bf16, ...
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Baseline(Base):
    """A pinned set of references, built from the store's history (`harness baseline build`):
    what `harness check --baseline NAME` judges against instead of the live history."""

    __tablename__ = "baselines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What it was built from: since, campaigns, trial counts (for the reader, not the check).
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    entries: Mapped[list[BaselineEntry]] = relationship(
        back_populates="baseline", cascade="all, delete-orphan"
    )


class BaselineEntry(Base):
    """One reference: the robust centre and spread of a benchmark's trial medians on one
    hardware class (and workload version), with the count of trials behind them."""

    __tablename__ = "baseline_entries"
    __table_args__ = (
        UniqueConstraint(
            "baseline_id", "hardware_class", "workload", "params_hash", "metric", "workload_version"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    baseline_id: Mapped[int] = mapped_column(ForeignKey("baselines.id"), index=True)
    hardware_class: Mapped[str] = mapped_column(String(64))
    workload: Mapped[str] = mapped_column(String(120))
    params_hash: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(80))
    workload_version: Mapped[str] = mapped_column(String(40), default="")
    unit: Mapped[str] = mapped_column(String(32))
    centre: Mapped[float] = mapped_column(Float)  # median of trial medians
    spread: Mapped[float] = mapped_column(Float)  # scaled MAD (1.4826 x MAD: sigma if normal)
    trials: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[Baseline] = relationship(back_populates="entries")
