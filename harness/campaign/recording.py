"""Recording: what a trial returned (its outcome) turned into the store's records.

Summaries come from the worker when it made them, energy from the telemetry of the trial's
own window, and the workload's declared metadata (version, primary metric, ceilings) is
attached here, so readers of the store never import workload code.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from datetime import datetime, timezone

from harness.campaign.energy import TrialEnergy, trial_energy
from harness.campaign.placement import PlacedTrial
from harness.campaign.pricing import PRICED_METRIC, cost_per_mtok
from harness.cluster.inventory import NodeInfo
from harness.node.outcome import TrialOutcome
from harness.node.stats import summarize
from results_db import (
    EnergyRecord,
    MetricRecord,
    NodeRecord,
    TelemetryRecord,
    TelemetrySummaryRecord,
    TrialRecord,
)
from results_db.vocabulary import TrialStatus
from workloads import get_workload
from workloads.base import WorkloadMeta

# NodeRecord fields read from the node's facts under the same name (the rest say who it is).
_FACT_FIELDS = tuple(
    f
    for f in fields(NodeRecord)
    if f.name not in ("fingerprint", "hardware_class", "hostname", "facts")
)


def node_record(node: NodeInfo) -> NodeRecord:
    """The store's node record: identity plus each fact the record names, unknown ones left
    at the record's default."""
    facts = {
        f.name: node.facts[f.name] if node.facts.get(f.name) is not None else f.default
        for f in _FACT_FIELDS
    }
    return NodeRecord(
        fingerprint=node.fingerprint,
        hardware_class=node.hardware_class,
        hostname=node.hostname,
        facts=node.facts,
        **facts,
    )


# Fields the outcome and the record share, copied as they are: a field added to both (and
# to the Trial model, which store.trial_columns follows) flows through with no other change.
# The record's fields built from the outcome here are left out.
_BUILT_HERE = {"status", "context", "telemetry", "sources", "metrics", "started_at", "finished_at"}
_COPIED_FROM_OUTCOME = tuple(
    sorted(
        ({f.name for f in fields(TrialOutcome)} & {f.name for f in fields(TrialRecord)})
        - _BUILT_HERE
    )
)


def trial_record(
    campaign_id: str,
    trial: PlacedTrial,
    outcome: TrialOutcome,
    node_id: int,
    attempt: int,
    idle_power: dict[tuple[str, str], float] | None = None,
    price: tuple[float, str] | None = None,
) -> TrialRecord:
    """Translate an outcome into the store's record: summaries derived from raw samples,
    energy from the telemetry of the same window."""
    meta = get_workload(trial.spec.workload).meta(trial.spec.params)
    idle_power = idle_power or {}
    energy = trial_energy(outcome, idle_power)
    ts = lambda t: datetime.fromtimestamp(t, timezone.utc) if t else None  # noqa: E731
    return TrialRecord(
        campaign_id=campaign_id,
        trial_key=trial.key,
        benchmark=trial.spec.benchmark,
        workload=trial.spec.workload,
        params=trial.spec.params,
        params_hash=trial.spec.params_hash,
        status=TrialStatus(outcome.status).value,
        attempt=attempt,
        node_id=node_id,
        ray_node_id=trial.node.ray_node_id,
        ranks=[
            {"rank": r, "ray_node_id": n.ray_node_id, "hostname": n.hostname}
            for r, n in enumerate(trial.ranks)
        ]
        if trial.spec.layout
        else None,
        gpu_index=trial.gpus[0] if trial.gpus else None,
        gpu_peer=trial.gpus[1] if len(trial.gpus) > 1 else None,
        **{name: getattr(outcome, name) for name in _COPIED_FROM_OUTCOME},
        iterations=len(outcome.seconds),
        settings=trial.spec.settings.model_dump(),
        context={**outcome.context, **energy.notes, **throttle_flags(outcome)},
        window_start=outcome.window[0] if outcome.window else None,
        window_end=outcome.window[1] if outcome.window else None,
        started_at=ts(outcome.started_at),
        finished_at=ts(outcome.finished_at),
        metrics=metric_records(outcome, meta, energy) + cost_records(outcome, price),
        telemetry=[
            TelemetryRecord(s.source, s.device, s.metric, s.unit, s.t, s.value)
            for s in outcome.telemetry
        ],
        telemetry_summary=telemetry_summaries(outcome),
        sources=[(s.source, s.available, s.reason) for s in outcome.sources],
        energy=energy_records(energy, idle_power),
        workload_version=meta.version,
        primary_metric=meta.primary_metric,
        workload_meta={
            "sweep_params": list(meta.sweep_params),
            "detail_metrics": list(meta.detail_metrics),
            "param_defaults": meta.param_defaults,
        },
    )


def metric_records(
    outcome: TrialOutcome, meta: WorkloadMeta, energy: TrialEnergy
) -> list[MetricRecord]:
    """The workload's metrics with their summaries and ceilings, then the energy metrics."""
    measured = [
        MetricRecord(
            name,
            unit,
            hib,
            outcome.metrics[name],
            outcome.summaries.get(name) or summarize(outcome.metrics[name]),
            meta.ceilings.get(name),
        )
        for name, unit, hib in outcome.metric_specs
        if outcome.metrics.get(name)
    ]
    return measured + [
        MetricRecord(name, unit, hib, [value], summarize([value]))
        for name, unit, hib, value in energy.metrics
    ]


def cost_records(outcome: TrialOutcome, price: tuple[float, str] | None) -> list[MetricRecord]:
    """Cost per million output tokens, from the hardware's price per hour and the trial's
    median output throughput (``cost_per_mtok``, in the table's currency)."""
    if price is None:
        return []
    tokens = (outcome.summaries.get(PRICED_METRIC) or {}).get("median")
    value = cost_per_mtok(price[0], tokens) if tokens else None
    if value is None:
        return []
    return [MetricRecord("cost_per_mtok", f"{price[1]}/Mtok", False, [value], summarize([value]))]


def telemetry_summaries(outcome: TrialOutcome) -> list[TelemetrySummaryRecord]:
    """Count, mean, min and max of each telemetry series of the trial's window."""
    groups: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for s in outcome.telemetry:
        groups[(s.source, s.device, s.metric, s.unit)].append(s.value)
    return [
        TelemetrySummaryRecord(src, dev, met, unit, len(v), sum(v) / len(v), min(v), max(v))
        for (src, dev, met, unit), v in groups.items()
    ]


def energy_records(
    energy: TrialEnergy, idle_power: dict[tuple[str, str], float]
) -> list[EnergyRecord]:
    """Each energy reading, with the idle power measured before the campaign beside it."""
    return [
        EnergyRecord(
            r.source,
            r.device,
            r.method,
            r.duration_s,
            r.energy_j,
            r.avg_power_w,
            r.peak_power_w,
            r.samples,
            r.flag,
            idle_power.get((r.source, r.device)),
        )
        for r in energy.readings
    ]


def throttle_flags(outcome: TrialOutcome) -> dict[str, object]:
    """Whether any GPU reported a throttling clock-event reason during the window."""
    flags = [s for s in outcome.telemetry if s.metric == "throttled"]
    if not flags:
        return {}
    hits = [s for s in flags if s.value > 0]
    return {"throttled": bool(hits), "throttled_devices": sorted({s.device for s in hits})}
