"""Workloads by dotted name: the built-ins plus the ``harness.workloads`` entry-point group.

A third-party package registers ``name = "module:Class"`` under that group; the class is a
:class:`workloads.base.Workload` whose ``name`` equals the entry-point name.
"""

from __future__ import annotations

import importlib
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points
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


def _unimportable(exc: ImportError) -> str:
    return f"cannot be imported on this node: {type(exc).__name__}: {exc}"


def _plugin(ep: EntryPoint) -> type[Workload] | str:
    """The plugin's workload class, or why it cannot be used."""
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not break the harness
        return f"{ep.value}: failed to import: {type(exc).__name__}: {exc}"
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        return f"{ep.value}: not a workloads.base.Workload subclass"
    if getattr(cls, "name", None) != ep.name:
        return f"{ep.value}: class name {getattr(cls, 'name', None)!r} differs"
    return cls


def _foreign(ep: EntryPoint) -> bool:
    """Not our own distribution's entry point for a built-in."""
    return not (ep.name in _BUILTINS and ep.value == _BUILTINS[ep.name])


@lru_cache(maxsize=1)
def _plugins() -> dict[str, list[EntryPoint]]:
    """The group's entry points by name, but our own for built-ins (read once: scanning
    every installed distribution's metadata costs milliseconds)."""
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in filter(_foreign, entry_points(group=ENTRY_POINT_GROUP)):
        by_name.setdefault(ep.name, []).append(ep)
    return by_name


@lru_cache(maxsize=1)
def _discover() -> tuple[dict[str, type[Workload]], dict[str, str]]:
    found: dict[str, type[Workload]] = {}
    problems: dict[str, str] = {}
    for name, target in _BUILTINS.items():
        try:
            found[name] = _load(target)
        except ImportError as exc:  # a library this node lacks: only that workload is out
            problems[name] = _unimportable(exc)
    for ep in (ep for eps in _plugins().values() for ep in eps):
        if ep.name in found:
            problems[ep.name] = f"{ep.value}: name already registered by {found[ep.name]!r}"
            continue
        got = _plugin(ep)
        if isinstance(got, str):
            problems[ep.name] = got
        else:
            found[ep.name] = got
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


@cache
def get_workload(name: str) -> type[Workload]:
    """The workload class registered as ``name``; UnknownWorkload if there is none. Only
    its own module is imported: a trial's Ray worker has no use for the others (the serving
    workload alone brings aiohttp), and a broken module of another workload is no concern."""
    unavailable = None
    if name in _BUILTINS:
        try:
            return _load(_BUILTINS[name])
        except ImportError as exc:
            unavailable = UnavailableWorkload(f"workload {name} {_unimportable(exc)}")
    # The first usable plugin of that name, as the listing takes it (plugin_problems says
    # why the others are not).
    for ep in _plugins().get(name, ()):
        got = _plugin(ep)
        if not isinstance(got, str):
            return got
    if unavailable is not None:
        raise unavailable from None
    raise UnknownWorkload(name)
