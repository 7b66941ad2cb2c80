"""The product as a user runs it: the console script, an embedded Ray cluster (token auth
on, as Ray 2.60 defaults), the shipped smoke playbook, a fresh SQLite file, and CPU energy
from a RAPL tree that a thread advances at a known power (the only faked layer)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fakes import RaplTree

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ray


def test_smoke_playbook_end_to_end(tmp_path: Path) -> None:
    harness = Path(sys.executable).with_name("harness")
    assert harness.exists(), "the package must be installed (console script `harness`)"
    ray_tmp = tempfile.mkdtemp(prefix="hre", dir="/tmp")
    os.makedirs(os.path.join(ray_tmp, "ray"))
    # The counter wraps every second at 50 W: a sampler starved for longer on a busy machine
    # could not tell two wraps from one (as with hardware counters, over minutes).
    rapl = RaplTree(tmp_path / "powercap", package_w=50.0, dram_w=5.0, max_uj=50_000_000)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(
        HOME=str(tmp_path),  # Ray's auth token and files stay private to this test
        RAY_TMPDIR=ray_tmp,
        HARNESS_POWERCAP_ROOT=str(tmp_path / "powercap"),
    )
    db = tmp_path / "smoke.sqlite"
    rapl.run()
    try:
        proc = subprocess.run(
            [
                str(harness),
                "run",
                str(REPO / "playbooks" / "smoke.yaml"),
                "--db",
                str(db),
                "--set",
                "defaults.min_duration_s=0.5",
                "--set",
                "defaults.telemetry.idle_baseline_s=3",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        rapl.stop()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # Ray's own lines (the token-auth notice at every start, raylet messages) are not ours.
    assert "Token authentication" not in proc.stdout + proc.stderr
    assert "(raylet)" not in proc.stdout + proc.stderr
    sql = sqlite3.connect(db)
    rows = dict(
        sql.execute("select workload, count(*) from trials where status='ok' group by workload")
    )
    gpu = sql.execute("select max(gpu_count) from nodes").fetchone()[0]
    host = {
        "memory.stream": 4,
        "kernel.gemm": 4,
        "kernel.attention": 2,
        "kernel.conv2d": 1,
        "kernel.norm": 2,
        "memory.copy": 1,
        "inference.decode": 1,
    }
    on_gpu = {"memory.stream": 2, "kernel.gemm": 5, "kernel.attention": 1, "memory.copy": 3}
    expected = {w: n + (on_gpu.get(w, 0) if gpu else 0) for w, n in host.items()}
    assert rows == expected
    assert f"{sum(expected.values())} ok, 0 failed" in proc.stdout and str(db) in proc.stdout
    assert sql.execute("select status from campaigns").fetchone()[0] == "completed"
    # Each trial carries what its workload declared; each metric the ceiling it is a share of.
    assert sql.execute(
        "select count(*) from trials where workload_version = '' or primary_metric = ''"
    ).fetchone() == (0,)
    ceilings = set(
        sql.execute(
            "select t.workload, m.name, m.ceiling from metrics m join trials t on t.id = m.trial_id"
            " where json_extract(t.params, '$.device') = 'cpu' and m.ceiling is not null"
        )
    )
    assert ("memory.stream", "bandwidth", "bandwidth:cpu") in ceilings
    assert ("kernel.gemm", "throughput", "throughput:cpu:bf16") in ceilings
    assert {c for c in ceilings if c[0] == "memory.copy"} == set()  # h2h: no single peak
    assert (tmp_path / ".ray" / "auth_token").exists() or gpu  # Ray's token auth stayed on

    # Idle baseline: measured once per node before the trials, from the same sources.
    idle = dict(sql.execute("select device, power_w from idle_baselines where source='rapl'"))
    assert idle == {"package-0": pytest.approx(50, rel=0.1), "dram-0": pytest.approx(5, rel=0.1)}
    # Every host trial: RAPL energy over its measurement window, and metrics of record.
    host_trials = sql.execute(
        "select t.id, t.workload, t.window_end - t.window_start from trials t "
        "where json_extract(t.params, '$.device') = 'cpu'"
    ).fetchall()
    assert len(host_trials) == sum(host.values())
    threads = {
        t
        for (t,) in sql.execute(
            "select json_extract(context, '$.threads') from trials "
            "where json_extract(params, '$.device') = 'cpu'"
        )
    }
    assert threads == {os.cpu_count()}  # every host trial used all of the node's CPUs
    dispatch = set(
        sql.execute(
            "select workload, json_extract(context, '$.cpu_dispatch') from trials "
            "where json_extract(params, '$.device') = 'cpu' and workload like 'kernel.%'"
        )
    )  # the CPU code each host kernel ran, as its node's PyTorch reports it
    assert {w for w, _ in dispatch} == {w for w in host if w.startswith("kernel.")}
    assert len({d for _, d in dispatch}) == 1 and None not in {d for _, d in dispatch}

    def counter_over_readings(trial_id: int, zone: str, device: str) -> float:
        """What the counter showed between the trial's first and last reading of it:
        the span the stored energy covers (the writer thread can lag under load). Not
        the window: a sampler the other test process starved reads it late or stops
        early, and its readings span less (down to 0.75 of it, checked below)."""
        first, last = sql.execute(
            "select min(t), max(t) from telemetry_samples where trial_id=? and "
            "source='rapl' and device=? and metric='energy_total'",
            (trial_id, device),
        ).fetchone()
        (covered,) = sql.execute(
            "select duration_s from energy_readings where trial_id=? and source='rapl' and "
            "device=?",
            (trial_id, device),
        ).fetchone()
        assert last - first == pytest.approx(covered, abs=1e-6)  # the stored readings' span
        return rapl.energy_between(zone, first, last)

    for trial_id, workload, window in host_trials:
        energy = dict(
            sql.execute(
                "select device, energy_j from energy_readings where trial_id=? and source='rapl'",
                (trial_id,),
            )
        )
        shown = counter_over_readings(trial_id, "intel-rapl:0", "package-0")
        assert energy["package-0"] == pytest.approx(shown, rel=0.05, abs=0.5)
        metrics = dict(
            sql.execute("select name, median from metrics where trial_id=?", (trial_id,))
        )
        total = shown + counter_over_readings(trial_id, "intel-rapl:0:2", "dram-0")
        assert metrics["energy"] == pytest.approx(total, rel=0.05, abs=0.5)
        # Average power is the energy over the span the readings cover: the window, less what
        # a sampler starved by the other test process missed at either end.
        (span,) = sql.execute(
            "select max(duration_s) from energy_readings where trial_id=? and source='rapl'",
            (trial_id,),
        ).fetchone()
        assert 0.75 * window <= span <= window + 1e-6, (span, window)
        assert metrics["power_avg"] == pytest.approx(metrics["energy"] / span, rel=1e-6)
        idle_w = sum(idle.values())  # the node's idle power, from its baseline
        # Active energy is the energy less the idle power over the same span the readings
        # cover. Not over the window: in a loaded CI run a trial's readings spanned 0.13 s less
        # than its window yet held the window's energy (the fake counter's writer thread, or
        # the sampler's clock reading, ran late), and the two formulas differed by 7.4 J.
        assert metrics["active_energy"] == pytest.approx(
            metrics["energy"] - idle_w * span, rel=1e-6, abs=1e-9
        )
        moves_bytes = workload in ("memory.stream", "memory.copy", "kernel.norm")
        assert ("energy_per_gb" in metrics) == moves_bytes
        assert ("gflop_per_joule" in metrics) == (not moves_bytes)
        assert ("energy_per_token" in metrics) == (workload == "inference.decode")
