"""A campaign's result and its verdict: trial counts, ladder steps not run, earlier failures
left failed, missed expectations, and the exit code that follows from them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from results_db.vocabulary import TrialStatus

if TYPE_CHECKING:
    from harness.campaign.plan import CampaignPlan
    from results_db.store import ResultStore

EXIT_OK = 0
EXIT_FAILED = 1  # a trial failed, an earlier failure stays, or an expectation was missed


@dataclass
class CampaignResult:
    """What a run (or a dry run) of a playbook came to."""

    plan: CampaignPlan
    store: ResultStore | None = None
    campaign_id: str = ""  # empty for a dry run: nothing was stored
    dry_run: bool = False
    ran: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    expectations: list[dict[str, Any]] = field(default_factory=list)  # judged `expect:`

    @property
    def ok(self) -> int:
        return self.counts.get(TrialStatus.OK.value, 0)

    @property
    def not_run(self) -> int:
        """Ladder steps above where the climb stopped (stored as skipped)."""
        return self.counts.get(TrialStatus.SKIPPED.value, 0)

    @property
    def failed(self) -> int:
        return self.ran - self.ok - self.not_run

    @property
    def already_done(self) -> int:
        return self.plan.already_done

    @property
    def left_failed(self) -> list[str]:
        return self.plan.left_failed

    @property
    def missed(self) -> int:
        from results_db.expect import FAIL

        return sum(r["verdict"] == FAIL for r in self.expectations)

    @property
    def retry(self) -> bool:
        """Whether a resume has something to do."""
        return bool(self.failed or self.left_failed)

    @property
    def exit_code(self) -> int:
        if self.dry_run:
            return EXIT_OK
        return EXIT_FAILED if self.retry or self.missed else EXIT_OK

    def summary(self) -> str:
        """'campaign C: 9 ok, 1 failed, 0 skipped (already done), ...'."""
        return (
            f"campaign {self.campaign_id}: {self.ok} ok, {self.failed} failed, "
            f"{self.already_done} skipped (already done)"
            + (f", {self.not_run} not run (ladder stopped)" if self.not_run else "")
            + (
                f", {len(self.left_failed)} left failed (not in this plan)"
                if self.left_failed
                else ""
            )
            + (f", {self.missed} expectation(s) missed" if self.missed else "")
        )


def expectations_of(effective: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The `expect:` of each benchmark of a stored campaign's playbook, by benchmark name."""
    from harness.playbook.expand import benchmark_name
    from harness.playbook.model import Benchmark

    out = {}
    for i, raw in enumerate((effective or {}).get("benchmarks") or []):
        b = Benchmark.model_validate(raw)
        if b.expect:
            out[benchmark_name(b, i)] = {m: e.model_dump() for m, e in b.expect.items()}
    return out


def judged_expectations(session: Any, campaign: str) -> list[dict[str, Any]]:
    """The campaign's `expect:` references judged on its latest ok trials."""
    import results_db as db_api
    from results_db.expect import judge_expectations
    from results_db.models import Campaign

    row = session.get(Campaign, campaign)
    expectations = expectations_of(row.effective if row is not None else {})
    if not expectations:
        return []
    records = db_api.query_records(session, db_api.Filters(campaign=campaign))
    return judge_expectations(records, expectations)
