"""``inference.decode``: a Llama-style decoder's prefill and greedy decode, in process.

One measured iteration serves one batch: prefill of ``seq_len`` prompt tokens (its time is
the TTFT), then ``output_len - 1`` more tokens one step at a time with the KV cache (their
mean is the TPOT, as vLLM defines it). Output length is fixed: generation never stops early.
Verification: the same seed gives the same tokens, and the cached decode's logits match a
full-sequence forward without the cache (whose K/V are rounded like the cache's).

Model FLOPs (2 per multiply-add, every matmul weight once per token plus attention over the
context) give ``throughput``; bytes a decode step must read (every weight once, plus the KV
cache so far) over the TPOT give ``bandwidth``. Against the node's measured GEMM and STREAM
ceilings these are model FLOPs utilisation and memory-bandwidth utilisation.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from workloads.base import (
    MATMUL_CEILING,
    MEMORY_CEILING,
    DeviceParams,
    MetricSpec,
    UnsupportedParams,
    VerificationError,
    Work,
    Workload,
)
from workloads.checks import max_relative_error
from workloads.devices import DTYPES, check_peak, device_setup, generator
from workloads.errors import first_line
from workloads.lazy import lazy_module
from workloads.llama_config import ATTENTION_BACKENDS, PRESETS, LlamaConfig

TTFT = MetricSpec("ttft", "ms", False, "time to first token: prefill of the batch")
TPOT = MetricSpec("tpot", "ms", False, "time per output token after the first")
DECODE_TPUT = MetricSpec("decode_throughput", "tokens/s", True, "decode tokens per second")
TOTAL_TPUT = MetricSpec("total_throughput", "tokens/s", True, "prompt + output tokens per second")
MODEL_FLOPS = MetricSpec("throughput", "TFLOP/s", True, "model FLOPs per second, whole iteration")
DECODE_BW = MetricSpec(
    "bandwidth", "GB/s", True, "weights + KV cache read per decode step, over the TPOT"
)

torch = lazy_module("torch")
PEAK_MEMORY = MetricSpec("peak_memory", "B", False, "peak device memory (host RSS on a CPU)")
HOST_MEMORY = MetricSpec("host_memory", "B", False, "host RSS of the process after the run")
# Logits of the cached decode against a full forward, by model dtype.
LOGIT_TOLERANCE = {"fp32": 1e-3, "bf16": 8e-2, "fp16": 2e-2}
CACHE_DTYPES = {"auto": None, "fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}


class ModelDims(BaseModel):
    """Explicit decoder dimensions, for shapes no preset has."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    vocab: int = Field(ge=2)
    dim: int = Field(ge=2)
    n_layers: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    n_kv_heads: int | None = Field(None, ge=1, description="default: n_heads (no GQA)")
    ffn_dim: int = Field(ge=1)
    head_dim: int | None = Field(None, ge=2, description="default: dim / n_heads")
    max_seq: int = Field(4096, ge=2)
    rope_theta: float = Field(10000.0, gt=0)
    tie_embeddings: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ModelDims:
        if self.head_dim is None and self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if (self.head_dim or self.dim // self.n_heads) % 2:
            raise ValueError("head_dim must be even (rotary embeddings rotate pairs)")
        if self.n_heads % (self.n_kv_heads or self.n_heads):
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads")
        return self

    def config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab=self.vocab,
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads or self.n_heads,
            ffn_dim=self.ffn_dim,
            max_seq=self.max_seq,
            rope_theta=self.rope_theta,
            head_dim_override=self.head_dim,
            tie_embeddings=self.tie_embeddings,
        )


def _model_kind(value: Any) -> str:
    return "dims" if isinstance(value, (dict, ModelDims)) else "preset"


# A preset name or a mapping of dimensions; the discriminator keeps errors to the one meant.
ModelSpec = Annotated[
    Annotated[Literal["tiny", "125m", "1b", "8b"], Tag("preset")]
    | Annotated[ModelDims, Tag("dims")],
    Discriminator(_model_kind),
]


