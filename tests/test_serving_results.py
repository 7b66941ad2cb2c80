"""Serving results as a user reads them: a concurrency sweep's rows show TTFT/TPOT/ITL/E2E
percentiles and errors by kind, never an interval from one sample; the report draws
throughput against latency per configuration and the Pareto frontier, with the percentile
table of every load point. Against `harness serve-model` with known pacing."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.campaign.claims import claims, overlaps
from harness.campaign.placement import PlacedTrial
from harness.cli.app import app
from harness.cluster.inventory import NodeInfo
from harness.playbook.expand import TrialSpec
from harness.playbook.load import Settings
from harness.present.serving import pareto_front
from tests.serving_helpers import ONE_LOAD_RUN
from workloads.serving.serve_model import spawned

runner = CliRunner()


def test_load_runs_on_one_endpoint_claim_it_wherever_they_run() -> None:
    a, b = NodeInfo("a" * 8, "", {}, {"CPU": 1.0}, {}), NodeInfo("b" * 8, "", {}, {"CPU": 1.0}, {})

    def placed(node: NodeInfo, url: str) -> PlacedTrial:
        params = {"url": url, "concurrency": 1}
        spec = TrialSpec("s", "inference.serving", params, "h", Settings(), "any", False)
        return PlacedTrial(spec, (node,), "k")

    one = claims(placed(a, "http://srv:8000/v1"))
    assert overlaps(one, claims(placed(b, "http://srv:8000")))  # the same server
    assert not overlaps(one, claims(placed(b, "http://other:8000")))


def test_pareto_front_keeps_what_nothing_beats_on_both_axes() -> None:
    points = [(10, 100), (20, 90), (15, 80), (30, 50), (5, 120), (30, 40), (20, 90)]
    assert pareto_front(points) == [(5, 120), (10, 100), (20, 90), (30, 50)]
    assert pareto_front([]) == []


@pytest.mark.ray
def test_a_concurrency_sweep_shows_percentiles_and_draws_the_curves(
    ray_cluster, tmp_path: Path
) -> None:
    with spawned("--engine", "synthetic", "--first-token-ms", "40", "--token-ms", "10") as url:
        playbook = tmp_path / "sweep.yaml"
        playbook.write_text(
            "campaign: {name: sweep}\n"
            "defaults: {telemetry: {sources: [host]}}\n"
            "benchmarks:\n"
            "  - name: ladder\n"
            "    workload: inference.serving\n"
            f"    params: {{url: '{url}', concurrency: [1, 4], min_requests: 8,\n"
            "             prompt_len: 16, output_len: 12}\n"
        )
        db = tmp_path / "r.db"
        result = runner.invoke(
            app, ["run", str(playbook), "--db", str(db), "--address", ray_cluster.address]
        )
    assert result.exit_code == 0, result.output + result.stderr
    campaign = re.search(r"campaign (sweep-\S+): 2 ok", result.output).group(1)
    # Three nodes, one server: the two load points ran one after the other, never together.
    windows = sorted(
        sqlite3.connect(db).execute("select started_at, finished_at from trials").fetchall()
    )
    assert len({w for w in windows}) == 2 and windows[0][1] <= windows[1][0], windows

    shown = runner.invoke(app, ["results", "show", campaign, "--db", str(db), "--format", "csv"])
    assert shown.exit_code == 0
    wide = runner.invoke(app, ["results", "show", campaign, "--db", str(db), "--wide"])
    text = wide.output
    for name in ("ttft p50", "tpot p50", "itl p50", "e2e_latency p50"):
        assert text.count(name) == 2, text  # on both load points' rows
    # TPOT is the 10 ms pacing, within what a loaded 2-core machine adds.
    tpots = [float(x) for x in re.findall(r"tpot p50 ([\d.]+)", text)]
    assert all(9.9 <= t < 14 for t in tpots), tpots
    assert "[" not in "".join(line.split("│")[7] for line in text.splitlines() if "ladder" in line)
    assert "{mean:16" in text and "'mean'" not in text  # lengths as data, not Python repr

    page = tmp_path / "r.html"
    assert runner.invoke(app, ["report", campaign, "--db", str(db), "-o", str(page)]).exit_code == 0
    html = page.read_text()
    serving = html[html.index("<h2>Serving</h2>") : html.index("<h2>Fleet health</h2>")]
    assert serving.count('class="chart"') == 3  # TTFT and TPOT vs throughput, Pareto
    assert 'id="frontier"' in serving
    assert "TTFT p50/p90/p99 ms" in serving and "concurrency=4" in serving
    rows = re.findall(
        r"<tr class=\"\"><td>ladder</td><td>concurrency=(\d)</td><td>([\d.]+)</td>", serving
    )
    by_load = {int(c): float(t) for c, t in rows}
    assert by_load[4] > 2.5 * by_load[1]  # four streams at once, paced alike


def _outcome(median: float, p99: float = 1.0, requests: int = 10, completed: int = 10):
    from harness.node.outcome import TrialOutcome
    from results_db.vocabulary import Summary, TrialStatus

    def summary(m: float, p: float) -> Summary:
        fields = dict.fromkeys(Summary.__annotations__)
        return Summary(**{**fields, "n": 1, "median": m, "p99": p})

    return TrialOutcome(
        status=TrialStatus.OK,
        summaries={"output_throughput": summary(median, median), "ttft": summary(p99, p99)},
        metric_specs=[("output_throughput", "tokens/s", True), ("ttft", "ms", False)],
        context={"requests": requests, "completed": completed},
    )


def _ladder_trials(ladder: dict) -> list[PlacedTrial]:
    from harness.playbook.model import Ladder

    node = NodeInfo("a" * 8, "", {}, {"CPU": 1.0}, {}, identity="a")
    out = []
    for c in (8, 1, 4, 2):  # given out of order: climbed from the lowest
        params = {"url": "http://s", "concurrency": c}
        spec = TrialSpec(
            "l", "inference.serving", params, "h", Settings(), "any", False, ladder=Ladder(**ladder)
        )
        out.append(PlacedTrial(spec, (node,), f"k{c}"))
    return out


def test_ladders_climb_in_order_and_stop_on_saturation_errors_and_latency() -> None:
    from harness.campaign.ladder import Ladders, in_climbing_order

    trials = in_climbing_order(_ladder_trials({"over": "concurrency"}))
    assert [t.spec.params["concurrency"] for t in trials] == [1, 2, 4, 8]
    ladders = Ladders(trials)
    assert ladders.after(trials[0], _outcome(100)) == ([], "")
    assert ladders.after(trials[1], _outcome(190)) == ([], "")
    above, reason = ladders.after(trials[2], _outcome(195))  # +2.6%: the knee
    assert [t.key for t in above] == ["k8"] and "saturated at concurrency=4" in reason

    trials = in_climbing_order(_ladder_trials({"over": "concurrency", "max_error_rate": 0.1}))
    ladders = Ladders(trials)
    above, reason = ladders.after(trials[0], _outcome(100, requests=10, completed=8))
    assert len(above) == 3 and "20% of requests failed at concurrency=1" in reason

    trials = in_climbing_order(_ladder_trials({"over": "concurrency", "max_p99": {"ttft": 500}}))
    ladders = Ladders(trials)
    assert ladders.after(trials[0], _outcome(100, p99=200)) == ([], "")
    above, reason = ladders.after(trials[1], _outcome(200, p99=800))
    assert len(above) == 2 and "ttft p99 800 passed 500 at concurrency=2" in reason


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        ("{over: rate}", "params.rate must be a list of at least two steps"),
        ("{over: concurrency, max_p99: {ttf: 100}}", "has no metric 'ttf'; did you mean 'ttft'?"),
        ("{over: concurrency, min_gain: -1}", "min_gain"),
    ],
)
def test_bad_ladders_are_refused(ladder: str, message: str) -> None:
    from harness.playbook.load import PlaybookError, load_playbook_text

    text = (
        "campaign: {name: l}\nbenchmarks:\n  - workload: inference.serving\n"
        f"    params: {{url: 'http://s', concurrency: [1, 2]}}\n    ladder: {ladder}\n"
    )
    with pytest.raises(PlaybookError) as exc:
        load_playbook_text(text, "pb.yaml")
    assert any(message in line for line in exc.value.lines), exc.value.lines


@pytest.mark.quiet
@pytest.mark.ray
def test_a_ladder_stops_at_the_servers_saturation_point(ray_cluster, tmp_path: Path) -> None:
    """The server generates 4 requests at once and queues the rest: throughput doubles from
    1 to 2 to 4 streams and is flat at 8, so the ladder stops there; 16 and 32 never run."""
    with spawned(
        "--engine", "synthetic", "--first-token-ms", "40", "--token-ms", "10", "--max-running", "4"
    ) as url:
        playbook = tmp_path / "ladder.yaml"
        playbook.write_text(
            "campaign: {name: ladder}\n"
            "defaults: {telemetry: {sources: [host]}}\n"
            "benchmarks:\n"
            "  - name: climb\n"
            "    workload: inference.serving\n"
            f"    params: {{url: '{url}', concurrency: [32, 1, 2, 4, 8, 16], min_requests: 16,\n"
            "             prompt_len: 16, output_len: 12}\n"
            "    ladder: {over: concurrency, min_gain: 0.1}\n"
        )
        db = tmp_path / "r.db"
        args = ["run", str(playbook), "--db", str(db), "--address", ray_cluster.address]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output + result.stderr
        assert "4 ok, 0 failed" in result.output and "2 not run (ladder stopped)" in result.output
        assert "saturated at concurrency=8" in result.stderr
        rows = (
            sqlite3.connect(db)
            .execute(
                "select json_extract(params, '$.concurrency'), status, failure_reason, started_at "
                "from trials order by started_at"
            )
            .fetchall()
        )
        ran = [c for c, status, _, _ in rows if status == "ok"]
        assert ran == [1, 2, 4, 8]  # climbed in order, one step at a time
        skipped = {c: why for c, status, why, _ in rows if status == "skipped"}
        assert set(skipped) == {16, 32} and all("not run: saturated" in w for w in skipped.values())
        campaign = re.search(r"campaign (ladder-\S+): 4 ok", result.output).group(1)
        again = runner.invoke(app, [*args, "--resume", campaign])
        assert again.exit_code == 0 and "6 skipped (already done)" in again.output


@pytest.mark.quiet
def test_slo_search_converges_on_the_servers_capacity() -> None:
    """4 requests generate at once, each for 40 + 11 x 10 = 150 ms: the server completes
    26.7 requests/s. Below that, arrivals nearly evenly spaced never wait; above it a queue
    grows and TTFT passes 100 ms. The search must land near 26.7 req/s."""
    from harness.node.runner import run_trial

    settings = ONE_LOAD_RUN
    with spawned(
        "--engine", "synthetic", "--first-token-ms", "40", "--token-ms", "10", "--max-running", "4"
    ) as url:
        params = {
            "url": url,
            "prompt_len": 8,
            "output_len": 12,
            "min_requests": 40,
            "warmup_requests": 0,
            "burstiness": 100,  # gamma gaps of shape 100: nearly even arrivals
            "slo": {"ttft_ms": 100},
            "slo_search": {"attainment": 0.9, "low": 15, "high": 60, "tolerance": 0.06},
        }
        out = run_trial("inference.serving", params, settings)
    assert out.status == "ok", out.failure_reason
    rate = out.summaries["slo_rate"]["median"]
    assert 22 <= rate <= 30, out.context["slo_search"]
    probes = out.context["slo_search"]["probes"]
    assert probes[0]["rate"] == 15 and probes[0]["attainment"] >= 0.9
    assert probes[1]["rate"] == 60 and probes[1]["attainment"] < 0.9
    assert 3 <= len(probes) <= 10
    # The latencies stored are those of the run at the rate found.
    assert out.summaries["ttft"]["p90"] <= 100


def test_slo_search_needs_an_slo_and_no_rate() -> None:
    from pydantic import ValidationError

    from workloads.serving.workload import ServingParams

    search = {"low": 1, "high": 10}
    with pytest.raises(ValidationError, match="slo_search needs slo"):
        ServingParams(slo_search=search)
    with pytest.raises(ValidationError, match="sets the rate itself"):
        ServingParams(slo={"ttft_ms": 100}, slo_search=search, rate=3)
    with pytest.raises(ValidationError, match="must be below high"):
        ServingParams(slo={"ttft_ms": 100}, slo_search={"low": 10, "high": 10})
    ok = ServingParams(slo={"ttft_ms": 100}, slo_search=search)
    from workloads.serving.workload import ServingWorkload

    assert ServingWorkload.primary_for(ok.model_dump(mode="json")) == "slo_rate"


def test_energy_of_a_load_is_its_servers_when_server_on_names_them() -> None:
    """RAPL on the client's node draws 100 W, on the server's 50 W: with server_on, energy
    per token is the server's (50 J over 1 s for 100 tokens), not the client's."""
    from collectors.base import Sample
    from harness.campaign.energy import trial_energy
    from harness.node.outcome import TrialOutcome
    from results_db.vocabulary import TrialStatus

    def power(device: str, watts: float) -> list[Sample]:
        return [Sample(t / 10, "rapl", device, "power", "W", watts) for t in range(11)]

    outcome = TrialOutcome(
        status=TrialStatus.OK,
        device="cpu",
        seconds=[1.0],
        work={"tokens": 100.0},
        telemetry=power("package-0", 100.0) + power("abcd1234:package-0", 50.0),
        telemetry_interval_s=0.1,
        context={"server_nodes": ["abcd1234"]},
    )
    metrics = {name: value for name, _, _, value in trial_energy(outcome, {}).metrics}
    assert metrics["energy"] == pytest.approx(50.0) and metrics[
        "energy_per_token"
    ] == pytest.approx(0.5)
    outcome.context, outcome.telemetry = {}, power("package-0", 100.0)
    metrics = {name: value for name, _, _, value in trial_energy(outcome, {}).metrics}
    assert metrics["energy"] == pytest.approx(100.0)  # without server_on: the node it ran on


@pytest.mark.ray
def test_server_on_holds_and_watches_the_endpoints_node(ray_cluster, tmp_path: Path) -> None:
    """The client runs on the head; the endpoint's host is zone b's node: it is watched in the
    trial's window, and a benchmark placed on it waits until the load is over."""
    with spawned("--engine", "synthetic", "--token-ms", "10") as url:
        playbook = tmp_path / "served.yaml"
        playbook.write_text(
            "campaign: {name: served}\n"
            "defaults: {telemetry: {sources: [host], interval_s: 0.05}}\n"
            "targets:\n  head: {labels: {tier: head}}\n  srv: {labels: {zone: b}}\n"
            "benchmarks:\n"
            "  - name: load\n"
            "    workload: inference.serving\n"
            "    on: head\n"
            "    server_on: srv\n"
            f"    params: {{url: '{url}', concurrency: 2, min_requests: 30, output_len: 8}}\n"
            "  - name: beside\n"
            "    workload: test.flaky\n"
            "    on: srv\n"
            "    params: {sleep_s: 0.01}\n"
        )
        db = tmp_path / "r.db"
        result = runner.invoke(
            app, ["run", str(playbook), "--db", str(db), "--address", ray_cluster.address]
        )
    assert result.exit_code == 0, result.output + result.stderr
    con = sqlite3.connect(db)
    rows = dict(
        (b, (tid, s, f, json.loads(c)))
        for tid, b, s, f, c in con.execute(
            "select id, benchmark, started_at, finished_at, context from trials"
        )
    )
    tid, start, end, ctx = rows["load"]
    srv = ray_cluster.worker_ids[1][:8]  # zone b
    assert ctx["server_nodes"] == [srv] and ctx["energy_of"] == f"server_on: {srv}"
    assert ctx["server_gpus"] == 0  # Ray counts none on this machine
    devices = {
        d
        for (d,) in con.execute(
            "select distinct device from telemetry_samples where trial_id = ?", (tid,)
        )
    }
    assert f"{srv}:cpu" in devices and "cpu" in devices  # the server's and the client's
    _, b_start, b_end, _ = rows["beside"]
    assert b_end <= start or b_start >= end  # never while the load ran on its node


