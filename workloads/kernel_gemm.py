"""``kernel.gemm``: C = A @ B through torch.matmul (cuBLAS on CUDA, oneDNN/BLAS on CPU).

FLOPs per iteration are 2*m*n*k. The result is checked on a random subset of rows against
an fp64 product of the same (already rounded) inputs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workloads.base import (
    MATMUL_CEILING,
    THROUGHPUT,
    TIME,
    DeviceParams,
    UnsupportedParams,
    Work,
    Workload,
)
from workloads.checks import require_close
from workloads.devices import check_peak, device_setup, generator, host_kernel_facts
from workloads.lazy import lazy_module

torch = lazy_module("torch")

CHECK_ROWS = 64


class GemmParams(DeviceParams):
    m: int = Field(1024, ge=1, description="rows of A and C")
    n: int = Field(1024, ge=1, description="columns of B and C")
    k: int = Field(1024, ge=1, description="columns of A, rows of B")
    dtype: Literal["fp32", "tf32", "fp16", "bf16", "fp8"] = Field(
        "fp32", description="math type; fp8 is e4m3 inputs, bf16 output (torch._scaled_mm)"
    )


class GemmWorkload(Workload):
    name = "kernel.gemm"
    description = "dense matrix multiply C = A @ B (torch.matmul), 2*m*n*k FLOPs"
    Params = GemmParams
    gpu_isolated = True  # one GPU's own memory and SMs: neighbours run at once
    metrics = (THROUGHPUT, TIME)
    primary_metric = "throughput"
    sweep_params = ("m",)
    ceilings = {"throughput": MATMUL_CEILING}

    params: GemmParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype, self.elem = on.dev, on.threads, on.dtype, on.elem
        if p.dtype == "tf32" and (
            self.dev.type != "cuda" or torch.cuda.get_device_capability(self.dev)[0] < 8
        ):
            raise UnsupportedParams("tf32 needs a CUDA device of compute capability 8.0+")
        if p.dtype == "fp8":
            self._check_fp8()
        check_peak(self.peak_bytes())
        self._saved_precision = torch.get_float32_matmul_precision()
        # "highest" keeps fp32 as IEEE fp32; "high" allows TF32 tensor cores.
        torch.set_float32_matmul_precision("high" if p.dtype == "tf32" else "highest")
        gen = generator(self.dev, 4321)
        self.a = torch.randn(p.m, p.k, device=self.dev, generator=gen).to(dtype)
        if p.dtype == "fp8":
            # _scaled_mm wants B column-major: store B^T row-major and pass its transpose.
            self.b = torch.randn(p.n, p.k, device=self.dev, generator=gen).to(dtype).t()
            self.c = torch.randn(p.m, p.n, device=self.dev, generator=gen).to(torch.bfloat16)
            self.scale = torch.ones((), device=self.dev)
        else:
            self.b = torch.randn(p.k, p.n, device=self.dev, generator=gen).to(dtype)
            self.c = torch.randn(p.m, p.n, device=self.dev, generator=gen).to(dtype)

    def peak_bytes(self) -> dict[str, int]:
        p, elem = self.params, self.elem
        # A, B, C; each drawn in fp32 first; verification holds B in fp32 and fp64 and
        # CHECK_ROWS rows of the fp64 reference.
        low = elem != 4
        drawn = 4 * max(p.m * p.k, p.k * p.n, p.m * p.n) if low else 0
        verify = p.k * p.n * (8 + (4 if low else 0)) + CHECK_ROWS * (p.k + p.n) * 8
        # A CPU matmul in 16 bits converts its inputs to fp32 internally.
        convert = 4 * (p.m * p.k + p.k * p.n) if low and self.dev.type == "cpu" else 0
        held = (p.m * p.k + p.k * p.n + p.m * p.n) * elem
        return {str(self.dev): held + max(drawn, verify, convert)}

    def _check_fp8(self) -> None:
        p = self.params
        if self.dev.type != "cuda" or torch.cuda.get_device_capability(self.dev) < (8, 9):
            raise UnsupportedParams("fp8 needs a CUDA device of compute capability 8.9+")
        if p.k % 16 or p.n % 16:
            raise UnsupportedParams(f"fp8 GEMM needs k and n divisible by 16 (k={p.k}, n={p.n})")

    def run_iteration(self) -> None:
        if self.params.dtype == "fp8":
            self.c = torch._scaled_mm(
                self.a, self.b, scale_a=self.scale, scale_b=self.scale, out_dtype=torch.bfloat16
            )
        else:
            torch.matmul(self.a, self.b, out=self.c)

    def verify(self) -> None:
        p = self.params
        rows = torch.randperm(p.m, generator=torch.Generator().manual_seed(7))[:CHECK_ROWS]
        rows = rows.to(self.dev)
        ref = self.a[rows].float().double() @ self.b.float().double()
        # fp8 inputs are exact in the reference; what remains is the bf16 output's rounding.
        require_close("C = A @ B", self.c[rows], ref, "bf16" if p.dtype == "fp8" else p.dtype)

    def work(self) -> Work:
        p = self.params
        return Work(flops=2.0 * p.m * p.n * p.k)

    def context(self) -> dict[str, Any]:
        p = self.params
        return {
            "flops_per_iteration": self.work().flops,
            # A, B read and C written once: the least traffic, for the roofline's intensity.
            "compulsory_bytes": (p.m * p.k + p.k * p.n + p.m * p.n) * self.a.element_size(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "threads": self.threads,
            **host_kernel_facts(self.dev),
        }

    def teardown(self) -> None:
        torch.set_float32_matmul_precision(self._saved_precision)
        del self.a, self.b, self.c
