"""Which node runs each trial: targets (node selectors) matched against the inventory."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from harness.cluster import NodeInfo
from harness.expand import TrialSpec
from harness.playbook import Target, short_hash


class PlacementError(Exception):
    """Targets that match no node; ``lines`` says which, one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class PlacedTrial:
    """A trial spec bound to the node that runs it, with its stable key."""

    spec: TrialSpec
    node: NodeInfo
    key: str


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, str):
        return fnmatchcase(str(value if value is not None else ""), wanted)
    return value == wanted


def node_matches(target: Target, node: NodeInfo) -> bool:
    """Whether every criterion of ``target`` holds for ``node``."""
    if target.hostname and not fnmatchcase(node.hostname, target.hostname):
        return False
    for k, v in target.labels.items():
        if k not in node.labels or not fnmatchcase(node.labels[k], v):
            return False
    for k, v in target.resources.items():
        if node.resources.get(k, 0.0) < v:
            return False
    return all(_matches(node.fields.get(k), v) for k, v in target.fingerprint.items())


def matching_nodes(
    target_name: str, targets: dict[str, Target], nodes: list[NodeInfo]
) -> list[NodeInfo]:
    """Nodes a named target selects; ``any`` selects every node."""
    if target_name == "any":
        return list(nodes)
    return [n for n in nodes if node_matches(targets[target_name], n)]


def trial_key(spec: TrialSpec, node: NodeInfo | None) -> str:
    """Stable across runs: benchmark, workload, canonical params, and the node for `each`.

    A trial that may run on any one matching node does not include the node in its key, so
    resuming on a cluster whose node choice differs still recognises it as done.
    """
    return short_hash(
        [spec.benchmark, spec.workload, spec.params_hash, node.identity if node else "*"]
    )


@dataclass
class Plan:
    """Placed trials, and the optional benchmarks skipped for want of a matching node."""

    trials: list[PlacedTrial]
    skipped: list[str]


def place(specs: list[TrialSpec], targets: dict[str, Target], nodes: list[NodeInfo]) -> Plan:
    """Bind every spec to node(s): all matching nodes with ``each``, else the least loaded."""
    errors: list[str] = []
    skipped: list[str] = []
    load = {n.ray_node_id: 0 for n in nodes}
    placed = []
    for spec in specs:
        candidates = matching_nodes(spec.target, targets, nodes)
        if not candidates:
            line = f"target {spec.target!r} (benchmark {spec.benchmark}) matches no node"
            bucket = skipped if spec.optional else errors
            if line not in bucket:
                bucket.append(line)
            continue
        if spec.each:
            for node in candidates:
                placed.append(PlacedTrial(spec, node, trial_key(spec, node)))
                load[node.ray_node_id] += 1
        else:
            node = min(candidates, key=lambda n: (load[n.ray_node_id], n.identity))
            load[node.ray_node_id] += 1
            placed.append(PlacedTrial(spec, node, trial_key(spec, None)))
    if errors:
        raise PlacementError(
            [*errors, f"the cluster has {len(nodes)} node(s): see `harness nodes`"]
        )
    return Plan(placed, skipped)
