"""inference.serving against a real HTTP server: `harness serve-model` in its own process.

The server paces tokens (first after F ms, then one every D ms) so the client's TTFT, TPOT
and ITL can be checked against known timings, and injects failures deterministically so the
error accounting can be checked by kind.
"""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from harness.cli.app import app
from harness.node.runner import run_trial
from tests.serving_helpers import ONE_LOAD_RUN
from workloads.serving.client import LengthDist, plan_stream
from workloads.serving.serve_model import spawned
from workloads.serving.workload import ServingParams

HARNESS = str(Path(sys.executable).with_name("harness"))
SETTINGS = ONE_LOAD_RUN


@pytest.fixture(scope="module")
def paced() -> Iterator[str]:
    """The decoder, with tokens held to 60 ms for the first and 10 ms apart after."""
    with spawned("--first-token-ms", "60", "--token-ms", "10") as url:
        yield url


def trial(params: dict, **env: str):
    return run_trial("inference.serving", params, SETTINGS, env=env)


def test_metrics_match_the_servers_known_timings(paced: str) -> None:
    out = trial(
        {
            "url": paced,
            "concurrency": 4,
            "min_requests": 16,
            "prompt_len": 24,
            "output_len": 12,
            "slo": {"ttft_ms": 5000},
        }
    )
    assert out.status == "ok", out.failure_reason
    m = out.metrics
    assert len(m["ttft"]) == len(m["tpot"]) == len(m["e2e_latency"]) == 16
    assert len(m["itl"]) == 16 * 11  # chunks after the first, pooled
    assert 60 <= statistics.median(m["ttft"]) < 60 + 25
    # Paced at 10 ms; the client's two timestamps per request jitter by microseconds.
    assert 10 * 0.99 <= statistics.median(m["tpot"]) < 10 * 1.25
    assert 9 <= statistics.median(m["itl"]) < 10 * 1.25
    for ttft, tpot, e2e in zip(m["ttft"], m["tpot"], m["e2e_latency"], strict=True):
        assert e2e == pytest.approx(ttft + 11 * tpot)  # TPOT's definition, per request
    duration = out.context["duration_s"][0]
    assert m["request_throughput"] == [pytest.approx(16 / duration)]
    assert m["output_throughput"] == [pytest.approx(16 * 12 / duration)]
    assert m["total_throughput"] == [pytest.approx(16 * (24 + 12) / duration)]
    assert m["goodput"] == m["request_throughput"]  # a 5 s TTFT objective: every request
    assert m["errors"] == [0.0] and out.context["errors_by_kind"] == {}
    assert out.work["tokens"] == 16 * 12  # energy per token divides by these
    assert out.context["served_model"] == "harness-llama-tiny"
    # The client's own delay is measured (server write -> our timestamp).
    assert out.context["delivery_delay_ms"]["p50"] > 0 and m["client_lag"]


def test_goodput_counts_only_requests_meeting_every_slo(paced: str) -> None:
    base = {"url": paced, "concurrency": 2, "min_requests": 6, "output_len": 4}
    out = trial({**base, "slo": {"ttft_ms": 5000, "tpot_ms": 5}})  # tokens are 10 ms apart
    assert out.status == "ok" and out.metrics["goodput"] == [0.0]
    assert "goodput" not in trial(base).metrics  # no objectives, no goodput


def test_chat_api_streams_deltas(paced: str) -> None:
    out = trial({"url": paced + "/v1", "api": "chat", "concurrency": 2, "min_requests": 4})
    assert out.status == "ok", out.failure_reason
    assert len(out.metrics["ttft"]) == 4 and out.metrics["errors"] == [0.0]


def test_single_stream_sends_one_at_a_time_until_duration_and_count(paced: str) -> None:
    params = {
        "url": paced,
        "scenario": "single_stream",
        "min_requests": 3,
        "duration_s": 1.0,
        "output_len": 4,
        "warmup_requests": 0,
    }
    out = run_trial("inference.serving", params, SETTINGS)
    assert out.status == "ok", out.failure_reason
    # ~90 ms per request: the 1 s duration, not the 3 requests, ends this run.
    assert out.context["requests"] >= 9 and out.context["duration_s"][0] >= 1.0
    assert out.context["stop"] == "duration and min_requests met"
    # And with no duration, exactly min_requests are sent.
    out = trial({**params, "duration_s": 0, "min_requests": 5})
    assert out.context["requests"] == 5


