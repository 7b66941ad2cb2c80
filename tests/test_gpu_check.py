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
from gpu_check import CHECKS, HarnessRow, Row, active_checks, judge, playbook  # noqa: E402

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


def _gpu(gpu: int, peer: int | None, median: float, uuid: str | None = "x") -> dict:
    uuid = f"GPU-{gpu}" if uuid == "x" else uuid
    return {"gpu": gpu, "peer": peer, "uuid": uuid, "status": "ok", "reason": "", "median": median}


def _per_gpu_row(name: str, gpus: int, trials: list[dict]) -> Row:
    check = next(c for c in CHECKS if c.name == name)
    row = Row(check, gpus=gpus, bare=[100.0])
    median = sorted(t["median"] for t in trials)[len(trials) // 2]
    row.harness.append(HarnessRow("ok", median, gpus=trials))
    return row


def test_per_gpu_checks_are_placed_by_gpu_count() -> None:
    one = [b for b in playbook("cuda", {}, 1)["benchmarks"] if "each" in b]
    two = [b for b in playbook("cuda", {}, 2)["benchmarks"] if "each" in b]
    assert [b["each"] for b in one] == ["gpu", "gpu"]
    assert [b["each"] for b in two] == ["gpu", "gpu", "gpu_pair"]
    assert two[2]["params"]["device"] == "cuda:0" and two[2]["params"]["peer"] == "cuda:1"
    assert not any("each" in b for b in playbook("cpu", {})["benchmarks"])


def test_per_gpu_goal_wants_every_gpu_with_its_uuid_and_none_far_off() -> None:
    good = _per_gpu_row("gemm-bf16-each-gpu", 2, [_gpu(0, None, 100.0), _gpu(1, None, 99.0)])
    assert judge(good, "cuda"), good.verdicts
    assert any("a trial per GPU, UUID stored (2 trials)" in v for v in good.verdicts)
    missing = _per_gpu_row("gemm-bf16-each-gpu", 2, [_gpu(0, None, 100.0)])
    assert not judge(missing, "cuda")
    assert any("1 placements, expected 2" in v for v in missing.verdicts), missing.verdicts
    no_uuid = _per_gpu_row("copy-d2d-each-gpu", 2, [_gpu(0, None, 100), _gpu(1, None, 100, None)])
    assert not judge(no_uuid, "cuda")
    assert any("1 GPU UUIDs stored, expected 2" in v for v in no_uuid.verdicts)
    slow = _per_gpu_row(
        "copy-d2d-each-gpu", 3, [_gpu(0, None, 100.0), _gpu(1, None, 100.0), _gpu(2, None, 80.0)]
    )
    assert not judge(slow, "cuda")
    assert any("GPU 2 >10% off the median" in v for v in slow.verdicts), slow.verdicts
    pairs = [_gpu(0, 1, 100.0), _gpu(1, 0, 60.0)]  # pairs may differ (topology)
    assert judge(_per_gpu_row("copy-p2p-each-pair", 2, pairs), "cuda")
    assert not judge(_per_gpu_row("copy-p2p-each-pair", 3, pairs), "cuda")  # 6 pairs wanted