@pytest.mark.ray
def test_cost_per_million_tokens_from_the_price_table(ray_cluster, tmp_path: Path) -> None:
    """3.60 an hour at T tokens/s costs 3.6 / (3600 T) x 1e6 = 1000 / T per million tokens;
    a node no entry prices stops the run before anything is stored."""
    with spawned("--engine", "synthetic", "--token-ms", "5") as url:
        text = (
            "campaign: {{name: priced}}\n"
            "defaults: {{telemetry: {{sources: [host]}}}}\n"
            "prices: {{currency: EUR, per_hour: {prices}}}\n"
            "benchmarks:\n"
            "  - workload: inference.serving\n"
            f"    params: {{{{url: '{url}', concurrency: 2, min_requests: 8, output_len: 8}}}}\n"
        )
        db = tmp_path / "r.db"
        args = ["--db", str(db), "--address", ray_cluster.address]
        playbook = tmp_path / "priced.yaml"
        playbook.write_text(text.format(prices="{'*H100*': 2.0}"))
        refused = runner.invoke(app, ["run", str(playbook), *args])
        assert refused.exit_code == 2, refused.output + refused.stderr
        assert "prices: no entry for" in refused.stderr and "GPU none" in refused.stderr
        assert sqlite3.connect(db).execute("select count(*) from campaigns").fetchone()[0] == 0
        playbook.write_text(text.format(prices="{'*H100*': 2.0, '*': 3.6}"))
        result = runner.invoke(app, ["run", str(playbook), *args])
    assert result.exit_code == 0, result.output + result.stderr
    rows = dict(
        sqlite3.connect(db).execute(
            "select m.name, m.median from metrics m where m.name in "
            "('output_throughput', 'cost_per_mtok')"
        )
    )
    assert rows["cost_per_mtok"] == pytest.approx(1000 / rows["output_throughput"], rel=1e-6)
    unit = (
        sqlite3.connect(db)
        .execute("select unit from metrics where name = 'cost_per_mtok'")
        .fetchone()[0]
    )
    assert unit == "EUR/Mtok"


