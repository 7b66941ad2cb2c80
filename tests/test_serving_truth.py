"""The server's own record (`serve-model --truth-log`) and our client read against it.

The synthetic server plants a first-token delay drawn from a stated distribution and jittered
token gaps, injects failures, and logs per request when it received it, wrote each token and
ended: the truth a load generator's figures are judged by (benchmarks/serving_peers.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.node.runner import run_trial
from tests.serving_helpers import ONE_LOAD_RUN
from workloads.serving.client import LengthDist, plan_stream
from workloads.serving.serve_model import spawned
from workloads.serving.truth import (
    TruthRecord,
    log_size,
    read_truth,
    schedule_lateness_ms,
    summarize,
)

PLANTED = (
    "--engine", "synthetic", "--first-token-ms", "40", "--first-token-dist", "lognormal",
    "--first-token-spread", "0.25", "--token-ms", "5", "--token-jitter-ms", "1", "--seed", "3",
)  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A synthetic server with planted timings, failing every 7th request (three kinds in
    turn), and its truth log."""
    log = tmp_path_factory.mktemp("truth") / "truth.jsonl"
    failures = ("--failure", "status", "--failure", "disconnect", "--failure", "stream_error")
    with spawned(*PLANTED, "--fail-every", "7", *failures, "--truth-log", str(log)) as url:
        yield url, log


def load(url: str, concurrency: int, requests: int):
    """Our client: ``requests`` of 8 in / 6 out at ``concurrency``, no warm-up."""
    params = {"url": url, "concurrency": concurrency, "min_requests": requests,
              "prompt_len": 8, "output_len": 6, "warmup_requests": 0, "server_metrics": False}  # fmt: skip
    return run_trial("inference.serving", params, ONE_LOAD_RUN)


