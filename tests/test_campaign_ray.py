"""Real campaigns on a real three-node Ray cluster, stored in a real SQLite file.

The cluster (tests/conftest.py) has a head (tier=head) and two workers (tier=worker, zones a
and b; zone a also has a custom resource `fast`), one CPU each.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app

pytestmark = pytest.mark.ray
runner = CliRunner()

PLAYBOOK = """
campaign: {{name: raytest, description: three nodes}}
defaults:
  warmup_iterations: 1
  min_repetitions: 3
  max_repetitions: 200
  min_duration_s: 0.05
  max_duration_s: 5
  timeout_s: 120
  telemetry: {{interval_s: 0.05, sources: [host, nvml]}}
targets:
  head: {{labels: {{tier: head}}}}
  zone_a: {{labels: {{zone: a}}, resources: {{fast: 1}}}}
benchmarks:
  - name: stream-all
    workload: memory.stream
    each: true
    params: {{op: [copy, triad], size_mib: 2}}
  - name: gemm-head
    workload: kernel.gemm
    on: head
    params: {{m: 64, n: 64, k: 64, dtype: [fp32, bf16]}}
  - name: flaky-a
    workload: test.flaky
    on: zone_a
    params: {{marker: "{marker}", size: [10, 20]}}
"""


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


@pytest.fixture
def playbook(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "pb.yaml"
    path.write_text(PLAYBOOK.format(marker=marker))
    return path, marker


def test_campaign_placement_storage_and_resume(ray_cluster, playbook, db_path: Path) -> None:
    path, marker = playbook
    marker.write_text("fail until removed")
    result = invoke("run", str(path), "--db", str(db_path), "--address", ray_cluster.address)
    assert result.exit_code == 1, result.output + result.stderr  # flaky trials failed
    assert "2 failed" in result.output and "--resume" in result.output

    db = sqlite3.connect(db_path)
    (cid, text, text_hash, status) = db.execute(
        "select id, playbook_text, playbook_hash, status from campaigns"
    ).fetchone()
    assert text == path.read_text() and text_hash == hashlib.sha256(text.encode()).hexdigest()
    assert status == "completed"

    rows = db.execute(
        "select benchmark, ray_node_id, status, failure_phase, iterations from trials order by id"
    ).fetchall()
    assert len(rows) == 2 * 3 + 2 + 2
    stream_nodes = sorted(r[1] for r in rows if r[0] == "stream-all")
    all_nodes = sorted([ray_cluster.head_id, *ray_cluster.worker_ids] * 2)
    assert stream_nodes == all_nodes  # each: one trial per op on every node
    assert {r[1] for r in rows if r[0] == "gemm-head"} == {ray_cluster.head_id}
    assert {r[1] for r in rows if r[0] == "flaky-a"} == {ray_cluster.worker_ids[0]}
    assert {(r[2], r[3]) for r in rows if r[0] == "flaky-a"} == {("failed", "setup")}
    assert all(r[2] == "ok" and r[4] >= 3 for r in rows if r[0] != "flaky-a")

    # Raw samples: one per measured iteration, and summaries derived from them.
    for trial_id, iterations in db.execute("select id, iterations from trials where status='ok'"):
        per_metric = db.execute(
            "select m.name, m.n, count(s.idx), m.median from metrics m join samples s "
            "on s.metric_id=m.id where m.trial_id=? group by m.id",
            (trial_id,),
        ).fetchall()
        assert per_metric and all(n == c == iterations for _, n, c, _ in per_metric)
    # Bandwidth of STREAM copy: bytes counted as 2 words x elements, from stored time.
    (median_bw,) = db.execute(
        "select m.median from metrics m join trials t on t.id=m.trial_id "
        "where t.benchmark='stream-all' and json_extract(t.params,'$.op')='copy' "
        "and m.name='bandwidth' limit 1"
    ).fetchone()
    times = [
        v
        for (v,) in db.execute(
            "select s.value from samples s join metrics m on m.id=s.metric_id join trials t on t.id=m.trial_id "
            "where t.benchmark='stream-all' and json_extract(t.params,'$.op')='copy' and m.name='time' "
            "and t.id=(select min(id) from trials where benchmark='stream-all' and json_extract(params,'$.op')='copy')"
        )
    ]
    bytes_moved = 2 * (2 * 2**20 // 8) * 8
    expected = sorted(bytes_moved / (t / 1e3) / 1e9 for t in times)
    assert median_bw == pytest.approx(
        expected[len(expected) // 2]
        if len(expected) % 2
        else (expected[len(expected) // 2 - 1] + expected[len(expected) // 2]) / 2
    )

    # Nodes: three Ray nodes, deduplicated by fingerprint (they differ in labels/resources).
    assert db.execute("select count(*) from nodes").fetchone()[0] == 3
    assert (
        db.execute("select count(*) from campaign_nodes where campaign_id=?", (cid,)).fetchone()[0]
        == 3
    )
    # Telemetry: host samples inside each trial's window; NVML asked for, so recorded.
    assert (
        db.execute(
            "select count(*) from telemetry_samples ts join trials t on t.id=ts.trial_id "
            "where ts.t < t.window_start - 0.01 or ts.t > t.window_end + 0.01"
        ).fetchone()[0]
        == 0
    )
    assert (
        db.execute("select count(*) from telemetry_summaries where metric='cpu_util'").fetchone()[0]
        > 0
    )
    ok_trials = db.execute("select count(*) from trials where status='ok'").fetchone()[0]
    assert (
        db.execute("select count(*) from source_statuses where source='nvml'").fetchone()[0]
        == ok_trials
    )

    before = db.execute(
        "select id, trial_key, attempt from trials where status='ok' order by id"
    ).fetchall()
    (last_id,) = db.execute("select max(id) from trials").fetchone()  # rows come in finish order

    # Resume: only the failed trials run again, as attempt 2; nothing stored is touched.
    marker.unlink()
    result = invoke(
        "run", str(path), "--db", str(db_path), "--address", ray_cluster.address, "--resume", cid
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert "8 skipped" in result.output
    after = db.execute(
        "select id, trial_key, attempt from trials where status='ok' order by id"
    ).fetchall()
    assert after[: len(before)] == before
    new = db.execute(
        "select benchmark, attempt, status from trials where id > ?", (last_id,)
    ).fetchall()
    assert sorted(new) == [("flaky-a", 2, "ok"), ("flaky-a", 2, "ok")]

    # Resuming again has nothing left to do.
    result = invoke(
        "run", str(path), "--db", str(db_path), "--address", ray_cluster.address, "--resume", cid
    )
    assert result.exit_code == 0 and "10 skipped" in result.output

    # Query JSON: flat records with the keys scripts rely on, latest attempts only.
    result = invoke("results", "query", "--db", str(db_path), "--campaign", cid, "--format", "json")
    records = json.loads(result.stdout)
    keys = {
        "campaign",
        "trial",
        "workload",
        "params",
        "node",
        "node_id",
        "status",
        "metric",
        "unit",
        "higher_is_better",
        "n",
        "median",
        "mean",
        "min",
        "max",
    }
    assert records and all(keys <= set(r) for r in records)
    assert {r["node_id"] for r in records if r["workload"] == "memory.stream"} == set(all_nodes)
    assert {r["status"] for r in records} == {"ok"}
    flaky = [r for r in records if r["workload"] == "test.flaky"]
    assert len(flaky) == 2 and {r["metric"] for r in flaky} == {"time"}

    result = invoke(
        "results",
        "query",
        "--db",
        str(db_path),
        "--workload",
        "memory.*",
        "--where",
        "op=triad",
        "--where",
        "node.hostname=*",
        "--metric",
        "bandwidth",
        "--format",
        "json",
    )
    triad = json.loads(result.stdout)
    assert len(triad) == 3 and {r["params"]["op"] for r in triad} == {"triad"}
    assert all(r["unit"] == "GB/s" and r["higher_is_better"] is True for r in triad)

    result = invoke(
        "results",
        "query",
        "--db",
        str(db_path),
        "--status",
        "failed",
        "--all-attempts",
        "--format",
        "json",
    )
    failed = json.loads(result.stdout)
    assert len(failed) == 2 and all(
        r["failure_phase"] == "setup" and r["metric"] is None for r in failed
    )

    result = invoke("results", "show", cid, "--db", str(db_path))
    assert result.exit_code == 0 and "stream-all" in result.stdout and "GB/s" in result.stdout

    result = invoke("results", "campaigns", "--db", str(db_path), "--format", "json")
    (camp,) = json.loads(result.stdout)
    assert camp["campaign"] == cid and camp["trials"] == 10 and camp["trials_ok"] == 10


def test_timeout_cancels_the_trial_and_the_campaign_goes_on(
    ray_cluster, tmp_path: Path, db_path: Path
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        """
campaign: {name: timeouts}
defaults: {warmup_iterations: 0, min_repetitions: 2, min_duration_s: 0, timeout_s: 120,
           telemetry: {sources: [host]}}