class DecodeParams(DeviceParams):
    model: ModelSpec | None = Field(
        None,
        description="size preset, or explicit dimensions (vocab, dim, n_layers, ...); "
        "default: tiny, or the checkpoint's",
    )
    checkpoint: str | None = Field(
        None,
        description="local Hugging Face Llama folder (config.json + safetensors) to load "
        "instead of random weights; needs transformers installed on the node",
    )
    batch: int = Field(1, ge=1)
    seq_len: int = Field(128, ge=1, description="prompt tokens per sequence")
    output_len: int = Field(32, ge=2, description="generated tokens per sequence (fixed)")
    dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    attention: Literal[ATTENTION_BACKENDS] = Field(  # type: ignore[valid-type]
        "sdpa", description="sdpa (torch picks), a pinned SDPA backend, or eager matmuls"
    )
    kv_cache_dtype: Literal["auto", "fp32", "bf16", "fp16", "fp8"] = Field(
        "auto", description="auto = the model dtype; fp8 = e4m3 with unit scale"
    )

    @model_validator(mode="after")
    def _fits(self) -> DecodeParams:
        if self.checkpoint is not None:
            if self.model is not None:
                raise ValueError("give model or checkpoint, not both")
            return self  # the checkpoint's limits are checked when it is read, on the node
        limit = self.config().max_seq
        if self.seq_len + self.output_len > limit:
            raise ValueError(
                f"seq_len + output_len exceeds {self.model_label()}'s {limit} positions"
            )
        return self

    def config(self) -> LlamaConfig:
        if self.model is None or isinstance(self.model, str):
            return PRESETS[self.model or "tiny"]
        return self.model.config()

    def model_label(self) -> str:
        if self.model is None or isinstance(self.model, str):
            return self.model or "tiny"
        return "explicit dims"


