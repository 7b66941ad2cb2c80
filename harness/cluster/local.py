"""Several Ray nodes on this machine, in a private temporary folder: for `harness cluster
local`, the tests and the benchmarks alike.

The folder is short (raylet socket paths are length-limited) and private (RAY_TMPDIR), so no
stale `ray_current_cluster` file of another Ray on the machine is read or overwritten, and
shutting down stops only the processes this cluster started, then removes the folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeSpec:
    """One Ray node: CPUs, labels, custom resources, and GPUs (Ray counts what it is told:
    the tests give nodes GPUs this machine does not have)."""

    num_cpus: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    num_gpus: int = 0


@dataclass
class LocalCluster:
    """The running cluster, and its worker nodes in the order they were asked for."""

    cluster: Any  # ray.cluster_utils.Cluster
    workers: list[Any]

    @property
    def address(self) -> str:
        return self.cluster.address


@contextmanager
def local_cluster(
    nodes: Sequence[NodeSpec],
    *,
    prefix: str = "hcl",
    parent: str | None = None,
    system_config: dict[str, Any] | None = None,
) -> Iterator[LocalCluster]:
    """A cluster of ``nodes`` on this machine (the first is the head), ready to join.

    Whatever happens, the Ray processes it started stop and its folder goes on exit.
    """
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(
        prefix=prefix, dir=parent or os.environ.get("HARNESS_CLUSTER_TMP", "/tmp")
    )
    cluster = None
    before = os.environ.get("RAY_TMPDIR")
    try:
        os.makedirs(os.path.join(tmp, "ray"))
        os.environ["RAY_TMPDIR"] = tmp
        head, *workers = nodes
        head_args: dict[str, Any] = {
            "num_cpus": head.num_cpus,
            "num_gpus": head.num_gpus,
            "labels": dict(head.labels),
            "resources": dict(head.resources),
            "include_dashboard": False,
            # The log monitor streams workers' output to drivers, and harness drivers take none
            # (log_to_driver=False): it cost 1-1.5 CPU-seconds a cluster for nothing. The
            # workers' logs stay in the session folder. (Ray starts none on the other nodes.)
            "include_log_monitor": False,
        }
        if system_config:
            head_args["_system_config"] = system_config
        cluster = Cluster(initialize_head=True, head_node_args=head_args)
        started = [
            cluster.add_node(
                num_cpus=spec.num_cpus,
                num_gpus=spec.num_gpus,
                labels=dict(spec.labels),
                resources=dict(spec.resources),
            )
            for spec in workers
        ]
        cluster.wait_for_nodes()
        yield LocalCluster(cluster, started)
    finally:
        try:
            if cluster is not None:
                cluster.shutdown()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if before is None:  # a later cluster in this process must not use a removed folder
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = before
