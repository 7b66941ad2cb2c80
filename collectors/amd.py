"""AMD GPUs through ``amdsmi`` (ROCm's Python bindings), when it is importable.

Units as the library reports them: power in W (the string "N/A" where unsupported), the
energy accumulator times ``counter_resolution`` in microjoules (key ``energy_accumulator``
since amdsmi 6.2.1, ``power`` before), VRAM in MB, clocks in MHz, temperature in C.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from collectors.base import Sample, SourceUnavailable


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


class AmdSmiCollector:
    """Power, energy, activity, VRAM, clocks and temperature of each AMD GPU."""

    name = "amdsmi"

    def __init__(self) -> None:
        self._amd: Any = None
        self._handles: list[Any] = []

    def open(self) -> None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints when the .so is missing
                import amdsmi
        except Exception as exc:  # ImportError, or OSError/AttributeError on a ROCm mismatch
            raise SourceUnavailable(
                f"amdsmi is not importable: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            amdsmi.amdsmi_init()
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as exc:
            raise SourceUnavailable(f"amdsmi failed to initialise: {exc}") from exc
        if not handles:
            amdsmi.amdsmi_shut_down()
            raise SourceUnavailable("amdsmi reports no GPU on this node")
        self._amd = amdsmi
        self._handles = handles

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self._amd, fn)(*args)
        except Exception:  # unsupported on this GPU: left out, never a zero
            return None

    def sample(self, t: float) -> list[Sample]:
        amd = self._amd
        out: list[Sample] = []
        for i, h in enumerate(self._handles):
            dev = f"gpu{i}"

            def add(metric: str, unit: str, value: Any, dev: str = dev) -> None:
                number = _number(value)
                if number is not None:
                    out.append(Sample(t, self.name, dev, metric, unit, number))

            power = self._call("amdsmi_get_power_info", h) or {}
            add("power_instant", "W", power.get("current_socket_power"))
            if _number(power.get("current_socket_power")) is None:
                add("power_avg", "W", power.get("average_socket_power"))
            energy = self._call("amdsmi_get_energy_count", h) or {}
            count = energy.get("energy_accumulator", energy.get("power"))
            if _number(count) is not None and _number(energy.get("counter_resolution")) is not None:
                add("energy_total", "J", count * energy["counter_resolution"] / 1e6)
            activity = self._call("amdsmi_get_gpu_activity", h) or {}
            add("gpu_util", "%", activity.get("gfx_activity"))
            add("memory_util", "%", activity.get("umc_activity"))
            vram = self._call("amdsmi_get_gpu_vram_usage", h) or {}
            used = _number(vram.get("vram_used"))
            add("memory_used", "B", None if used is None else used * 2**20)
            gfx = self._call("amdsmi_get_clock_info", h, amd.AmdSmiClkType.GFX) or {}
            add("sm_clock", "MHz", gfx.get("clk"))
            mem = self._call("amdsmi_get_clock_info", h, amd.AmdSmiClkType.MEM) or {}
            add("memory_clock", "MHz", mem.get("clk"))
            add(
                "temperature",
                "C",
                self._call(
                    "amdsmi_get_temp_metric",
                    h,
                    amd.AmdSmiTemperatureType.EDGE,
                    amd.AmdSmiTemperatureMetric.CURRENT,
                ),
            )
        return out

    def close(self) -> None:
        if self._amd is not None:
            self._call("amdsmi_shut_down")
            self._amd = None

    def facts(self) -> dict[str, Any]:
        gpus = []
        for i, h in enumerate(self._handles):
            asic = self._call("amdsmi_get_gpu_asic_info", h) or {}
            gpus.append({"index": i, "name": asic.get("market_name")})
        return {"gpus": gpus}
