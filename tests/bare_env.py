"""A Python environment like the project's but without harness installed (and without any
library named in ``hide``): a venv whose site-packages links every entry of the project
venv's, but ours. A node started from it has Ray and torch, and harness only as the job
ships it."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def _ours(name: str, hide: tuple[str, ...]) -> bool:
    base = name.lower().replace("-", "_")
    if "harness" in base:  # the package, its dist-info, the editable finder and .pth
        return True
    return any(base == h or base.startswith(f"{h}_") or base.startswith(f"{h}.") for h in hide)


def env_without_harness(folder: Path, hide: tuple[str, ...] = ()) -> Path:
    """Make the environment in ``folder``; its python's path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    source = Path(sysconfig.get_paths()["purelib"])
    target = folder / Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    for entry in source.iterdir():
        if not _ours(entry.name, hide):
            (target / entry.name).symlink_to(entry)
    python = folder / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import harness"], capture_output=True, cwd=folder)
    assert check.returncode != 0, "the bare environment imports harness"
    return python