def test_energy_per_token_is_compared_at_one_interactivity() -> None:
    """Two configurations' load points: energy per token is read where both reach the same
    tokens/s per user (the highest they share), interpolated, not at unlike loads."""
    from harness.present.serving import load_points, matched_energy

    def records(trial: int, bench: str, conc: int, tpot: float, thr: float, joules: float):
        base = {
            "trial": trial,
            "benchmark": bench,
            "node_label": "n1",
            "params": {"url": "u", "concurrency": conc},
            "detail_metrics": ["ttft", "tpot", "itl", "e2e_latency"],
            "unit": "",
        }
        return [
            {**base, "metric": "output_throughput", "median": thr},
            {**base, "metric": "tpot", "median": tpot},
            {**base, "metric": "energy_per_token", "median": joules},
        ]

    recs = []
    # A: 100 and 50 tok/s/user (tpot 10, 20 ms) at 1.0 and 0.5 J/token
    recs += records(1, "a", 1, 10.0, 100.0, 1.0) + records(2, "a", 8, 20.0, 400.0, 0.5)
    # B: 80 and 40 tok/s/user (tpot 12.5, 25 ms) at 0.8 and 0.6 J/token
    recs += records(3, "b", 1, 12.5, 80.0, 0.8) + records(4, "b", 8, 25.0, 320.0, 0.6)
    at, figures = matched_energy(load_points(recs))
    assert at == pytest.approx(80.0)  # the highest interactivity both reach
    assert figures["a"] == pytest.approx(0.5 + 0.5 * (80 - 50) / 50)  # 0.8
    assert figures["b"] == pytest.approx(0.8)
    assert matched_energy(load_points(recs[:6])) is None  # one configuration has nothing to match


