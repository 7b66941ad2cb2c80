"""Node inventory facts, collected on the node itself, and the hashes that identify it."""

from __future__ import annotations

import glob
import os
import platform
import socket
from typing import Any

import psutil

from harness import __version__
from harness.cluster.ship import code_hash
from harness.playbook.model import short_hash

NODE_NAME_ENV = "HARNESS_NODE_NAME"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sockets() -> int | None:
    try:
        with open("/proc/cpuinfo") as f:
            ids = {line.split(":", 1)[1].strip() for line in f if line.startswith("physical id")}
        return len(ids) or None
    except OSError:
        return None


def ray_version() -> str | None:
    """The installed Ray's version (from its package metadata: importing Ray is not needed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ray")
    except PackageNotFoundError:
        return None


def collect_facts() -> dict[str, Any]:
    """What this node is: CPU, memory, OS, Python/torch/CUDA versions, GPUs (torch + NVML)."""
    from collectors.base import SourceUnavailable
    from collectors.nvml import NvmlCollector
    from workloads.devices import torch_facts

    facts: dict[str, Any] = {
        # A scheduler's name for the node where it gives one (Slurm's node name), so the
        # store names nodes as the lab's scheduler does.
        "hostname": os.environ.get(NODE_NAME_ENV) or socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=False),
        "cpu_threads": psutil.cpu_count(logical=True),
        "sockets": _sockets(),
        "numa_nodes": len(glob.glob("/sys/devices/system/node/node[0-9]*")) or None,
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "harness": __version__,
        "harness_code": code_hash(),
        "ray": ray_version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    torch_info = torch_facts()
    facts["torch"] = torch_info["torch"]
    facts["cuda"] = torch_info["cuda_runtime"]
    facts["cudnn"] = torch_info["cudnn"]
    gpus = torch_info["gpus"]
    nvml = NvmlCollector()
    try:
        nvml.open()
    except SourceUnavailable as exc:
        facts["driver"] = None
        facts["nvml"] = f"unavailable: {exc}"
    else:
        try:
            nv = nvml.facts()
        finally:
            nvml.close()
        facts["driver"] = nv["driver"]
        facts["nvml"] = "ok"
        facts["nvml_gpus"] = nv["gpus"]
        if not gpus:
            gpus = nv["gpus"]
    facts["gpus"] = gpus
    facts["gpu_count"] = len(gpus)
    facts["gpu_model"] = ", ".join(sorted({g["name"] for g in gpus}))
    return facts


HARDWARE_FIELDS = ("cpu_model", "cpu_threads", "sockets", "arch", "gpu_model", "gpu_count")


def hardware_class(facts: dict[str, Any]) -> str:
    """Hash of what the hardware is, without host identity or software: groups like machines."""
    key = {k: facts.get(k) for k in HARDWARE_FIELDS}
    key["memory_gib"] = round((facts.get("memory_bytes") or 0) / 2**30)
    return short_hash(key)


def fingerprint(facts: dict[str, Any], resources: dict[str, float], labels: dict[str, str]) -> str:
    """Hash of the node as benchmarked: host, hardware, software, and what Ray grants it."""
    volatile = {"cuda_visible_devices", "harness_code"}  # the code: checked, not identity
    key = {k: v for k, v in facts.items() if k not in volatile and k != "memory_bytes"}
    key["memory_gib"] = round((facts.get("memory_bytes") or 0) / 2**30)
    granted = {
        k: v
        for k, v in resources.items()
        if not k.startswith("node:") and k not in ("memory", "object_store_memory")
    }
    return short_hash({"facts": key, "resources": granted, "labels": labels})
