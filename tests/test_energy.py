"""Energy from telemetry: counters, integration, wraparound, flags, and per-trial metrics."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from collectors.amd import AmdSmiCollector
from collectors.base import Sample, SourceUnavailable
from collectors.energy import energy_readings
from collectors.rapl import RaplCollector
from collectors.sampler import TelemetrySampler
from harness.campaign.energy import trial_energy
from harness.node.runner import run_trial
from harness.playbook.load import Settings
from tests.fakes import CurveNvml, RaplTree


def sample(t, metric, value, source="nvml", device="gpu0", unit="W"):
    return Sample(t, source, device, metric, unit, value)


def test_counter_difference_is_the_energy() -> None:
    samples = [sample(t, "energy_total", 1000 + 300 * t, unit="J") for t in (0.0, 0.5, 1.0, 2.0)]
    samples += [sample(t, "power_instant", p) for t, p in ((0.0, 280), (1.0, 320), (2.0, 300))]
    (r,) = energy_readings(samples, 0.1)
    assert r.method == "counter" and r.energy_j == pytest.approx(600.0)
    assert r.avg_power_w == pytest.approx(300.0) and r.peak_power_w == 320
    assert r.duration_s == 2.0 and r.flag == ""


def test_power_is_integrated_when_there_is_no_counter() -> None:
    samples = [sample(t / 10, "power_avg", 100 + 10 * t) for t in range(11)]  # ramp 100 -> 200 W
    (r,) = energy_readings(samples, 0.1)
    assert r.method == "integrated:power_avg"
    assert r.energy_j == pytest.approx(150.0)  # exact for a ramp under the trapezoid rule


def test_short_window_is_flagged_not_extrapolated() -> None:
    samples = [sample(t, "energy_total", 10 * t, unit="J") for t in (0.0, 0.4)]
    (r,) = energy_readings(samples, 0.1)
    assert r.energy_j is None and r.avg_power_w is None
    assert "shorter than 10x the counter's update period (0.1 s)" in r.flag


def test_scripted_gpu_counter_matches_the_known_integral(monkeypatch) -> None:
    gpu = CurveNvml(update_s=0.1)
    monkeypatch.setitem(sys.modules, "pynvml", gpu)
    sampler = TelemetrySampler(["nvml"], 0.05)
    sampler.start()
    time.sleep(2.0)
    sampler.stop()
    (r,) = energy_readings(sampler.samples, 0.05)
    t0, t1 = sampler.window
    exact = gpu.energy_j(t1) - gpu.energy_j(t0)
    assert r.method == "counter"
    # The counter advances every 0.1 s: each edge may lag by up to P_max x 0.1 s.
    assert abs(r.energy_j - exact) <= 2 * 300 * 0.1
    assert r.peak_power_w == pytest.approx(300, abs=15)


def test_scripted_gpu_without_counter_integrates_instant_power(monkeypatch) -> None:
    gpu = CurveNvml(energy=False)
    monkeypatch.setitem(sys.modules, "pynvml", gpu)
    sampler = TelemetrySampler(["nvml"], 0.02)
    sampler.start()
    time.sleep(2.0)
    sampler.stop()
    (r,) = energy_readings(sampler.samples, 0.02)
    power = [s for s in sampler.samples if s.metric == "power_instant"]
    exact = gpu.energy_j(power[-1].t) - gpu.energy_j(power[0].t)
    assert r.method == "integrated:power_instant"
    assert r.energy_j == pytest.approx(exact, rel=0.02)


def test_rapl_unwraps_its_counters(tmp_path: Path) -> None:
    tree = RaplTree(tmp_path, max_uj=1_000_000)
    tree.write("intel-rapl:0", 900_000)
    tree.write("intel-rapl:0:2", 0)
    c = RaplCollector(tmp_path)
    c.open()
    assert sorted(z.label for z in c._zones) == ["dram-0", "package-0"]  # core is in package
    readings = []
    for t, uj in ((1.0, 900_000), (2.0, 100_000), (3.0, 400_000), (4.0, 350_000)):
        tree.write("intel-rapl:0", uj)
        readings += [s for s in c.sample(t) if s.device == "package-0"]
    energy = [s.value for s in readings if s.metric == "energy_total"]
    # 900k -> 100k wraps (+200k), -> 400k (+300k), -> 350k wraps again (+950k)
    assert energy == pytest.approx([0.0, 0.2, 0.5, 1.45])
    power = [s.value for s in readings if s.metric == "power"]
    assert power == pytest.approx([0.2, 0.3, 0.95])


def test_rapl_unreadable_or_absent_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no powercap interface"):
        RaplCollector(tmp_path / "absent").open()
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("100\n")
    (zone / "energy_uj").mkdir()  # unreadable as a number whoever reads it, root included
    with pytest.raises(SourceUnavailable, match="unreadable"):
        RaplCollector(tmp_path).open()
    sampler = TelemetrySampler(["rapl"], 0.1)
    assert not sampler.statuses["rapl"].available or Path("/sys/class/powercap").is_dir()


def test_rapl_permission_denied_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    RaplTree(tmp_path)
    real_open = os.open

    def denying_open(path, *args, **kwargs):  # what a non-root reader meets since 5.10
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    with pytest.raises(SourceUnavailable, match=r"not readable by uid \d+ \(needs root"):
        RaplCollector(tmp_path).open()


def test_cpu_trial_energy_per_gb_from_rapl(tmp_path: Path, monkeypatch) -> None:
    tree = RaplTree(tmp_path, package_w=50.0, dram_w=5.0)
    monkeypatch.setenv("HARNESS_POWERCAP_ROOT", str(tmp_path))
    tree.run()
    try:
        settings = Settings(
            warmup_iterations=1,
            min_repetitions=3,
            max_repetitions=100000,
            min_duration_s=1.2,
            max_duration_s=10,
            timeout_s=60,
            telemetry={"interval_s": 0.05, "sources": ["rapl"]},
        )
        out = run_trial("memory.stream", {"op": "copy", "size_mib": 1}, settings.model_dump())
    finally:
        tree.stop()
    assert out.status == "ok", out.failure_reason
    result = trial_energy(out, {("rapl", "package-0"): 40.0, ("rapl", "dram-0"): 5.0})
    by_device = {r.device: r for r in result.readings}
    assert by_device["package-0"].avg_power_w == pytest.approx(50.0, rel=0.05)
    assert by_device["dram-0"].avg_power_w == pytest.approx(5.0, rel=0.05)
    metrics = {name: (unit, higher, value) for name, unit, higher, value in result.metrics}
    energy = metrics["energy"][2]
    window = out.window[1] - out.window[0]
    assert energy == pytest.approx(55.0 * window, rel=0.05)
    assert metrics["power_avg"][:2] == ("W", False)
    gigabytes = out.work["bytes"] * len(out.seconds) / 1e9
    assert metrics["energy_per_gb"] == ("J/GB", False, pytest.approx(energy / gigabytes))
    assert metrics["active_energy"][2] == pytest.approx(energy - 45.0 * window, rel=0.01)
    assert "gflop_per_joule" not in metrics  # STREAM declares bytes, not FLOPs


def test_gpu_trial_without_gpu_telemetry_says_why() -> None:
    settings = Settings(
        warmup_iterations=0,
        min_repetitions=2,
        max_repetitions=10,
        min_duration_s=0,
        telemetry={"interval_s": 0.05, "sources": ["host"]},
    )
    out = run_trial("test.flaky", {}, settings.model_dump())
    out.device = "cuda:0"
    result = trial_energy(out, {})
    assert result.metrics == [] and "no nvml/amdsmi energy" in result.notes["energy"]


class FakeAmdSmi(types.ModuleType):
    """The amdsmi calls our collector makes, for one MI300X-like GPU."""

    class AmdSmiClkType:
        GFX, MEM = 0, 1

    class AmdSmiTemperatureType:
        EDGE = 0

    class AmdSmiTemperatureMetric:
        CURRENT = 0

    def __init__(self):
        super().__init__("amdsmi")
        self.count = 0

    def amdsmi_init(self):
        pass

    def amdsmi_shut_down(self):
        pass

    def amdsmi_get_processor_handles(self):
        return ["h0"]

    def amdsmi_get_power_info(self, h):
        return {"current_socket_power": "N/A", "average_socket_power": 640}

    def amdsmi_get_energy_count(self, h):
        self.count += 1000
        return {"energy_accumulator": self.count, "counter_resolution": 15.3}

    def amdsmi_get_gpu_activity(self, h):
        return {"gfx_activity": 99, "umc_activity": 70, "mm_activity": "N/A"}

    def amdsmi_get_gpu_vram_usage(self, h):
        return {"vram_used": 1024, "vram_total": 196592}

    def amdsmi_get_clock_info(self, h, kind):
        return {"clk": 2100 if kind == 0 else 1300}

    def amdsmi_get_temp_metric(self, h, kind, metric):
        raise RuntimeError("not supported")

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": "AMD Instinct MI300X"}


def test_amdsmi_collector_units(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", FakeAmdSmi())
    c = AmdSmiCollector()
    c.open()
    by = {s.metric: s for s in c.sample(1.0)}
    assert "power_instant" not in by and by["power_avg"].value == 640  # "N/A" skipped
    assert by["energy_total"].value == pytest.approx(1000 * 15.3 / 1e6)  # uJ -> J
    assert by["gpu_util"].value == 99 and by["memory_used"].value == 1024 * 2**20
    assert by["sm_clock"].value == 2100 and "temperature" not in by
    assert c.facts()["gpus"][0]["name"] == "AMD Instinct MI300X"
    c.close()


def test_amdsmi_absent_is_unavailable(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import fails
    sampler = TelemetrySampler(["amdsmi"], 0.1)
    assert sampler.statuses["amdsmi"].available is False
    assert "amdsmi is not importable" in sampler.statuses["amdsmi"].reason
