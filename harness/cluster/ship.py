"""The project's own code shipped to the nodes with the job (Ray's ``runtime_env``
``py_modules``), so a node needs Ray, torch and the workloads' libraries but not harness.

Ray stores each module folder once in the cluster under a hash of its content and every
worker of the job imports that copy ahead of anything installed on its node. The nodes also
report a hash of the code they import (``code_hash``), checked against the driver's with
the other versions, so a node never runs another version's code unnoticed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import ClusterError

# Every package of ours a trial may import on a node (the orchestrator's node part, the
# workloads, telemetry, and the store's vocabulary that summaries use).
PACKAGES = ("harness", "workloads", "collectors", "results_db")
EXCLUDES = ["__pycache__", "*.pyc", "*.egg-info"]
# Ray keeps a package in its GCS, whose messages are bounded (512 MiB unless
# RAY_max_grpc_message_size says otherwise); a payload at the bound fails at upload.
PAYLOAD_LIMIT_BYTES = int(os.environ.get("RAY_max_grpc_message_size", 512 * 1024 * 1024))  # noqa: SIM112 - Ray's own name
VERSION_ENV = "HARNESS_SHIPPED_VERSION"


def package_dirs() -> list[Path]:
    """The folder of each of our packages as this process imports it."""
    import importlib

    return [Path(importlib.import_module(name).__file__).parent for name in PACKAGES]


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@functools.cache
def code_hash() -> str:
    """A short hash of the source this process imports (paths and contents of every file of
    our packages): equal on two machines exactly when they run the same code. Taken once
    per process, when the code is shipped (or first asked): files edited afterwards are
    not what this process runs."""
    digest = hashlib.sha256()
    for folder in package_dirs():
        for path in _files(folder):
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def payload_bytes(limit: int = PAYLOAD_LIMIT_BYTES) -> int:
    """The zipped size of what would be shipped, as Ray packs it (deflate)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as packed:
        for folder in package_dirs():
            for path in _files(folder):
                packed.write(path, f"{folder.name}/{path.relative_to(folder)}")
                if buffer.tell() > limit:
                    break
    return buffer.tell()


def runtime_env(limit: int = PAYLOAD_LIMIT_BYTES) -> dict[str, Any]:
    """The job's runtime_env that ships our packages; ClusterError (one line) when they
    would not fit Ray's limit."""
    code_hash()  # the driver's hash of exactly the files packed now
    size = payload_bytes(limit)
    if size >= limit:
        raise ClusterError(
            f"cannot ship harness to the nodes: its packages zip to {size / 2**20:.3g} MiB, "
            f"over Ray's limit of {limit / 2**20:.3g} MiB (remove large files from "
            f"{', '.join(str(d) for d in package_dirs())})"
        )
    return {
        "py_modules": [str(d) for d in package_dirs()],
        "excludes": EXCLUDES,
        # The shipped code has no package metadata on a node: it says its version here.
        "env_vars": {VERSION_ENV: __version__},
    }
