"""``kernel.attention``: scaled-dot-product attention forward (torch SDPA), GQA and causal.

FLOPs: 4 * batch * heads * seq_len * kv_len * head_dim (QK^T and PV, 2 FLOPs per multiply-
add); causal counts half (the FlashAttention convention), since half the scores are masked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from workloads.base import MATMUL_CEILING, THROUGHPUT, TIME, DeviceParams, Work, Workload
from workloads.checks import require_close
from workloads.devices import check_peak, device_setup, generator, host_kernel_facts
from workloads.lazy import lazy_module

torch = lazy_module("torch")

CHECK_HEADS = 4


class AttentionParams(DeviceParams):
    batch: int = Field(1, ge=1)
    heads: int = Field(32, ge=1, description="query heads")
    kv_heads: int | None = Field(None, ge=1, description="key/value heads (GQA); default heads")
    seq_len: int = Field(1024, ge=1, description="query length")
    kv_len: int | None = Field(None, ge=1, description="key/value length; default seq_len")
    head_dim: int = Field(128, ge=1)
    causal: bool = False
    dtype: Literal["fp32", "fp16", "bf16"] = "bf16"

    @model_validator(mode="after")
    def _shapes(self) -> AttentionParams:
        kv_heads = self.kv_heads or self.heads
        if self.heads % kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({kv_heads})")
        if self.causal and (self.kv_len or self.seq_len) != self.seq_len:
            raise ValueError("causal needs kv_len == seq_len (decode shapes: causal: false)")
        return self


class AttentionWorkload(Workload):
    name = "kernel.attention"
    description = "scaled-dot-product attention forward (torch SDPA), GQA and causal"
    Params = AttentionParams
    gpu_isolated = True  # one GPU's own memory and SMs: neighbours run at once
    metrics = (THROUGHPUT, TIME)
    primary_metric = "throughput"
    sweep_params = ("seq_len", "kv_len")
    ceilings = {"throughput": MATMUL_CEILING}

    params: AttentionParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype, self.elem = on.dev, on.threads, on.dtype, on.elem
        self.kv_heads = p.kv_heads or p.heads
        self.kv_len = p.kv_len or p.seq_len
        check_peak(self.peak_bytes())
        gen = generator(self.dev, 2024)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, device=self.dev, generator=gen).to(dtype)

        self.q = rand(p.batch, p.heads, p.seq_len, p.head_dim)
        self.k = rand(p.batch, self.kv_heads, self.kv_len, p.head_dim)
        self.v = rand(p.batch, self.kv_heads, self.kv_len, p.head_dim)
        self.gqa = self.kv_heads != p.heads
        self.out: torch.Tensor | None = None

    def peak_bytes(self) -> dict[str, int]:
        p, elem = self.params, self.elem
        q_elems = p.batch * p.heads * p.seq_len * p.head_dim
        kv_elems = 2 * p.batch * self.kv_heads * self.kv_len * p.head_dim
        held = (2 * q_elems + kv_elems) * elem  # Q, K, V and the output
        drawn = 4 * max(q_elems, kv_elems // 2)  # each drawn in fp32, then converted
        # Verification: CHECK_HEADS heads in fp64, their score matrix and the causal mask.
        heads = min(CHECK_HEADS, p.heads)
        scores = heads * p.seq_len * self.kv_len
        verify = 8 * heads * (2 * p.seq_len + 2 * self.kv_len) * p.head_dim + 16 * scores
        return {str(self.dev): held + max(drawn, verify)}

    def run_iteration(self) -> None:
        kwargs = {"enable_gqa": True} if self.gqa else {}
        self.out = torch.nn.functional.scaled_dot_product_attention(
            self.q, self.k, self.v, is_causal=self.params.causal, **kwargs
        )

    def verify(self) -> None:
        assert self.out is not None
        p = self.params
        heads = slice(0, min(CHECK_HEADS, p.heads))
        group = p.heads // self.kv_heads
        q = self.q[0, heads].double()
        kv_index = torch.arange(p.heads, device=self.dev)[heads] // group
        k, v = self.k[0, kv_index].double(), self.v[0, kv_index].double()
        scores = q @ k.transpose(-1, -2) / p.head_dim**0.5
        if p.causal:
            mask = torch.ones(p.seq_len, self.kv_len, dtype=torch.bool, device=self.dev).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        ref = torch.softmax(scores, dim=-1) @ v
        require_close("attention output", self.out[0, heads], ref, p.dtype)

    def work(self) -> Work:
        p = self.params
        flops = 4.0 * p.batch * p.heads * p.seq_len * self.kv_len * p.head_dim
        return Work(flops=flops / 2 if p.causal else flops)

    def context(self) -> dict[str, Any]:
        return {
            "flops_per_iteration": self.work().flops,
            "flop_convention": "4*b*h*sq*sk*d; causal counts half",
            "compulsory_bytes": (2 * self.q.numel() + self.k.numel() + self.v.numel())
            * self.q.element_size(),
            "gqa_group": self.params.heads // self.kv_heads,
            "threads": self.threads,
            **host_kernel_facts(self.dev),
        }

    def teardown(self) -> None:
        del self.q, self.k, self.v, self.out
