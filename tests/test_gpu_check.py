"""scripts/gpu-check's CPU dry path, end to end: the real script, `harness run` on an
embedded Ray cluster (token auth on), the bare loops, and NVML energy against a counter that
a stand-in ``pynvml`` module (the only faked layer) serves to every process alike."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_check import active_checks  # noqa: E402

pytestmark = pytest.mark.ray


def _env(tmp_path: Path, ray_tmp: str, fake_nvml: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path), RAY_TMPDIR=ray_tmp, PYTHON=sys.executable)
    if fake_nvml:
        env["PYTHONPATH"] = str(REPO / "tests" / "fake_gpu")
    return env


def test_gpu_check_cpu_dry_path(tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="hgc", dir="/tmp")
    out = tmp_path / "out"
    try:
        proc = subprocess.run(
            [
                str(REPO / "scripts" / "gpu-check"),
                "--device",
                "cpu",
                "--rounds",
                "1",
                "--out",
                str(out),
            ],
            env=_env(tmp_path, ray_tmp, fake_nvml=True),
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["check"]: c for c in json.loads((out / "checks.json").read_text())}
    expected = {c.name for c in active_checks("cpu")}
    assert set(checks) == expected and len(expected) >= 10
    table = (out / "table.md").read_text()
    for name in expected:
        assert f"| {name} |" in table
    for c in checks.values():
        assert c["harness_status"] == ["ok"], c
        assert c["harness"][0] > 0
    for name in ("stream-copy", "copy-d2d", "gemm-bf16", "attention-causal-gqa", "decode-1b"):
        assert checks[name]["bare"][0] > 0 and len(checks[name]["ratios"]) == 1
    # On a host device the GPU timing options are recorded as not applied, never pretended.
    assert checks["gemm-bf16-flush-l2"]["context"][0]["flush_l2"] is False
    assert checks["gemm-bf16-cuda-graph"]["context"][0]["cuda_graph"] is False
    # NVML energy of the GEMM window agrees with the counter read directly over that window.
    (energy,) = checks["gemm-bf16-energy"]["energy"]
    assert energy[0] == pytest.approx(energy[1], rel=0.02) and energy[0] > 100
    assert "NVML energy, gemm-bf16-energy round 1" in table
    # The one-rank collective ran through the multi-rank path.
    sql = sqlite3.connect(out / "results-round1.sqlite")
    (ranks,) = sql.execute(
        "select ranks from trials where benchmark='all-reduce-1-rank'"
    ).fetchone()
    assert len(json.loads(ranks)) == 1


def test_gpu_check_without_cuda_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO / "scripts" / "gpu-check")],
        env=_env(tmp_path, str(tmp_path), fake_nvml=False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
