"""What a trial holds while it runs, so that nothing disturbs a measurement: its nodes whole,
or, for a per-GPU trial whose workload is isolated on its GPU, just that GPU; and whole,
whatever it shares beyond its nodes (a serving endpoint), the steps of its ladder, and the
hosts of the endpoint it loads (`server_on`). Two trials whose claims overlap never run at
once; the dispatcher starts what fits."""

from __future__ import annotations

from harness.campaign.ladder import group_of
from harness.campaign.placement import PlacedTrial
from workloads import get_workload

Claim = tuple[str, str | None]  # (node id or shared name, GPU id or None for the whole)


def isolated(trial: PlacedTrial) -> bool:
    """A single-GPU trial whose workload leaves the node's other GPUs undisturbed."""
    spec = trial.spec
    return len(trial.gpus) == 1 and get_workload(spec.workload).isolated_on_gpu(spec.params)


def claims(trial: PlacedTrial) -> frozenset[Claim]:
    """What the trial holds while it runs: (node, GPU id) for an isolated per-GPU trial,
    else (node, None) for each of its nodes, whole; and, whole, anything it shares outside
    its nodes (a serving endpoint), so two load runs never hit one server at once."""
    spec = trial.spec
    shared = {(s, None) for s in get_workload(spec.workload).shared_resources(spec.params)}
    ladder = group_of(trial)
    if ladder is not None:  # a ladder's steps climb one at a time
        shared.add((ladder, None))
    shared |= {(n.ray_node_id, None) for n in trial.servers}  # an endpoint's hosts, whole
    if isolated(trial):
        return frozenset({(trial.node.ray_node_id, trial.gpu_ids[0]), *shared})
    return frozenset({*((nid, None) for nid in trial.node_ids), *shared})


def overlaps(
    a: frozenset[Claim] | set[Claim],
    b: frozenset[Claim] | set[Claim],
) -> bool:
    """Whether two sets of claims share a GPU, or a node one of them holds whole."""
    whole_a = {n for n, g in a if g is None}
    whole_b = {n for n, g in b if g is None}
    nodes_a = {n for n, _ in a}
    nodes_b = {n for n, _ in b}
    return bool(whole_a & nodes_b or whole_b & nodes_a or a & b)
