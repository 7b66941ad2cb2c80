"""YAML as data, in bounded time and memory: safe tags only, YAML 1.2 booleans, and limits
on nesting and alias expansion checked before the work they bound. :func:`check_finite`
finds inf and nan for callers, who check the data once it is whole (overrides applied).

Order matters: the event stream (iterative, cheap) is scanned for depth before the
recursive composer runs; the composed node graph, where an alias is a shared node, is
weighed with aliases expanded (memoised, so a billion-item alias bomb costs a few thousand
steps) before any Python object is constructed from it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.playbook.limits import MAX_DEPTH, MAX_STRING_CHARS


class YamlLimitError(ValueError):
    """The text parses, but is deeper, larger or stranger than a playbook may be."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on:` and `no` stay strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def one_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: its problem (or its text) with whitespace collapsed."""
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(str(problem).split())


def _check_depth(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise YamlLimitError(
                    f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def expanded_size(root: Node, limit: int) -> int:
    """Characters of scalars plus two per node, with every alias expanded; stops past
    ``limit``. A node that contains itself (a recursive alias) is refused."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise YamlLimitError("an alias refers to a node that contains it (recursive alias)")
        if isinstance(node, ScalarNode):
            if len(node.value) > MAX_STRING_CHARS:
                line = node.start_mark.line + 1
                raise YamlLimitError(
                    f"a value of {len(node.value):,} characters (line {line}); "
                    f"at most {MAX_STRING_CHARS:,} are allowed"
                )
            total = 2 + len(node.value)
        else:
            in_progress.add(key)
            total = 2
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [part for pair in node.value for part in pair]
            for child in children:
                total += size(child)
                if total > limit:
                    break  # far enough: the caller refuses
            in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


def check_finite(value: Any, path: str = "") -> str | None:
    """The path of the first inf or nan in parsed data, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(top level)"
    if isinstance(value, dict):
        for k, v in value.items():
            found = check_finite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = check_finite(v, f"{path}[{i}]")
            if found:
                return found
    return None


def load(text: str, max_expanded: int) -> Any:
    """Parse one YAML document as plain data within the limits.

    Raises yaml.YAMLError for malformed text and YamlLimitError past a limit.
    """
    _check_depth(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        total = expanded_size(node, max_expanded)
        if total > max_expanded:
            raise YamlLimitError(
                f"with its aliases expanded it is over {max_expanded:,} characters "
                "(an alias bomb?); the limit follows --max-playbook-bytes"
            )
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return data
