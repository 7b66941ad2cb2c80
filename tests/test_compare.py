"""compare, history and export on a SQLite store filled with known samples."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from harness.cli.app import app
from harness.node.stats import summarize
from results_db import (
    CampaignRecord,
    MetricRecord,
    NodeRecord,
    ResultStore,
    TelemetryRecord,
    TrialRecord,
    sqlite_url,
)

runner = CliRunner()
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def fill(path: Path) -> tuple[str, dict]:
    """Three campaigns on two hardware classes. From c1 to c2 on the A100 node: bandwidth
    up 20% (better), gemm time up 20% (worse: lower is better), norm unchanged."""
    url = sqlite_url(path)
    store = ResultStore(url)
    rng = random.Random(5)
    a100 = store.upsert_node(
        NodeRecord("fpa", "hw-a100", "a1", {}, gpu_model="NVIDIA A100-SXM4-80GB")
    )
    h100 = store.upsert_node(
        NodeRecord("fph", "hw-h100", "h1", {}, gpu_model="NVIDIA H100 80GB HBM3")
    )
    figures = {  # campaign -> node -> (bandwidth centre, gemm time centre, norm centre)
        "c1": {a100: (100.0, 10.0, 50.0)},
        "c2": {a100: (120.0, 12.0, 50.0)},
        "c3": {h100: (200.0, 5.0, 80.0)},
    }
    samples = {}
    for day, (cid, nodes) in enumerate(figures.items()):
        store.start_campaign(CampaignRecord(cid, "cmp", "", "", "", "", {}, T0, "0"))
        for node, (bw, t, norm) in nodes.items():
            for key, wl, params, name, unit, hib, centre in (
                ("kb", "memory.stream", {"op": "triad"}, "bandwidth", "GB/s", True, bw),
                ("kg", "kernel.gemm", {"m": 8}, "time", "ms", False, t),
                ("kn", "kernel.norm", {"op": "rmsnorm"}, "bandwidth", "GB/s", True, norm),
            ):
                values = [centre * rng.uniform(0.98, 1.02) for _ in range(40)]
                samples[(cid, key)] = values
                store.record_trial(
                    TrialRecord(
                        campaign_id=cid,
                        trial_key=key,
                        benchmark="b",
                        workload=wl,
                        params=params,
                        params_hash=key,
                        status="ok",
                        attempt=1,
                        node_id=node,
                        started_at=T0 + timedelta(days=day),
                        metrics=[MetricRecord(name, unit, hib, values, summarize(values))],
                        telemetry=[
                            TelemetryRecord("host", "cpu", "cpu_util", "%", 1.0 + i, 50)
                            for i in range(5)
                        ],
                    )
                )
    return url, samples


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr
    return result


def test_compare_campaigns_is_direction_aware_and_gates_on_regressions(tmp_path: Path) -> None:
    url, samples = fill(tmp_path / "r.sqlite")
    result = invoke("results", "compare", "c1", "c2", "--db", url, "--format", "json")
    assert result.exit_code == 1  # gemm time got 20% worse
    recs = {r["workload"]: r for r in json.loads(result.stdout)}
    bw, gemm, norm = recs["memory.stream"], recs["kernel.gemm"], recs["kernel.norm"]
    assert bw["verdict"] == "better" and bw["change_pct"] == pytest.approx(20, abs=2)
    assert gemm["verdict"] == "worse" and gemm["regression"] is True
    # 20% more time is 1/1.2 - 1 = -16.7% in rate terms: negative = worse, and on the same
    # scale as a throughput (time x27.7 reads -96.4%, as its throughput would, not -2670%).
    assert gemm["change_pct"] == pytest.approx(-16.7, abs=2)
    assert norm["verdict"] == "same" and norm["regression"] is False
    p = mannwhitneyu(samples[("c1", "kb")], samples[("c2", "kb")], alternative="two-sided").pvalue
    assert bw["p_value"] == pytest.approx(p)
    assert bw["baseline_n"] == bw["candidate_n"] == 40
    # A threshold above the change lets CI pass; the reverse direction is a regression.
    assert invoke("results", "compare", "c1", "c2", "--db", url, "--threshold", "25").exit_code == 0
    result = invoke("results", "compare", "c2", "c1", "--db", url, "--metric", "bandwidth")
    assert result.exit_code == 1  # stream bandwidth fell from c2 to c1


def test_compare_hardware_classes_and_time_windows(tmp_path: Path) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    result = invoke(
        "results",
        "compare",
        "*A100*",
        "*H100*",
        "--by",
        "hardware",
        "--db",
        url,
        "--format",
        "json",
        "--workload",
        "memory.stream",
    )
    (rec,) = json.loads(result.stdout)
    assert rec["verdict"] == "better" and rec["baseline_trials"] == 2  # c1 and c2 pooled
    assert result.exit_code == 0
    result = invoke(
        "results",
        "compare",
        "2026-11-01..2026-11-02",
        "2026-11-02..2026-11-03",
        "--by",
        "time",
        "--db",
        url,
        "--format",
        "json",
    )
    assert result.exit_code == 1 and len(json.loads(result.stdout)) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["c1", "nope"], "error: no campaign 'nope'"),
        (
            ["c1", "c3", "--workload", "collective.*"],
            "error: c1 and c3 have no trials and metrics in common",
        ),
        (["yesterday", "today", "--by", "time"], "error: time window 'yesterday': expected"),
    ],
)
def test_compare_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    result = invoke("results", "compare", *args, "--db", url)
    assert result.exit_code == 2 and result.stderr.startswith(message)


def test_history_marks_step_changes(tmp_path: Path) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    result = invoke(
        "results",
        "history",
        "--workload",
        "kernel.gemm",
        "--metric",
        "time",
        "--node",
        "a1",
        "--db",
        url,
        "--format",
        "json",
    )
    first, second = json.loads(result.stdout)
    assert first["campaign"] == "c1" and first["step"] is None
    assert second["campaign"] == "c2" and second["step"] == "worse"
    result = invoke(
        "results",
        "history",
        "--workload",
        "kernel.norm",
        "--metric",
        "bandwidth",
        "--node",
        "a1",
        "--db",
        url,
        "--format",
        "json",
    )
    assert [r["step"] for r in json.loads(result.stdout)] == [None, None]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
@pytest.mark.parametrize(("what", "rows"), [("metrics", 9), ("samples", 9 * 40), ("telemetry", 45)])
def test_export(tmp_path: Path, fmt: str, what: str, rows: int) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    out = tmp_path / f"x.{fmt}"
    result = invoke(
        "results", "export", "--db", url, "--what", what, "--format", fmt, "-o", str(out)
    )
    assert result.exit_code == 0 and f"{rows} {what} row(s)" in result.stdout
    frame = {
        "csv": pd.read_csv,
        "parquet": pd.read_parquet,
        "json": lambda p: pd.read_json(p, orient="records"),
    }[fmt](out)
    assert len(frame) == rows
    if what != "telemetry":
        assert "params.op" in frame.columns or "params.m" in frame.columns


def test_python_api_returns_dataframes(tmp_path: Path) -> None:
    from results_db import frames

    url, samples = fill(tmp_path / "r.sqlite")
    df = frames.metrics(url, campaign="c2")
    assert set(df["workload"]) == {"memory.stream", "kernel.gemm", "kernel.norm"}
    s = frames.samples(url, campaign="c1", workload="memory.stream")
    assert s["value"].tolist() == pytest.approx(samples[("c1", "kb")])


def test_query_time_range_and_group_by_hardware(tmp_path: Path) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    result = invoke(
        "results",
        "query",
        "--db",
        url,
        "--since",
        "2026-11-02",
        "--until",
        "2026-11-03",
        "--format",
        "json",
    )
    assert {r["campaign"] for r in json.loads(result.stdout)} == {"c2"}
    result = invoke(
        "results",
        "query",
        "--db",
        url,
        "--group-by",
        "gpu_model",
        "--workload",
        "memory.stream",
        "--format",
        "json",
    )
    groups = {g["gpu_model"]: g for g in json.loads(result.stdout)}
    a100 = groups["NVIDIA A100-SXM4-80GB"]
    assert a100["trials"] == 2 and a100["min"] == pytest.approx(100, rel=0.03)
    assert a100["max"] == pytest.approx(120, rel=0.03)
    assert groups["NVIDIA H100 80GB HBM3"]["trials"] == 1
    result = invoke("results", "query", "--db", url, "--group-by", "rack")
    assert result.exit_code == 2 and "cannot group by 'rack'" in result.stderr


def test_results_of_another_workload_version_are_never_judged_against_each_other(
    tmp_path: Path,
) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    db = sqlite3.connect(tmp_path / "r.sqlite")
    db.execute("update trials set workload_version = '1'")
    db.execute(
        "update trials set workload_version = '2' where campaign_id = 'c2' and workload = 'kernel.gemm'"
    )
    db.commit()
    result = invoke("results", "compare", "c1", "c2", "--db", url, "--format", "json")
    assert result.exit_code == 0  # the 20% slower gemm is another convention, not a regression
    recs = {r["workload"]: r for r in json.loads(result.stdout)}
    gemm = recs["kernel.gemm"]
    assert gemm["verdict"] == "version changed" and gemm["regression"] is False
    assert gemm["workload_version"] == "1,2"
    assert recs["memory.stream"]["verdict"] == "better"
    result = invoke(
        "results", "history", "--workload", "kernel.gemm", "--metric", "time", "--node", "a1",
        "--db", url, "--format", "json",
    )  # fmt: skip
    first, second = json.loads(result.stdout)
    assert first["step"] is None
    assert second["step"] == "version changed" and second["p_value"] is None


def _trial(cid: str, key: str, node: int, day: int, metrics: list[MetricRecord], primary: str):
    return TrialRecord(
        campaign_id=cid,
        trial_key=key,
        benchmark=key,
        workload="kernel.gemm",
        params={"m": int(key[-1])},
        params_hash=key,
        status="ok",
        attempt=1,
        node_id=node,
        started_at=T0 + timedelta(days=day),
        metrics=metrics,
        primary_metric=primary,
    )


def gemm_metrics(ms: float, n: int = 20) -> list[MetricRecord]:
    times = [ms * (1 + 0.001 * (i % 5)) for i in range(n)]
    tput = [1.0 / t for t in times]
    return [
        MetricRecord("time", "ms", False, times, summarize(times)),
        MetricRecord("throughput", "TFLOP/s", True, tput, summarize(tput)),
    ]


def test_compare_shows_one_row_per_benchmark_worst_first(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "r.sqlite")
    store = ResultStore(url)
    node = store.upsert_node(NodeRecord("fp", "hw", "h", {}))
    for day, cid in enumerate(("old", "new")):
        store.start_campaign(CampaignRecord(cid, "n", "", "", "", "", {}, T0, "0"))
        for key, before, after in (("g1", 10.0, 11.0), ("g2", 10.0, 277.0), ("g3", 10.0, 9.0)):
            ms = before if cid == "old" else after
            store.record_trial(_trial(cid, key, node, day, gemm_metrics(ms), "throughput"))
    result = invoke("results", "compare", "old", "new", "--db", url, "--format", "json")
    assert result.exit_code == 1
    recs = json.loads(result.stdout)
    assert [r["metric"] for r in recs] == ["throughput"] * 3  # one row per benchmark
    assert [r["params"]["m"] for r in recs] == [2, 1, 3]  # the worst change first
    assert recs[0]["change_pct"] == pytest.approx(-96.4, abs=0.1)
    assert "2 significant regression(s)" in result.stderr  # benchmarks, not time + throughput
    both = invoke(
        "results", "compare", "old", "new", "--db", url, "--all-metrics", "--format", "json"
    )
    by_metric = {(r["params"]["m"], r["metric"]): r["change_pct"] for r in json.loads(both.stdout)}
    assert len(by_metric) == 6
    # Time reads on the throughput's scale: the two rows of one benchmark agree.
    assert by_metric[(2, "time")] == pytest.approx(by_metric[(2, "throughput")], abs=0.1)


def test_a_time_window_weighs_each_campaign_the_same(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "r.sqlite")
    store = ResultStore(url)
    node = store.upsert_node(NodeRecord("fp", "hw", "h", {}))
    # Window 1: a long campaign at 100 ms (400 iterations) and a short one at 200 ms (10).
    for cid, day, ms, n in (("long", 0, 100.0, 400), ("short", 1, 200.0, 10), ("b", 10, 150.0, 40)):
        store.start_campaign(CampaignRecord(cid, "n", "", "", "", "", {}, T0, "0"))
        store.record_trial(_trial(cid, "g1", node, day, gemm_metrics(ms, n), "time"))
    result = invoke(
        "results", "compare", "2026-11-01..2026-11-05", "2026-11-05..", "--by", "time",
        "--db", url, "--format", "json",
    )  # fmt: skip
    [rec] = json.loads(result.stdout)
    assert rec["baseline_campaigns"] == 2 and rec["baseline_n"] == 20  # 10 from each
    # Pooled raw samples would put the window's median at 100 ms (400 of 410 samples);
    # weighing the two campaigns alike puts it between them.
    assert 100.5 < rec["baseline_median"] < 200.0
