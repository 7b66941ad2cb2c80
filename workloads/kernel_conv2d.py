"""``kernel.conv2d``: 2-D convolution forward (cuDNN on CUDA, oneDNN on CPU).

FLOPs: 2 * batch * out_channels * out_h * out_w * in_channels * kernel^2.
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


class Conv2dParams(DeviceParams):
    batch: int = Field(32, ge=1)
    in_channels: int = Field(64, ge=1)
    out_channels: int = Field(64, ge=1)
    height: int = Field(56, ge=1)
    width: int = Field(56, ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: int = Field(1, ge=0)
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    channels_last: bool = Field(False, description="NHWC memory format")


class Conv2dWorkload(Workload):
    name = "kernel.conv2d"
    description = "2-D convolution forward (torch conv2d), 2*N*Co*Ho*Wo*Ci*K^2 FLOPs"
    Params = Conv2dParams
    gpu_isolated = True  # one GPU's own memory and SMs: neighbours run at once
    metrics = (THROUGHPUT, TIME)
    primary_metric = "throughput"
    ceilings = {"throughput": MATMUL_CEILING}

    params: Conv2dParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype, self.elem = on.dev, on.threads, on.dtype, on.elem
        self.out_h = (p.height + 2 * p.padding - p.kernel) // p.stride + 1
        self.out_w = (p.width + 2 * p.padding - p.kernel) // p.stride + 1
        if self.out_h < 1 or self.out_w < 1:
            raise UnsupportedParams(f"kernel {p.kernel} does not fit a {p.height}x{p.width} input")
        check_peak(self.peak_bytes())
        gen = generator(self.dev, 77)
        fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        self.x = (
            torch.randn(p.batch, p.in_channels, p.height, p.width, device=self.dev, generator=gen)
            .to(dtype)
            .to(memory_format=fmt)
        )
        self.w = (
            torch.randn(
                p.out_channels, p.in_channels, p.kernel, p.kernel, device=self.dev, generator=gen
            )
            / (p.in_channels * p.kernel**2) ** 0.5
        )
        self.w = self.w.to(dtype).to(memory_format=fmt)
        self.out: torch.Tensor | None = None

    def peak_bytes(self) -> dict[str, int]:
        p = self.params
        x = p.batch * p.in_channels * p.height * p.width
        w = p.out_channels * p.in_channels * p.kernel**2
        out = p.batch * p.out_channels * self.out_h * self.out_w
        held = (x + w + out) * self.elem
        drawn = 4 * x + (x * self.elem if p.channels_last else 0)  # fp32 draw, then re-laid
        verify = 8 * (x + w + out) // p.batch + 8 * w  # one image in fp64, and the weights
        # On the host, oneDNN reorders input and output into its blocked layout.
        reorder = (x + out) * self.elem if self.dev.type == "cpu" else 0
        return {str(self.dev): held + max(drawn, verify, reorder)}

    def run_iteration(self) -> None:
        p = self.params
        self.out = torch.nn.functional.conv2d(self.x, self.w, stride=p.stride, padding=p.padding)

    def verify(self) -> None:
        assert self.out is not None
        p = self.params
        ref = torch.nn.functional.conv2d(
            self.x[:1].double(), self.w.double(), stride=p.stride, padding=p.padding
        )
        require_close("conv2d output", self.out[:1], ref, p.dtype)

    def work(self) -> Work:
        p = self.params
        return Work(
            flops=2.0
            * p.batch
            * p.out_channels
            * self.out_h
            * self.out_w
            * p.in_channels
            * p.kernel**2
        )

    def context(self) -> dict[str, Any]:
        out_elems = self.params.batch * self.params.out_channels * self.out_h * self.out_w
        return {
            "flops_per_iteration": self.work().flops,
            "output_hw": [self.out_h, self.out_w],
            # input and weights read, output written once: the roofline's intensity
            "compulsory_bytes": (self.x.numel() + self.w.numel() + out_elems)
            * self.x.element_size(),
            "threads": self.threads,
            **host_kernel_facts(self.dev),
        }

    def teardown(self) -> None:
        del self.x, self.w, self.out
