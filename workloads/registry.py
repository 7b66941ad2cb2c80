"""Workloads by dotted name: the built-ins plus the ``harness.workloads`` entry-point group.

A third-party package registers ``name = "module:Class"`` under that group; the class is a
:class:`workloads.base.Workload` whose ``name`` equals the entry-point name.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from workloads.base import Workload

ENTRY_POINT_GROUP = "harness.workloads"

_BUILTINS = {
    "memory.stream": "workloads.memory_stream:StreamWorkload",
    "kernel.gemm": "workloads.kernel_gemm:GemmWorkload",
    "memory.copy": "workloads.memory_copy:CopyWorkload",
    "kernel.attention": "workloads.kernel_attention:AttentionWorkload",
    "kernel.conv2d": "workloads.kernel_conv2d:Conv2dWorkload",
    "kernel.norm": "workloads.kernel_norm:NormWorkload",
    "collective.all_reduce": "workloads.collective:AllReduce",
    "collective.all_gather": "workloads.collective:AllGather",
    "collective.reduce_scatter": "workloads.collective:ReduceScatter",
    "collective.all_to_all": "workloads.collective:AllToAll",
    "collective.broadcast": "workloads.collective:Broadcast",
    "collective.reduce": "workloads.collective:Reduce",
    "collective.send_recv": "workloads.collective:SendRecv",
    "network.p2p": "workloads.network:P2PWorkload",
    "inference.decode": "workloads.inference_decode:DecodeWorkload",
    "inference.serving": "workloads.serving.workload:ServingWorkload",
}


class UnknownWorkload(KeyError):
    """No workload is registered under the name."""


class UnavailableWorkload(ImportError):
    """A built-in workload whose module does not import here (a library it needs is missing)."""


def _load(target: str) -> type[Workload]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=1)
def _discover() -> tuple[dict[str, type[Workload]], dict[str, str]]:
    found: dict[str, type[Workload]] = {}
    problems: dict[str, str] = {}
    for name, target in _BUILTINS.items():
        try:
            found[name] = _load(target)
        except ImportError as exc:  # a library this node lacks: only that workload is out
            problems[name] = f"cannot be imported on this node: {type(exc).__name__}: {exc}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTINS and ep.value == _BUILTINS[ep.name]:
            continue  # our own distribution's entry point for a built-in
        if ep.name in found:
            problems[ep.name] = f"{ep.value}: name already registered by {found[ep.name]!r}"
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            problems[ep.name] = f"{ep.value}: failed to import: {type(exc).__name__}: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Workload)):
            problems[ep.name] = f"{ep.value}: not a workloads.base.Workload subclass"
            continue
        if getattr(cls, "name", None) != ep.name:
            problems[ep.name] = f"{ep.value}: class name {getattr(cls, 'name', None)!r} differs"
            continue
        found[ep.name] = cls
    return found, problems


def all_workloads() -> dict[str, type[Workload]]:
    """Every usable workload, by name, sorted."""
    return dict(sorted(_discover()[0].items()))


def plugin_problems() -> dict[str, str]:
    """Entry points that could not be used, with the reason."""
    return dict(_discover()[1])


def ceiling_key(name: str, metric: str, params: dict[str, Any]) -> str | None:
    """The peak key the workload measures ``metric`` against for these params, if any."""
    return get_workload(name).ceiling_keys(params).get(metric)


def get_workload(name: str) -> type[Workload]:
    """The workload class registered as ``name``; UnknownWorkload if there is none."""
    found, problems = _discover()
    if name not in found and name in _BUILTINS:
        raise UnavailableWorkload(f"workload {name} {problems[name]}")
    try:
        return found[name]
    except KeyError:
        raise UnknownWorkload(name) from None
