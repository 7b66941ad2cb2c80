"""Output checks shared by the workloads: compare with a higher-precision reference."""

from __future__ import annotations

from workloads.base import VerificationError
from workloads.lazy import lazy_module

torch = lazy_module("torch")

# Max error relative to the largest reference value, by dtype: each allows the type's own
# rounding and accumulation, while a wrong kernel is off by O(1).
TOLERANCE = {"fp64": 1e-10, "fp32": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "bf16": 3e-2, "fp8": 1e-1}


def max_relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|, computed in fp64 (NaN anywhere gives NaN)."""
    got, ref = got.double(), ref.double()
    scale = ref.abs().max().item() or 1.0
    return (got - ref).abs().max().item() / scale


def require_close(what: str, got: torch.Tensor, ref: torch.Tensor, dtype: str) -> None:
    """Raise VerificationError unless ``got`` matches ``ref`` within the dtype's tolerance."""
    err = max_relative_error(got, ref)
    tol = TOLERANCE[dtype]
    if not err <= tol:  # also catches NaN
        raise VerificationError(
            f"{what}: max |out - ref| / max |ref| = {err:.3g} exceeds {tol:g} for {dtype}"
        )
