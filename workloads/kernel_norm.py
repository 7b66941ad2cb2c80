"""``kernel.norm``: LayerNorm, RMSNorm and softmax over the last dimension, memory-bound.

Reported as bandwidth: bytes = input read once + output written once + the weight (and bias)
read once; intermediate passes a kernel makes inside its caches are not counted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workloads.base import BANDWIDTH, MEMORY_CEILING, TIME, DeviceParams, Work, Workload
from workloads.checks import require_close
from workloads.devices import check_peak, device_setup, generator, host_kernel_facts
from workloads.lazy import lazy_module

torch = lazy_module("torch")

EPS = 1e-5
CHECK_ROWS = 64


class NormParams(DeviceParams):
    op: Literal["layernorm", "rmsnorm", "softmax"] = "layernorm"
    rows: int = Field(8192, ge=1, description="tokens (batch x sequence)")
    cols: int = Field(4096, ge=1, description="hidden size: the normalised dimension")
    dtype: Literal["fp32", "fp16", "bf16"] = "bf16"


class NormWorkload(Workload):
    name = "kernel.norm"
    description = "layernorm / rmsnorm / softmax over the last dim, reported as GB/s"
    Params = NormParams
    gpu_isolated = True  # one GPU's own memory and SMs: neighbours run at once
    metrics = (BANDWIDTH, TIME)
    primary_metric = "bandwidth"
    sweep_params = ("rows",)
    ceilings = {"bandwidth": MEMORY_CEILING}

    params: NormParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype, self.elem = on.dev, on.threads, on.dtype, on.elem
        check_peak(self.peak_bytes())
        gen = generator(self.dev, 5)
        self.x = (torch.randn(p.rows, p.cols, device=self.dev, generator=gen) * 2 + 0.5).to(dtype)
        self.weight = (torch.rand(p.cols, device=self.dev, generator=gen) + 0.5).to(dtype)
        self.bias = torch.randn(p.cols, device=self.dev, generator=gen).to(dtype)
        self.out: torch.Tensor | None = None

    def run_iteration(self) -> None:
        op, x = self.params.op, self.x
        if op == "layernorm":
            self.out = torch.nn.functional.layer_norm(
                x, (x.shape[-1],), self.weight, self.bias, EPS
            )
        elif op == "rmsnorm":
            self.out = torch.nn.functional.rms_norm(x, (x.shape[-1],), self.weight, EPS)
        else:
            self.out = torch.softmax(x, dim=-1)

    def peak_bytes(self) -> dict[str, int]:
        p = self.params
        # Input and output; the input is drawn in fp32 (two fp32 arrays at once) first.
        per_element = max(2 * self.elem, 2 * 4)
        return {str(self.dev): per_element * p.rows * p.cols}

    def verify(self) -> None:
        assert self.out is not None
        x = self.x[:CHECK_ROWS].double()
        w, b = self.weight.double(), self.bias.double()
        op = self.params.op
        if op == "layernorm":
            mean = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            ref = (x - mean) / torch.sqrt(var + EPS) * w + b
        elif op == "rmsnorm":
            ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w
        else:
            ref = torch.softmax(x, dim=-1)
        require_close(f"{op} output", self.out[:CHECK_ROWS], ref, self.params.dtype)

    def work(self) -> Work:
        p = self.params
        params_read = {"layernorm": 2, "rmsnorm": 1, "softmax": 0}[p.op] * p.cols
        return Work(
            bytes=(2 * p.rows * p.cols + params_read) * self.elem,
            convention="input read once + output written once + weight/bias read once",
        )

    def context(self) -> dict[str, Any]:
        return {
            "bytes_per_iteration": self.work().bytes,
            "byte_convention": self.work().convention,
            "threads": self.threads,
            **host_kernel_facts(self.dev),
        }

    def teardown(self) -> None:
        del self.x, self.weight, self.bias, self.out
