"""Serving results as a user reads them: a concurrency sweep's rows show TTFT/TPOT/ITL/E2E
percentiles and errors by kind, never an interval from one sample; the report draws
throughput against latency per configuration and the Pareto frontier, with the percentile
table of every load point. Against `harness serve-model` with known pacing."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cluster import NodeInfo
from harness.dispatch import claims, overlaps
from harness.expand import TrialSpec
from harness.placement import PlacedTrial
from harness.playbook import Settings
from harness.serve_model import spawned
from harness.serving_report import pareto_front

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
        r"<tr class=\"\"><td>ladder[^<]*</td><td>concurrency=(\d)</td><td>([\d.]+)</td>", serving
    )
    by_load = {int(c): float(t) for c, t in rows}
    assert by_load[4] > 2.5 * by_load[1]  # four streams at once, paced alike
