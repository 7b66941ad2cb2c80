"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

Power comes from the instantaneous field (NVML_FI_DEV_POWER_INSTANT) where the driver has it,
since ``nvmlDeviceGetPowerUsage`` is a 1 s average on A100 and newer; otherwise from that
average, and the method is named in the metric (``power_instant`` vs ``power_avg``).
"""

from __future__ import annotations

from typing import Any

from collectors.base import Sample, SourceUnavailable


def _field_value(field: Any) -> float:
    """The numeric value of an nvmlFieldValue_t, read by its declared type."""
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
        int(field.valueType), "uiVal"
    )
    return float(getattr(field.value, attr))


class NvmlCollector:
    """Utilisation, memory, power, clocks, temperature and energy of each visible GPU."""

    name = "nvml"

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._instant_power: list[bool] = []

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
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
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
            dev = f"gpu{i}"

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
        return out

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
                    "index": i,
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
