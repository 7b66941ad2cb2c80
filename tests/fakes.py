"""Fakes of the lowest hardware layers: the pynvml module and the powercap sysfs tree."""

from __future__ import annotations

import math
import os
import threading
import time
import types
from pathlib import Path


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
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1

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

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x1 if h == 0 else 0x4 | 0x1  # GPU 0 idle, GPU 1 capped by software power

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        return 1000 + counter  # KB/s

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


class CurveNvml(FakeNvml):
    """One GPU whose power follows a known curve and whose energy counter is its integral.

    P(t) = base + amp * sin(2 pi t / period) W, t from construction. The counter advances in
    steps of ``update_s`` like NVML's (about 100 ms); ``energy=False`` makes the GPU lack the
    counter, so energy must be integrated from power.
    """

    def __init__(self, base=200.0, amp=100.0, period=0.5, update_s=0.1, energy=True, t0=None):
        super().__init__()
        self.t0 = time.time() if t0 is None else t0
        self.base, self.amp, self.period, self.update_s, self.energy = (
            base,
            amp,
            period,
            update_s,
            energy,
        )

    def power(self, t: float) -> float:
        return self.base + self.amp * math.sin(2 * math.pi * (t - self.t0) / self.period)

    def energy_j(self, t: float) -> float:
        """Exact integral of power from t0 to t."""
        x = t - self.t0
        w = 2 * math.pi / self.period
        return self.base * x + self.amp / w * (1 - math.cos(w * x))

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetFieldValues(self, h, ids):
        value = types.SimpleNamespace(uiVal=int(self.power(time.time()) * 1000))
        return [types.SimpleNamespace(valueType=1, nvmlReturn=0, value=value)]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.energy:
            raise self.NVMLError("Not Supported")
        t = time.time()
        stepped = self.t0 + math.floor((t - self.t0) / self.update_s) * self.update_s
        return int(self.energy_j(stepped) * 1000)


class RaplTree:
    """A powercap tree in a folder: package-0 and its dram zone, advanced by a thread at a
    constant power, wrapping at ``max_uj`` like the hardware counters."""

    def __init__(self, root: Path, package_w=50.0, dram_w=5.0, max_uj=10_000_000):
        self.root, self.max_uj = root, max_uj
        self.watts = {"intel-rapl:0": package_w, "intel-rapl:0:2": dram_w}
        self.names = {
            "intel-rapl:0": "package-0",
            "intel-rapl:0:2": "dram",
            "intel-rapl:0:0": "core",
        }
        for zone, name in self.names.items():
            d = root / zone
            d.mkdir(parents=True)
            (d / "name").write_text(name + "\n")
            (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
            self.write(zone, 0)
        self.start = {zone: 0 for zone in self.names}
        self.history: dict[str, list[tuple[float, int]]] = {zone: [] for zone in self.watts}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, zone: str, uj: int) -> None:
        # In place and fixed width, in one write: like sysfs, a reader holding the file open
        # sees the new value on its next pread, and never a half-written one.
        fd = os.open(self.root / zone / "energy_uj", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, f"{uj % self.max_uj:020d}\n".encode(), 0)
        finally:
            os.close(fd)

    def run(self) -> None:
        """Advance the counters from now on in a background thread, every millisecond."""
        t0 = time.time()

        def loop() -> None:
            while not self._stop.wait(0.001):
                now = time.time()
                for zone, watts in self.watts.items():
                    uj = int(watts * (now - t0) * 1e6)
                    self.write(zone, uj)
                    self.history[zone].append((time.time(), uj))

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def energy_between(self, zone: str, t0: float, t1: float) -> float:
        """Joules the counter showed as advancing between two times (what a reader saw,
        however late a loaded machine let the writer thread run)."""
        import bisect

        times = [t for t, _ in self.history[zone]]

        def at(t: float) -> int:
            i = bisect.bisect_right(times, t) - 1
            return self.history[zone][max(i, 0)][1]

        return (at(t1) - at(t0)) / 1e6

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
