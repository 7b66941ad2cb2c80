"""Checks a campaign makes before it stores or sends anything: each benchmark's workload is
asked what only the outside world can show (``Workload.preflight``: a serving endpoint that
nobody answers at, from here). One line per problem; `harness run` exits 2 on any."""

from __future__ import annotations

from harness.errors import PreflightError
from harness.playbook.expand import expand
from harness.playbook.load import LoadedPlaybook
from workloads import get_workload


def preflight(loaded: LoadedPlaybook) -> None:
    """Raise PreflightError naming every benchmark whose workload reports a problem."""
    lines: list[str] = []
    for spec in expand(loaded.model):
        for problem in get_workload(spec.workload).preflight(spec.params):
            line = f"{loaded.path}: benchmark {spec.benchmark}: {problem}"
            if line not in lines:
                lines.append(line)
    if lines:
        raise PreflightError(lines)
