"""Which node runs each trial: targets (node selectors) matched against the inventory."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from harness.cluster.inventory import NodeInfo
from harness.errors import PlacementError as PlacementError
from harness.playbook.expand import TrialSpec, too_many_trials
from harness.playbook.model import Target, short_hash


@dataclass(frozen=True)
class PlacedTrial:
    """A trial spec bound to the node of each rank (one rank unless multi-rank), with its
    stable key."""

    spec: TrialSpec
    ranks: tuple[NodeInfo, ...]
    key: str
    # Per-GPU trials (`each: gpu` / `gpu_pair`): the GPU's position on its node (a pair:
    # source, then destination), among :func:`gpu_ids`.
    gpus: tuple[int, ...] = ()
    # Nodes hosting the endpoint the trial loads (`server_on`): held whole, watched.
    servers: tuple[NodeInfo, ...] = ()

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """The trial's GPUs as Ray and CUDA_VISIBLE_DEVICES name them."""
        ids = gpu_ids(self.node)
        return tuple(ids[i] for i in self.gpus)

    @property
    def node(self) -> NodeInfo:
        """The node of rank 0: the one the trial's row names."""
        return self.ranks[0]

    @property
    def node_ids(self) -> frozenset[str]:
        return frozenset(n.ray_node_id for n in self.ranks)


def gpu_ids(node: NodeInfo) -> list[str]:
    """The node's GPUs as Ray names them: the ids CUDA_VISIBLE_DEVICES takes, in order.

    Ray numbers a node's GPUs by the CUDA_VISIBLE_DEVICES its raylet started with (0..N-1
    when unset); the inventory task, granted no GPU, sees that list as it is.
    """
    count = int(node.resources.get("GPU", 0))
    visible = [v.strip() for v in str(node.facts.get("cuda_visible_devices") or "").split(",")]
    visible = [v for v in visible if v]
    if len(visible) >= count > 0:
        return visible[:count]
    return [str(i) for i in range(count)]


def gpu_groups(each: bool | str, node: NodeInfo) -> list[tuple[int, ...]]:
    """The GPU positions of each trial `each` makes on ``node``: every GPU, or every ordered
    pair of GPUs; one empty group (the node as a whole) otherwise."""
    if each == "gpu":
        return [(i,) for i in range(len(gpu_ids(node)))]
    if each == "gpu_pair":
        return list(itertools.permutations(range(len(gpu_ids(node))), 2))
    return [()]


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


def trial_key(
    spec: TrialSpec, nodes: tuple[NodeInfo, ...] | None, gpus: tuple[int, ...] = ()
) -> str:
    """Stable across runs: benchmark, workload, canonical params, the node(s) for `each`, the
    GPU(s) of a per-GPU trial, and the rank layout of a multi-rank trial.

    A trial that may run on any matching node(s) does not include them in its key, so
    resuming on a cluster whose node choice differs still recognises it as done.
    """
    if not nodes:
        where: object = "*"
    elif len(nodes) == 1:
        where = nodes[0].identity
    else:
        where = [n.identity for n in nodes]
    parts: list[object] = [spec.benchmark, spec.workload, spec.params_hash, where]
    if spec.layout:
        parts.append([spec.layout.nodes, spec.layout.per_node])
    if gpus:
        parts.append(["gpu", *gpus])
    return short_hash(parts)


@dataclass
class Plan:
    """Placed trials, and the optional benchmarks skipped for want of a matching node."""

    trials: list[PlacedTrial]
    skipped: list[str]


def _ranks(nodes: tuple[NodeInfo, ...], per_node: int) -> tuple[NodeInfo, ...]:
    """The node of each rank: ``per_node`` consecutive ranks on each node, in order."""
    return tuple(n for n in nodes for _ in range(per_node))


