"""`harness cluster local`: stopped by Ctrl-C or SIGTERM, it stops only its own nodes and
leaves no temporary folder behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_local_cluster_removes_its_temp_folder(sig: signal.Signals) -> None:
    parent = Path(tempfile.mkdtemp(prefix="hct", dir="/tmp"))  # short: socket path limits
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HARNESS_CLUSTER_TMP": str(parent),
        "RAY_AUTH_MODE": "disabled",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "cluster", "local", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # our signal only, not the test runner's process group
        # As at a terminal: a runner started in the background (`cmd &` in a script) has
        # SIGINT ignored, and a Python that starts with it ignored never turns it into Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        assert proc.stdout is not None
        while not any("Ctrl-C stops them" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline())
        (folder,) = parent.iterdir()  # the cluster's own temp folder
        assert folder.name.startswith("hcl") and (folder / "ray").is_dir()
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert proc.returncode == 0, proc.stdout.read()
        assert list(parent.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(parent, ignore_errors=True)


def test_a_failed_cluster_task_is_named_by_its_own_exception() -> None:
    """The first line of a RayTaskError names only the task and its process; on the first
    GPU machine the node inventory failed with nothing but that line."""
    import ray.exceptions

    from harness.cluster.session import _task_error_line

    cause = RecursionError("maximum recursion depth exceeded")
    exc = ray.exceptions.RayTaskError(
        "_facts_task", "Traceback ...", cause, proctitle="ray::_facts_task()", pid=947
    ).as_instanceof_cause()
    assert "RecursionError" not in str(exc).splitlines()[0]
    assert _task_error_line(exc) == "RecursionError: maximum recursion depth exceeded"
    assert _task_error_line(ray.exceptions.GetTimeoutError("Get timed out")) == "Get timed out"
