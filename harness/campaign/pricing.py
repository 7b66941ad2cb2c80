"""Cost per million output tokens: a playbook's price table (currency per hour, per node by
its GPU model, CPU model or hardware class) applied to the nodes a load runs against (its
``server_on`` hosts, else its own node), checked before anything runs."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

from harness.campaign.placement import PlacedTrial
from harness.cluster.inventory import NodeInfo
from harness.errors import CampaignError
from harness.playbook.model import Prices
from workloads import get_workload

PRICED_METRIC = "output_throughput"  # tokens/s: what a price per hour is divided by


def node_price(prices: Prices, node: NodeInfo) -> float | None:
    """The first entry matching the node's hardware class exactly, or its GPU model or CPU
    model as a glob; None when none does."""
    for key, per_hour in prices.per_hour.items():
        if key == node.hardware_class:
            return per_hour
        for field in ("gpu_model", "cpu_model"):
            value = str(node.fields.get(field) or "")
            if value and fnmatchcase(value, key):
                return per_hour
    return None


def trial_prices(trials: list[PlacedTrial], prices: Prices | None) -> dict[str, float]:
    """Per trial key, the price per hour of the nodes its tokens cost (summed), for every
    trial whose workload reports output tokens/s. A node no entry prices is one line each,
    raised before anything runs."""
    if prices is None:
        return {}
    out: dict[str, float] = {}
    missing: list[str] = []
    for t in trials:
        names = [m.name for m in get_workload(t.spec.workload).metrics]
        if PRICED_METRIC not in names:
            continue
        total = 0.0
        distinct = {n.ray_node_id: n for n in t.ranks}.values()
        for node in t.servers or tuple(distinct):
            price = node_price(prices, node)
            if price is None:
                line = (
                    f"prices: no entry for {node.hostname} ({node.short_id}): hardware class "
                    f"{node.hardware_class[:12]}, GPU {node.fields.get('gpu_model') or 'none'}, "
                    f"CPU {node.fields.get('cpu_model') or '?'} (benchmark {t.spec.benchmark})"
                )
                if line not in missing:
                    missing.append(line)
                continue
            total += price
        out[t.key] = total
    if missing:
        raise CampaignError("\n".join(missing))
    return out


def cost_per_mtok(per_hour: float, tokens_per_s: float) -> float | None:
    """Currency per million output tokens at ``tokens_per_s`` on hardware costing
    ``per_hour``."""
    if not tokens_per_s > 0:
        return None
    cost = per_hour / (tokens_per_s * 3600.0) * 1e6
    return cost if math.isfinite(cost) else None  # a trickle of tokens: no meaningful cost
