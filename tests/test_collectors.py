"""Collectors against their lowest layers: psutil for real, pynvml replaced by a scripted GPU."""

import sys
import time
import types

import pytest

from collectors import TelemetrySampler
from collectors.host import HostCollector
from collectors.nvml import NvmlCollector


class FakeNvml(types.ModuleType):
    """The pynvml functions our collector calls, over two scripted GPUs.

    GPU 0 has the instantaneous power field; GPU 1 only the 1 s average. Power rises 10 W
    per call and energy counts 1000 mJ per call, so readings are checkable.
    """

    NVML_SUCCESS = 0
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_init = fail_init
        self.calls = 0
        self.shutdowns = 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetFieldValues(self, h, ids):
        self.calls += 1
        value = types.SimpleNamespace(uiVal=250_000 + 10_000 * self.calls)
        ret = 0 if h == 0 else 3  # NVML_ERROR_NOT_SUPPORTED on GPU 1
        return [types.SimpleNamespace(valueType=1, nvmlReturn=ret, value=value)]

    def nvmlDeviceGetPowerUsage(self, h):
        return 100_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.calls += 1
        return 1_000 * self.calls

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, h, kind):
        if h == 1:
            raise self.NVMLError("Not Supported")
        return 61

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}"

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=f"00000000:{h:02x}:00.0".encode())

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 700_000

    def nvmlSystemGetDriverVersion(self):
        return "570.86.15"


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
    assert 8 <= len(times) <= 14  # 0.5 s / 0.05 s, plus the start and stop samples
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


def test_host_collector_reports_total_and_per_core() -> None:
    c = HostCollector()
    c.open()
    time.sleep(0.05)
    samples = c.sample(1.0)
    metrics = {(s.device, s.metric) for s in samples}
    assert ("cpu", "cpu_util") in metrics and ("cpu0", "cpu_util") in metrics
    assert ("memory", "memory_used") in metrics
    assert all(0 <= s.value <= 100 for s in samples if s.unit == "%")