def placed_count(specs: list[TrialSpec], targets: dict[str, Target], nodes: list[NodeInfo]) -> int:
    """How many trials :func:`place` would make, counted without making them."""
    matching: dict[str, int] = {}
    total = 0
    for spec in specs:
        if spec.target not in matching:
            matching[spec.target] = len(matching_nodes(spec.target, targets, nodes))
        wanted = spec.layout.nodes if spec.layout else 1
        if spec.each in ("gpu", "gpu_pair"):
            total += sum(
                len(gpu_groups(spec.each, n)) for n in matching_nodes(spec.target, targets, nodes)
            )
        else:
            total += math.comb(matching[spec.target], wanted) if spec.each else 1
    return total


def _shortfall(spec: TrialSpec, candidates: list[NodeInfo], wanted: int) -> str | None:
    """Why the matching nodes cannot hold the spec's trials, or None when they can."""
    if len(candidates) < wanted:
        line = (
            f"target {spec.target!r} (benchmark {spec.benchmark}) matches "
            f"{len(candidates) or 'no'} node(s)" + (f", needs {wanted}" if wanted > 1 else "")
        )
        return line.replace("matches no node(s)", "matches no node")
    if spec.each in ("gpu", "gpu_pair") and not any(gpu_groups(spec.each, n) for n in candidates):
        need = "a GPU" if spec.each == "gpu" else "two GPUs"
        return (
            f"target {spec.target!r} (benchmark {spec.benchmark}, each: {spec.each}) matches "
            f"{len(candidates)} node(s), none with {need} in Ray's resources"
        )
    return None


def place(
    specs: list[TrialSpec],
    targets: dict[str, Target],
    nodes: list[NodeInfo],
    max_trials: int | None = None,
) -> Plan:
    """Bind every spec to node(s).

    Single-rank: every matching node with ``each``, every GPU (or ordered GPU pair) of every
    matching node with ``each: gpu`` (``gpu_pair``), else the least loaded node. Multi-rank
    (``layout``): every combination of ``layout.nodes`` matching nodes with ``each`` (all
    pairs, for a pairwise network test), else the least loaded ones. More than
    ``max_trials`` is refused before any is built.
    """
    if max_trials is not None:
        count = placed_count(specs, targets, nodes)
        if count > max_trials:
            what = f"on these {len(nodes)} node(s) the playbook places"
            raise PlacementError([too_many_trials(count, max_trials, what)])
    errors: list[str] = []
    skipped: list[str] = []
    load = {n.ray_node_id: 0 for n in nodes}
    placed = []
    for spec in specs:
        candidates = sorted(matching_nodes(spec.target, targets, nodes), key=lambda n: n.identity)
        wanted = spec.layout.nodes if spec.layout else 1
        line = _shortfall(spec, candidates, wanted)
        servers: tuple[NodeInfo, ...] = ()
        if spec.server_on is not None and not line:
            servers = tuple(matching_nodes(spec.server_on, targets, nodes))
            if not servers:
                line = (
                    f"server_on target {spec.server_on!r} (benchmark {spec.benchmark}) "
                    "matches no node"
                )
        if line:
            bucket = skipped if spec.optional else errors
            if line not in bucket:
                bucket.append(line)
            continue
        if spec.each in ("gpu", "gpu_pair"):
            for node in candidates:
                for gpus in gpu_groups(spec.each, node):
                    key = trial_key(spec, (node,), gpus)
                    placed.append(PlacedTrial(spec, (node,), key, gpus))
            continue
        per_node = spec.layout.per_node if spec.layout else 1
        if spec.each:
            groups = list(itertools.combinations(candidates, wanted))
        else:
            chosen = sorted(candidates, key=lambda n: (load[n.ray_node_id], n.identity))[:wanted]
            groups = [tuple(sorted(chosen, key=lambda n: n.identity))]
        for group in groups:
            for n in group:
                load[n.ray_node_id] += 1
            key = trial_key(spec, group if spec.each else None)
            placed.append(PlacedTrial(spec, _ranks(group, per_node), key, servers=servers))
    if errors:
        raise PlacementError(
            [*errors, f"the cluster has {len(nodes)} node(s): see `harness nodes`"]
        )
    return Plan(placed, skipped)
