"""Each node's software against the driver's, before anything runs: a node whose harness,
Ray or Python (major.minor) differs from the driver's is refused (its trials would run other
code than the one asked for, or fail to unpickle), and mixed torch, CUDA or driver versions
within one hardware class are pointed out (their figures are not alike)."""

from __future__ import annotations

import platform
from typing import Any

from harness import __version__
from harness.cluster.fingerprint import ray_version
from harness.cluster.inventory import NodeInfo
from harness.cluster.ship import code_hash

MUST_MATCH = ("harness", "harness_code", "ray", "python")
ALIKE_IN_A_CLASS = ("torch", "cuda", "driver")


def driver_versions() -> dict[str, str]:
    """The driver's harness, Ray and Python versions."""
    return {
        "harness": __version__,
        "harness_code": code_hash(),
        "ray": ray_version() or "",
        "python": platform.python_version(),
    }


def _comparable(name: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if name == "python":  # a patch release pickles alike
        return ".".join(text.split(".")[:2])
    return text


def version_skew(nodes: list[NodeInfo], driver: dict[str, str]) -> tuple[list[str], list[str]]:
    """(lines refusing nodes whose harness/Ray/Python differ from the driver's, lines noting
    hardware classes whose nodes run mixed torch/CUDA/driver versions)."""
    refused = []
    for node in nodes:
        differs = [
            f"{name.replace('_', ' ')} {node.facts.get(name) or '?'} "
            f"(the driver has {driver[name]})"
            for name in MUST_MATCH
            if driver.get(name)
            and _comparable(name, node.facts.get(name)) != _comparable(name, driver[name])
        ]
        if differs:
            refused.append(f"node {node.hostname} ({node.short_id}): " + ", ".join(differs))
    mixed = []
    classes: dict[str, list[NodeInfo]] = {}
    for node in nodes:
        classes.setdefault(node.hardware_class, []).append(node)
    for hw_class, members in classes.items():
        for name in ALIKE_IN_A_CLASS:
            seen = {str(n.facts.get(name)) for n in members}
            if len(seen) > 1:
                each = ", ".join(f"{n.hostname}={n.facts.get(name)}" for n in members)
                mixed.append(f"hardware class {hw_class[:8]}: mixed {name} versions: {each}")
    return refused, mixed
