"""The campaign's time left, from its plan and what finished so far (a scripted clock)."""

from __future__ import annotations

from harness.campaign.eta import Eta, format_eta, prior_seconds
from harness.campaign.placement import PlacedTrial
from harness.cli.live import running_line
from harness.cluster.inventory import NodeInfo
from harness.playbook.expand import TrialSpec
from harness.playbook.model import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trial(key: str, benchmark: str, min_duration_s: float = 1.0, host: str = "vm") -> PlacedTrial:
    node = NodeInfo(key * 8, "127.0.0.1", {}, {}, {"hostname": host})
    settings = Settings(min_duration_s=min_duration_s, max_duration_s=60)
    spec = TrialSpec(benchmark, "memory.stream", {"op": "triad"}, "h", settings, "all", False)
    return PlacedTrial(spec, (node,), key)


def test_before_anything_ran_the_settings_give_the_estimate() -> None:
    clock = Clock()
    trials = [trial("a", "s", 1.0), trial("b", "s", 1.0), trial("c", "g", 5.0)]
    eta = Eta(trials, clock)
    assert eta.seconds_left() == sum(prior_seconds(t) for t in trials)


def test_finished_trials_of_a_benchmark_set_its_expected_time() -> None:
    clock = Clock()
    a, b, c = trial("a", "s"), trial("b", "s"), trial("c", "s")
    eta = Eta([a, b, c], clock)
    eta.started(a)
    clock.now = 10.0
    eta.finished(a)  # a benchmark "s" trial takes 10 s
    assert eta.seconds_left() == 20.0
    eta.started(b)
    clock.now = 14.0  # b is 4 s in: 6 s of it left, plus c's 10
    assert eta.seconds_left() == 16.0


def test_concurrent_trials_divide_the_work_left() -> None:
    clock = Clock()
    trials = [trial(k, "s") for k in "abcd"]
    eta = Eta(trials, clock)
    eta.started(trials[0])
    clock.now = 4.0
    eta.finished(trials[0])
    eta.started(trials[1])
    eta.started(trials[2])  # two at once: (4 + 4 + 4) / 2
    assert eta.seconds_left() == 6.0
    for t in trials[1:]:
        eta.started(t)
        eta.finished(t)
    assert eta.seconds_left() is None


def test_eta_text_and_running_line() -> None:
    assert format_eta(None) == "" and format_eta(42.4) == "ETA 42s"
    assert format_eta(185) == "ETA 3m 05s" and format_eta(3 * 3600 + 120) == "ETA 3h 02m"
    one, two = trial("a", "stream", host="gpu07"), trial("b", "gemm", host="gpu08")
    line = running_line([one, two], width=200)
    assert line.startswith("running: stream[") and "on gpu07 (aaaaaaaa)" in line
    assert "gemm[" in line and "on gpu08 (bbbbbbbb)" in line
    assert len(running_line([one, two], width=40)) == 40
