"""inference.decode: the decoder, its metrics' definitions, and its verification."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import workloads.llama as llama
from harness.playbook import Settings
from harness.runner import run_trial
from workloads import VerificationError
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
