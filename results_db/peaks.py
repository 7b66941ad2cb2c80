"""Peaks to report results against: vendors' datasheet figures and measured ceilings.

Datasheet figures are dense (no structured sparsity), at boost clock, as the vendors
publish them for the SKU named; a card run at other clocks or power limits reaches other
numbers, which is why a node's own ceilings (the `calibrate` playbook) are reported too.
Matmul peaks for fp16/bf16/fp8 are with fp32 accumulation where a part differs (RTX 4090).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Datasheet:
    name: str
    pattern: str  # glob over the GPU name NVML/amdsmi reports, case-insensitive
    memory_gbs: float
    tflops: dict[str, float]


# First match wins: the more specific SKU first.
DATASHEETS = (
    Datasheet(
        "H100 PCIe",
        "*h100*pcie*",
        2000,
        {"fp32": 51.2, "tf32": 378, "fp16": 756, "bf16": 756, "fp8": 1513},
    ),
    Datasheet(
        "H100 NVL",
        "*h100*nvl*",
        3900,
        {"fp32": 60, "tf32": 418, "fp16": 835, "bf16": 835, "fp8": 1671},
    ),
    Datasheet(
        "H100 SXM",
        "*h100*",
        3350,
        {"fp32": 67, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "fp8": 1978.9},
    ),
    Datasheet(
        "H200 SXM",
        "*h200*",
        4800,
        {"fp32": 67, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "fp8": 1978.9},
    ),
    Datasheet(
        "A100 80GB PCIe",
        "*a100*80gb*pcie*",
        1935,
        {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312},
    ),
    Datasheet(
        "A100 SXM 80GB", "*a100*80gb*", 2039, {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312}
    ),
    Datasheet("A100 40GB", "*a100*", 1555, {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312}),
    Datasheet(
        "L40S", "*l40s*", 864, {"fp32": 91.6, "tf32": 183, "fp16": 362, "bf16": 362, "fp8": 733}
    ),
    Datasheet(
        "RTX 4090",
        "*rtx 4090*",
        1008,
        {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2, "fp8": 330.3},
    ),
    Datasheet(
        "MI300X",
        "*mi300x*",
        5300,
        {"fp32": 163.4, "tf32": 653.7, "fp16": 1307.4, "bf16": 1307.4, "fp8": 2614.9},
    ),
)


def datasheet_for(gpu_model: str | None) -> Datasheet | None:
    """The datasheet entry of a GPU name, or None for parts the table does not know."""
    if not gpu_model:
        return None
    name = gpu_model.lower()
    return next((d for d in DATASHEETS if fnmatchcase(name, d.pattern)), None)


def datasheet_peak(gpu_model: str | None, key: str) -> tuple[float, str] | None:
    """(peak in the metric's unit, SKU name) for GPU keys the datasheet table covers."""
    sheet = datasheet_for(gpu_model)
    if sheet is None or ":cuda" not in key:
        return None
    if key == "bandwidth:cuda":
        return sheet.memory_gbs, sheet.name
    dtype = key.rsplit(":", 1)[1]
    value = sheet.tflops.get(dtype)
    return (value, sheet.name) if value else None
