"""Bare PyTorch references for the GPU check: the same shapes as the harness's workloads,
timed the plain way (one CUDA event pair per call and one synchronisation at the end on a
GPU, ``perf_counter`` per call on the host), with nothing of the harness imported.

Each function takes the benchmark's params (a dict as the playbook gives them) and timing
budgets, and returns the per-iteration figures in the harness metric's unit.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

DTYPES = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
STREAM_WORDS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
L2_FLUSH_BYTES = 256 * 2**20  # triton's do_bench


class Budget:
    """How long a bare loop runs: warm-up calls, then at least ``min_reps`` calls and
    ``min_s`` seconds (the count is fixed from one timed call after warm-up)."""

    def __init__(self, warmup: int, min_reps: int, min_s: float) -> None:
        self.warmup, self.min_reps, self.min_s = warmup, min_reps, min_s


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_calls(
    fn: Callable[[], Any],
    dev: torch.device,
    budget: Budget,
    flush: Callable[[], Any] | None = None,
) -> list[float]:
    """Seconds of each timed call of ``fn``; ``flush`` runs untimed before each call."""
    for _ in range(budget.warmup):
        fn()
    _sync(dev)
    t = time.perf_counter()
    fn()
    _sync(dev)
    once = max(time.perf_counter() - t, 1e-7)
    n = min(100_000, max(budget.min_reps, math.ceil(budget.min_s / once)))
    if dev.type != "cuda":
        out = []
        for _ in range(n):
            if flush is not None:
                flush()
            t = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t) * 1e-9)
        return out
    pairs = []
    stream = torch.cuda.current_stream(dev)
    for _ in range(n):
        if flush is not None:
            flush()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        fn()
        stop.record(stream)
        pairs.append((start, stop))
    torch.cuda.synchronize(dev)
    return [s.elapsed_time(e) * 1e-3 for s, e in pairs]


def _rand(n: int, dtype: torch.dtype, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, dtype=dtype, device=dev)


def stream(p: dict[str, Any], budget: Budget) -> list[float]:
    """STREAM kernel GB/s per call (2 or 3 words per element, as STREAM counts)."""
    dev = torch.device(p.get("device", "cpu"))
    dtype = DTYPES[p.get("dtype", "fp64")]
    elem = torch.empty((), dtype=dtype).element_size()
    n = int(p["size_mib"] * 2**20) // elem
    a, b, c = (_rand(n, dtype, dev) for _ in range(3))
    kernel = {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, 3.0, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=3.0, out=a),
    }[p["op"]]
    nbytes = STREAM_WORDS[p["op"]] * n * elem
    return [nbytes / s / 1e9 for s in time_calls(kernel, dev, budget)]


def copy(p: dict[str, Any], budget: Budget) -> list[float]:
    """``dst.copy_(src)`` GB/s per call: h2d, d2h (pinned or pageable), d2d, p2p (device to
    ``peer``), h2h."""
    direction = p["direction"]
    gpu = torch.device(p.get("device", "cuda"))
    host = torch.device("cpu")
    src_dev, dst_dev = {
        "h2d": (host, gpu),
        "d2h": (gpu, host),
        "d2d": (gpu, gpu),
        "p2p": (gpu, torch.device(p.get("peer", "cuda:1"))),
        "h2h": (host, host),
    }[direction]
    n = int(p["size_mib"] * 2**20) // 4
    src, dst = _rand(n, torch.float32, src_dev), _rand(n, torch.float32, dst_dev)
    pinned = p.get("pinned", True) and direction in ("h2d", "d2h")
    if pinned:
        src, dst = (t.pin_memory() if t.device.type == "cpu" else t for t in (src, dst))
    factor = 2 if p.get("count") == "read_write" else 1
    times = time_calls(lambda: dst.copy_(src, non_blocking=pinned), gpu, budget)
    if not torch.equal(dst.to(src.device), src):
        raise RuntimeError("bare copy: destination differs from source")
    return [factor * n * 4 / s / 1e9 for s in times]


def gemm(p: dict[str, Any], budget: Budget, flush_l2: bool, cuda_graph: bool) -> list[float]:
    """``torch.matmul(a, b, out=c)`` (``torch._scaled_mm`` for fp8) TFLOP/s per call."""
    dev = torch.device(p.get("device", "cpu"))
    m, n, k, dtype_name = p["m"], p["n"], p["k"], p["dtype"]
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if dtype_name == "tf32" else "highest")
    try:
        if dtype_name == "fp8":
            a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
            b = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn).t()
            one = torch.ones((), device=dev)

            def step() -> Any:
                return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

        else:
            dtype = DTYPES[dtype_name]
            a, b = torch.randn(m, k, device=dev).to(dtype), torch.randn(k, n, device=dev).to(dtype)
            c = torch.empty(m, n, device=dev, dtype=dtype)

            def step() -> Any:
                return torch.matmul(a, b, out=c)

        flush = None
        if flush_l2 and dev.type == "cuda":
            flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=dev).zero_
        fn: Callable[[], Any] = step
        if cuda_graph and dev.type == "cuda":
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    step()
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            fn = graph.replay
        times = time_calls(fn, dev, budget, flush)
    finally:
        torch.set_float32_matmul_precision(before)
    return [2.0 * m * n * k / s / 1e12 for s in times]


def attention(p: dict[str, Any], budget: Budget) -> list[float]:
    """``F.scaled_dot_product_attention`` forward TFLOP/s per call (causal counts half)."""
    dev = torch.device(p.get("device", "cpu"))
    dtype = DTYPES[p.get("dtype", "bf16")]
    batch, heads, seq, hd = p.get("batch", 1), p["heads"], p["seq_len"], p["head_dim"]
    kv_heads = p.get("kv_heads") or heads
    q = torch.randn(batch, heads, seq, hd, device=dev).to(dtype)
    k = torch.randn(batch, kv_heads, seq, hd, device=dev).to(dtype)
    v = torch.randn(batch, kv_heads, seq, hd, device=dev).to(dtype)
    causal = bool(p.get("causal", False))
    gqa = {"enable_gqa": True} if kv_heads != heads else {}
    times = time_calls(
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa), dev, budget
    )
    flops = 4.0 * batch * heads * seq * seq * hd / (2 if causal else 1)
    return [flops / s / 1e12 for s in times]


def all_reduce(p: dict[str, Any], budget: Budget) -> list[float]:
    """One-process ``dist.all_reduce`` algbw (S / time, GB/s): gloo on the host, NCCL on a
    GPU, world size 1, as the harness's single-rank trial runs it."""
    import torch.distributed as dist

    dev = torch.device(p.get("device", "cpu"))
    dtype = DTYPES[p.get("dtype", "fp32")]
    elem = torch.empty((), dtype=dtype).element_size()
    n = p["size_bytes"] // elem
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index or 0)  # set_device wants an index
        torch.cuda.set_device(dev)
    dist.init_process_group(
        "nccl" if dev.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
    )
    try:
        x = torch.rand(n, dtype=dtype, device=dev)
        times = time_calls(lambda: dist.all_reduce(x), dev, budget)
    finally:
        dist.destroy_process_group()
    return [n * elem / s / 1e9 for s in times]


