"""``memory.stream``: STREAM copy/scale/add/triad on the host or a CUDA device.

Byte counting follows STREAM: copy and scale move 2 words per element, add and triad 3;
write-allocate traffic is not counted. Each op is one torch kernel with no temporaries
(``torch.add(..., alpha=s)`` is the fused triad).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workloads.base import (
    BANDWIDTH,
    MEMORY_CEILING,
    TIME,
    DeviceParams,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.devices import check_peak, device_setup, generator
from workloads.lazy import lazy_module

torch = lazy_module("torch")

SCALAR = 3.0  # STREAM's scalar
# Verification works on this many elements at a time, holding a few temporaries of it.
VERIFY_CHUNK = 1 << 20
VERIFY_TEMPS = 12  # measured: isclose and the reference hold ~9 chunk-sized arrays
WORDS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
CONVENTION = "STREAM: copy/scale 2 words, add/triad 3 words per element; no write-allocate"


class StreamParams(DeviceParams):
    op: Literal["copy", "scale", "add", "triad"] = Field("triad", description="STREAM kernel")
    size_mib: float = Field(64.0, gt=0, description="size of each of the three arrays, MiB")
    dtype: Literal["fp64", "fp32"] = Field("fp64", description="element type (STREAM: fp64)")


class StreamWorkload(Workload):
    name = "memory.stream"
    description = "STREAM copy/scale/add/triad memory bandwidth (host or CUDA device)"
    Params = StreamParams
    gpu_isolated = True  # one GPU's own memory and SMs: neighbours run at once
    metrics = (BANDWIDTH, TIME)
    primary_metric = "bandwidth"
    sweep_params = ("size_mib",)
    ceilings = {"bandwidth": MEMORY_CEILING}

    params: StreamParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype, elem = on.dev, on.threads, on.dtype, on.elem
        self.n = int(p.size_mib * 2**20) // elem
        if self.n < 1:
            raise UnsupportedParams(f"size_mib={p.size_mib} holds no {p.dtype} element")
        self.elem = elem
        check_peak(self.peak_bytes())
        gen = generator(self.dev, 1234)
        # Every array random (outputs too), so a kernel that did nothing fails verification.
        self.a, self.b, self.c = (
            torch.rand(self.n, dtype=dtype, device=self.dev, generator=gen) for _ in range(3)
        )
        self._kernel = getattr(self, f"_{p.op}")

    def _copy(self) -> None:
        self.c.copy_(self.a)

    def _scale(self) -> None:
        torch.mul(self.c, SCALAR, out=self.b)

    def _add(self) -> None:
        torch.add(self.a, self.b, out=self.c)

    def _triad(self) -> None:
        torch.add(self.b, self.c, alpha=SCALAR, out=self.a)

    def run_iteration(self) -> None:
        self._kernel()

    def peak_bytes(self) -> dict[str, int]:
        # The three arrays, and verification's temporaries over one chunk at a time.
        chunk = min(self.n, VERIFY_CHUNK)
        return {str(self.dev): (3 * self.n + VERIFY_TEMPS * chunk) * self.elem}

    def verify(self) -> None:
        op = self.params.op
        # Each op leaves its inputs untouched, so the output equals op(inputs) however many
        # times it ran.
        rtol = 1e-12 if self.params.dtype == "fp64" else 1e-6
        wrong = 0
        # Chunk by chunk: a whole-array reference and allclose's temporaries would hold
        # ~2.6x the arrays' memory at once (7.8 GiB for a 1 GiB triad).
        for lo in range(0, self.n, VERIFY_CHUNK):
            a, b, c = (t[lo : lo + VERIFY_CHUNK] for t in (self.a, self.b, self.c))
            got, want = {
                "copy": (c, a),
                "scale": (b, SCALAR * c),
                "add": (c, a + b),
                "triad": (a, b + SCALAR * c),
            }[op]
            wrong += int((~torch.isclose(got, want, rtol=rtol, atol=0.0)).sum())
        if wrong:
            raise VerificationError(f"{op}: {wrong} of {self.n} elements differ from reference")

    def work(self) -> Work:
        elem = self.a.element_size()
        return Work(bytes=WORDS[self.params.op] * self.n * elem, convention=CONVENTION)

    def context(self) -> dict[str, Any]:
        return {
            "elements": self.n,
            "bytes_per_iteration": self.work().bytes,
            "byte_convention": CONVENTION,
            "threads": self.threads,
        }

    def teardown(self) -> None:
        del self.a, self.b, self.c
