"""Each workload declares its true peak memory, verification included, and setup refuses a
size whose peak does not fit in what the host has available now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from workloads import UnsupportedParams, get_workload

ROOT = Path(__file__).parent.parent

# Runs in a fresh process: its peak RSS over set-up, one iteration and verification, less
# the RSS it had before set-up, is what the trial held at most. The peak is VmHWM, which exec
# resets (ru_maxrss would keep the forking test runner's own).
MEASURE = """
import gc, json, sys
import psutil, torch

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

from workloads import get_workload
torch.set_num_threads(2)
cls = get_workload(sys.argv[1])
w = cls(cls.Params.model_validate(json.loads(sys.argv[2])))
torch.ones(4) + 1  # the first op maps kernels' code: not the trial's data
gc.collect()
before = psutil.Process().memory_info().rss
assert hwm() < before + 64 * 2**20, "the baseline already peaked above the resident set"
w.setup(); w.run_iteration(); w.verify()
peak = hwm() - before
print(json.dumps({"declared": w.peak_bytes(), "measured": peak}))
"""


@pytest.mark.parametrize(
    ("workload", "params"),
    [
        # Triad verified whole once held ~2.6x its three arrays (1 GiB: 7.8 GiB used).
        ("memory.stream", {"size_mib": 256, "op": "triad", "dtype": "fp32"}),
        ("kernel.gemm", {"m": 256, "n": 4096, "k": 4096, "dtype": "bf16"}),
        ("kernel.norm", {"rows": 16384, "cols": 4096, "dtype": "bf16"}),
        ("memory.copy", {"size_mib": 256, "direction": "h2h", "device": "cpu"}),
        ("kernel.attention", {"heads": 8, "seq_len": 2048, "head_dim": 64, "dtype": "fp32"}),
        (
            "kernel.conv2d",
            {"batch": 32, "in_channels": 64, "out_channels": 64, "height": 64, "width": 64},
        ),
    ],
)
def test_declared_peak_covers_what_the_trial_holds(workload: str, params: dict) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, workload, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    declared, measured = got["declared"]["cpu"], got["measured"]
    slack = 24 * 2**20  # allocator and library pages the arrays do not account for
    assert declared + slack >= measured, (declared, measured)
    assert declared <= 1.35 * measured, (declared, measured)  # and not wildly generous


def test_a_peak_that_does_not_fit_what_is_available_is_refused(monkeypatch) -> None:
    cls = get_workload("memory.stream")
    w = cls(cls.Params.model_validate({"size_mib": 64, "op": "triad", "dtype": "fp32"}))
    # Available memory as the kernel reports it (the lowest layer), just short of the peak:
    # 3 arrays would fit, the verification's temporaries would not.
    arrays = 3 * 64 * 2**20
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=arrays + 2**20))
    with pytest.raises(UnsupportedParams, match=r"needs 0\.\d\d GiB but the host has 0\.19 GiB"):
        w.setup()
    assert not hasattr(w, "a")  # refused before anything was allocated