def test_single_stream_requests_do_not_overlap(paced: str) -> None:
    from workloads.serving.workload import ServingWorkload

    wl = ServingWorkload(
        ServingParams(url=paced, scenario="single_stream", min_requests=4, output_len=3)
    )
    wl.setup()
    wl.run_iteration()
    results = wl.runs[0].results
    for before, after in itertools.pairwise(results):
        assert after.sent_at >= before.sent_at + before.e2e


def test_errors_are_counted_by_kind() -> None:
    # Request n fails when n % 3 == 0, cycling status -> disconnect -> stream_error.
    args = ["--engine", "synthetic", "--token-ms", "2", "--fail-every", "3"]
    args += ["--failure", "status", "--failure", "disconnect", "--failure", "stream_error"]
    with spawned(*args) as url:
        out = trial({"url": url, "concurrency": 1, "min_requests": 12, "warmup_requests": 0})
    assert out.status == "ok", out.failure_reason
    assert out.metrics["errors"] == [4.0]
    assert out.context["errors_by_kind"] == {"disconnect": 1, "http_500": 2, "stream_error": 1}
    assert len(out.metrics["ttft"]) == out.context["completed"] == 8


def test_every_request_failing_fails_the_trial_with_the_kinds() -> None:
    with spawned("--engine", "synthetic", "--fail-every", "1") as url:
        out = trial({"url": url, "concurrency": 2, "min_requests": 4, "warmup_requests": 0})
    assert out.status == "failed" and out.failure_phase == "verify"
    assert "every request failed: {'http_500': 4}" in out.failure_reason


def test_max_duration_cancels_and_fails_short_runs() -> None:
    with spawned("--engine", "synthetic", "--token-ms", "500") as url:
        params = {"url": url, "concurrency": 2, "min_requests": 3, "output_len": 20}
        t0 = time.monotonic()
        out = trial({**params, "max_duration_s": 1.0, "warmup_requests": 0})
    assert time.monotonic() - t0 < 8
    assert out.status == "failed"
    assert "only 2 of min_requests 3 sent within max_duration_s" in out.failure_reason


def test_the_api_key_is_sent_and_never_kept(tmp_path: Path, ray_cluster) -> None:
    key = "sk-test-0123456789abcdef"
    with spawned(
        "--engine", "synthetic", "--api-key-env", "SERVE_KEY", env={"SERVE_KEY": key}
    ) as url:
        params = {"url": url, "concurrency": 2, "min_requests": 4, "api_key_env": "MY_KEY"}
        refused = trial(params)  # no key in the environment: 401 when listing models
        assert refused.status == "failed" and "HTTP 401" in refused.failure_reason
        wrong = trial(params, MY_KEY="sk-wrong-key-abc")
        assert wrong.status == "failed" and "sk-wrong" not in repr(wrong)
        ok = trial(params, MY_KEY=key)
        assert ok.status == "ok", ok.failure_reason
        assert key not in repr(ok) and ok.context["api_key"] == "from $MY_KEY"

        # A whole campaign on the Ray cluster: the driver hands its key to the task (the
        # cluster's workers never had it); nothing stored or printed holds it.
        playbook = tmp_path / "serving.yaml"
        playbook.write_text(
            "campaign: {name: serving-key}\n"
            "defaults: {telemetry: {sources: [host]}}\n"
            "benchmarks:\n"
            "  - workload: inference.serving\n"
            f"    params: {{url: '{url}', scenario: offline, min_requests: 8,\n"
            "             api_key_env: MY_KEY, output_len: [4, 8]}\n"
        )
        db = tmp_path / "r.db"
        os.environ["MY_KEY"] = key
        try:
            result = CliRunner().invoke(
                app,
                [
                    *("run", str(playbook), "--db", str(db), "--address", ray_cluster.address),
                    *("--allow-env", "MY_KEY"),  # not a name the rule takes for a key
                ],
            )
        finally:
            del os.environ["MY_KEY"]
    assert result.exit_code == 0, result.output + result.stderr
    assert key not in result.output + result.stderr
    assert f"sends $MY_KEY (if set) as the API key to {url}" in result.stderr
    assert key.encode() not in db.read_bytes()
    rows = (
        sqlite3.connect(db)
        .execute(
            "select t.params, m.n, m.p99 from trials t join metrics m on m.trial_id = t.id "
            "where m.name = 'ttft'"
        )
        .fetchall()
    )
    assert len(rows) == 2 and all(n == 8 and p99 is not None for _, n, p99 in rows)


