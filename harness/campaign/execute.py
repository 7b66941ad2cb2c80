"""Carrying out a campaign's plan: the campaign row opened (or resumed), nodes recorded, idle
power measured, trials dispatched over Ray, each outcome recorded as it arrives."""

from __future__ import annotations

import contextlib
import getpass
import secrets
import socket
from datetime import datetime, timezone
from typing import Protocol

from collectors.energy import energy_readings
from harness import __version__
from harness.campaign.dispatch import Dispatcher, idle_telemetry
from harness.campaign.ladder import Ladders
from harness.campaign.placement import PlacedTrial
from harness.campaign.plan import CampaignPlan
from harness.campaign.recording import node_record, trial_record
from harness.campaign.rounds import merge_rounds
from harness.campaign.store_writer import DEFAULT_STORE_RETRY_S, StoreWriter
from harness.campaign.verdict import CampaignResult
from harness.cluster.clocks import ClockReading
from harness.cluster.inventory import NodeInfo
from harness.errors import StoreOutageError
from harness.node.outcome import TrialOutcome
from harness.playbook.load import LoadedPlaybook
from results_db import (
    CampaignRecord,
    IdleBaselineRecord,
    ResultStore,
)
from results_db.vocabulary import TrialStatus


class Observer(Protocol):
    """What the CLI shows while a campaign runs."""

    def planned(self, campaign_id: str, trials: list[PlacedTrial], skipped: int) -> None: ...

    def started(self, trial: PlacedTrial) -> None: ...

    def finished(self, trial: PlacedTrial, outcome: TrialOutcome) -> None: ...

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


def new_campaign_id(name: str, now: datetime) -> str:
    """``name-YYYYmmdd-HHMMSS-xxxx``: sortable, readable, unique."""
    return f"{name}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def open_campaign(
    loaded: LoadedPlaybook, store: ResultStore, cluster: str, resume: str | None
) -> str:
    """The campaign's id: a new campaign row, or the resumed one marked running again."""
    if resume is not None:
        store.set_campaign_status(resume, "running")
        return resume
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
            cluster=cluster,
        )
    )
    return campaign_id


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


