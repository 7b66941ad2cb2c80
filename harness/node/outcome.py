"""A trial's outcome as plain data: what the node hands back for the driver to record.

Pure: no Ray, no runner, no collector (only their plain sample types), so the driver's
recording, pricing and ladders can use it without loading what runs on a node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from collectors.base import Sample, SourceStatus
from results_db.vocabulary import Summary, TrialStatus


@dataclass
class TrialOutcome:
    """Everything a trial produced, picklable, for the driver to record."""

    status: TrialStatus
    device: str = ""
    work: dict[str, Any] = field(default_factory=dict)  # per iteration: bytes, flops, tokens
    failure_phase: str | None = None
    failure_reason: str | None = None
    failure_detail: str | None = None
    stop_reason: str | None = None
    warmup_iterations: int = 0
    seconds: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    # Summaries of ``metrics``, computed where the trial ran so the driver's dispatch loop
    # never waits on statistics of a long trial.
    summaries: dict[str, Summary] = field(default_factory=dict)
    metric_specs: list[tuple[str, str, bool]] = field(default_factory=list)
    measure_seconds: float | None = None
    timer: str | None = None
    gpu_uuid: str | None = None  # the GPU the trial ran on (a copy's source), by NVML's name
    context: dict[str, Any] = field(default_factory=dict)
    window: tuple[float, float] | None = None
    telemetry: list[Sample] = field(default_factory=list)
    telemetry_interval_s: float = 0.0  # the sampling interval the telemetry was taken at
    sources: list[SourceStatus] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    @classmethod
    def not_run(cls, status: TrialStatus, phase: str, reason: str) -> TrialOutcome:
        """The outcome of a trial the driver decided on without running it (its node left,
        its ladder stopped below it): started and finished now."""
        now = time.time()
        return cls(
            status=status,
            failure_phase=phase,
            failure_reason=reason,
            started_at=now,
            finished_at=now,
        )
