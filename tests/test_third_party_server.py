"""inference.serving against a server no one here wrote: Hugging Face's `transformers serve`
(OpenAI-compatible, FastAPI) serving a tiny random Llama saved to a local folder, on this
machine's CPU. Nothing is downloaded: the model and its word-level tokenizer are made here.

Found by it: `transformers serve` ends a stream after the chunk with finish_reason and sends
no `data: [DONE]`; the client takes a stream that closed cleanly after a finish_reason as
whole (one cut before it is still a disconnect)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.node.runner import run_trial
from tests.serving_helpers import ONE_LOAD_RUN
from workloads.serving.serve_model import tiny_hf_llama, transformers_served

SETTINGS = ONE_LOAD_RUN
TRANSFORMERS = Path(sys.executable).with_name("transformers")


@pytest.fixture(scope="module")
def transformers_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not TRANSFORMERS.exists():
        pytest.skip("transformers' CLI is not installed (the test extra installs it)")
    root = tmp_path_factory.mktemp("tserve")
    model = tiny_hf_llama(root / "model")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        try:
            url = stack.enter_context(transformers_served(model, root / "hub"))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url, model


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_load_against_transformers_serve(transformers_serve, api: str) -> None:
    url, model = transformers_serve
    params = {
        "url": url,
        "api": api,
        "model": str(model),  # it lists only what its cache holds: name the folder
        "concurrency": 2,
        "min_requests": 6,
        "prompt_len": 16,
        "output_len": 8,
        "tokenizer": str(model),
        "warmup_requests": 1,
        "ignore_eos": False,  # vLLM's extension: this server refuses it (HTTP 422)
    }
    out = run_trial("inference.serving", params, SETTINGS)
    assert out.status == "ok", out.failure_reason
    assert out.context["completed"] == 6 and out.context["errors_by_kind"] == {}
    assert out.summaries["ttft"]["median"] > 0 and out.summaries["tpot"]["median"] > 0
    # Its tokenizer is the one we count with: up to 8 output tokens each (without ignore_eos
    # a random model may say </s> early, rarely: 1 chance in 135 a token).
    assert out.context["token_counts"] == f"tokenizer {model}"
    assert 4 < out.context["mean_output_tokens"] <= 8
    assert out.context["mean_input_tokens"] == 16  # cut to exactly prompt_len
    # No /metrics there: noted, not an error.
    assert out.context["server_metrics"]["status"].endswith("HTTP 404")