@pytest.mark.ray
def test_load_from_two_nodes_is_one_trial(ray_cluster, tmp_path: Path) -> None:
    """ranks: 2 puts a client on two nodes; each sends its share (2 of the 4 streams, half
    the requests) and rank 0 stores every request as one trial."""
    with spawned("--engine", "synthetic", "--first-token-ms", "20", "--token-ms", "10") as url:
        playbook = tmp_path / "spread.yaml"
        playbook.write_text(
            "campaign: {name: spread}\n"
            "defaults: {telemetry: {sources: [host]}}\n"
            "benchmarks:\n"
            "  - name: two\n"
            "    workload: inference.serving\n"
            "    ranks: 2\n"
            f"    params: {{url: '{url}', concurrency: 4, min_requests: 16, output_len: 8}}\n"
            "  - name: one\n"
            "    workload: inference.serving\n"
            f"    params: {{url: '{url}', concurrency: 4, min_requests: 16, output_len: 8}}\n"
        )
        db = tmp_path / "r.db"
        result = runner.invoke(
            app, ["run", str(playbook), "--db", str(db), "--address", ray_cluster.address]
        )
    assert result.exit_code == 0, result.output + result.stderr
    con = sqlite3.connect(db)
    ctx = {b: json.loads(c) for b, c in con.execute("select benchmark, context from trials")}
    assert ctx["two"]["client_ranks"] == 2 and ctx["two"]["requests_by_rank"] == [8, 8]
    assert ctx["two"]["completed"] == 16 and "client_ranks" not in ctx["one"]
    thr = dict(
        con.execute(
            "select t.benchmark, m.median from trials t join metrics m on m.trial_id = t.id "
            "where m.name = 'output_throughput'"
        )
    )
    assert thr["two"] == pytest.approx(thr["one"], rel=0.25)  # 4 streams either way
    # The ranks start their shares together after their warm-ups. With the barrier before
    # the warm-ups, a CI run's merged span was 1.4 s instead of about 0.4 (a rank about a
    # second behind the other) and read 93 tokens/s against 318.
    spreads = ctx["two"]["rank_start_spread_ms"]
    assert spreads and all(0 <= s < 250 for s in spreads), spreads
    ranks = json.loads(
        con.execute("select ranks from trials where benchmark = 'two'").fetchone()[0]
    )
    assert len({r["ray_node_id"] for r in ranks}) == 2