def test_arrivals_are_seeded_gamma_with_the_asked_rate_and_burstiness() -> None:
    def gaps(seed: int, burstiness: float) -> np.ndarray:
        stream = plan_stream(seed, LengthDist(8), LengthDist(8), 50.0, burstiness)
        times = [next(stream).arrival_s for _ in range(4001)]
        return np.diff(times)

    poisson = gaps(1, 1.0)
    assert np.mean(poisson) == pytest.approx(1 / 50, rel=0.05)
    assert np.std(poisson) / np.mean(poisson) == pytest.approx(1.0, rel=0.07)  # exponential
    bursty = gaps(1, 0.25)
    assert np.mean(bursty) == pytest.approx(1 / 50, rel=0.1)
    assert np.std(bursty) / np.mean(bursty) == pytest.approx(2.0, rel=0.1)  # CV = 1/sqrt(b)
    assert np.array_equal(gaps(1, 1.0), poisson) and not np.array_equal(gaps(2, 1.0), poisson)
    offline = plan_stream(0, LengthDist(8), LengthDist(8), math.inf)
    assert {next(offline).arrival_s for _ in range(10)} == {0.0}


def test_length_distributions_stay_in_range() -> None:
    stream = plan_stream(3, LengthDist(100, "uniform", 0.2), LengthDist(50, "normal", 0.1), None)
    plans = [next(stream) for _ in range(2000)]
    prompts = [p.prompt_len for p in plans]
    assert min(prompts) >= 80 and max(prompts) <= 120 and len(set(prompts)) > 30
    assert statistics.stdev(p.output_len for p in plans) == pytest.approx(5, rel=0.1)
    assert all(len(p.prompt.split()) == p.prompt_len for p in plans[:50])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scenario": "server"}, "scenario server needs a rate"),
        ({"scenario": "single_stream", "rate": 2}, "one request at a time"),
        ({"scenario": "offline", "rate": 3}, "everything at once"),
        ({}, "give concurrency, rate or both"),
        ({"concurrency": 1, "api_key": "sk-x"}, "Extra inputs are not permitted"),
        ({"concurrency": 1, "prompt_len": {"mean": 8, "dist": "zipf"}}, "dist"),
        ({"concurrency": 1, "slo": {}}, "an SLO needs at least one limit"),
        ({"concurrency": 1, "prompt_len": 2_000_000_000}, "over the cap of 1,048,576"),
        (
            {"concurrency": 1, "output_len": {"mean": 600_000, "dist": "uniform", "spread": 1}},
            "a length of 1,200,000 tokens is over the cap",
        ),
        ({"concurrency": 1, "prefix": {"tokens": 2_000_000}}, "a prefix of 2,000,000 tokens"),
        ({"concurrency": 1, "seed": -1}, "seed"),
        ({"slo": {"ttft_ms": 1}, "slo_search": {"low": 1e-320, "high": 10}}, "slo_search.low"),
        ({"slo": {"ttft_ms": 1}, "slo_search": {"low": 1, "high": 1e300}}, "slo_search.high"),
    ],
)
def test_bad_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServingParams(**params)


def test_the_token_cap_is_raised_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_MAX_REQUEST_TOKENS", "4000000")
    assert ServingParams(concurrency=1, prompt_len=2_000_000).prompt_len.mean == 2_000_000


