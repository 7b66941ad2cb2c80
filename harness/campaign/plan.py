"""The planning step of a campaign, one for a run and a dry run alike: the trials placed on
the inventory, resumed ones filtered out, ladders in climbing order, prices checked, and the
lines to show for optional benchmarks left out and earlier failures this plan drops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from harness.campaign.ladder import in_climbing_order
from harness.campaign.placement import PlacedTrial, place
from harness.campaign.pricing import trial_prices
from harness.cluster.inventory import NodeInfo
from harness.errors import CampaignError
from harness.playbook.expand import expand
from harness.playbook.load import LoadedPlaybook, short_hash
from results_db.heartbeat import grace_s, seconds_since_beat
from results_db.journal import journal_path, read_journal
from results_db.vocabulary import TrialStatus

if TYPE_CHECKING:
    from results_db.store import ResultStore

Attempts = dict[str, tuple[int, str]]  # trial key -> (attempts so far, latest status)


class Warner(Protocol):
    def warn(self, message: str) -> None: ...


@dataclass
class CampaignPlan:
    """What a campaign will run, decided before anything is stored."""

    nodes: list[NodeInfo]
    placed: list[PlacedTrial]  # every trial of the playbook on these nodes
    todo: list[PlacedTrial]  # the ones to run, in the order they are handed out
    optional_skipped: list[str] = field(default_factory=list)  # optional benchmarks: no node
    # Resume only: earlier failed trials this plan does not hold (their node left, or the
    # playbook changed), one line each with why. They keep the campaign failed.
    left_failed: list[str] = field(default_factory=list)
    attempts: Attempts = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)  # trial key -> per hour
    currency: str = ""
    resume: str | None = None

    @property
    def already_done(self) -> int:
        return len(self.placed) - len(self.todo)


def plan_campaign(
    loaded: LoadedPlaybook,
    nodes: list[NodeInfo],
    store: ResultStore | None = None,
    resume: str | None = None,
) -> CampaignPlan:
    """Place the playbook's trials on ``nodes`` and decide which run, and in what order.

    Raises PlacementError when nothing fits and CampaignError when a node has no price."""
    planned = place(expand(loaded.model), loaded.model.targets, nodes, loaded.limits.trials)
    placed = planned.trials
    prices = trial_prices(placed, loaded.model.prices)
    attempts: Attempts = {}
    left_failed: list[str] = []
    if resume is not None:
        assert store is not None, "a resume reads its attempts from the store"
        attempts = store.attempts(resume)
        left_failed = unplaceable_failures(store, resume, placed, attempts, nodes)
    return CampaignPlan(
        nodes=nodes,
        placed=placed,
        todo=in_climbing_order(not_done(placed, attempts)),
        optional_skipped=list(planned.skipped),
        left_failed=left_failed,
        attempts=attempts,
        prices=prices,
        currency=loaded.model.prices.currency if loaded.model.prices else "",
        resume=resume,
    )


def not_done(placed: list[PlacedTrial], attempts: Attempts) -> list[PlacedTrial]:
    """The trials whose key has no attempt yet, or whose latest attempt did not succeed (a
    step a ladder stopped below counts as done: the climb already ended)."""
    done = (TrialStatus.OK, TrialStatus.SKIPPED)
    return [p for p in placed if attempts.get(p.key, (0, ""))[1] not in done]


def unplaceable_failures(
    store: ResultStore,
    campaign_id: str,
    placed: list[PlacedTrial],
    attempts: Attempts,
    nodes: list[NodeInfo],
) -> list[str]:
    """Stored trials whose latest attempt failed and that the new plan does not hold."""
    keys = {p.key for p in placed}
    alive = {n.ray_node_id for n in nodes}
    missing = {
        k
        for k, (_, status) in attempts.items()
        if status not in (TrialStatus.OK, TrialStatus.SKIPPED) and k not in keys
    }
    return [
        ("its node is not in the cluster" if t.ray_node_id not in alive else "not in the plan")
        + f": {t.benchmark} on {t.hostname} ({t.ray_node_id[:8]}): {t.status}: {t.reason}"
        for t in store.latest_failures(campaign_id, missing)
    ]


def check_resume(
    store: ResultStore, resume: str, loaded: LoadedPlaybook, warner: Warner | None = None
) -> None:
    """Refuse a resume of an unknown campaign, of another playbook's, or of one whose driver
    is still beating; warn when the playbook changed. Cheap: call it before starting Ray."""
    campaign = store.get_campaign(resume)
    if campaign is None:
        raise CampaignError(f"no campaign {resume!r} in {store.describe()}")
    if campaign.name != loaded.model.campaign.name:
        raise CampaignError(
            f"campaign {resume!r} ran playbook {campaign.name!r}, "
            f"not {loaded.model.campaign.name!r}"
        )
    since = seconds_since_beat(campaign, datetime.now(timezone.utc))
    # A driver that ended while the store was down could not mark the campaign; its local
    # journal says it ended (or that its process is gone).
    journal = read_journal(journal_path(resume))
    ended_here = journal.pid is not None and not journal.driver_alive()
    if campaign.status == "running" and since is not None and not ended_here:
        wait = grace_s() - since
        if wait > 0:
            raise CampaignError(
                f"campaign {resume} is still running (driver on {campaign.driver_host}, "
                f"last heartbeat {since:.0f} s ago); if that driver is gone, resume in "
                f"{wait:.0f} s, once it counts as abandoned"
            )
    if warner and short_hash(campaign.effective) != short_hash(loaded.effective):
        warner.warn(
            f"the playbook differs from the one campaign {resume} started with; "
            "trials are matched by key (benchmark, workload, params, node)"
        )