targets: {b: {labels: {zone: b}}, head: {labels: {tier: head}}}
benchmarks:
  # Only this trial has a short timeout: the next one on the node pays for a fresh worker.
  - {name: slow, workload: test.flaky, on: b, params: {sleep_s: 30}, settings: {timeout_s: 3}}
  - {name: quick, workload: test.flaky, on: b, params: {size: 5}}
  - {name: beside, workload: test.flaky, on: head, params: {sleep_s: 0.2},
     settings: {min_repetitions: 5}}
"""
    )
    result = invoke("run", str(path), "--db", str(db_path), "--address", ray_cluster.address)
    assert result.exit_code == 1
    db = sqlite3.connect(db_path)
    rows = dict(
        db.execute("select benchmark, status || ':' || coalesce(failure_reason, '') from trials")
    )
    assert rows["slow"].startswith("timeout:exceeded timeout_s=3")
    assert rows["quick"] == "ok:"  # same node, ran after the cancelled one
    assert rows["beside"] == "ok:"
    spans = {
        b: (datetime.fromisoformat(s), datetime.fromisoformat(f))
        for b, s, f in db.execute("select benchmark, started_at, finished_at from trials")
    }
    assert (spans["slow"][1] - spans["slow"][0]).total_seconds() == pytest.approx(3, abs=1.5)
    # Different nodes run at once: `beside` (head) ran while `slow` (zone b) was running.
    assert spans["beside"][0] < spans["slow"][1] and spans["slow"][0] < spans["beside"][1]
    # One trial per node at a time: `quick` started only after `slow` was cancelled.
    assert spans["quick"][0] >= spans["slow"][1]


def test_dry_run_shows_placement_and_stores_nothing(ray_cluster, playbook, db_path: Path) -> None:
    path, _ = playbook
    result = invoke(
        "run", str(path), "--dry-run", "--db", str(db_path), "--address", ray_cluster.address
    )
    assert result.exit_code == 0, result.stderr
    assert "10 trial(s)" in result.stdout
    assert (
        ray_cluster.worker_ids[0][:8] in result.stdout and ray_cluster.head_id[:8] in result.stdout
    )
    assert not db_path.exists()


def test_targets_matching_no_node_exit_2(ray_cluster, tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "campaign: {name: nomatch}\ntargets: {gpu: {resources: {GPU: 1}}}\n"
        "benchmarks: [{workload: kernel.gemm, on: gpu, params: {m: 8, n: 8, k: 8}}]\n"
    )
    result = invoke("run", str(path), "--db", str(db_path), "--address", ray_cluster.address)
    assert result.exit_code == 2
    assert "error: target 'gpu' (benchmark kernel.gemm[0]) matches no node" in result.stderr
    assert "the cluster has 3 node(s)" in result.stderr


def test_nodes_lists_the_cluster_with_labels_and_resources(ray_cluster) -> None:
    result = invoke("nodes", "--address", ray_cluster.address, "--format", "json")
    assert result.exit_code == 0, result.stderr
    nodes = {n["node_id"]: n for n in json.loads(result.stdout)}
    assert set(nodes) == {ray_cluster.head_id, *ray_cluster.worker_ids}
    assert nodes[ray_cluster.head_id]["labels"] == {"tier": "head"}
    assert nodes[ray_cluster.worker_ids[0]]["resources"]["fast"] == 1
    assert all(n["cpu_threads"] >= 1 and n["torch"] for n in nodes.values())
    assert len({n["fingerprint"] for n in nodes.values()}) == 3
    assert len({n["hardware_class"] for n in nodes.values()}) == 1  # one kind of machine
    from harness import __version__
    from harness.cluster.versions import driver_versions

    assert {(n["harness"], n["ray"]) for n in nodes.values()} == {
        (__version__, driver_versions()["ray"])
    }
    assert "warning" not in result.stderr  # one install everywhere: no skew


def test_a_driver_of_another_harness_version_ships_its_code_to_the_nodes(
    ray_cluster, playbook, tmp_path: Path
) -> None:
    """A driver from another install (a copy of the harness package whose version differs)
    joining the cluster: the nodes import the code the job shipped, so they report the
    driver's version and code hash, and nothing is refused."""
    import json
    import shutil
    import subprocess
    import sys

    other = tmp_path / "other"
    shutil.copytree(Path(__file__).parent.parent / "harness", other / "harness")
    init = other / "harness" / "__init__.py"
    init.write_text(init.read_text() + '\n__version__ = "0.0.0+other"\n')
    env = {**os.environ, "PYTHONPATH": f"{other}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["HARNESS_SHIP"] = "always"  # the cluster's nodes are on this machine: auto would not
    run = {"env": env, "capture_output": True, "text": True, "timeout": 120, "cwd": tmp_path}
    hashed = subprocess.run(
        [sys.executable, "-c", "from harness.cluster.ship import code_hash; print(code_hash())"],
        **run,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "harness", "nodes", "--address", ray_cluster.address,
         "--format", "json"], **run,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "refuses it" not in shown.stderr
    nodes = json.loads(shown.stdout)
    assert len(nodes) == 3
    assert {n["harness"] for n in nodes} == {"0.0.0+other"}, nodes
    from harness.cluster.ship import code_hash

    assert hashed.stdout.strip() != code_hash()  # the copy's code differs from the checkout's
    assert {n["harness_code"] for n in nodes} == {hashed.stdout.strip()}, nodes
    path, _ = playbook
    db = tmp_path / "r.sqlite"
    args = [sys.executable, "-m", "harness", "run", str(path), "--db", str(db), "--dry-run"]
    planned = subprocess.run([*args, "--address", ray_cluster.address], **run)
    assert planned.returncode == 0, planned.stderr
    assert "--allow-skew" not in planned.stderr


def test_unreachable_cluster_is_one_line_exit_2(playbook, db_path: Path) -> None:
    path, _ = playbook
    result = invoke("run", str(path), "--db", str(db_path), "--address", "127.0.0.1:1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot connect to Ray at 127.0.0.1:1: Connection refused "
        "(is `ray start --head` running there?)"
    ]
    assert (
        not db_path.exists()
        or sqlite3.connect(db_path).execute("select count(*) from campaigns").fetchone()[0] == 0
    )


def test_a_payload_over_rays_limit_is_refused_in_one_line(
    ray_cluster, playbook, tmp_path: Path
) -> None:
    """Ray stores a shipped package in one message of its GCS: over that bound, one line and
    exit 2 before the job starts (the bound lowered here as RAY_max_grpc_message_size does)."""
    import subprocess
    import sys

    path, _ = playbook
    db = tmp_path / "r.sqlite"
    refused = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--db", str(db), "--address",
         ray_cluster.address, "--no-progress"],
        env={**os.environ, "RAY_max_grpc_message_size": "65536", "HARNESS_SHIP": "always"},
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: cannot ship harness to the nodes: its packages zip to ")
    assert "over Ray's limit of 0.0625 MiB (remove large files from " in line, line


def test_ending_a_trial_cancels_only_the_ranks_still_running(ray_cluster, monkeypatch) -> None:
    """A rank whose result is in is not force-cancelled: Ray may already have given its
    worker another task, and a forced cancel kills whatever that worker runs."""
    import time
    from types import SimpleNamespace

    import ray

    from harness.campaign import dispatch

    @ray.remote(num_cpus=0, max_retries=0)
    def nap(seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()

    cancelled = []
    real_cancel = ray.cancel
    monkeypatch.setattr(
        ray, "cancel", lambda ref, **kw: (cancelled.append(ref), real_cancel(ref, **kw))
    )
    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:
        returned, running, reported = nap.remote(0), nap.remote(60), nap.remote(0)
        ray.wait([returned, reported], num_returns=2, timeout=60)
        flight = SimpleNamespace(refs=[reported, returned, running], done={0: "its outcome"})
        dispatch._cancel_running(flight)
        assert cancelled == [running]
        with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
            ray.get(running, timeout=60)
        assert isinstance(ray.get(returned, timeout=10), int)
    finally:
        ray.shutdown()
