"""The on-node runner, in process: stopping rules, warm-up, phases of failure, telemetry."""

from pathlib import Path

import pytest

from harness.node.runner import run_trial
from harness.playbook.load import Settings

BASE = {
    "warmup_iterations": 2,
    "min_repetitions": 7,
    "max_repetitions": 1000,
    "min_duration_s": 0.0,
    "max_duration_s": 30.0,
    "timeout_s": 60.0,
    "telemetry": {"interval_s": 0.05, "sources": ["host"]},
}


def settings(**kw):
    """Settings as the dispatcher sends them: validated by the playbook model, then dumped."""
    return Settings.model_validate({**BASE, **kw}).model_dump()


def test_min_count_reached_and_warmup_not_measured() -> None:
    out = run_trial("test.flaky", {}, settings())
    assert out.status == "ok", out.failure_reason
    assert out.stop_reason == "min_reached"
    assert len(out.seconds) == 7
    assert out.warmup_iterations == 2
    assert out.context["calls"] == 2 + 7  # warm-up ran, but only 7 were timed
    assert out.timer == "perf_counter_ns"
    assert len(out.metrics["time"]) == 7


def test_min_duration_keeps_measuring_past_min_count() -> None:
    out = run_trial(
        "test.flaky", {"sleep_s": 0.01}, settings(min_repetitions=2, min_duration_s=0.3)
    )
    assert out.stop_reason == "min_reached"
    assert out.measure_seconds >= 0.3
    # Past min_repetitions (2): about 30 iterations fit in 0.3 s, fewer on a loaded machine.
    assert len(out.seconds) >= 5
    assert all(s >= 0.01 for s in out.seconds)


def test_max_repetitions_wins_over_minimum_duration() -> None:
    out = run_trial(
        "test.flaky",
        {},
        settings(min_repetitions=2, max_repetitions=3, min_duration_s=10, max_duration_s=20),
    )
    assert out.stop_reason == "max_repetitions" and len(out.seconds) == 3


def test_max_duration_wins_over_minimum_count() -> None:
    out = run_trial(
        "test.flaky",
        {"sleep_s": 0.02},
        settings(min_repetitions=500, max_repetitions=1000, max_duration_s=0.2),
    )
    assert out.stop_reason == "max_duration"
    assert 1 <= len(out.seconds) < 500  # stopped by time, far short of the count


def test_setup_failure_is_an_outcome_with_its_phase(tmp_path: Path) -> None:
    marker = tmp_path / "fail"
    marker.write_text("")
    out = run_trial("test.flaky", {"marker": str(marker)}, settings())
    assert out.status == "failed" and out.failure_phase == "setup"
    assert "marker" in out.failure_reason and "RuntimeError" in out.failure_reason
    assert "Traceback" in out.failure_detail
    assert out.seconds == [] and out.metrics == {}


def test_wrong_result_invalidates_the_trial() -> None:
    out = run_trial("test.flaky", {"corrupt": True}, settings())
    assert out.status == "failed" and out.failure_phase == "verify"
    assert out.failure_reason == "sum is 499501, expected 499500"
    assert out.metrics == {}  # no figures from a wrong result


def test_invalid_params_fail_in_setup() -> None:
    out = run_trial("memory.stream", {"op": "nope"}, settings())
    assert out.status == "failed" and out.failure_phase == "setup"
    assert "op" in out.failure_reason


def test_telemetry_covers_the_measurement_window() -> None:
    out = run_trial(
        "test.flaky",
        {"sleep_s": 0.01},
        settings(min_duration_s=0.3, telemetry={"interval_s": 0.05, "sources": ["host", "nvml"]}),
    )
    start, end = out.window
    assert end - start >= 0.3
    host = [
        s
        for s in out.telemetry
        if s.source == "host" and s.device == "cpu" and s.metric == "cpu_util"
    ]
    assert len(host) >= 5  # 0.3 s at 20 Hz plus both edges
    assert all(start <= s.t <= end for s in out.telemetry)
    statuses = {s.source: s for s in out.sources}
    assert statuses["host"].available
    assert "nvml" in statuses  # asked for: recorded either way
    if not statuses["nvml"].available:
        assert statuses["nvml"].reason


@pytest.mark.quiet
def test_adaptive_repetitions_stop_at_the_ci_target_or_flag_the_trial_noisy() -> None:
    tight = run_trial(
        "test.flaky",
        {"sleep_s": 0.002},
        settings(min_repetitions=5, max_repetitions=400, min_duration_s=0, target_ci=0.5),
    )
    assert tight.stop_reason == "ci_reached" and "noisy" not in tight.context
    assert len(tight.seconds) < 400
    noisy = run_trial(
        "test.flaky",
        {"sleep_s": 0.001},
        settings(min_repetitions=5, max_repetitions=30, min_duration_s=0, target_ci=1e-9),
    )
    assert noisy.stop_reason == "max_repetitions" and noisy.context["noisy"] is True
    assert noisy.context["ci_fraction"] > 1e-9
    plain = run_trial("test.flaky", {}, settings(min_repetitions=5, min_duration_s=0))
    assert plain.stop_reason == "min_reached" and "noisy" not in plain.context


@pytest.mark.quiet
def test_a_trial_beside_a_busy_process_is_flagged_contended() -> None:
    import subprocess
    import sys
    import time

    quiet = run_trial("test.flaky", {"sleep_s": 0.01}, settings(min_duration_s=0.5))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = run_trial("test.flaky", {"sleep_s": 0.01}, settings(min_duration_s=0.5))
    finally:
        spinner.kill()
    assert busy.context["contended"] is True and busy.context["other_cpu_cores"] > 0.5
    assert quiet.context["other_cpu_cores"] < busy.context["other_cpu_cores"]


def test_a_failure_reason_is_never_empty() -> None:
    from harness.node.outcome import TrialOutcome
    from harness.node.runner import _fail
    from workloads import UnsupportedParams

    for exc, want in (
        (TimeoutError(), "TimeoutError (no message) in measure"),
        (UnsupportedParams(""), "UnsupportedParams (no message) in measure"),
        (ValueError("bad size"), "ValueError: bad size"),
        (UnsupportedParams("no GPU"), "no GPU"),
    ):
        outcome = TrialOutcome(status="ok")
        _fail(outcome, "measure", exc)
        assert outcome.failure_reason == want
