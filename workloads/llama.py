"""A decoder-only transformer in the style of Llama, for in-process inference benchmarks.

RMSNorm, rotary position embeddings (rotate-half), grouped-query attention with a
preallocated KV cache, SwiGLU MLP, untied output head. Weights are random with a fixed seed:
shapes, not trained values, set the cost of a forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq: int = 4096
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def params(self) -> int:
        """Parameter count (embeddings and head included)."""
        hd = self.head_dim
        attn = self.dim * hd * (self.n_heads * 2 + self.n_kv_heads * 2)
        mlp = 3 * self.dim * self.ffn_dim
        return 2 * self.vocab * self.dim + self.n_layers * (attn + mlp + 2 * self.dim) + self.dim

    def flops_per_token(self, context: int) -> float:
        """Forward FLOPs for one token attending to ``context`` positions (2 per MAC)."""
        matmul = 2 * (self.params() - self.vocab * self.dim)  # the input embedding is a lookup
        attention = 4 * self.n_layers * self.n_heads * self.head_dim * context
        return float(matmul + attention)


PRESETS = {
    "tiny": LlamaConfig(
        vocab=512, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=352, max_seq=1024
    ),
    "125m": LlamaConfig(vocab=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=2048),
    "1b": LlamaConfig(
        vocab=128256,
        dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=8192,
        rope_theta=500000.0,
    ),
    "8b": LlamaConfig(
        vocab=128256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14336,
        rope_theta=500000.0,
    ),
}


def rope_tables(cfg: LlamaConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (max_seq, head_dim), for the rotate-half formulation."""
    inv = 1.0 / cfg.rope_theta ** (
        torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim
    )
    angles = torch.outer(torch.arange(cfg.max_seq, device=device).float(), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


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
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, start: int, cos: torch.Tensor, sin: torch.Tensor, use_cache: bool
    ) -> torch.Tensor:
        cfg, (b, t, _) = self.cfg, x.shape
        hd = cfg.head_dim
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, cfg.n_heads, hd).transpose(1, 2)
        k = self.wk(h).view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(h).view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)
        c, s = cos[start : start + t], sin[start : start + t]
        q, k = rotate(q, c, s), rotate(k, c, s)
        if use_cache:
            assert self.k_cache is not None and self.v_cache is not None
            self.k_cache[:b, :, start : start + t] = k
            self.v_cache[:b, :, start : start + t] = v
            k, v = self.k_cache[:b, :, : start + t], self.v_cache[:b, :, : start + t]
        # Causal within the new tokens; every cached position is visible to them.
        mask = None
        if t > 1:
            mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=cfg.n_kv_heads != cfg.n_heads
        )
        x = x + self.wo(out.transpose(1, 2).reshape(b, t, cfg.n_heads * hd))
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Random weights with a fixed seed, scaled so activations stay O(1)."""
        gen = torch.Generator().manual_seed(seed)
        for p in self.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))

    def setup_cache(
        self, batch: int, length: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        """Allocate the KV cache for ``batch`` sequences of ``length`` positions."""
        if length > self.cfg.max_seq:
            raise ValueError(f"{length} positions exceed max_seq {self.cfg.max_seq}")
        shape = (batch, self.cfg.n_kv_heads, length, self.cfg.head_dim)
        for layer in self.layers:
            layer.k_cache = torch.zeros(shape, dtype=dtype, device=device)
            layer.v_cache = torch.zeros(shape, dtype=dtype, device=device)
        self.cos, self.sin = (t.to(dtype) for t in rope_tables(self.cfg, device))

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, start: int = 0, use_cache: bool = True) -> torch.Tensor:
        """Logits (batch, tokens, vocab) for ``tokens`` placed at positions start...; with
        ``use_cache`` the keys and values go to (and come from) the cache."""
        assert self.cos is not None and self.sin is not None
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, start, self.cos, self.sin, use_cache)
        return self.head(self.norm(x))
