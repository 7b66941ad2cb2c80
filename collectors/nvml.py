"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

Power comes from the instantaneous field (NVML_FI_DEV_POWER_INSTANT) where the driver has it,
since ``nvmlDeviceGetPowerUsage`` is a 1 s average on A100 and newer; otherwise from that
average, and the method is named in the metric (``power_instant`` vs ``power_avg``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.base import Sample, SourceUnavailable

# Clock-event (throttle) reasons that mean the GPU ran slower than it could: software power
# cap, hardware slowdown, software and hardware thermal slowdown, power brake. Idle,
# application-clock and sync-boost reasons are not throttling.
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def _field_value(field: Any) -> float:
    """The numeric value of an nvmlFieldValue_t, read by its declared type."""
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
        int(field.valueType), "uiVal"
    )
    return float(getattr(field.value, attr))


class NvmlCollector:
    """Utilisation, memory, power, energy, clocks, temperature, throttle reasons and PCIe
    throughput of each GPU the trial uses (``gpu_uuids``), or of every GPU when not given."""

    name = "nvml"

    def __init__(self, gpu_uuids: Sequence[str] | None = None) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._labels: list[str] = []
        self._instant_power: list[bool] = []
        self._gpu_uuids = [
            u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}" for u in gpu_uuids or []
        ]

    def open(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise SourceUnavailable(f"pynvml (nvidia-ml-py) is not installed: {exc}") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise SourceUnavailable(f"NVML failed to initialise: {exc}") from exc
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            pynvml.nvmlShutdown()
            raise SourceUnavailable("NVML reports no GPU on this node")
        self._nvml = pynvml
        indices = range(count)
        if self._gpu_uuids:
            by_uuid = {
                _text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))): i
                for i in indices
            }
            wanted = [by_uuid[u] for u in self._gpu_uuids if u in by_uuid]
            indices = wanted or indices  # an unknown UUID: watch every GPU rather than none
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        self._labels = [f"gpu{i}" for i in indices]  # NVML (PCI bus) order
        self._instant_power = [self._has_instant_power(h) for h in self._handles]

    def _has_instant_power(self, handle: Any) -> bool:
        nv = self._nvml
        try:
            (field,) = nv.nvmlDeviceGetFieldValues(handle, [nv.NVML_FI_DEV_POWER_INSTANT])
        except (nv.NVMLError, AttributeError):
            return False
        return int(field.nvmlReturn) == nv.NVML_SUCCESS

    def _optional(self, fn: Any, *args: Any) -> Any:
        """Call an NVML query that some GPUs lack; None where it is not supported."""
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def sample(self, t: float) -> list[Sample]:
        nv = self._nvml
        out: list[Sample] = []
        for i, h in enumerate(self._handles):
            dev = self._labels[i]

            def add(metric: str, unit: str, value: float | None, dev: str = dev) -> None:
                if value is not None:
                    out.append(Sample(t, self.name, dev, metric, unit, float(value)))

            util = self._optional(nv.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                add("gpu_util", "%", util.gpu)
                add("memory_util", "%", util.memory)
            mem = self._optional(nv.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                add("memory_used", "B", mem.used)
            if self._instant_power[i]:
                (field,) = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])
                if int(field.nvmlReturn) == nv.NVML_SUCCESS:
                    add("power_instant", "W", _field_value(field) / 1e3)
            else:
                mw = self._optional(nv.nvmlDeviceGetPowerUsage, h)
                add("power_avg", "W", None if mw is None else mw / 1e3)
            mj = self._optional(nv.nvmlDeviceGetTotalEnergyConsumption, h)
            add("energy_total", "J", None if mj is None else mj / 1e3)
            add("sm_clock", "MHz", self._optional(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM))
            add(
                "memory_clock",
                "MHz",
                self._optional(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
            )
            add(
                "temperature",
                "C",
                self._optional(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
            )
            reasons_fn = self._clock_reasons_fn()
            reasons = self._optional(reasons_fn, h) if reasons_fn else None
            add("clock_event_reasons", "bitmask", reasons)
            if reasons is not None:
                add("throttled", "bool", 1.0 if int(reasons) & THROTTLE_MASK else 0.0)
            for metric, counter in (
                ("pcie_tx", "NVML_PCIE_UTIL_TX_BYTES"),
                ("pcie_rx", "NVML_PCIE_UTIL_RX_BYTES"),
            ):
                if hasattr(nv, counter):
                    kbs = self._optional(nv.nvmlDeviceGetPcieThroughput, h, getattr(nv, counter))
                    add(metric, "B/s", None if kbs is None else kbs * 1e3)
        return out

    def _clock_reasons_fn(self) -> Any:
        """The clock-event (formerly "throttle") reasons query, or None in an old binding."""
        nv = self._nvml
        return getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None

    def facts(self) -> dict[str, Any]:
        """Driver version and, per GPU, name, memory, PCI bus, power limit and max clocks."""
        nv = self._nvml
        gpus = []
        for i, h in enumerate(self._handles):
            limit = self._optional(nv.nvmlDeviceGetPowerManagementLimit, h)
            pci = self._optional(nv.nvmlDeviceGetPciInfo, h)
            gpus.append(
                {
                    "index": int(self._labels[i].removeprefix("gpu")),
                    "name": _text(nv.nvmlDeviceGetName(h)),
                    "uuid": _text(self._optional(nv.nvmlDeviceGetUUID, h)),
                    "memory_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).total),
                    "pci_bus_id": _text(getattr(pci, "busId", None)),
                    "power_limit_w": None if limit is None else limit / 1e3,
                    "max_sm_clock_mhz": self._optional(
                        nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM
                    ),
                    "max_memory_clock_mhz": self._optional(
                        nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_MEM
                    ),
                    "instant_power": self._instant_power[i],
                }
            )
        return {"driver": _text(nv.nvmlSystemGetDriverVersion()), "gpus": gpus}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
