"""Torch device and dtype helpers shared by the workloads, and the node's torch facts."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from workloads.errors import UnsupportedParams
from workloads.lazy import lazy_module

torch = lazy_module("torch")


class _TorchDtypes(Mapping[str, "torch.dtype"]):
    """The shared dtype vocabulary (DESIGN.md) mapped to torch storage types, looked up when
    read so that importing this module does not import torch. tf32 is fp32 storage with TF32
    tensor-core math allowed."""

    _NAMES = {
        "fp64": "float64",
        "fp32": "float32",
        "tf32": "float32",
        "fp16": "float16",
        "bf16": "bfloat16",
        "fp8": "float8_e4m3fn",
    }

    def __getitem__(self, name: str) -> torch.dtype:
        return getattr(torch, self._NAMES[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


DTYPES: Mapping[str, torch.dtype] = _TorchDtypes()


def resolve_device(device: str) -> torch.device:
    """The torch device for a ``cpu``/``cuda``/``cuda:N`` string, or UnsupportedParams."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UnsupportedParams(
                f"device {device!r} requested but this node has no usable CUDA device"
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise UnsupportedParams(
                f"device {device!r} requested but this node has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    return dev


def granted_cpus() -> int:
    """CPUs this process may use: OMP_NUM_THREADS where the scheduler set it (Ray sets it to
    a task's CPUs), else the CPU affinity mask."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: as asked, else to the CPUs granted; return the count.

    Always set, never inherited: a reused worker process keeps the pool size of whatever ran
    in it first (a 0-CPU task leaves torch single-threaded).
    """
    torch.set_num_threads(threads or granted_cpus())
    return torch.get_num_threads()


@dataclass(frozen=True)
class DeviceSetup:
    """Where a trial runs: the device, the host threads it was given, and its dtype."""

    dev: torch.device
    threads: int | None  # host trials only
    dtype: torch.dtype | None
    elem: int  # bytes per element of dtype (0 without one)


def device_setup(device: str, threads: int | None, dtype: str | None = None) -> DeviceSetup:
    """The lines every workload's set-up began with: resolve the device, give a host trial
    its threads, look up the dtype and its element size."""
    dev = resolve_device(device)
    granted = apply_threads(threads) if dev.type == "cpu" else None
    torch_dtype = DTYPES[dtype] if dtype else None
    elem = torch.empty((), dtype=torch_dtype).element_size() if torch_dtype else 0
    return DeviceSetup(dev, granted, torch_dtype, elem)


# CPU features that decide how fast a host's matrix kernels can be: without native bf16 (or
# fp16) a 16-bit matmul runs in a slow fallback (on an AVX2-only EPYC, 2 threads, 1024^3 in
# bf16 ran at 1.0 GFLOP/s, in fp32 at 149). Intel/AMD flags, then Arm's ("Features").
MATMUL_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimddp", "bf16", "i8mm", "sve", "sve2", "sme",
)  # fmt: skip


def matmul_flags(cpuinfo: str) -> list[str]:
    """Which of MATMUL_FLAGS the first "flags" (x86) or "Features" (Arm) line of a
    /proc/cpuinfo text names, in MATMUL_FLAGS' order."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have = set(value.split())
            return [f for f in MATMUL_FLAGS if f in have]
    return []


def host_kernel_facts(dev: torch.device) -> dict[str, Any]:
    """For a host trial: the vector code PyTorch's kernels dispatch to (``AVX2``,
    ``AVX512``, ...) and the CPU's matrix features, so that host figures compare across
    machines; nothing for a GPU trial."""
    if dev.type != "cpu":
        return {}
    return {
        "cpu_dispatch": torch.backends.cpu.get_cpu_capability(),
        "cpu_matmul_flags": list(_host_matmul_flags()),
    }


@functools.cache
def _host_matmul_flags() -> tuple[str, ...]:
    """This host's MATMUL_FLAGS, read once per process (every host trial asks)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return tuple(matmul_flags(f.read()))
    except OSError:  # not Linux
        return ()


def check_fits(dev: torch.device, nbytes: int) -> None:
    """Fail early and clearly when ``nbytes`` cannot fit on the device.

    The host's figure is what the kernel says is available now (MemAvailable), not the Ray
    node's share: several Ray nodes on one machine, or other jobs, all draw on it.
    """
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        if nbytes > free:
            raise UnsupportedParams(
                f"needs {nbytes / 2**30:.2f} GiB but {dev} has {free / 2**30:.2f} GiB free"
            )
    else:
        avail = psutil.virtual_memory().available
        if nbytes > avail:
            raise UnsupportedParams(
                f"needs {nbytes / 2**30:.2f} GiB but the host has {avail / 2**30:.2f} GiB free"
            )


def check_peak(peaks: dict[str, int]) -> None:
    """:func:`check_fits` for every device of a workload's declared peak."""
    for dev, nbytes in peaks.items():
        check_fits(torch.device(dev), nbytes)


def synchronize(dev: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def generator(dev: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on the device, so inputs are random but reproducible."""
    return torch.Generator(device=dev).manual_seed(seed)


def gpu_uuid(dev: torch.device) -> str | None:
    """The UUID of a CUDA device as NVML spells it (GPU-...), where torch exposes it."""
    if dev.type != "cuda":
        return None
    uuid = getattr(torch.cuda.get_device_properties(dev), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def torch_facts() -> dict[str, Any]:
    """Torch, CUDA and per-GPU facts of this process's node, for the node fingerprint.

    Without a GPU device node (NVIDIA's, ROCm's, WSL's) torch would find no GPU, so it is
    not imported: its version file says which torch and CUDA build this is. Importing torch
    costs a CPU-second and more in every new Ray worker that gathers the facts.
    """
    if not _gpu_device_nodes():
        built = _torch_version_file()
        if built is not None:
            return {
                "torch": str(built.__version__),
                "cuda_runtime": built.cuda,
                "cudnn": None,
                "gpus": [],
            }
    facts: dict[str, Any] = {
        # A plain str: a TorchVersion would make whoever unpickles the facts import torch.
        "torch": str(torch.__version__),
        "cuda_runtime": torch.version.cuda,
        "cudnn": None,
        "gpus": [],
    }
    if torch.cuda.is_available():
        facts["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            facts["gpus"].append(
                {
                    "index": i,
                    "name": p.name,
                    "memory_bytes": int(p.total_memory),
                    "compute_capability": f"{p.major}.{p.minor}",
                    "multiprocessors": p.multi_processor_count,
                }
            )
    return facts


def _gpu_device_nodes() -> bool:
    """Whether this machine has a device node a GPU runtime opens (torch needs one)."""
    import glob

    return bool(
        glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg")
    )


def _torch_version_file() -> Any | None:
    """torch/version.py loaded on its own (plain assignments), or None where it is not."""
    import importlib.machinery
    import importlib.util

    try:
        # On sys.path, not sys.modules: a lazily bound torch there loads when looked at.
        spec = importlib.machinery.PathFinder.find_spec("torch")
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = os.path.join(folders[0], "version.py") if folders else ""
        if not os.path.isfile(path):
            return None
        loaded = importlib.util.spec_from_file_location("_harness_torch_version", path)
        assert loaded is not None and loaded.loader is not None
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
        return module if isinstance(getattr(module, "__version__", None), str) else None
    except Exception:  # any surprise: import torch as before
        return None
