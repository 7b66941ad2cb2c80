"""Shared fixtures: the test plugin on the path, one real multi-node Ray cluster per session."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
REPO = Path(__file__).resolve().parent.parent

# The plugin is found through its .dist-info entry point, here and in every Ray worker.
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p
)

from workloads import registry  # noqa: E402

registry._discover.cache_clear()


class RayCluster:
    """A real Ray cluster of three nodes on this machine, each with its own labels/resources."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        # A private temp dir (short: raylet socket paths are length-limited) so no stale
        # ray_current_cluster file of another Ray on this machine is read or overwritten.
        self.tmp = tempfile.mkdtemp(prefix="hrt", dir="/tmp")
        os.makedirs(os.path.join(self.tmp, "ray"))
        os.environ["RAY_TMPDIR"] = self.tmp
        # Token auth is on by default in Ray 2.60; this private test cluster opts out.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "labels": {"tier": "head"}, "include_dashboard": False},
        )
        self.workers = [
            self.cluster.add_node(
                num_cpus=1, resources={"fast": 1}, labels={"tier": "worker", "zone": "a"}
            ),
            self.cluster.add_node(num_cpus=1, labels={"tier": "worker", "zone": "b"}),
        ]
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address
        self.head_id = self.cluster.head_node.node_id
        self.worker_ids = [w.node_id for w in self.workers]

    def shutdown(self) -> None:
        self.cluster.shutdown()  # stops only the processes this cluster started
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite"


def write_playbook(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
