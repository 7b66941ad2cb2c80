"""Every documented serving feature runs through `harness run` (not only when its workload
class is called directly): trace replay with multi-turn sessions, shared prefixes, a local
tokenizer, a ShareGPT dataset, the SLO search, constant arrivals and the chat API, in one
campaign against
`serve-model` on the shared Ray cluster; and the README's playbook example runs as written."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from tests.test_serving_shapes import save_tokenizer, sharegpt_entry
from workloads.serving.client import WORDS
from workloads.serving.serve_model import spawned
from workloads.serving.truth import read_truth, schedule_lateness_ms

pytestmark = pytest.mark.ray
README = Path(__file__).parent.parent / "README.md"

FEATURES = """
campaign: {{name: features}}
defaults: {{warmup_iterations: 0, min_repetitions: 1, max_repetitions: 1, min_duration_s: 0,
           telemetry: {{sources: [host]}}}}
benchmarks:
  - name: trace
    workload: inference.serving
    params: {{url: "{url}", api: chat, trace: {{path: "{trace}", time_unit: ms}},
             warmup_requests: 0}}
  - name: prefix
    workload: inference.serving
    params: {{url: "{url}", concurrency: 2, min_requests: 6, prompt_len: 24, output_len: 4,
             prefix: {{tokens: 8, share: 1.0}}, warmup_requests: 0}}
  - name: tokenizer
    workload: inference.serving
    params: {{url: "{url}", concurrency: 2, min_requests: 6, prompt_len: 20, output_len: 4,
             tokenizer: "{tokenizer}", warmup_requests: 0}}
  - name: dataset
    workload: inference.serving
    params: {{url: "{url}", concurrency: 2, min_requests: 4, tokenizer: "{tokenizer}",
             dataset: {{path: "{dataset}"}}, warmup_requests: 0}}
  - name: slo
    workload: inference.serving
    params: {{url: "{url}", prompt_len: 8, output_len: 4, min_requests: 30,
             slo: {{ttft_ms: 50}}, slo_search: {{attainment: 0.9, low: 20, high: 1000,
             max_probes: 3}}, warmup_requests: 0}}
  - name: constant
    workload: inference.serving
    params: {{url: "{url}", rate: 20, arrival: constant, min_requests: 10, prompt_len: 8,
             output_len: 5, warmup_requests: 0}}
