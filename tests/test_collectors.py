"""Collectors against their lowest layers: psutil for real, pynvml replaced by a scripted GPU."""

import sys
import time

import psutil
import pytest

from collectors.host import HostCollector
from collectors.nvml import NvmlCollector
from collectors.sampler import TelemetrySampler
from tests.fakes import FakeNvml


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_nvml_collector_reads_every_metric_with_units(fake_nvml) -> None:
    c = NvmlCollector()
    c.open()
    samples = c.sample(123.0)
    by = {(s.device, s.metric): s for s in samples}
    assert by[("gpu0", "power_instant")].unit == "W"
    assert 250 < by[("gpu0", "power_instant")].value < 300  # mW -> W
    assert ("gpu0", "power_avg") not in by  # instant field preferred where it exists
    assert by[("gpu1", "power_avg")].value == 100.0  # fallback, and named as such
    assert by[("gpu0", "gpu_util")].value == 97 and by[("gpu0", "memory_util")].value == 40
    assert by[("gpu0", "memory_used")].value == 2 * 2**30
    assert by[("gpu0", "sm_clock")].value == 1980 and by[("gpu0", "sm_clock")].unit == "MHz"
    assert by[("gpu0", "energy_total")].unit == "J"
    assert by[("gpu0", "temperature")].value == 61
    assert ("gpu1", "temperature") not in by  # unsupported query: left out, not zero
    assert by[("gpu0", "throttled")].value == 0.0 and by[("gpu1", "throttled")].value == 1.0
    assert by[("gpu1", "clock_event_reasons")].value == 0x5
    assert by[("gpu0", "pcie_tx")].value == 1_000_000 and by[("gpu0", "pcie_rx")].value == 1_001_000
    assert all(s.t == 123.0 and s.source == "nvml" for s in samples)
    facts = c.facts()
    assert facts["driver"] == "570.86.15"
    assert facts["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpus"][0]["power_limit_w"] == 700.0
    assert facts["gpus"][1]["pci_bus_id"] == "00000000:01:00.0"
    assert [g["instant_power"] for g in facts["gpus"]] == [True, False]
    c.close()
    assert fake_nvml.shutdowns == 1


def test_energy_counter_is_sampled_as_cumulative_joules(fake_nvml) -> None:
    c = NvmlCollector()
    c.open()

    def energy(t: float) -> float:
        return next(
            s.value for s in c.sample(t) if s.metric == "energy_total" and s.device == "gpu0"
        )

    first, second = energy(1.0), energy(2.0)
    assert second > first and (second - first) % 1.0 == 0


def test_unavailable_source_is_recorded_with_its_reason(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    sampler = TelemetrySampler(["host", "nvml"], 0.05)
    assert sampler.statuses["nvml"].available is False
    assert "Driver Not Loaded" in sampler.statuses["nvml"].reason
    sampler.start()
    sampler.stop()
    assert {s.source for s in sampler.samples} == {"host"}


def test_sampler_samples_at_its_interval_with_both_edges(fake_nvml) -> None:
    sampler = TelemetrySampler(["host", "nvml"], 0.05)
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    times = sorted({s.t for s in sampler.samples if s.source == "nvml"})
    # 0.5 s / 0.05 s plus the start and stop samples: 12; a loaded machine may wake it late.
    assert 5 <= len(times) <= 14
    start, end = sampler.window
    assert times[0] == pytest.approx(start, abs=0.01) and times[-1] == pytest.approx(end, abs=0.01)
    assert fake_nvml.shutdowns == 1


def test_a_source_failing_mid_run_is_closed_and_reported(fake_nvml, monkeypatch) -> None:
    sampler = TelemetrySampler(["nvml"], 0.02)
    sampler.start()

    def broken(h):
        raise RuntimeError("GPU fell off the bus")

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetUtilizationRates", broken)
    time.sleep(0.1)
    sampler.stop()
    assert sampler.statuses["nvml"].available is False
    assert "GPU fell off the bus" in sampler.statuses["nvml"].reason


def test_host_io_rates_are_taken_over_spans_of_their_interval() -> None:
    c = HostCollector(io_interval_s=1.0)
    c.open()
    assert not [s for s in c.sample(100.0) if s.device == "io"]  # first read: no rate yet
    assert not [s for s in c.sample(100.5) if s.device == "io"]  # span too short: not read
    rates = {s.metric: s for s in c.sample(101.0) if s.device == "io"}
    assert {"net_sent_rate", "net_recv_rate"} <= set(rates)
    assert all(s.unit == "B/s" and s.value >= 0 for s in rates.values())


def test_host_collector_reports_total_and_per_core() -> None:
    c = HostCollector()
    c.open()
    first = c.sample(0.0)  # the span before it is not the window's: no CPU figure
    assert not [s for s in first if s.metric == "cpu_util"]
    assert [s for s in first if s.metric == "memory_used"]
    time.sleep(0.05)
    samples = c.sample(1.0)
    metrics = {(s.device, s.metric) for s in samples}
    assert ("cpu", "cpu_util") in metrics and ("cpu0", "cpu_util") in metrics
    assert ("memory", "memory_used") in metrics
    assert all(0 <= s.value <= 100 for s in samples if s.unit == "%")


def test_the_first_cpu_point_of_a_busy_window_reads_busy_not_zero() -> None:
    c = HostCollector()
    c.open()
    c.sample(0.0)
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:  # one core busy in this thread
        pass
    [total] = [s.value for s in c.sample(0.3) if s.device == "cpu" and s.metric == "cpu_util"]
    # One busy core of N reads at least 100/N % (less a margin for the scheduler); psutil's
    # first cpu_percent call read 0.0 here.
    assert total >= 0.6 * 100 / psutil.cpu_count()


def test_the_sources_a_playbook_may_name_are_the_sampler_s() -> None:
    from collectors.sampler import known_sources
    from results_db.vocabulary import TELEMETRY_SOURCES

    assert known_sources() == list(TELEMETRY_SOURCES)
