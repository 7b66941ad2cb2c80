"""``inference.decode``: a Llama-style decoder's prefill and greedy decode, in process.

One measured iteration serves one batch: prefill of ``seq_len`` prompt tokens (its time is
the TTFT), then ``output_len - 1`` more tokens one step at a time with the KV cache (their
mean is the TPOT, as vLLM defines it). Output length is fixed: generation never stops early.
Verification: the same seed gives the same tokens, and the cached decode's logits match a
full-sequence forward without the cache.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from workloads.base import (
    DeviceParams,
    MetricSpec,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.checks import max_relative_error
from workloads.devices import DTYPES, apply_threads, check_fits, generator, resolve_device
from workloads.llama import PRESETS, Llama

TTFT = MetricSpec("ttft", "ms", False, "time to first token: prefill of the batch")
TPOT = MetricSpec("tpot", "ms", False, "time per output token after the first")
DECODE_TPUT = MetricSpec("decode_throughput", "tokens/s", True, "decode tokens per second")
TOTAL_TPUT = MetricSpec("total_throughput", "tokens/s", True, "prompt + output tokens per second")
PEAK_MEMORY = MetricSpec("peak_memory", "B", False, "peak device (or host RSS) memory")
LOGIT_TOLERANCE = {"fp32": 1e-3, "bf16": 8e-2, "fp16": 2e-2}


class DecodeParams(DeviceParams):
    model: Literal["tiny", "125m", "1b", "8b"] = Field("tiny", description="size preset")
    batch: int = Field(1, ge=1)
    seq_len: int = Field(128, ge=1, description="prompt tokens per sequence")
    output_len: int = Field(32, ge=2, description="generated tokens per sequence (fixed)")
    dtype: Literal["fp32", "bf16", "fp16"] = "bf16"

    @model_validator(mode="after")
    def _fits(self) -> DecodeParams:
        limit = PRESETS[self.model].max_seq
        if self.seq_len + self.output_len > limit:
            raise ValueError(f"seq_len + output_len exceeds {self.model}'s {limit} positions")
        return self


class DecodeWorkload(Workload):
    name = "inference.decode"
    description = "Llama-style decoder prefill + greedy decode (KV cache): TTFT, TPOT, tokens/s"
    Params = DecodeParams
    metrics = (TPOT, TTFT, DECODE_TPUT, TOTAL_TPUT, PEAK_MEMORY)
    primary_metric = "tpot"

    params: DecodeParams

    def setup(self) -> None:
        p = self.params
        self.dev = resolve_device(p.device)
        self.threads = apply_threads(p.threads) if self.dev.type == "cpu" else None
        self.cfg = PRESETS[p.model]
        dtype = DTYPES[p.dtype]
        elem = torch.empty((), dtype=dtype).element_size()
        length = p.seq_len + p.output_len
        cache = 2 * self.cfg.n_layers * p.batch * self.cfg.n_kv_heads * length * self.cfg.head_dim
        check_fits(self.dev, (self.cfg.params() + cache) * elem)
        self.model = Llama(self.cfg)
        self.model.init_weights(seed=1234)
        self.model = self.model.to(device=self.dev, dtype=dtype).eval()
        self.model.setup_cache(p.batch, length, dtype, self.dev)
        self.prompt = torch.randint(
            0,
            self.cfg.vocab,
            (p.batch, p.seq_len),
            device=self.dev,
            generator=generator(self.dev, 99),
        )
        self.prefill_s: list[float] = []
        self.decode_s: list[float] = []
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def generate(self, keep_logits: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Greedy tokens (batch, output_len) and, if asked, each decode step's logits."""
        p = self.params
        logits = self.model(self.prompt, start=0)
        token = logits[:, -1].argmax(-1, keepdim=True)
        out, kept = [token], [logits[:, -1]] if keep_logits else []
        for i in range(1, p.output_len):
            logits = self.model(token, start=p.seq_len + i - 1)
            token = logits[:, -1].argmax(-1, keepdim=True)
            out.append(token)
            if keep_logits:
                kept.append(logits[:, -1])
        return torch.cat(out, dim=1), kept

    def run_iteration(self) -> None:
        # Prefill and decode are timed apart (synchronised at the boundary); the runner's
        # own timer still brackets the whole iteration.
        p = self.params
        t0 = time.perf_counter()
        logits = self.model(self.prompt, start=0)
        token = logits[:, -1].argmax(-1, keepdim=True)
        self._sync()
        t1 = time.perf_counter()
        for i in range(1, p.output_len):
            token = self.model(token, start=p.seq_len + i - 1)[:, -1].argmax(-1, keepdim=True)
        self._sync()
        t2 = time.perf_counter()
        self.prefill_s.append(t1 - t0)
        self.decode_s.append(t2 - t1)

    def verify(self) -> None:
        p = self.params
        tokens, logits = self.generate(keep_logits=True)
        again, _ = self.generate()
        if not torch.equal(tokens, again):
            raise VerificationError("the same seed gave different tokens on a second run")
        # The cached decode's logits must match one forward over the whole sequence.
        sequence = torch.cat([self.prompt, tokens[:, :-1]], dim=1)
        full = self.model(sequence, start=0, use_cache=False)[:, p.seq_len - 1 :]
        cached = torch.stack(logits, dim=1)
        err = max_relative_error(cached.float(), full.float())
        if not err <= LOGIT_TOLERANCE[p.dtype]:
            raise VerificationError(
                f"KV-cache logits differ from a full forward: {err:.3g} > "
                f"{LOGIT_TOLERANCE[p.dtype]:g} ({p.dtype})"
            )

    def derive(self, seconds: list[float]) -> dict[str, list[float]]:
        p = self.params
        n = len(seconds)
        prefill, decode = self.prefill_s[-n:], self.decode_s[-n:]  # warm-up runs come first
        steps = p.output_len - 1
        if self.dev.type == "cuda":
            peak = float(torch.cuda.max_memory_allocated(self.dev))
        else:
            import psutil

            peak = float(psutil.Process().memory_info().rss)
        return {
            "ttft": [t * 1e3 for t in prefill],
            "tpot": [d / steps * 1e3 for d in decode],
            "decode_throughput": [p.batch * steps / d for d in decode],
            "total_throughput": [p.batch * (p.seq_len + p.output_len) / s for s in seconds],
            "peak_memory": [peak],
        }

    def work(self) -> Work:
        p = self.params
        return Work(tokens=p.batch * p.output_len, flops=self._flops())

    def _flops(self) -> float:
        p = self.params
        prefill = sum(self.cfg.flops_per_token(i + 1) for i in range(p.seq_len))
        decode = sum(self.cfg.flops_per_token(p.seq_len + i) for i in range(1, p.output_len))
        return p.batch * (prefill + decode)

    def context(self) -> dict[str, Any]:
        p = self.params
        elem = torch.empty((), dtype=DTYPES[p.dtype]).element_size()
        return {
            "model_params": self.cfg.params(),
            "flops_per_iteration": self._flops(),
            # Each decode step reads every weight once (the KV cache on top of that).
            "weight_bytes_per_decode_step": self.cfg.params() * elem,
            "threads": self.threads,
        }

    def teardown(self) -> None:
        del self.model, self.prompt


__all__ = ["DecodeWorkload", "UnsupportedParams"]
