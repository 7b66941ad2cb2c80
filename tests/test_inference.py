"""inference.decode: the decoder, its metrics' definitions, and its verification."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import workloads.llama as llama
from harness.node.runner import run_trial
from harness.playbook.load import Settings
from workloads import UnsupportedParams, VerificationError
from workloads.checks import max_relative_error
from workloads.inference_decode import DecodeWorkload
from workloads.llama import PRESETS


def test_presets_have_the_published_shapes() -> None:
    assert PRESETS["8b"].params() == pytest.approx(8.03e9, rel=0.01)  # Llama 3 8B
    assert PRESETS["8b"].head_dim == 128 and PRESETS["8b"].n_kv_heads == 8


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cached_decode_matches_a_full_forward(dtype: str) -> None:
    wl = DecodeWorkload(DecodeWorkload.Params(batch=2, seq_len=24, output_len=8, dtype=dtype))
    wl.setup()
    wl.run_iteration()
    wl.verify()
    tokens, _ = wl.generate()
    assert tokens.shape == (2, 8)
    wl.teardown()


def test_a_broken_kv_cache_path_is_caught(monkeypatch) -> None:
    wl = DecodeWorkload(DecodeWorkload.Params(seq_len=16, output_len=6, dtype="fp32"))
    wl.setup()
    real = llama.rotate
    # A classic decode bug: single-token steps skip the rotary embedding.
    monkeypatch.setattr(llama, "rotate", lambda x, c, s: x if x.shape[2] == 1 else real(x, c, s))
    with pytest.raises(VerificationError, match="KV-cache logits differ from a full forward"):
        wl.verify()


def test_metrics_follow_their_definitions() -> None:
    settings = Settings(
        warmup_iterations=1, min_repetitions=3, min_duration_s=0, telemetry={"sources": ["host"]}
    ).model_dump()
    params = {"batch": 3, "seq_len": 20, "output_len": 5, "dtype": "fp32"}
    out = run_trial("inference.decode", params, settings)
    assert out.status == "ok", out.failure_reason
    m = out.metrics
    assert len(m["ttft"]) == len(m["tpot"]) == len(out.seconds) == 3  # warm-up not included
    for tpot, decode in zip(m["tpot"], m["decode_throughput"], strict=True):
        assert decode == pytest.approx(3 * 4 / (tpot * 4 / 1e3))  # batch x (output_len - 1)
    for ttft, tpot, seconds in zip(m["ttft"], m["tpot"], out.seconds, strict=True):
        assert (ttft + 4 * tpot) / 1e3 <= seconds * 1.001  # prefill + decode fit the iteration
    assert out.work["tokens"] == 3 * 5  # energy per token divides by these
    assert m["peak_memory"][0] > 0


def test_prompt_and_output_must_fit_the_model() -> None:
    with pytest.raises(ValidationError, match="exceeds tiny's 1024 positions"):
        DecodeWorkload.Params(seq_len=1000, output_len=100)


def _logits(params: dict, tokens: int = 12) -> torch.Tensor:
    wl = DecodeWorkload(DecodeWorkload.Params(**params))
    wl.setup()
    out = wl.model(wl.prompt[:, :tokens], start=0, cache=None).float()
    wl.teardown()
    return out


@pytest.mark.parametrize("backend", ["math", "flash", "eager"])
def test_attention_backends_agree_with_the_default(backend: str) -> None:
    base = {"seq_len": 16, "output_len": 4, "dtype": "fp32"}
    reference = _logits(base)
    try:
        other = _logits({**base, "attention": backend})
    except UnsupportedParams as exc:
        pytest.skip(str(exc))
    assert max_relative_error(other, reference) < 1e-4


def test_every_attention_call_is_one_the_fused_gpu_kernels_take(monkeypatch) -> None:
    """Flash and cuDNN refuse a boolean mask and cuDNN a single key (torch's sdp_utils);
    on an H200 both backends failed setup over those two. A trial's calls, its setup's
    probe and its verification included: square causal prefills and one-query decode steps
    over two or more keys, with no mask."""
    calls = []
    real = llama.attention

    def recording(q, k, v, mask, backend, causal=False):
        calls.append((q.shape[-2], k.shape[-2], mask is not None, causal))
        return real(q, k, v, mask, backend, causal)

    monkeypatch.setattr(llama, "attention", recording)
    wl = DecodeWorkload(DecodeWorkload.Params(seq_len=12, output_len=4, dtype="fp32"))
    wl.setup()
    wl.run_iteration()
    wl.verify()
    wl.teardown()
    assert calls
    assert all(not masked for _, _, masked, _ in calls)
    assert all(keys >= 2 for _, keys, _, _ in calls)
    assert all(causal == (queries > 1) for queries, _, _, causal in calls)
    assert all(queries in (1, keys) for queries, keys, _, _ in calls)


def test_a_backend_this_device_lacks_fails_in_setup_with_the_reason() -> None:
    out = run_trial(
        "inference.decode",
        {"seq_len": 8, "output_len": 2, "attention": "cudnn", "dtype": "fp32"},
        Settings(telemetry={"sources": []}).model_dump(),
    )
    assert out.status == "failed" and out.failure_phase == "setup"
    assert "attention backend 'cudnn' cannot run on cpu" in out.failure_reason


def test_explicit_dimensions_build_that_shape_and_verify() -> None:
    dims = {"vocab": 300, "dim": 96, "n_layers": 3, "n_heads": 6, "n_kv_heads": 2, "ffn_dim": 200}
    wl = DecodeWorkload(DecodeWorkload.Params(model=dims, seq_len=10, output_len=4, dtype="fp32"))
    wl.setup()
    assert wl.cfg.head_dim == 16 and len(wl.model.layers) == 3
    assert sum(p.numel() for p in wl.model.parameters()) == wl.cfg.params()
    wl.run_iteration()
    wl.verify()
    with pytest.raises(ValidationError, match="not a multiple of n_kv_heads"):
        DecodeWorkload.Params(model={**dims, "n_kv_heads": 4})


@pytest.mark.parametrize("cache", ["fp8", "bf16"])
def test_a_narrower_kv_cache_is_stored_narrow_and_verifies(cache: str) -> None:
    wl = DecodeWorkload(
        DecodeWorkload.Params(seq_len=16, output_len=6, dtype="fp32", kv_cache_dtype=cache)
    )
    wl.setup()
    assert wl.cache.dtype == {"fp8": torch.float8_e4m3fn, "bf16": torch.bfloat16}[cache]
    elem = wl.cache.keys[0].element_size()
    assert wl.context()["kv_cache_bytes"] == wl.cfg.kv_bytes_per_position(elem) * 22
    wl.verify()  # the full-forward reference rounds K/V the same way


def test_flops_and_bytes_per_token_follow_the_shapes() -> None:
    cfg = PRESETS["8b"]
    # ~2 x 7.5e9 matmul weights (the embedding lookup is free), attention on top.
    assert cfg.flops_per_token(0) == pytest.approx(
        2 * (cfg.params() - cfg.vocab * cfg.dim), rel=1e-4
    )
    assert cfg.flops_per_token(1000) - cfg.flops_per_token(0) == 4 * 32 * 32 * 128 * 1000
    assert cfg.kv_bytes_per_position(2) == 2 * 32 * 8 * 128 * 2  # 128 KiB per token in bf16
    wl = DecodeWorkload(DecodeWorkload.Params(batch=2, seq_len=8, output_len=4, dtype="fp32"))
    wl.setup()
    ctx = wl.context()
    tiny = PRESETS["tiny"]
    expected = tiny.params() * 4 + tiny.kv_bytes_per_position(4) * 2 * (8 + 4 / 2)
    assert ctx["bytes_per_decode_step"] == pytest.approx(expected)
    assert ctx["flops_per_iteration"] == wl.work().flops


# --- Hugging Face checkpoints ------------------------------------------------------------


def _hf_checkpoint(folder, **overrides):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        **overrides,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)  # config.json + model.safetensors
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tie_word_embeddings": True, "head_dim": 32},
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
    ],
    ids=["plain", "tied-head_dim", "llama3-rope"],
)
def test_a_hugging_face_llama_gives_the_same_logits_in_our_decoder(tmp_path, overrides) -> None:
    from workloads.llama_checkpoint import load_checkpoint

    hf = _hf_checkpoint(tmp_path, **overrides)
    ours = load_checkpoint(tmp_path).prepare(torch.float32, torch.device("cpu"))
    tokens = torch.randint(0, 256, (2, 100), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = hf(tokens).logits
    got = ours(tokens, start=0, cache=None)
    assert max_relative_error(got, expected) < 1e-4
    # And incrementally, through the KV cache, position by position after a prefill.
    cache = ours.new_cache(2, 100, torch.float32, torch.device("cpu"))
    steps = [ours(tokens[:, :90], start=0, cache=cache)[:, -1]]
    steps += [ours(tokens[:, i : i + 1], start=i, cache=cache)[:, -1] for i in range(90, 100)]
    assert max_relative_error(torch.stack(steps[:-1], 1), expected[:, 89:99]) < 1e-4


def test_a_checkpoint_runs_as_a_trial_and_bad_folders_fail_clearly(tmp_path) -> None:
    _hf_checkpoint(tmp_path / "ckpt")
    settings = Settings(
        warmup_iterations=0, min_repetitions=2, min_duration_s=0, telemetry={"sources": []}
    ).model_dump()
    params = {"checkpoint": str(tmp_path / "ckpt"), "seq_len": 16, "output_len": 4}
    out = run_trial("inference.decode", {**params, "dtype": "fp32"}, settings)
    assert out.status == "ok", out.failure_reason
    assert out.context["weights"] == "checkpoint" and out.context["model_shape"]["vocab"] == 256
    missing = run_trial("inference.decode", {**params, "checkpoint": str(tmp_path)}, settings)
    assert missing.status == "failed" and "no such file" in missing.failure_reason
    too_long = run_trial("inference.decode", {**params, "seq_len": 300}, settings)
    assert "exceeds the checkpoint's 256 positions" in too_long.failure_reason
    with pytest.raises(ValidationError, match="give model or checkpoint, not both"):
        DecodeWorkload.Params(model="tiny", checkpoint=str(tmp_path))
    # The canonical params a campaign stores and sends validate again on the node.
    stored = DecodeWorkload.Params(**params).model_dump(mode="json")
    assert DecodeWorkload.Params.model_validate(stored).checkpoint == params["checkpoint"]
