"""A trial held by its cgroup's CPU quota (as on Slurm and Kubernetes nodes) is flagged
cpu_throttled with how long it was held, while the same trial unheld is not: a Ray node of
the shared cluster is placed in a real cgroup (v1 cpu controller or v2 cpu.max) for one
`harness run`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import cgroups


@pytest.fixture
def quota_cgroup() -> Iterator[Path]:
    """A cgroup of this test's own holding its processes to 20% of a CPU; removed after."""
    why = cgroups.quota_unavailable()
    if why:
        pytest.skip(why)
    with contextlib.ExitStack() as stack:
        try:
            folder = stack.enter_context(cgroups.quota_cgroup(0.2, prefix="hthrottle"))
        except OSError as exc:
            pytest.skip(f"cannot make a CPU-quota cgroup here: {exc}")
        yield folder


def test_cpu_throttled_figures_are_unreliable_for_check() -> None:
    from results_db.baseline import UNRELIABLE_FLAGS

    assert "cpu_throttled" in UNRELIABLE_FLAGS


@pytest.mark.quiet
@pytest.mark.ray
def test_a_throttled_node_is_flagged_through_harness_run(
    ray_cluster, quota_cgroup: Path, tmp_path: Path
) -> None:
    """Zone b's Ray node (its raylet and its workers) moved into the 20% quota cgroup for one
    campaign, as a Slurm or Kubernetes CPU limit holds a node: its trial is stored flagged
    and shown CPU-THROTTLED; the free node's is not. The processes go back after."""
    import sqlite3

    from typer.testing import CliRunner

    from harness.cli.app import app

    node = next(
        n for n in ray_cluster.cluster.list_all_nodes() if n.node_id == ray_cluster.worker_ids[1]
    )
    pb = tmp_path / "pb.yaml"
    pb.write_text(
        "campaign: {name: quota}\n"
        "defaults: {warmup_iterations: 1, min_repetitions: 20, min_duration_s: 0.8,\n"
        "           telemetry: {sources: [host]}}\n"
        "targets: {workers: {labels: {tier: worker}}}\n"
        "benchmarks:\n"
        "  - {workload: kernel.gemm, on: workers, each: true,\n"
        "     params: {m: 256, n: 256, k: 256, dtype: fp32}}\n"
    )
    db = tmp_path / "r.sqlite"
    with cgroups.held(quota_cgroup, cgroups.tree(node.all_processes["raylet"][0].process.pid)):
        result = CliRunner().invoke(
            app, ["run", str(pb), "--db", str(db), "--address", ray_cluster.address, "--wide"]
        )
    assert result.exit_code == 0, result.output + result.stderr
    assert "CPU-THROTTLED" in result.stdout
    rows = sqlite3.connect(db).execute("select ray_node_id, iterations, context from trials")
    trials = {node_id: (n, json.loads(context)) for node_id, n, context in rows}
    (held_n, held), (free_n, free) = (trials[i] for i in reversed(ray_cluster.worker_ids))
    assert held["cpu_throttled"] is True and "cpu_throttled" not in free
    assert held["cpu_throttled_share"] > 0.5  # held in most 100 ms periods
    assert held["cpu_throttled_cgroup"] == str(quota_cgroup)
    assert held_n < free_n / 2  # the figure alone would not show it
    print(
        f"held: {held_n} iterations, held in {held['cpu_throttled_share']:.0%} of periods, "
        f"duty {held.get('duty')}; free: {free_n} iterations"
    )