"""


@pytest.mark.quiet  # the SLO search's low rate meets a 50 ms TTFT only on a quiet machine
def test_serving_features_run_through_harness_run(ray_cluster, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [
        {"timestamp": 10 * i, "input_length": 12, "output_length": 3, "session_id": i % 2}
        for i in range(8)
    ]
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tokenizer = save_tokenizer(tmp_path / "tok", split_digits=True)
    # Two usable pairs (prompts of 5 and 9 tokens, answers of 6 and 8) and a one-turn entry.
    dataset = tmp_path / "sharegpt.json"
    pairs = [
        (" ".join(WORDS[:5]), " ".join(["ok"] * 6)),
        (" ".join(WORDS[5:14]), " ".join(["ok"] * 8)),
    ]
    dataset.write_text(
        json.dumps([*(sharegpt_entry(*p) for p in pairs), sharegpt_entry("hi", None)])
    )
    db = tmp_path / "r.sqlite"
    server = ("--engine", "synthetic", "--first-token-ms", "5", "--token-ms", "2")
    truth = tmp_path / "truth.jsonl"
    with spawned(*server, "--max-running", "1", "--truth-log", str(truth)) as url:  # ~75 req/s
        pb = tmp_path / "features.yaml"
        pb.write_text(FEATURES.format(url=url, trace=trace, tokenizer=tokenizer, dataset=dataset))
        result = CliRunner().invoke(
            app, ["run", str(pb), "--db", str(db), "--address", ray_cluster.address]
        )
    assert result.exit_code == 0, result.output + result.stderr
    assert "6 ok, 0 failed" in result.output
    c = sqlite3.connect(db)

    def context(benchmark: str) -> dict:
        row = c.execute("select context from trials where benchmark = ?", (benchmark,))
        return json.loads(row.fetchone()[0])

    def metrics(benchmark: str) -> set[str]:
        q = "select m.name from metrics m join trials t on t.id = m.trial_id where benchmark = ?"
        return {name for (name,) in c.execute(q, (benchmark,))}

    assert {"ttft", "tpot", "e2e_latency", "output_throughput"} <= metrics("trace")
    trace_context = context("trace")
    assert trace_context["requests"] == trace_context["completed"] == len(lines)
    assert trace_context["trace"]["sessions"] == 2
    assert context("tokenizer")["token_counts"] == f"tokenizer {tokenizer}"
    assert context("tokenizer")["mean_input_tokens"] == 20
    assert context("prefix")["completed"] == 6
    # The dataset's prompts as written, each pair twice, each asking for its answer's length
    # (the server's record: no other benchmark asks for 6 or 8 tokens).
    assert context("dataset")["dataset"] == {
        "format": "sharegpt",
        "entries": 3,
        "usable": 2,
        "left_out": {"one turn": 1},
    }
    assert context("dataset")["mean_input_tokens"] == (5 + 9) / 2
    search = context("slo")["slo_search"]
    assert [p["rate"] for p in search["probes"]][:2] == [20, 1000]  # low met, high missed
    assert len(search["probes"]) == 3 and "slo_rate" in metrics("slo")
    # Constant arrivals, as the server saw them (its record; the load alone asks for 5
    # tokens): an even 50 ms apart, where a Poisson schedule's gaps would vary by 50 ms.
    assert context("constant")["completed"] == 10
    records, _ = read_truth(truth)
    asked = sorted(r.max_tokens for r in records if r.max_tokens in (6, 8))
    assert asked == [6, 6, 8, 8], asked
    late = schedule_lateness_ms([r for r in records if r.max_tokens == 5], rate=20)
    assert len(late) == 10 and statistics.median(late) < 5, late


def readme_playbook() -> str:
    match = re.search(r"## Playbooks\n\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert match, "README's playbook example"
    return match.group(1)


def test_the_readmes_playbook_example_runs_as_written(ray_cluster, tmp_path: Path) -> None:
    """The example, shrunk only in how long it measures (its features stay: targets, each,
    lists crossed, exclude, settings, expect)."""
    pb = tmp_path / "readme.yaml"
    pb.write_text(readme_playbook())
    db = tmp_path / "r.sqlite"
    shrink = [
        "defaults.min_repetitions=2",
        "defaults.warmup_iterations=1",
        "defaults.min_duration_s=0",
        "benchmarks.stream-host.settings.min_duration_s=0",
        "benchmarks.stream-host.params.size_mib=[4,16]",
        "benchmarks.stream-host.exclude=[{op: copy, size_mib: 4}]",
        "benchmarks.stream-host.expect.bandwidth.min=0.001",
    ]
    args = ["run", str(pb), "--db", str(db), "--address", ray_cluster.address]
    result = CliRunner().invoke(app, [*args, *(a for s in shrink for a in ("--set", s))])
    assert result.exit_code == 0, result.output + result.stderr
    rows = sqlite3.connect(db).execute("select status, count(*) from trials group by status")
    assert dict(rows.fetchall()) == {"ok": 3 * 3}, result.output + result.stderr


SERVING_BENCHMARKS = ("single-stream", "offline", "server", "concurrency-sweep", "ladder")


def test_the_shipped_serving_playbook_runs_against_serve_model(ray_cluster, tmp_path) -> None:
    """playbooks/serving.yaml as shipped, pointed at a `serve-model` here and shrunk only in
    how many requests and seconds each load point takes."""
    pb = Path(__file__).parent.parent / "playbooks" / "serving.yaml"
    db = tmp_path / "r.sqlite"
    sets = ["defaults.telemetry.sources=[host]"]
    with spawned("--engine", "synthetic", "--token-ms", "1") as url:
        for name in SERVING_BENCHMARKS:
            sets += [
                f"benchmarks.{name}.params.url={url}",
                f"benchmarks.{name}.params.output_len=8",
                f"benchmarks.{name}.params.min_requests=4",
            ]
            if name in ("single-stream", "server", "concurrency-sweep"):
                sets.append(f"benchmarks.{name}.params.duration_s=0")
        sets.append("benchmarks.server.params.rate=[8,16]")
        args = ["run", str(pb), "--db", str(db), "--address", ray_cluster.address]
        result = CliRunner().invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output + result.stderr
    rows = sqlite3.connect(db).execute(
        "select benchmark, status, count(*) from trials group by benchmark, status"
    )
    counts = {(b, s): n for b, s, n in rows}
    assert {b for b, s in counts if s == "ok"} == set(SERVING_BENCHMARKS), counts
    assert not {s for _, s in counts} - {"ok", "skipped"}, counts  # a ladder may stop early


PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


@pytest.mark.parametrize("name", ["lab", "inference"])
def test_the_shipped_playbooks_plan_on_a_multi_node_cluster(ray_cluster, name: str) -> None:
    """The CPU-runnable part of every shipped playbook plans through `harness run` (its
    placement, ladders and prices as a run would make them) on the three-node cluster;
    smoke.yaml runs in test_smoke_e2e, serving.yaml above, calibrate.yaml below (for real)."""
    result = CliRunner().invoke(
        app,
        ["run", str(PLAYBOOKS / f"{name}.yaml"), "--dry-run", "--address", ray_cluster.address],
    )
    assert result.exit_code == 0, result.output + result.stderr
    count = int(re.search(r"(\d+) trial\(s\)", result.output).group(1))
    assert count >= 3, result.output  # every node takes part


def test_the_acceptance_playbook_needs_gpus_and_says_so(ray_cluster) -> None:
    result = CliRunner().invoke(
        app,
        ["run", str(PLAYBOOKS / "acceptance.yaml"), "--dry-run", "--address", ray_cluster.address],
    )
    assert result.exit_code == 2
    assert "target 'gpu' (benchmark gemm-per-gpu) matches no node" in result.stderr


def test_the_calibrate_playbook_stores_ceilings(ray_cluster, tmp_path: Path) -> None:
    """playbooks/calibrate.yaml run for real, its sizes shrunk: every node's trials ok and a
    ceiling per hardware class and kind."""
    db = tmp_path / "r.sqlite"
    sets = [
        "defaults.warmup_iterations=0",
        "defaults.min_repetitions=2",
        "defaults.min_duration_s=0",
        "benchmarks.host-bandwidth.params.size_mib=32",
        "benchmarks.host-gemm.params.m=256",
        "benchmarks.host-gemm.params.n=256",
        "benchmarks.host-gemm.params.k=256",
    ]
    args = ["run", str(PLAYBOOKS / "calibrate.yaml"), "--db", str(db)]
    args += ["--address", ray_cluster.address, *(a for s in sets for a in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + result.stderr
    c = sqlite3.connect(db)
    assert {s for (s,) in c.execute("select status from trials")} == {"ok"}
    keys = {k for (k,) in c.execute("select key from ceilings")}
    assert len(keys) >= 2, keys  # memory bandwidth and matmul, at least
