"""Load a local Hugging Face Llama checkpoint folder into :class:`workloads.llama.Llama`.

Reads ``config.json`` and the ``*.safetensors`` shards of a folder on the node; nothing is
downloaded. The tensor files are read with the ``safetensors`` package, which comes with
``transformers`` (optional: only runs that name a checkpoint need it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workloads.lazy import lazy_module
from workloads.llama import Llama, LlamaConfig, RopeScaling

torch = lazy_module("torch")

SUPPORTED_TYPES = ("llama", "mistral")


class CheckpointError(ValueError):
    """The folder is not a checkpoint this decoder can load; the message says why."""


def read_config(folder: str | Path) -> LlamaConfig:
    """Our config from a checkpoint's ``config.json`` (transformers 4 or 5 layout)."""
    path = Path(folder) / "config.json"
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no such file (a checkpoint folder has config.json)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from None
    kind = raw.get("model_type")
    if kind not in SUPPORTED_TYPES:
        raise CheckpointError(f"{path}: model_type {kind!r} is not Llama-style")
    for flag in ("attention_bias", "mlp_bias"):
        if raw.get(flag):
            raise CheckpointError(f"{path}: {flag} is set; this decoder has no biases")
    if raw.get("sliding_window"):
        raise CheckpointError(f"{path}: sliding-window attention is not implemented")
    if raw.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{path}: hidden_act {raw['hidden_act']!r} is not SwiGLU's silu")
    # transformers 5 nests RoPE settings in rope_parameters; 4 has rope_theta + rope_scaling.
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear", "llama3"):
        raise CheckpointError(f"{path}: RoPE scaling {kind!r} is not implemented")
    scaling = RopeScaling(
        kind=kind,
        factor=float(rope.get("factor", 1.0)),
        low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
        high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
        original_max_position=int(rope.get("original_max_position_embeddings", 8192)),
    )
    heads = int(raw["num_attention_heads"])
    return LlamaConfig(
        vocab=int(raw["vocab_size"]),
        dim=int(raw["hidden_size"]),
        n_layers=int(raw["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(raw.get("num_key_value_heads") or heads),
        ffn_dim=int(raw["intermediate_size"]),
        max_seq=int(raw.get("max_position_embeddings", 4096)),
        rope_theta=float(theta),
        norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
        head_dim_override=raw.get("head_dim"),
        tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
        rope_scaling=scaling,
    )


def hf_name(ours: str) -> str:
    """The Hugging Face tensor name of one of our parameters."""
    if ours == "embed.weight":
        return "model.embed_tokens.weight"
    if ours == "norm.weight":
        return "model.norm.weight"
    if ours == "head.weight":
        return "lm_head.weight"
    _, i, module, tensor = ours.split(".")
    hf = {
        "attn_norm": "input_layernorm",
        "mlp_norm": "post_attention_layernorm",
        "wq": "self_attn.q_proj",
        "wk": "self_attn.k_proj",
        "wv": "self_attn.v_proj",
        "wo": "self_attn.o_proj",
        "w_gate": "mlp.gate_proj",
        "w_up": "mlp.up_proj",
        "w_down": "mlp.down_proj",
    }[module]
    return f"model.layers.{i}.{hf}.{tensor}"


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors shards, on the CPU."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            "loading a checkpoint needs the safetensors package: pip install transformers"
        ) from None
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files (other formats are not read)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


def load_checkpoint(folder: str | Path, attention_backend: str = "sdpa") -> Llama:
    """Our decoder with the checkpoint's shapes and weights (in the checkpoint's dtype)."""
    cfg = read_config(folder)
    tensors = read_tensors(folder)
    model = Llama.shell(cfg, attention_backend)
    state = {}
    for name, param in model.state_dict().items():
        source = hf_name(name)
        if name == "head.weight" and cfg.tie_embeddings:
            source = "model.embed_tokens.weight"
        if source not in tensors:
            raise CheckpointError(f"{folder}: tensor {source} is missing")
        if tensors[source].shape != param.shape:
            raise CheckpointError(
                f"{folder}: {source} has shape {tuple(tensors[source].shape)}, "
                f"config.json implies {tuple(param.shape)}"
            )
        state[name] = tensors[source]
    model.load_state_dict(state, assign=True)
    if cfg.tie_embeddings:
        model.head.weight = model.embed.weight
    return model
