"""Playbooks: YAML (safe loader, YAML 1.2 booleans) read within limits, overridden with
--set, and validated into the models of `harness.playbook.model`, benchmarks expanded.

Nothing in a playbook is evaluated. Every error names the file, the field path and what was
expected; :class:`PlaybookError` carries all of them, one line each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.playbook import yaml_bounded
from harness.playbook.expand import check_benchmarks
from harness.playbook.limits import MAX_STRING_CHARS, Limits

# The model is re-exported: callers load and validate through this module.
from harness.playbook.model import Benchmark as Benchmark
from harness.playbook.model import CampaignInfo as CampaignInfo
from harness.playbook.model import Playbook as Playbook
from harness.playbook.model import PlaybookError as PlaybookError
from harness.playbook.model import RankLayout as RankLayout
from harness.playbook.model import Settings as Settings
from harness.playbook.model import Target as Target
from harness.playbook.model import Telemetry as Telemetry
from harness.playbook.model import _short, validation_lines
from harness.playbook.model import canonical_json as canonical_json
from harness.playbook.model import effective_settings as effective_settings
from harness.playbook.model import short_hash as short_hash
from harness.playbook.yaml_bounded import YamlLimitError


def parse_yaml(text: str, max_expanded: int = 4 * MAX_STRING_CHARS) -> Any:
    """Parse a small YAML value (an override, a filter) with the playbook loader's limits.

    Raises yaml.YAMLError, or YamlLimitError past a limit.
    """
    return yaml_bounded.load(text, max_expanded)


def parse_scalar(text: str) -> str | int | float | bool | None:
    """A command-line value: number, true/false or null as YAML reads them, else the text."""
    try:
        value = parse_yaml(text)
    except (yaml.YAMLError, YamlLimitError):
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


@dataclass
class LoadedPlaybook:
    """A validated playbook with the text it came from."""

    path: str
    text: str
    model: Playbook
    effective: dict[str, Any]  # validated, overrides applied, defaults filled
    limits: Limits = field(default_factory=Limits)

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


# --set overrides ---------------------------------------------------------------------------
def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to raw playbook data; list items by index or by ``name``."""
    path, sep, raw_value = assignment.partition("=")
    if not sep or not path.strip():
        raise PlaybookError([f"--set {assignment!r}: expected KEY.PATH=VALUE"])
    try:
        value = parse_yaml(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as exc:
        raise PlaybookError(
            [f"--set {assignment!r}: value is not valid YAML: {yaml_bounded.one_line(exc)}"]
        ) from None
    except YamlLimitError as exc:
        raise PlaybookError([f"--set {assignment!r}: {exc}"]) from None
    keys = path.strip().split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            idx = _list_index(node, key)
            if idx is None:
                raise PlaybookError(
                    [f"--set {assignment!r}: {where}: no list item with index or name {key!r}"]
                )
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise PlaybookError([f"--set {assignment!r}: {where}: cannot descend into a value"])


def _list_index(items: list[Any], key: str) -> int | None:
    if key.isdigit():
        return int(key) if int(key) < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return i
    return None


# loading -----------------------------------------------------------------------------------
def load_playbook(
    path: str | Path, overrides: list[str] | None = None, limits: Limits | None = None
) -> LoadedPlaybook:
    """Read, parse, override and validate a playbook, its benchmarks' params included.

    At most ``limits.playbook_bytes`` are read, so `/dev/zero` or a huge file costs nothing.
    """
    limits = limits or Limits()
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(limits.playbook_bytes + 1)
    except OSError as exc:
        raise PlaybookError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > limits.playbook_bytes:
        raise PlaybookError([_too_large(source, limits)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError(
            [
                f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "a playbook is a YAML text file"
            ]
        ) from None
    return load_playbook_text(text, source, overrides, limits)


def _too_large(source: str, limits: Limits) -> str:
    return (
        f"{source}: larger than {limits.playbook_bytes:,} bytes; "
        "raise the limit with --max-playbook-bytes N (or $HARNESS_MAX_PLAYBOOK_BYTES)"
    )


def load_playbook_text(
    text: str,
    source: str = "<playbook>",
    overrides: list[str] | None = None,
    limits: Limits | None = None,
) -> LoadedPlaybook:
    """Like :func:`load_playbook` for text already read."""
    limits = limits or Limits()
    if len(text) > limits.playbook_bytes:
        raise PlaybookError([_too_large(source, limits)])
    try:
        data = yaml_bounded.load(text, limits.playbook_bytes)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise PlaybookError(
            [f"{source}{where}: invalid YAML: {yaml_bounded.one_line(exc)}"]
        ) from None
    except YamlLimitError as exc:
        raise PlaybookError([f"{source}: {exc}"]) from None
    if not isinstance(data, dict):
        raise PlaybookError([f"{source}: expected a mapping at the top level, got {_short(data)}"])
    for assignment in overrides or []:
        apply_override(data, assignment)
    bad = yaml_bounded.check_finite(data)
    if bad:
        raise PlaybookError([f"{source}: {bad}: inf and nan are not allowed"])
    try:
        model = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookError(validation_lines(source, exc)) from None

    errors = check_benchmarks(model, source, limits.trials)
    if errors:
        raise PlaybookError(errors)
    return LoadedPlaybook(source, text, model, model.model_dump(mode="json"), limits)
