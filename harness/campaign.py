"""A campaign from playbook to stored rows: expand, inventory, place, dispatch, record."""

from __future__ import annotations

import getpass
import secrets
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from collectors.energy import energy_readings
from harness import __version__
from harness.cluster import ClusterSession, NodeInfo
from harness.dispatch import Dispatcher, idle_telemetry
from harness.errors import CampaignError as CampaignError
from harness.expand import expand
from harness.ladder import Ladders, in_climbing_order
from harness.placement import PlacedTrial, Plan, place
from harness.playbook import LoadedPlaybook, short_hash
from harness.pricing import trial_prices
from harness.recording import node_record, trial_record
from harness.runner import TrialOutcome
from results_db import (
    CampaignRecord,
    IdleBaselineRecord,
    ResultStore,
)
from results_db.heartbeat import grace_s, seconds_since_beat
from results_db.vocabulary import TrialStatus


class Observer(Protocol):
    """What the CLI shows while a campaign runs."""

    def planned(self, campaign_id: str, trials: list[PlacedTrial], skipped: int) -> None: ...

    def started(self, trial: PlacedTrial) -> None: ...

    def finished(self, trial: PlacedTrial, outcome: TrialOutcome) -> None: ...

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class CampaignResult:
    campaign_id: str
    ran: int = 0
    skipped: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Resume only: earlier failed trials this plan does not hold (their node left, or the
    # playbook changed), one line each with why. They keep the campaign failed.
    left_failed: list[str] = field(default_factory=list)


def unplaceable_failures(
    store: ResultStore,
    campaign_id: str,
    placed: list[PlacedTrial],
    attempts: dict[str, tuple[int, str]],
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


def new_campaign_id(name: str, now: datetime) -> str:
    """``name-YYYYmmdd-HHMMSS-xxxx``: sortable, readable, unique."""
    return f"{name}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def not_done(placed: list[PlacedTrial], attempts: dict[str, tuple[int, str]]) -> list[PlacedTrial]:
    """The trials whose key has no attempt yet, or whose latest attempt did not succeed (a
    step a ladder stopped below counts as done: the climb already ended)."""
    done = (TrialStatus.OK, TrialStatus.SKIPPED)
    return [p for p in placed if attempts.get(p.key, (0, ""))[1] not in done]


def check_resume(
    store: ResultStore, resume: str, loaded: LoadedPlaybook, observer: Observer | None = None
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
    if campaign.status == "running" and since is not None:
        wait = grace_s() - since
        if wait > 0:
            raise CampaignError(
                f"campaign {resume} is still running (driver on {campaign.driver_host}, "
                f"last heartbeat {since:.0f} s ago); if that driver is gone, resume in "
                f"{wait:.0f} s, once it counts as abandoned"
            )
    if observer and short_hash(campaign.effective) != short_hash(loaded.effective):
        observer.warn(
            f"the playbook differs from the one campaign {resume} started with; "
            "trials are matched by key (benchmark, workload, params, node)"
        )


def plan(loaded: LoadedPlaybook, nodes: list[NodeInfo]) -> Plan:
    """Expanded and placed trials of a playbook on these nodes (PlacementError if none fit)."""
    return place(expand(loaded.model), loaded.model.targets, nodes, loaded.limits.trials)


def open_campaign(
    loaded: LoadedPlaybook, store: ResultStore, session: ClusterSession, resume: str | None
) -> tuple[str, dict[str, tuple[int, str]]]:
    """The campaign's id and the attempts already stored: a new campaign row, or the resumed
    one marked running again."""
    if resume is not None:
        store.set_campaign_status(resume, "running")
        return resume, store.attempts(resume)
    now = datetime.now(timezone.utc)
    campaign_id = new_campaign_id(loaded.model.campaign.name, now)
    store.start_campaign(
        CampaignRecord(
            id=campaign_id,
            name=loaded.model.campaign.name,
            description=loaded.model.campaign.description,
            playbook_path=loaded.path,
            playbook_text=loaded.text,
            playbook_hash=loaded.text_hash,
            effective=loaded.effective,
            created_at=now,
            harness_version=__version__,
            user=_user(),
            driver_host=socket.gethostname(),
            cluster=session.description,
        )
    )
    return campaign_id, {}


def record_nodes(store: ResultStore, campaign_id: str, nodes: list[NodeInfo]) -> dict[str, int]:
    """Store each node (one row per fingerprint) and how the cluster presented it to this
    campaign; {Ray node id: node row id}."""
    node_ids: dict[str, int] = {}
    for node in nodes:
        node_ids[node.ray_node_id] = store.upsert_node(node_record(node))
        store.link_node(
            campaign_id, node.ray_node_id, node_ids[node.ray_node_id], node.labels, node.resources
        )
    return node_ids


def run_campaign(
    loaded: LoadedPlaybook,
    store: ResultStore,
    session: ClusterSession,
    observer: Observer,
    resume: str | None = None,
) -> CampaignResult:
    """Run a playbook's trials (only missing or failed ones when resuming) and store them."""
    if resume is not None:
        check_resume(store, resume, loaded, observer)
    nodes = session.inventory()
    planned = plan(loaded, nodes)
    for line in planned.skipped:
        observer.warn(f"optional benchmark skipped: {line}")
    placed = planned.trials

    prices = trial_prices(placed, loaded.model.prices)  # a node without a price: stop here
    currency = loaded.model.prices.currency if loaded.model.prices else ""
    campaign_id, attempts = open_campaign(loaded, store, session, resume)
    todo = in_climbing_order(not_done(placed, attempts))
    result = CampaignResult(campaign_id, skipped=len(placed) - len(todo))
    if resume is not None:
        result.left_failed = unplaceable_failures(store, campaign_id, placed, attempts, nodes)

    node_ids = record_nodes(store, campaign_id, nodes)

    observer.planned(campaign_id, todo, result.skipped)
    for line in result.left_failed:
        observer.warn(f"stays failed, {line}")
    idle: dict[str, dict[tuple[str, str], float]] = {}
    warned: set[tuple[str, str]] = set()

    dispatcher = Dispatcher(on_start=observer.started)
    ladders = Ladders(todo)

    def done(trial: PlacedTrial, outcome: TrialOutcome) -> None:
        record(trial, outcome)
        above, reason = ladders.after(trial, outcome)
        taken = dispatcher.drop(above)
        if taken:
            where = f"{trial.node.hostname} ({trial.node.short_id})"
            observer.info(
                f"ladder {trial.spec.benchmark} on {where} stopped: {reason}; "
                f"{len(taken)} higher step(s) not run"
            )
        for t in taken:
            record(t, TrialOutcome.not_run(TrialStatus.SKIPPED, "ladder", f"not run: {reason}"))

    dispatcher.on_done = done

    def record(trial: PlacedTrial, outcome: TrialOutcome) -> None:
        attempt = attempts.get(trial.key, (0, ""))[0] + 1
        store.record_trial(
            trial_record(
                campaign_id,
                trial,
                outcome,
                node_ids[trial.node.ray_node_id],
                attempt,
                idle.get(trial.node.ray_node_id),
                (prices[trial.key], currency) if trial.key in prices else None,
            )
        )
        result.ran += 1
        result.counts[TrialStatus(outcome.status).value] += 1
        for s in outcome.sources:
            if not s.available and (trial.node.ray_node_id, s.source) not in warned:
                warned.add((trial.node.ray_node_id, s.source))
                observer.warn(
                    f"telemetry source {s.source} unavailable on {trial.node.hostname} "
                    f"({trial.node.short_id}): {s.reason}"
                )
        observer.finished(trial, outcome)

    try:
        with store.heartbeat(campaign_id):
            idle.update(
                measure_idle_baselines(loaded, store, campaign_id, todo, node_ids, observer)
            )
            dispatcher.run(todo)
    except KeyboardInterrupt:
        store.set_campaign_status(campaign_id, "interrupted")
        raise
    except BaseException:
        store.set_campaign_status(campaign_id, "failed")
        raise
    store.set_campaign_status(campaign_id, "completed")
    if loaded.model.campaign.calibrate:
        for c in store.update_ceilings(campaign_id):
            observer.info(
                f"ceiling {c.key} for hardware class {c.hardware_class}: {c.value:.4g} {c.unit}"
            )
    return result


def measure_idle_baselines(
    loaded: LoadedPlaybook,
    store: ResultStore,
    campaign_id: str,
    todo: list[PlacedTrial],
    node_ids: dict[str, int],
    observer: Observer,
) -> dict[str, dict[tuple[str, str], float]]:
    """Idle power per (source, device) of each node that has trials, when the playbook asks."""
    telemetry = loaded.model.defaults.telemetry
    nodes = list({t.node.ray_node_id: t.node for t in todo}.values())
    if telemetry.idle_baseline_s <= 0 or not nodes:
        return {}
    observer.info(
        f"measuring idle power on {len(nodes)} node(s) for {telemetry.idle_baseline_s:g} s"
    )
    samples = idle_telemetry(
        nodes, telemetry.sources, telemetry.interval_s, telemetry.idle_baseline_s
    )
    now = datetime.now(timezone.utc)
    rows, idle = [], {}
    for node_id, node_samples in samples.items():
        for r in energy_readings(node_samples, telemetry.interval_s):
            rows.append(
                IdleBaselineRecord(
                    campaign_id,
                    node_id,
                    node_ids.get(node_id),
                    r.source,
                    r.device,
                    r.method,
                    r.duration_s,
                    r.avg_power_w,
                    r.flag,
                    now,
                )
            )
            if r.avg_power_w is not None:
                idle.setdefault(node_id, {})[(r.source, r.device)] = r.avg_power_w
    store.record_idle_baselines(rows)
    return idle


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
