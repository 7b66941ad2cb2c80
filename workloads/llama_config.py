"""The Llama-style decoder's shape (:class:`LlamaConfig`), its presets and attention choices:
plain data, importable without torch, so validating an ``inference.decode`` benchmark does
not load the model code."""

from __future__ import annotations

from dataclasses import dataclass, field

# Attention implementations: torch's SDPA dispatcher, one of its backends pinned, or an
# explicit matmul-softmax-matmul (what Hugging Face calls "eager").
ATTENTION_BACKENDS = ("sdpa", "math", "flash", "efficient", "cudnn", "eager")


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling of long-context checkpoints (``linear`` or Llama 3's)."""

    kind: str = "default"  # default | linear | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


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
    head_dim_override: int | None = None  # checkpoints may set it apart from dim / n_heads
    tie_embeddings: bool = False
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.dim // self.n_heads

    def params(self) -> int:
        """Parameter count (embeddings and head included, a tied head counted once)."""
        hd = self.head_dim
        attn = self.dim * hd * (self.n_heads * 2 + self.n_kv_heads * 2)
        mlp = 3 * self.dim * self.ffn_dim
        embeddings = (1 if self.tie_embeddings else 2) * self.vocab * self.dim
        return embeddings + self.n_layers * (attn + mlp + 2 * self.dim) + self.dim

    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token (the input embedding is a lookup)."""
        hd = self.head_dim
        attn = self.dim * hd * (self.n_heads * 2 + self.n_kv_heads * 2)
        return self.n_layers * (attn + 3 * self.dim * self.ffn_dim) + self.vocab * self.dim

    def flops_per_token(self, context: int) -> float:
        """Forward FLOPs for one token attending to ``context`` positions (2 per MAC):
        every matmul weight once, plus QK^T and PV over the context."""
        attention = 4 * self.n_layers * self.n_heads * self.head_dim * context
        return float(2 * self.matmul_params() + attention)

    def kv_bytes_per_position(self, elem: int) -> int:
        """KV-cache bytes one sequence position takes, over all layers."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * elem


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
        max_seq=8192,
        rope_theta=500000.0,
        tie_embeddings=True,  # Llama 3.2 1B ties its head to the embedding
    ),
    "8b": LlamaConfig(
        vocab=128256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14336,
        max_seq=8192,  # Llama 3's context (3.1's 128k needs its RoPE scaling: checkpoints)
        rope_theta=500000.0,
    ),
}