def test_ranks_merge_by_the_start_barrier_not_by_their_hosts_clocks() -> None:
    """Two ranks whose hosts' clocks are 5 s apart: the merged span is timed from the barrier
    they passed together (10 and 12 ms to their first sends, 1 s of load each)."""
    from workloads.serving.client import LoadRun, merge_runs

    a = LoadRun([], 1.0, [], started_wall=1000.010, started_after_s=0.010)
    b = LoadRun([], 1.0, [], started_wall=1005.012, started_after_s=0.012)
    merged = merge_runs([a, b])
    assert merged.duration_s == pytest.approx(1.002)
    assert merged.started_after_s == pytest.approx(0.010) and merged.started_wall == 1000.010
    # Without a barrier (no start times after it) the wall clocks are all there is.
    b.started_after_s = None
    assert merge_runs([a, b]).duration_s == pytest.approx(6.002)


def test_the_pareto_chart_is_per_gpu_when_the_endpoints_gpus_are_known() -> None:
    from harness.present.serving import load_points

    recs = [
        {
            "trial": 1,
            "benchmark": "a",
            "node_label": "n1",
            "params": {"url": "u", "concurrency": 4},
            "detail_metrics": ["ttft", "tpot"],
            "unit": "",
            "metric": name,
            "median": value,
        }
        for name, value in (("output_throughput", 800.0), ("tpot", 20.0))
    ]
    [point] = load_points(recs, {1: {"server_gpus": 8}})
    assert point["gpus"] == 8 and point["interactivity"] == 50.0
    [point] = load_points(recs, {1: {}})
    assert point["gpus"] is None