class DecodeWorkload(Workload):
    name = "inference.decode"
    description = "Llama-style decoder prefill + greedy decode (KV cache): TTFT, TPOT, tokens/s"
    Params = DecodeParams
    metrics = (
        TPOT,
        TTFT,
        DECODE_TPUT,
        TOTAL_TPUT,
        MODEL_FLOPS,
        DECODE_BW,
        PEAK_MEMORY,
        HOST_MEMORY,
    )
    primary_metric = "tpot"
    sweep_params = ("seq_len",)
    # Model FLOPs/s and decode bytes/s: against these ceilings they read as MFU and MBU.
    ceilings = {"throughput": MATMUL_CEILING, "bandwidth": MEMORY_CEILING}

    params: DecodeParams

    def setup(self) -> None:
        p = self.params
        on = device_setup(p.device, p.threads, p.dtype)
        self.dev, self.threads, dtype = on.dev, on.threads, on.dtype
        self.cache_dtype = DTYPES[CACHE_DTYPES[p.kv_cache_dtype] or p.dtype]
        length = p.seq_len + p.output_len
        if p.checkpoint is not None:
            self.model = self._load_checkpoint(p.checkpoint)
            self.cfg = self.model.cfg
            if length > self.cfg.max_seq:
                raise UnsupportedParams(
                    f"seq_len + output_len = {length} exceeds the checkpoint's "
                    f"{self.cfg.max_seq} positions"
                )
        else:
            self.cfg = p.config()
        elem, cache_elem = dtype.itemsize, self.cache_dtype.itemsize
        self._peak = (
            self.cfg.params() * elem + self.cfg.kv_bytes_per_position(cache_elem) * p.batch * length
        )
        check_peak(self.peak_bytes())
        # Fixed by the shapes: computed once, used by the metrics, the work and the context.
        self.flops = self._flops()
        self.decode_bytes = self._decode_bytes(elem, cache_elem)
        if p.checkpoint is None:
            from workloads.llama import Llama  # the model code, with torch.nn

            self.model = Llama.random(self.cfg, 1234, dtype, self.dev, p.attention)
        else:
            self.model.prepare(dtype, self.dev)
        self.cache = self.model.new_cache(p.batch, length, self.cache_dtype, self.dev)
        self.prompt = torch.randint(
            0,
            self.cfg.vocab,
            (p.batch, p.seq_len),
            device=self.dev,
            generator=generator(self.dev, 99),
        )
        self._check_backend()
        self.prefill_s: list[float] = []
        self.decode_s: list[float] = []
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)

    def _load_checkpoint(self, folder: str) -> Any:
        from workloads.llama_checkpoint import CheckpointError, load_checkpoint

        try:
            return load_checkpoint(folder, self.params.attention)
        except CheckpointError as exc:
            raise UnsupportedParams(str(exc)) from None

    def _check_backend(self) -> None:
        """A pinned attention backend that cannot run these shapes here fails in setup.

        The probe runs the shapes a trial runs, small: a prefill, then a decode step of one
        query over the cached keys. Never one key alone, which no trial attends over and
        cuDNN's kernel refuses (torch's sdp_utils: key/value sequence length 1)."""
        token = self.prompt[:, :1]
        probe = self.model.new_cache(self.params.batch, 3, self.cache_dtype, self.dev)
        try:
            self.model(torch.cat([token, token], dim=1), start=0, cache=probe)
            self.model(token, start=2, cache=probe)
        except RuntimeError as exc:
            first = first_line(exc)
            raise UnsupportedParams(
                f"attention backend {self.params.attention!r} cannot run on {self.dev} with "
                f"{self.params.dtype}: {first}"
            ) from None

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def generate(self, keep_logits: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Greedy tokens (batch, output_len) and, if asked, each decode step's logits."""
        p = self.params
        logits = self.model(self.prompt, start=0, cache=self.cache)
        token = logits[:, -1].argmax(-1, keepdim=True)
        out, kept = [token], [logits[:, -1]] if keep_logits else []
        for i in range(1, p.output_len):
            logits = self.model(token, start=p.seq_len + i - 1, cache=self.cache)
            token = logits[:, -1].argmax(-1, keepdim=True)
            out.append(token)
            if keep_logits:
                kept.append(logits[:, -1])
        return torch.cat(out, dim=1), kept

    def peak_bytes(self) -> dict[str, int]:
        # The weights (drawn in place, in their dtype) and the KV cache at full length.
        return {str(self.dev): self._peak}

    def run_iteration(self) -> None:
        # Prefill and decode are timed apart (synchronised at the boundary); the runner's
        # own timer still brackets the whole iteration.
        p = self.params
        model, cache = self.model, self.cache
        t0 = time.perf_counter()
        logits = model(self.prompt, start=0, cache=cache)
        token = logits[:, -1].argmax(-1, keepdim=True)
        self._sync()
        t1 = time.perf_counter()
        for i in range(1, p.output_len):
            token = model(token, start=p.seq_len + i - 1, cache=cache)[:, -1].argmax(
                -1, keepdim=True
            )
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
        full = self.model(sequence, start=0, cache=None, cache_dtype=self.cache_dtype)
        full = full[:, p.seq_len - 1 :]
        cached = torch.stack(logits, dim=1)
        err = max_relative_error(cached.float(), full.float())
        if not err <= LOGIT_TOLERANCE[p.dtype]:
            raise VerificationError(
                f"KV-cache logits differ from a full forward: {err:.3g} > "
                f"{LOGIT_TOLERANCE[p.dtype]:g} ({p.dtype})"
            )

    def derive(self, seconds: list[float]) -> dict[str, list[float]]:
        import psutil

        p = self.params
        n = len(seconds)
        prefill, decode = self.prefill_s[-n:], self.decode_s[-n:]  # warm-up runs come first
        steps = p.output_len - 1
        host = float(psutil.Process().memory_info().rss)
        peak = float(torch.cuda.max_memory_allocated(self.dev)) if self.dev.type == "cuda" else host
        flops, step_bytes = self.flops, self.decode_bytes
        return {
            "ttft": [t * 1e3 for t in prefill],
            "tpot": [d / steps * 1e3 for d in decode],
            "decode_throughput": [p.batch * steps / d for d in decode],
            "total_throughput": [p.batch * (p.seq_len + p.output_len) / s for s in seconds],
            "throughput": [flops / s / 1e12 for s in seconds],
            "bandwidth": [step_bytes * steps / d / 1e9 for d in decode],
            "peak_memory": [peak],
            "host_memory": [host],
        }

    def work(self) -> Work:
        p = self.params
        return Work(
            tokens=p.batch * p.output_len,
            flops=self.flops,
            convention="model FLOPs: 2 per MAC, matmul weights once per token + attention",
        )

    def _flops(self) -> float:
        p = self.params
        prefill = sum(self.cfg.flops_per_token(i + 1) for i in range(p.seq_len))
        decode = sum(self.cfg.flops_per_token(p.seq_len + i) for i in range(1, p.output_len))
        return p.batch * (prefill + decode)

    def _decode_bytes(self, elem: int, cache_elem: int) -> float:
        """Mean bytes one decode step reads: every weight once, and each sequence's KV cache
        up to its current length (the weights are shared across the batch)."""
        p = self.params
        mean_context = p.seq_len + p.output_len / 2
        kv = self.cfg.kv_bytes_per_position(cache_elem) * p.batch * mean_context
        return self.cfg.params() * elem + kv

    def context(self) -> dict[str, Any]:
        p = self.params
        cfg = self.cfg
        return {
            "model_params": cfg.params(),
            "model_shape": {
                "vocab": cfg.vocab,
                "dim": cfg.dim,
                "n_layers": cfg.n_layers,
                "n_heads": cfg.n_heads,
                "n_kv_heads": cfg.n_kv_heads,
                "head_dim": cfg.head_dim,
                "ffn_dim": cfg.ffn_dim,
            },
            "weights": "checkpoint" if p.checkpoint else "random (seed 1234)",
            "flops_per_iteration": self.flops,
            "flops_per_output_token": self.flops / (p.batch * p.output_len),
            "bytes_per_decode_step": self.decode_bytes,
            "kv_cache_bytes": self.cache.nbytes(),
            "kv_cache_dtype": str(self.cache_dtype).removeprefix("torch."),
            "attention": p.attention,
            "threads": self.threads,
        }

    def teardown(self) -> None:
        self.__dict__.pop("model", None)
        self.__dict__.pop("cache", None)
        self.__dict__.pop("prompt", None)


__all__ = ["DecodeWorkload", "ModelDims", "UnsupportedParams"]
