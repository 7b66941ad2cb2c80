"""What `harness run` shows while a campaign runs: a progress bar (done/total, elapsed, time
left, what runs where), failures as they come, warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from harness.campaign.eta import Eta, format_eta
from harness.cli.common import err
from harness.present.summary import shown_params
from harness.present.visible import visible
from results_db.vocabulary import TrialStatus, gpu_suffix

if TYPE_CHECKING:
    from harness.campaign.placement import PlacedTrial
    from harness.node.outcome import TrialOutcome


def planned_params(workload: str, params: dict[str, Any], varying: set[str] = frozenset()) -> str:
    """``shown_params`` for a trial not yet stored (the driver knows its workload class)."""
    from workloads import get_workload

    return shown_params(params, get_workload(workload).meta(params).param_defaults, varying)


class _EtaColumn(ProgressColumn):
    """Time left from the plan, recomputed at each refresh (not only when a trial ends)."""

    def __init__(self, live: Live) -> None:
        super().__init__()
        self.live = live

    def render(self, task: Any) -> Text:
        eta = self.live.eta
        return Text(format_eta(eta.seconds_left()) if eta else "", style="progress.remaining")


def running_line(running: list[PlacedTrial], width: int = 60) -> str:
    """'running: bench[params] on host (id8)' for each trial running now, cut to ``width``."""
    if not running:
        return ""
    parts = [
        f"{t.spec.benchmark}[{planned_params(t.spec.workload, t.spec.params)}] "
        f"on {t.node.hostname} ({t.node.short_id})" + (gpu_suffix(*t.gpus) if t.gpus else "")
        for t in running
    ]
    text = "running: " + "; ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


class Live:
    """Progress bar (done/total, elapsed, ETA, what runs where) and warnings while a
    campaign runs."""

    def __init__(self, enabled: bool) -> None:
        self.eta: Eta | None = None
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _EtaColumn(self),
            TextColumn("{task.fields[running]}", markup=False),
            console=err,
            disable=not enabled,
            transient=False,
        )
        self.task: Any = None
        self.campaign_id = ""

    def planned(self, campaign_id: str, trials: list[PlacedTrial], skipped: int) -> None:
        self.campaign_id = campaign_id
        self.eta = Eta(trials)
        note = f" ({skipped} already done)" if skipped else ""
        err.print(f"campaign {campaign_id}: {len(trials)} trial(s) to run{note}", markup=False)
        self.task = self.progress.add_task("trials", total=len(trials), running="")
        self.progress.start()

    def _show_running(self) -> None:
        assert self.eta is not None
        width = max(30, self.progress.console.width - 70)
        self.progress.update(self.task, running=running_line(self.eta.running(), width))

    def started(self, trial: PlacedTrial) -> None:
        assert self.eta is not None
        self.eta.started(trial)
        self._show_running()

    def finished(self, trial: PlacedTrial, outcome: TrialOutcome) -> None:
        assert self.eta is not None
        self.eta.finished(trial)
        self._show_running()
        if outcome.status not in (TrialStatus.OK, TrialStatus.SKIPPED):
            # Failure reasons and params are the trial's text, never markup.
            line = (
                f"{trial.spec.benchmark} "
                f"{planned_params(trial.spec.workload, trial.spec.params)} "
                f"on {trial.node.hostname}: "
                f"{outcome.failure_phase}: {outcome.failure_reason}"
            )
            self.progress.console.print(
                Text.assemble((str(outcome.status), "red"), " ", visible(line)), highlight=False
            )
        self.progress.advance(self.task)

    def warn(self, message: str) -> None:
        err.print(Text.assemble(("warning:", "yellow"), " ", visible(message)), highlight=False)

    def info(self, message: str) -> None:
        err.print(visible(message), markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()
