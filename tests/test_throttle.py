"""A trial held by its cgroup's CPU quota (as on Slurm and Kubernetes nodes) is flagged
cpu_throttled with how long it was held, while the same trial unheld is not: the runner runs
for real in a process placed in a real cgroup (v1 cpu controller or v2 cpu.max)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.node.throttle import _mounts

TRIAL = """
import json, os, sys
import torch  # imported before the move: at 20% of a CPU the import alone takes seconds
from harness.node.runner import run_trial
from harness.playbook.model import Settings
if len(sys.argv) > 1:  # into the quota cgroup, for the trial only
    open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
settings = Settings(warmup_iterations=2, min_repetitions=20, min_duration_s=0.8,
                    telemetry={"sources": []})
out = run_trial("kernel.gemm", {"m": 256, "n": 256, "k": 256, "dtype": "fp32"}, settings)
print(json.dumps({"status": out.status, "n": len(out.seconds), "context": out.context}))
"""


@pytest.fixture
def quota_cgroup() -> Iterator[Path]:
    """A cgroup of this test's own holding its processes to 20% of a CPU; removed after."""
    v1, v2 = _mounts()
    if os.geteuid() != 0 or (v1 is None and v2 is None):
        pytest.skip("a CPU-quota cgroup needs root and a cgroup cpu controller")
    folder = (v1 or v2) / f"hthrottle{secrets.token_hex(2)}"
    try:
        folder.mkdir()
        if v1 is not None:
            (folder / "cpu.cfs_period_us").write_text("100000")
            (folder / "cpu.cfs_quota_us").write_text("20000")
        else:
            (folder / "cpu.max").write_text("20000 100000")
    except OSError as exc:
        pytest.skip(f"cannot make a CPU-quota cgroup here: {exc}")
    try:
        yield folder
    finally:
        folder.rmdir()


def trial(cgroup: Path | None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", TRIAL, *([str(cgroup)] if cgroup else [])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_trial_held_by_its_cgroup_quota_is_flagged(quota_cgroup: Path) -> None:
    held, free = trial(quota_cgroup), trial(None)
    assert held["status"] == free["status"] == "ok"
    assert held["context"]["cpu_throttled"] is True
    assert held["context"]["cpu_throttled_share"] > 0.5  # held in most 100 ms periods
    assert held["context"]["cpu_throttled_cgroup"] == str(quota_cgroup)
    assert "cpu_throttled" not in free["context"]
    assert held["n"] < free["n"] / 2  # the figure alone would not show it
    print(
        f"held: {held['n']} iterations, held in {held['context']['cpu_throttled_share']:.0%}"
        f" of periods, duty {held['context'].get('duty')}; free: {free['n']} iterations"
    )


def test_cpu_throttled_figures_are_unreliable_for_check() -> None:
    from results_db.baseline import UNRELIABLE_FLAGS

    assert "cpu_throttled" in UNRELIABLE_FLAGS