class HfDecoder:
    """A Hugging Face ``LlamaForCausalLM`` with random weights and the shapes of one of our
    presets, timed as optimum-benchmark times it: TPOT = (generate(N) - generate(1)) / (N-1).
    Built once and kept, since building the 8b model takes a while."""

    def __init__(self, dims: Any, dtype: str, device: str) -> None:
        import transformers

        self.device = torch.device(device)
        config = transformers.LlamaConfig(
            vocab_size=dims.vocab,
            hidden_size=dims.dim,
            intermediate_size=dims.ffn_dim,
            num_hidden_layers=dims.n_layers,
            num_attention_heads=dims.n_heads,
            num_key_value_heads=dims.n_kv_heads,
            head_dim=dims.head_dim,
            max_position_embeddings=dims.max_seq,
            rope_theta=dims.rope_theta,
            tie_word_embeddings=dims.tie_embeddings,
            rms_norm_eps=dims.norm_eps,
        )
        with self.device:
            torch.manual_seed(0)
            self.model = transformers.LlamaForCausalLM(config).to(DTYPES[dtype]).eval()
        self.vocab = dims.vocab

    def tpot_ms(self, batch: int, seq_len: int, output_len: int, repeats: int) -> list[float]:
        """Per repeat: (generate(output_len) - generate(1)) / (output_len - 1), in ms."""
        prompt = torch.randint(0, self.vocab, (batch, seq_len), device=self.device)
        mask = torch.ones_like(prompt)

        def generate(new: int) -> float:
            _sync(self.device)
            t = time.perf_counter()
            with torch.no_grad():
                self.model.generate(
                    prompt,
                    attention_mask=mask,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=0,
                )
            _sync(self.device)
            return time.perf_counter() - t

        generate(output_len)  # warm-up
        out = []
        for _ in range(repeats):
            first = generate(1)
            whole = generate(output_len)
            out.append((whole - first) / (output_len - 1) * 1e3)
        return out
