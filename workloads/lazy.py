"""A module bound now and imported on first use, so listing and validating workloads (the
CLI's `workloads`, `playbook validate`) does not pay torch's ~1.4 s import.

After the first attribute access the object is the real module (importlib's LazyLoader
swaps its class back), so a timed loop pays nothing for it. Submodules are reached through
it (``torch.nn.functional``, ``torch.distributed``), never by an ``import torch.x``
statement, anywhere in a process where the parent is bound lazily: that statement finds the
submodule through the parent's not-yet-run ``__init__``, which imports it too, and the
submodule then runs twice (for torch.distributed, c10d's set-up twice: the process aborts).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name``'s module, loaded when an attribute is first read (at once if already loaded)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def is_loaded(name: str) -> bool:
    """Whether ``name`` was really imported (not only bound lazily)."""
    module = sys.modules.get(name)  # a lazy one is of LazyLoader's class until first use
    return module is not None and type(module).__name__ != "_LazyModule"