def execute(
    loaded: LoadedPlaybook,
    plan: CampaignPlan,
    store: ResultStore,
    cluster: str,
    observer: Observer,
    store_retry_s: float = DEFAULT_STORE_RETRY_S,
    clocks: dict[str, ClockReading] | None = None,
    confirm: bool = False,
) -> CampaignResult:
    """Run the plan's trials and store them; the result counts what each attempt came to.

    Every trial record is journaled before it is stored, and a store outage is retried for
    ``store_retry_s`` (StoreOutageError after, the campaign marked interrupted where the
    store allows and in the journal). The campaign is marked interrupted (Ctrl-C) or failed
    (anything else) before the exception goes on, completed otherwise. With ``confirm``,
    the trials whose figure `harness check` calls out are measured again at the end, each
    a new attempt marked ``confirmation``, which check weighs against the first reading."""
    campaign_id = open_campaign(loaded, store, cluster, plan.resume)
    writer = StoreWriter(store, campaign_id, store_retry_s, observer.warn)
    todo, attempts = plan.todo, plan.attempts
    prices, currency = plan.prices, plan.currency
    result = CampaignResult(plan, store, campaign_id)
    node_ids = record_nodes(store, campaign_id, plan.nodes)
    clocks = clocks or {}
    for node_id, clock in clocks.items():
        store.set_node_clock(campaign_id, node_id, "start", clock.offset_s, clock.rtt_s)

    observer.planned(campaign_id, todo, plan.already_done)
    idle: dict[str, dict[tuple[str, str], float]] = {}
    warned: set[tuple[str, str]] = set()

    # Trials measured in rounds (settings.rounds): the ok rounds so far, until the last.
    rounds_of: dict[str, list[TrialOutcome]] = {}
    dispatcher = Dispatcher(
        on_start=lambda t: None if t.key in rounds_of else observer.started(t),
        clock_offsets={node_id: c.offset_s for node_id, c in clocks.items()},
    )
    ladders = Ladders(todo)

    def done(trial: PlacedTrial, outcome: TrialOutcome) -> None:
        so_far = rounds_of.pop(trial.key, [])
        if outcome.status == TrialStatus.OK:
            if len(so_far) + 1 < rounds_wanted(trial):
                rounds_of[trial.key] = [*so_far, outcome]  # its next round comes later
                return
            outcome = merge_rounds([*so_far, outcome])
        record(trial, outcome)  # a failed round is the trial's outcome
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

    confirming: set[str] = set()

    def record(trial: PlacedTrial, outcome: TrialOutcome) -> None:
        attempt = attempts.get(trial.key, (0, ""))[0] + 1
        if trial.key in confirming:
            attempt += 1  # the first reading took the attempt before it
            outcome.context["confirmation"] = True
        writer.add(
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

    def stop(status: str) -> None:
        writer.close(status)
        if not writer.try_once(lambda: store.set_campaign_status(campaign_id, status)):
            observer.warn(
                f"the store cannot be written: campaign {campaign_id} is marked {status} in "
                f"its journal only, which a resume reads"
            )

    try:
        with store.heartbeat(campaign_id):
            idle.update(
                measure_idle_baselines(loaded, writer, campaign_id, todo, node_ids, observer)
            )
            run_in_rounds(dispatcher, todo, rounds_of)
            writer.flush()
            if confirm:
                again = out_of_bounds(store, campaign_id, todo)
                if again:
                    observer.info(
                        f"confirming {len(again)} figure(s) out of bounds: measured again"
                    )
                    confirming.update(t.key for t in again)
                    run_in_rounds(dispatcher, again, rounds_of)
                    writer.flush()
            writer.call(
                "the campaign's status", lambda: store.set_campaign_status(campaign_id, "completed")
            )
    except (KeyboardInterrupt, StoreOutageError):
        stop("interrupted")  # first: see Dispatcher.run
        with contextlib.suppress(Exception):  # a Ray going down with the job
            dispatcher.cancel_all()
        raise
    except BaseException:
        stop("failed")
        raise
    writer.close("completed")
    if loaded.model.campaign.calibrate:
        for c in writer.call("ceilings", lambda: store.update_ceilings(campaign_id)):
            observer.info(
                f"ceiling {c.key} for hardware class {c.hardware_class}: {c.value:.4g} {c.unit}"
            )
    return result


def rounds_wanted(trial: PlacedTrial) -> int:
    """How many rounds the trial is measured in (a ladder's steps: one, as its climb reads
    each step's figure at once)."""
    return 1 if trial.spec.ladder is not None else trial.spec.settings.rounds


def run_in_rounds(
    dispatcher: Dispatcher, trials: list[PlacedTrial], rounds_of: dict[str, list]
) -> None:
    """Round 1 of every trial, then round 2 of those that want more, and so on: each
    trial's rounds apart in time, other trials' rounds between them."""
    dispatcher.run(trials)
    while again := [t for t in trials if t.key in rounds_of]:
        dispatcher.run(again)


def out_of_bounds(
    store: ResultStore, campaign_id: str, ran: list[PlacedTrial]
) -> list[PlacedTrial]:
    """The trials of ``ran`` whose figure `harness check` (its defaults) calls out, to be
    measured again; ladder steps are not (a ladder's stop already read its figures)."""
    from results_db.baseline import check

    with store.session() as s:
        keys = {r["trial_key"] for r in check(s, campaign_id) if r["failed"]}
    return [t for t in ran if t.key in keys and t.spec.ladder is None]


def measure_idle_baselines(
    loaded: LoadedPlaybook,
    writer: StoreWriter,
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
    writer.call("idle power", lambda: writer.store.record_idle_baselines(rows))
    return idle


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
