"""The node inventory as plain data: what a node is, the fields selectors match, identities.

Pure: no Ray here, so placement, pricing and recording can use these types without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeInfo:
    """One Ray node with its facts, as selectors and the store see it."""

    ray_node_id: str
    address: str
    labels: dict[str, str]
    resources: dict[str, float]
    facts: dict[str, Any]
    fingerprint: str = ""
    hardware_class: str = ""
    identity: str = ""  # fingerprint, plus #N when several nodes share one
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return str(self.facts.get("hostname", ""))

    @property
    def short_id(self) -> str:
        return self.ray_node_id[:8]


def selector_fields(node: NodeInfo) -> dict[str, Any]:
    """The flat fields a target's ``fingerprint`` criteria may name."""
    keys = (
        "hostname",
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "sockets",
        "numa_nodes",
        "memory_bytes",
        "os",
        "kernel",
        "arch",
        "python",
        "torch",
        "cuda",
        "driver",
        "gpu_count",
        "gpu_model",
    )
    out = {k: node.facts.get(k) for k in keys}
    out["memory_gib"] = round((node.facts.get("memory_bytes") or 0) / 2**30)
    out["hardware_class"] = node.hardware_class
    out["ray_node_id"] = node.ray_node_id
    return out


def assign_identities(nodes: list[NodeInfo]) -> list[NodeInfo]:
    """Give each node a stable identity; nodes sharing a fingerprint get #1, #2, ..."""
    nodes = sorted(nodes, key=lambda n: (n.fingerprint, n.address, n.ray_node_id))
    seen: dict[str, int] = {}
    for n in nodes:
        i = seen.get(n.fingerprint, 0)
        seen[n.fingerprint] = i + 1
        n.identity = n.fingerprint if i == 0 else f"{n.fingerprint}#{i}"
    return nodes
