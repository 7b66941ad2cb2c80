"""Plain data the store accepts: the orchestrator translates its results into these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from results_db.vocabulary import Summary


@dataclass
class CampaignRecord:
    id: str
    name: str
    description: str
    playbook_path: str
    playbook_text: str
    playbook_hash: str
    effective: dict[str, Any]
    created_at: datetime
    harness_version: str
    user: str = ""
    driver_host: str = ""
    cluster: str = ""


@dataclass
class NodeRecord:
    fingerprint: str
    hardware_class: str
    hostname: str
    facts: dict[str, Any]
    cpu_model: str = ""
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    memory_bytes: int | None = None
    gpu_count: int = 0
    gpu_model: str = ""
    os: str = ""
    python: str = ""
    torch: str = ""
    cuda: str = ""
    driver: str = ""


@dataclass
class MetricRecord:
    name: str
    unit: str
    higher_is_better: bool
    samples: list[float]
    summary: Summary  # the keys of results_db.vocabulary.STATISTICS
    ceiling: str | None = None  # the peak key the workload measures this metric against


@dataclass
class TelemetryRecord:
    source: str
    device: str
    metric: str
    unit: str
    t: float
    value: float


@dataclass
class TelemetrySummaryRecord:
    source: str
    device: str
    metric: str
    unit: str
    n: int
    mean: float
    min: float
    peak: float


@dataclass
class EnergyRecord:
    source: str
    device: str
    method: str
    duration_s: float
    energy_j: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    samples: int
    flag: str = ""
    idle_power_w: float | None = None


@dataclass
class IdleBaselineRecord:
    campaign_id: str
    ray_node_id: str
    node_id: int | None
    source: str
    device: str
    method: str
    duration_s: float
    power_w: float | None
    flag: str
    measured_at: datetime


@dataclass
class TrialRecord:
    campaign_id: str
    trial_key: str
    benchmark: str
    workload: str
    params: dict[str, Any]
    params_hash: str
    status: str
    attempt: int
    node_id: int | None = None
    ray_node_id: str = ""
    ranks: list[dict[str, Any]] | None = None
    gpu_index: int | None = None  # per-GPU trials: the GPU's position on its node
    gpu_peer: int | None = None  # ... and a GPU pair's destination
    gpu_uuid: str | None = None
    failure_phase: str | None = None
    failure_reason: str | None = None
    failure_detail: str | None = None
    stop_reason: str | None = None
    warmup_iterations: int = 0
    iterations: int = 0
    measure_seconds: float | None = None
    timer: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    window_start: float | None = None
    window_end: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metrics: list[MetricRecord] = field(default_factory=list)
    telemetry: list[TelemetryRecord] = field(default_factory=list)
    telemetry_summary: list[TelemetrySummaryRecord] = field(default_factory=list)
    sources: list[tuple[str, bool, str]] = field(default_factory=list)  # (source, ok, reason)
    energy: list[EnergyRecord] = field(default_factory=list)
    workload_version: str = ""
    primary_metric: str = ""
    workload_meta: dict[str, Any] | None = None  # sweep_params, param_defaults
