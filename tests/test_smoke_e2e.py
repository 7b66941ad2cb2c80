"""The product as a user runs it: the console script, an embedded Ray cluster (token auth
on, as Ray 2.60 defaults), the shipped smoke playbook, a fresh SQLite file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ray


def test_smoke_playbook_end_to_end(tmp_path: Path) -> None:
    harness = Path(sys.executable).with_name("harness")
    assert harness.exists(), "the package must be installed (console script `harness`)"
    ray_tmp = tempfile.mkdtemp(prefix="hre", dir="/tmp")
    os.makedirs(os.path.join(ray_tmp, "ray"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path), RAY_TMPDIR=ray_tmp)  # auth token and Ray files stay private
    db = tmp_path / "smoke.sqlite"
    try:
        proc = subprocess.run(
            [
                str(harness),
                "run",
                str(REPO / "playbooks" / "smoke.yaml"),
                "--db",
                str(db),
                "--set",
                "defaults.min_duration_s=0.1",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "8 ok, 0 failed" in proc.stdout and str(db) in proc.stdout
    db_conn = sqlite3.connect(db)
    rows = db_conn.execute(
        "select t.workload, count(*) from trials t where t.status='ok' group by t.workload"
    ).fetchall()
    expected = {"memory.stream": 4, "kernel.gemm": 4}
    gpu = db_conn.execute("select max(gpu_count) from nodes").fetchone()[0]
    if gpu:  # on a GPU box the optional CUDA benchmarks run too
        expected = {"memory.stream": 6, "kernel.gemm": 8}
    assert dict(rows) == expected
    assert db_conn.execute("select status from campaigns").fetchone()[0] == "completed"
    assert (tmp_path / ".ray" / "auth_token").exists() or gpu  # Ray's token auth stayed on
