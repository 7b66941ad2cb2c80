"""A trial's energy figures: readings per device, and metrics for the devices of record.

The devices of record are the ones the work ran on: the GPUs (NVML or amdsmi) for a CUDA
trial, the CPU packages and DRAM (RAPL) for a host trial. Energy per unit of work divides
the window's energy by the work of every measured iteration, so loop overhead counts
against the hardware, as it does in the performance figure of the same window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.energy import EnergyReading, energy_readings
from harness.node.outcome import TrialOutcome
from results_db.vocabulary import EFFICIENCY, TrialStatus

GPU_SOURCES = ("nvml", "amdsmi")
CPU_SOURCES = ("rapl",)


@dataclass
class TrialEnergy:
    readings: list[EnergyReading]
    metrics: list[tuple[str, str, bool, float]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def record_sources(device: str) -> tuple[str, ...]:
    """Which telemetry sources measure the device a trial ran on."""
    return GPU_SOURCES if device.startswith("cuda") else CPU_SOURCES


def trial_energy(outcome: TrialOutcome, idle_power: dict[tuple[str, str], float]) -> TrialEnergy:
    """Energy readings of the trial's window and, where they allow, its energy metrics."""
    readings = energy_readings(outcome.telemetry, outcome.telemetry_interval_s)
    result = TrialEnergy(readings)
    if outcome.status != TrialStatus.OK:
        return result
    servers = outcome.context.get("server_nodes")
    if servers:  # a load against an endpoint: the energy of record is its hosts', not ours
        hosted = [r for r in readings if r.device.startswith(tuple(f"{s}:" for s in servers))]
        on_gpu = [r for r in hosted if r.source in GPU_SOURCES]
        sources = GPU_SOURCES if on_gpu else CPU_SOURCES
        record = on_gpu or [r for r in hosted if r.source in CPU_SOURCES]
        result.notes["energy_of"] = "server_on: " + ", ".join(servers)
    else:
        sources = record_sources(outcome.device)
        record = [r for r in readings if r.source in sources]
    if not record:
        result.notes["energy"] = f"no {'/'.join(sources)} energy or power telemetry"
        return result
    flagged = [r for r in record if r.energy_j is None]
    if flagged:
        result.notes["energy"] = f"{flagged[0].source} {flagged[0].device}: {flagged[0].flag}"
        return result
    energy = sum(r.energy_j or 0.0 for r in record)
    duration = max(r.duration_s for r in record)
    result.metrics.append(("energy", "J", False, energy))
    result.metrics.append(("power_avg", "W", False, energy / duration))
    peaks = [r.peak_power_w for r in record]
    if all(p is not None for p in peaks):
        result.metrics.append(("power_peak", "W", False, sum(p or 0.0 for p in peaks)))
    result.notes["energy_devices"] = [f"{r.source}:{r.device}:{r.method}" for r in record]
    iterations = len(outcome.seconds)
    for kind, (name, unit, higher) in EFFICIENCY.items():
        work = float(outcome.work.get(kind) or 0.0) * iterations
        if work <= 0:
            continue
        if kind == "bytes":
            value = energy / (work / 1e9)
        elif kind == "flops":
            value = (work / 1e9) / energy if energy > 0 else float("inf")
        else:
            value = energy / work
        result.metrics.append((name, unit, higher, value))
    idle = [idle_power.get((r.source, r.device)) for r in record]
    if idle and all(p is not None for p in idle):
        active = energy - sum(p or 0.0 for p in idle) * duration
        result.metrics.append(("active_energy", "J", False, active))
    return result
