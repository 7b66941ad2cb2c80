"""One campaign pipeline for `harness run` and its dry run: preflight, the store, the resume
check, Ray, the plan, then (unless a dry run) execution and the verdict.

The order matters and lives here only: what is cheap and can refuse comes first (an endpoint
not answering, an unknown campaign id) so that Ray never starts for nothing; the plan (and so
its price check) is made the same way for a dry run as for a run, so a dry run never shows a
plan that the run would refuse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.campaign.execute import Observer, execute
from harness.campaign.plan import check_resume, plan_campaign
from harness.campaign.secrets_rule import check_sent_secrets
from harness.campaign.store_writer import DEFAULT_STORE_RETRY_S
from harness.campaign.verdict import CampaignResult, judged_expectations
from harness.cluster.clocks import WARN_SKEW_S, ClockReading, skew_lines
from harness.cluster.inventory import NodeInfo
from harness.cluster.versions import driver_versions, version_skew
from harness.errors import CampaignError
from harness.playbook.load import LoadedPlaybook
from results_db.journal import journal_dir

if TYPE_CHECKING:
    from harness.campaign.plan import CampaignPlan
    from harness.cluster.session import ClusterSession
    from results_db.store import ResultStore


@dataclass(frozen=True)
class RunRequest:
    """How to run a loaded playbook (the command line's options, parsed)."""

    db_url: str
    address: str | None = None  # None: an embedded local Ray cluster
    resume: str | None = None  # a campaign id: run only its missing or failed trials
    dry_run: bool = False  # plan and show; store nothing, run nothing
    preflight: bool = True  # ask serving endpoints from here before anything starts
    store_retry_s: float = DEFAULT_STORE_RETRY_S  # how long a store outage is waited out
    allow_env: frozenset[str] = frozenset()  # variables allowed as keys beyond the rule
    allow_skew: bool = False  # run on nodes whose harness/Ray/Python differ from the driver's
    max_clock_skew_s: float | None = None  # refuse nodes whose clock is further off
    confirm: bool = False  # measure again, at the end, the trials whose figure is out
    min_nodes: int | None = None  # wait for this many Ray nodes before planning
    join_timeout_s: float = 300.0  # how long min_nodes waits


LAUNCH_ENV = "HARNESS_LAUNCH"  # set by what started the cluster: `harness slurm submit`'s job


def launched_by(cluster: str) -> str:
    """The cluster as stored with the campaign, with the scheduler's job that made it (its
    id and kept script), so a campaign leads back to its job."""
    import os

    launch = os.environ.get(LAUNCH_ENV, "").strip()
    return f"{cluster} ({launch})" if launch else cluster


def run_playbook(loaded: LoadedPlaybook, request: RunRequest, observer: Observer) -> CampaignResult:
    """Plan a playbook's campaign on the cluster and, unless it is a dry run, run and judge it.

    Raises the one-line errors of bad input (PlaybookError's kin) before anything is stored;
    KeyboardInterrupt after the campaign has been marked interrupted."""
    import results_db as db_api
    from harness.cluster.session import ClusterSession
    from results_db.replay import replay_campaign

    # Which variable goes to which endpoint: refused before anything is sent.
    secrets = check_sent_secrets(loaded, request.allow_env)
    if request.preflight and not request.dry_run:
        from harness.campaign.preflight import preflight

        preflight(loaded)  # before anything is stored or sent
    for name, where in secrets:
        observer.info(f"sends ${name} (if set) as the API key to {where}")
    store = None
    if not request.dry_run:
        check_journal_folder()  # a campaign's records go there first: writable, or one line
        store = db_api.ResultStore(request.db_url)
    elif request.resume is not None:  # a dry run reads which trials are done; it writes nothing
        store = db_api.ResultStore(request.db_url, upgrade=False)
    if request.resume is not None:
        assert store is not None
        if not request.dry_run:  # trials an outage kept in the journal go in first
            replayed = replay_campaign(store, request.resume)
            if replayed is not None and replayed.written:
                observer.info(
                    f"stored {replayed.written} trial(s) of {request.resume} from its journal"
                )
        check_resume(store, request.resume, loaded, observer)  # before Ray: instant
    address = request.address or loaded.model.cluster.address
    with ClusterSession(address) as session:
        if request.min_nodes:
            session.wait_for_nodes(request.min_nodes, request.join_timeout_s)
        inventory = session.inventory()
        check_versions(inventory, request.allow_skew, observer)
        clocks = session.clock_offsets(inventory)
        check_clocks(inventory, clocks, request.max_clock_skew_s, observer)
        plan = plan_campaign(loaded, inventory, store, request.resume)
        check_reach(session, plan, request.allow_skew, observer)
        for line in plan.optional_skipped:
            observer.warn(f"optional benchmark skipped: {line}")
        for line in plan.left_failed:
            observer.warn(f"stays failed, {line}")
        if request.dry_run:
            return CampaignResult(plan, store, dry_run=True)
        assert store is not None
        result = execute(
            loaded,
            plan,
            store,
            launched_by(session.description),
            observer,
            request.store_retry_s,
            clocks,
            request.confirm,
        )
        record_end_clocks(store, result.campaign_id, session.clock_offsets(plan.nodes), observer)
    with store.session() as s:
        result.expectations = judged_expectations(s, result.campaign_id)
    return result


def check_versions(nodes: list[NodeInfo], allow_skew: bool, observer: Observer) -> None:
    """Refuse nodes whose harness, Ray or Python differ from the driver's (one line each,
    CampaignError), unless ``allow_skew``; warn of mixed versions within a hardware class."""
    refused, mixed = version_skew(nodes, driver_versions())
    if refused and not allow_skew:
        raise CampaignError(
            "\n".join([*refused, "install the driver's versions there, or --allow-skew"])
        )
    for line in refused:
        observer.warn(f"--allow-skew: {line}")
    for line in mixed:
        observer.warn(line)


def check_reach(
    session: ClusterSession, plan: CampaignPlan, allow_skew: bool, observer: Observer
) -> None:
    """Refuse (CampaignError, one line per pair) nodes of multi-rank trials on different
    hosts that cannot open a TCP connection to each other's free ports, unless
    ``allow_skew``: every such trial between them would fail at its rendezvous."""
    spanning = {
        n.ray_node_id: n
        for t in plan.todo
        if len({r.address for r in t.ranks}) > 1
        for n in t.ranks
    }
    lines = session.unreachable(list(spanning.values())) if spanning else []
    if lines and not allow_skew:
        raise CampaignError(
            "\n".join([*lines, "open TCP between the hosts (or --allow-skew to run anyway)"])
        )
    for line in lines:
        observer.warn(f"--allow-skew: {line}")


def check_clocks(
    nodes: list[NodeInfo],
    clocks: dict[str, ClockReading],
    max_skew_s: float | None,
    observer: Observer,
) -> None:
    """Warn of nodes whose clock is off by more than WARN_SKEW_S (their trials' times are
    corrected by it); with ``max_skew_s``, refuse those past it (CampaignError)."""
    names = {n.ray_node_id: f"{n.hostname} ({n.short_id})" for n in nodes}
    if max_skew_s is not None:
        refused = skew_lines(names, clocks, max_skew_s)
        if refused:
            raise CampaignError("\n".join([*refused, f"over --max-clock-skew {max_skew_s:g} s"]))
    for line in skew_lines(names, clocks, WARN_SKEW_S):
        observer.warn(f"{line}; its trials' times are corrected by it")


def record_end_clocks(
    store: ResultStore, campaign_id: str, clocks: dict[str, ClockReading], observer: Observer
) -> None:
    """Store the offsets read at the campaign's end (a drift shows against its start); the
    campaign is complete already, so a store that fails here is a warning."""
    from results_db.store import failure_line, is_outage

    try:
        for node_id, clock in clocks.items():
            store.set_node_clock(campaign_id, node_id, "end", clock.offset_s, clock.rtt_s)
    except Exception as exc:
        if not is_outage(exc):
            raise
        observer.warn(f"clock offsets at the end not stored: {failure_line(exc)}")


def check_journal_folder() -> None:
    """The campaign journal's folder exists and is writable (CampaignError otherwise)."""
    folder = journal_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CampaignError(
            f"cannot write the campaign journal folder {folder}: {exc.strerror or exc} "
            "(set HARNESS_STATE_DIR to a writable folder)"
        ) from None