def test_the_token_cap_is_raised_on_the_command_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_MAX_REQUEST_TOKENS", raising=False)  # restored after
    pb = tmp_path / "pb.yaml"
    pb.write_text(
        "campaign: {name: long}\nbenchmarks:\n  - workload: inference.serving\n"
        "    params: {url: 'http://127.0.0.1:9', concurrency: 1, prompt_len: 2000000}\n"
    )
    validate = ["playbook", "validate", str(pb)]
    refused = CliRunner().invoke(app, validate)
    assert refused.exit_code == 2 and "over the cap of 1,048,576" in refused.stderr
    raised = CliRunner().invoke(app, [*validate, "--max-request-tokens", "4000000"])
    assert raised.exit_code == 0, raised.stderr
    bad = CliRunner().invoke(app, validate, env={"HARNESS_MAX_REQUEST_TOKENS": "lots"})
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "error: $HARNESS_MAX_REQUEST_TOKENS='lots': expected a positive integer"
    )


def test_an_endpoint_that_never_answers_is_a_reason_not_a_blank(tmp_path: Path) -> None:
    """A server that accepts and never answers (--skip-preflight case): the stored reason
    says what happened; and the warm-up is bounded by max_duration_s."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        out = trial(
            {
                "url": url,
                "model": "m",
                "concurrency": 1,
                "min_requests": 2,
                "warmup_requests": 2,
                "max_duration_s": 1.0,
            }
        )
        assert time.monotonic() - t0 < 10
        assert out.status == "failed" and out.failure_reason.strip()
        assert "warm-up did not finish within max_duration_s" in out.failure_reason


def test_a_probe_cut_short_never_counts_as_meeting_the_slo(paced: str) -> None:
    """At 2 req/s, 1 s of max_duration_s sends 2 or 3 of the 8 requests asked: the probe
    met its SLO on what it sent, but measured too little to say so."""
    out = trial(
        {
            "url": paced,
            "min_requests": 8,
            "max_duration_s": 1.0,
            "slo": {"ttft_ms": 5000},
            "slo_search": {"low": 2, "high": 4},
            "warmup_requests": 0,
        }
    )
    assert out.status == "failed" and "low=2 req/s already misses the SLO" in out.failure_reason


def test_bad_tokenizers_prices_and_infinities_are_caught_before_anything_runs(
    tmp_path: Path,
) -> None:
    from harness.present.output import to_json

    def validate(extra_params: str, extra: str = "") -> tuple[int, str]:
        pb = tmp_path / "pb.yaml"
        pb.write_text(
            "campaign: {name: v}\n" + extra + "benchmarks:\n  - workload: inference.serving\n"
            f"    params: {{url: 'http://127.0.0.1:9', concurrency: 1{extra_params}}}\n"
        )
        result = CliRunner().invoke(app, ["playbook", "validate", str(pb)])
        return result.exit_code, result.stderr

    code, err = validate(f", tokenizer: '{tmp_path / 'none'}'")
    assert code == 2 and f"tokenizer {tmp_path / 'none'}: no such folder here" in err
    broken = tmp_path / "tok"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    code, err = validate(f", tokenizer: '{broken}'")
    assert code == 2 and f"{broken / 'tokenizer.json'}: not readable JSON" in err, err
    code, err = validate("", "prices: {currency: USD, per_hour: {'*': 1e308}}\n")
    assert code == 2 and "prices must be at most 1,000,000 an hour" in err, err
    assert to_json([{"cost": float("inf"), "x": [float("nan")]}]).split() == (
        ["[", "{", '"cost":', "null,", '"x":', "[", "null", "]", "}", "]"]
    )


def test_serve_model_refuses_bad_options_in_one_line() -> None:
    for args, message in (
        (["--failure", "explode"], "--failure 'explode': expected one of"),
        (["--api-key-env", "NO_SUCH_VARIABLE_HERE"], "$NO_SUCH_VARIABLE_HERE is not set"),
        (["--model", "huge"], "--model 'huge': expected one of"),
        (
            ["--first-token-dist", "uniform", "--first-token-spread", "1.5"],
            "--first-token-spread 1.5: a uniform spread above 1",
        ),
        (["--token-ms", "2", "--token-jitter-ms", "3"], "--token-jitter-ms 3: more than"),
        (["--truth-log", "/no/such/folder/t.jsonl"], "--truth-log /no/such/folder/t.jsonl: cannot"),
    ):
        result = subprocess.run(
            [HARNESS, "serve-model", "--port", "0", *args], capture_output=True, text=True
        )
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr
