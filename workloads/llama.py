"""A decoder-only transformer in the style of Llama, for in-process inference benchmarks.

RMSNorm, rotary position embeddings (rotate-half, as in Hugging Face checkpoints), grouped-
query attention over a preallocated KV cache, SwiGLU MLP, optionally tied output head.
Weights are random with a fixed seed (shapes, not trained values, set the cost of a forward
pass), or loaded from a local Hugging Face Llama checkpoint (:mod:`workloads.llama_checkpoint`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Imported only where a model is built (torch's import is paid then); the shapes live in
# workloads.llama_config and are re-exported here.
from workloads.llama_config import ATTENTION_BACKENDS as ATTENTION_BACKENDS
from workloads.llama_config import PRESETS as PRESETS
from workloads.llama_config import LlamaConfig as LlamaConfig
from workloads.llama_config import RopeScaling as RopeScaling

# Submodules as attributes, not `import torch.x` statements: torch may be bound lazily in this
# process (workloads/lazy.py says why that matters).
F = torch.nn.functional
nn = torch.nn


def inverse_frequencies(cfg: LlamaConfig) -> torch.Tensor:
    """RoPE inverse frequencies (head_dim / 2), scaled as the checkpoint asks."""
    hd = cfg.head_dim
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rs = cfg.rope_scaling
    if rs.kind == "linear":
        inv = inv / rs.factor
    elif rs.kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short kept, a smooth blend between.
        low_wavelen = rs.original_max_position / rs.low_freq_factor
        high_wavelen = rs.original_max_position / rs.high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / rs.factor, inv)
        smooth = (rs.original_max_position / wavelen - rs.low_freq_factor) / (
            rs.high_freq_factor - rs.low_freq_factor
        )
        blended = (1 - smooth) * scaled / rs.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = torch.where(medium, blended, scaled)
    elif rs.kind != "default":
        raise ValueError(f"RoPE scaling {rs.kind!r} is not implemented")
    return inv.float()


def rope_tables(cfg: LlamaConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (max_seq, head_dim), for the rotate-half formulation (computed in fp32)."""
    inv = inverse_frequencies(cfg).to(device)
    angles = torch.outer(torch.arange(cfg.max_seq, device=device).float(), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


@dataclass
class KVCache:
    """Keys and values of every layer, (batch, kv_heads, length, head_dim) each.

    A cache dtype narrower than the model's (fp8) stores rounded values with unit scale, as
    vLLM's ``kv_cache_dtype=fp8`` does by default; they are widened back when read.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    backend: str,
    causal: bool = False,
) -> torch.Tensor:
    """Attention of q over k/v (GQA: k/v have fewer heads) with the chosen implementation.

    ``causal`` is square causal attention (a prefill from position 0): it goes to SDPA as
    ``is_causal``, since the flash and cuDNN kernels take no boolean mask."""
    gqa = k.shape[1] != q.shape[1]
    if backend == "eager":
        if causal:
            n = q.shape[-2]
            mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        if gqa:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
    if backend == "sdpa":
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa
        )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pinned = {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[backend]
    with sdpa_kernel(pinned):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa
        )


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.attn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        self.mlp_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        start: int,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        cache_dtype: torch.dtype | None,
        backend: str,
    ) -> torch.Tensor:
        cfg, (b, t, _) = self.cfg, x.shape
        hd = cfg.head_dim
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, cfg.n_heads, hd).transpose(1, 2)
        k = self.wk(h).view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(h).view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)
        c, s = rope[0][start : start + t], rope[1][start : start + t]
        q, k = rotate(q, c, s), rotate(k, c, s)
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:b, :, start : start + t] = k
            v_cache[:b, :, start : start + t] = v
            k = k_cache[:b, :, : start + t].to(x.dtype)
            v = v_cache[:b, :, : start + t].to(x.dtype)
        elif cache_dtype is not None and cache_dtype != x.dtype:
            # A cache-free reference sees the same rounding a narrower cache applies.
            k, v = k.to(cache_dtype).to(x.dtype), v.to(cache_dtype).to(x.dtype)
        # Causal within the new tokens; every cached position is visible to them. From
        # position 0 that is plain square causal attention, which every fused kernel takes.
        mask = None
        if t > 1 and start > 0:
            mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
        out = attention(q, k, v, mask, backend, causal=t > 1 and start == 0)
        x = x + self.wo(out.transpose(1, 2).reshape(b, t, cfg.n_heads * hd))
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig, attention_backend: str = "sdpa") -> None:
        super().__init__()
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {attention_backend!r}")
        self.cfg = cfg
        self.backend = attention_backend
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.rope: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def shell(cls, cfg: LlamaConfig, attention_backend: str = "sdpa") -> Llama:
        """The module on the meta device: shapes only, no memory, no default init (which
        costs minutes for an 8b model on a host); weights come from a checkpoint
        (``load_state_dict(assign=True)``) or :meth:`random`."""
        with torch.device("meta"):
            return cls(cfg, attention_backend)

    @classmethod
    def random(
        cls,
        cfg: LlamaConfig,
        seed: int,
        dtype: torch.dtype,
        device: torch.device,
        attention_backend: str = "sdpa",
    ) -> Llama:
        """Random weights made on ``device`` in ``dtype``, ready to run (prepared)."""
        model = cls.shell(cfg, attention_backend).to(dtype).to_empty(device=device)
        if cfg.tie_embeddings:  # to_empty gives each reference its own storage
            model.head.weight = model.embed.weight
        model.init_weights(seed)
        return model.prepare(dtype, device)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Random weights with a fixed seed, scaled so activations stay O(1); norms at 1.

        Drawn in fp32 where the weights live, one tensor at a time (on the host: the same
        values as drawing on the host and converting afterwards).
        """
        device = next(self.parameters()).device
        gen = torch.Generator(device).manual_seed(seed)
        for p in self.parameters():
            if p.dim() > 1:
                w = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
                p.copy_(w / math.sqrt(p.shape[-1]))
            else:
                p.fill_(1.0)

    def prepare(self, dtype: torch.dtype, device: torch.device) -> Llama:
        """Move to ``device`` in ``dtype`` and build the rotary tables there."""
        self.to(device=device, dtype=dtype).eval()
        self.rope = tuple(t.to(dtype) for t in rope_tables(self.cfg, device))  # type: ignore[assignment]
        return self

    def new_cache(
        self, batch: int, length: int, dtype: torch.dtype, device: torch.device
    ) -> KVCache:
        """A KV cache for ``batch`` sequences of ``length`` positions."""
        if length > self.cfg.max_seq:
            raise ValueError(f"{length} positions exceed max_seq {self.cfg.max_seq}")
        shape = (batch, self.cfg.n_kv_heads, length, self.cfg.head_dim)
        n = self.cfg.n_layers
        return KVCache(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
        )

    @torch.no_grad()
    def forward(
        self,
        tokens: torch.Tensor,
        start: int = 0,
        cache: KVCache | None = None,
        cache_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Logits (batch, tokens, vocab) for ``tokens`` placed at positions start...

        With a ``cache`` the keys and values go to (and come from) it; without one this is
        a full forward, whose K/V are rounded through ``cache_dtype`` when given.
        """
        assert self.rope is not None, "call prepare() first"
        x = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            kv = (cache.keys[i], cache.values[i]) if cache is not None else None
            x = layer(x, start, self.rope, kv, cache_dtype, self.backend)
        return self.head(self.norm(x))
