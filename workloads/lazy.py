"""A module bound now and imported on first use, so listing and validating workloads (the
CLI's `workloads`, `playbook validate`) does not pay torch's ~1.4 s import.

The bound object is a stand-in: its first attribute read imports the real module the
ordinary way (``importlib.import_module``, with the import system's own locking), and every
attribute it hands out is kept in the stand-in's own namespace, so the next read of that
name is a plain dictionary lookup and a timed loop pays nothing for the indirection.

Not importlib's ``LazyLoader``: on Python 3.12.3 and later its module recurses without end
when the module deletes one of its own attributes while it is being imported, and torch 2.11's
``__init__`` does (``delattr(sys.modules[__name__], ...)``): every Ray worker that gathered a
GPU node's facts died with RecursionError on the first GPU machine the harness ran on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_bound: dict[str, ModuleType] = {}
_lock = threading.Lock()


class _LazyModule(ModuleType):
    """Stands in for the module ``__name__`` until, and after, it is imported."""

    def __getattr__(self, attr: str) -> Any:
        # Called only for names not kept yet (a kept name is found in __dict__ first).
        value = getattr(importlib.import_module(self.__name__), attr)
        object.__setattr__(self, attr, value)
        return value

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(importlib.import_module(self.__name__), attr, value)
        object.__setattr__(self, attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(importlib.import_module(self.__name__), attr)
        self.__dict__.pop(attr, None)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__name__))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickled (by cloudpickle for a Ray task) as "import this module", never by value.
        return importlib.import_module, (self.__name__,)


def lazy_module(name: str) -> ModuleType:
    """``name``'s module, imported when an attribute is first read (the module itself if
    already imported). ModuleNotFoundError at once where it is not installed."""
    if name in sys.modules:
        return sys.modules[name]
    with _lock:
        if name not in _bound:
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            _bound[name] = _LazyModule(name)
        return _bound[name]


def is_loaded(name: str) -> bool:
    """Whether ``name`` was really imported (not only bound lazily)."""
    return name in sys.modules