def test_the_log_has_one_record_per_request_with_the_planted_timings_and_outcomes(
    planted: tuple[str, Path],
) -> None:
    url, log = planted
    start = log_size(log)
    out = load(url, concurrency=6, requests=42)
    records, end = read_truth(log, start)
    assert end == log_size(log) and read_truth(log, end)[0] == []  # a second read: nothing new
    numbers = sorted(r.n for r in records)
    assert len(records) == 42 and numbers == list(range(numbers[0], numbers[0] + 42))
    # Every 7th request fails, cycling status -> disconnect -> stream_error; the rest are ok.
    kinds = ("status", "disconnect", "stream_error")
    for r in records:
        want = kinds[(r.n // 7 - 1) % 3] if r.n % 7 == 0 else "ok"
        assert r.outcome == want, r
        assert r.received_ns <= (r.tokens_ns[0] if r.tokens_ns else r.done_ns) <= r.done_ns
        if want == "ok":
            assert len(r.tokens_ns) == 6 and r.prompt_tokens == 8 and r.max_tokens == 6
            assert list(r.tokens_ns) == sorted(r.tokens_ns)
            # Never earlier than planned; late only by the event loop's wake-up.
            ttft_ms = (r.tokens_ns[0] - r.received_ns) / 1e6
            assert r.first_token_planned_ms <= ttft_ms < r.first_token_planned_ms + 25
        elif want == "status":
            assert r.tokens_ns == () and r.first_token_planned_ms is None
    errors = sum(out.context["errors_by_kind"].values())
    assert errors == sum(r.outcome != "ok" for r in records) == 6
    # The planted lognormal: mean 40 ms, sigma 0.25 (log-space), seeded.
    planned = [r.first_token_planned_ms for r in records if r.first_token_planned_ms]
    logs = np.log(planned)
    assert statistics.mean(planned) == pytest.approx(40, rel=0.15)
    assert float(np.std(logs)) == pytest.approx(0.25, rel=0.35)
    # Gaps of 5 ms +- 1, each token held to its own planned time: a late token's successor
    # may follow it sooner, so the gaps' centre is checked, not their least.
    gaps = [
        (b - a) / 1e6
        for r in records
        if r.ok
        for a, b in zip(r.tokens_ns, r.tokens_ns[1:], strict=False)
    ]
    assert 4.5 <= statistics.median(gaps) <= 6.0


@pytest.mark.quiet
def test_our_figures_agree_with_the_servers_record(planted: tuple[str, Path]) -> None:
    """Each request's TTFT as we read it spans the server's (we send before it receives,
    it writes before we read): sorted, ours is never below; and the gap is the loopback's."""
    url, log = planted
    start = log_size(log)
    out = load(url, concurrency=2, requests=30)
    assert out.status == "ok", out.failure_reason
    records, _ = read_truth(log, start)
    ok = [r for r in records if r.ok]
    truth_ttft = sorted((r.tokens_ns[0] - r.received_ns) / 1e6 for r in ok)
    truth_e2e = sorted((r.done_ns - r.received_ns) / 1e6 for r in ok)
    ours_ttft, ours_e2e = sorted(out.metrics["ttft"]), sorted(out.metrics["e2e_latency"])
    assert len(ours_ttft) == len(truth_ttft) == out.context["completed"]
    for mine, theirs in ((ours_ttft, truth_ttft), (ours_e2e, truth_e2e)):
        below = [(m, t) for m, t in zip(mine, theirs, strict=True) if m < t - 0.01]
        assert not below, below
        assert statistics.median(m - t for m, t in zip(mine, theirs, strict=True)) < 3.0
    truth = summarize(records)
    assert truth["ttft_p50"] == pytest.approx(np.percentile(truth_ttft, 50))
    assert truth["completed"] == len(ok) and truth["requests"] == len(records)


def test_summaries_follow_the_stated_definitions() -> None:
    ms = 1_000_000
    records = [
        TruthRecord(1, 0, None, (10 * ms, 14 * ms, 20 * ms), 21 * ms, "ok", 4, 3),
        TruthRecord(2, 5 * ms, 6 * ms, (25 * ms, 27 * ms, 29 * ms), 30 * ms, "ok", 4, 3),
        TruthRecord(3, 7 * ms, None, (9 * ms,), 40 * ms, "gone", 4, 3),  # the client left
    ]
    s = summarize(records)
    assert s["completed"] == 2 and s["requests"] == 3
    assert s["ttft_p50"] == pytest.approx(15)  # 10 and 20
    assert s["e2e_p50"] == pytest.approx(23)  # 21 and 25
    assert s["tpot_p50"] == pytest.approx((5.5 + 2.5) / 2)  # (done - first) / (n - 1)
    assert s["itl_p50"] == pytest.approx(np.percentile([4, 6, 2, 2], 50))
    assert s["req_s"] == pytest.approx(2 / 0.030) and s["out_tok_s"] == pytest.approx(6 / 0.030)
    assert TruthRecord.from_json(__import__("json").loads(records[1].as_json())) == records[1]
    # An even schedule at 100 req/s, one request 3 ms late.
    even = [TruthRecord(i, i * 10 * ms + (3 * ms if i == 4 else 0), None, (), 0, "ok", 1, 1)
            for i in range(10)]  # fmt: skip
    late = schedule_lateness_ms(even, 100.0)
    assert max(late) == pytest.approx(3) and sorted(late)[:9] == [0.0] * 9


def test_constant_arrivals_are_evenly_spaced() -> None:
    stream = plan_stream(0, LengthDist(8), LengthDist(8), 250.0, constant=True)
    times = [next(stream).arrival_s for _ in range(1001)]
    assert np.allclose(np.diff(times), 1 / 250) and math.isclose(times[-1], 4.0)


@pytest.mark.quiet
def test_constant_arrivals_reach_the_server_on_schedule(planted: tuple[str, Path]) -> None:
    """At 100 requests/s for 2.5 s the server receives them evenly: at the asked rate, the
    typical request on time to within 2 ms (the tail is left to benchmarks/serving_peers.py:
    on a busy 2-CPU machine it is the machine's); the client's lateness is judged after its
    first second and reported for that second apart."""
    url, log = planted
    start = log_size(log)
    params = {"url": url, "rate": 100, "arrival": "constant", "min_requests": 250,
              "prompt_len": 8, "output_len": 2, "warmup_requests": 0, "server_metrics": False}  # fmt: skip
    out = run_trial("inference.serving", params, ONE_LOAD_RUN)
    records, _ = read_truth(log, start)
    assert len(records) == 250
    received = sorted(r.received_ns for r in records)
    assert (len(received) - 1) / ((received[-1] - received[0]) / 1e9) == pytest.approx(
        100, rel=0.02
    )
    assert float(np.percentile(schedule_lateness_ms(records, 100.0), 50)) < 2.0
    ctx = out.context
    assert ctx["send_lag_p99_ms"] >= 0 and "send_lag_start_p99_ms" in ctx
