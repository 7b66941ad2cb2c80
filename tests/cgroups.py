"""A CPU-quota cgroup of our own, and processes held in it for a while: what a Slurm or
Kubernetes CPU limit does to a node (root and a cgroup cpu controller, v1 or v2). Used by
the throttling test and benchmarks/fleet_false_alarms.py."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

from harness.node.throttle import _mounts, cgroup_of

PERIOD_US = 100_000


def quota_unavailable() -> str | None:
    """Why a quota cgroup cannot be made here (one line), or None."""
    import os

    v1, v2 = _mounts()
    if os.geteuid() != 0 or (v1 is None and v2 is None):
        return "a CPU-quota cgroup needs root and a cgroup cpu controller"
    return None


@contextlib.contextmanager
def quota_cgroup(share: float, prefix: str = "hquota") -> Iterator[Path]:
    """A new cgroup holding its processes to ``share`` of a CPU (OSError if it cannot be
    made); any process still in it goes to its parent, and the folder is removed, after."""
    v1, v2 = _mounts()
    folder = (v1 or v2) / f"{prefix}{secrets.token_hex(2)}"  # type: ignore[operator]
    folder.mkdir()
    try:
        quota = int(share * PERIOD_US)
        if v1 is not None:
            (folder / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (folder / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (folder / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        yield folder
    finally:
        for pid in (folder / "cgroup.procs").read_text().split():  # started in it since
            with contextlib.suppress(OSError):
                (folder.parent / "cgroup.procs").write_text(pid)
        folder.rmdir()


def tree(pid: int) -> list[int]:
    """A process and every process under it (a raylet and its workers)."""
    root = psutil.Process(pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


@contextlib.contextmanager
def held(folder: Path, pids: Sequence[int]) -> Iterator[None]:
    """These processes in ``folder`` for the block; each goes back to its own cgroup after
    (the ones that still run)."""
    home = {pid: found[0] for pid in pids if (found := cgroup_of(pid)) is not None}
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a worker that ended meanwhile
                (folder / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for pid, where in home.items():
            if psutil.pid_exists(pid):
                with contextlib.suppress(OSError):
                    (where / "cgroup.procs").write_text(str(pid))
