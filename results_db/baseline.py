"""Is this number normal? References from the store's own history, and verdicts against them.

A reference is the robust centre (median of trial medians) and spread (scaled MAD) of one
benchmark's primary metric on one hardware class and workload version, with the count of
trials behind it. `check` judges each trial of a campaign against
- its class: the pinned baseline when one is named, else every other trial of the same
  class and key (earlier campaigns, and this campaign's other nodes, so a fleet with no
  history still finds its one slow node), and
- its node's own history (the same machine, by fingerprint, in other campaigns); for a
  per-GPU trial, that GPU's own history (by UUID).
A trial is out when it is further from the centre than ``k`` spreads and at least
``tolerance_pct`` of the centre (the floor keeps a tight, small history from calling noise
a fault); ``k`` widens with the number of trials judged, so a whole campaign's check has
at most a 5% chance of one false alarm (3 spreads for a few trials, 4.6 for 10,000).
Trials flagged noisy (their CI target not reached), contended (other processes used the
CPU during their window), client_bound (a load generator that measured itself),
cpu_throttled (held by their cgroup's quota) or retransmits (a lossy link) are never
references and never failures: out of bounds, they are ``unreliable``. Cross-host trials of
3 hosts or more are judged host by host (``judge_hosts``); a figure measured again in its
campaign is weighed with its first reading (``transient`` when only the first was out).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from results_db.errors import QueryError
from results_db.models import Baseline, BaselineEntry, Campaign, Metric, Node, Trial
from results_db.query import add_node_labels, latest_trials
from results_db.vocabulary import TrialStatus

MAD_SCALE = 1.4826  # MAD x this estimates sigma for normal data
K_SPREADS = 3.0  # out beyond 3 scaled MADs (a Shewhart control limit)
TOLERANCE_PCT = 5.0  # ... and beyond 5% of the centre
MIN_REFERENCE_TRIALS = 2
# A host is named slow when its best cross-host figure is this far off the other hosts'
# bests at least (a pair's figure jitters more than one node's: two CPUs and a link).
HOST_TOLERANCE_PCT = 20.0
FAMILY_ALPHA = 0.05  # chance of one false alarm in a whole campaign's check, all trials
# Past this many trials in a reference, leaving the judged trial out moves its median by
# less than one order statistic: the whole key's reference is computed once.
LEAVE_ONE_OUT_BELOW = 64

# Verdicts
PASS, LOW, HIGH, NO_BASELINE = "pass", "low", "high", "no baseline"
UNRELIABLE = "unreliable"  # out of bounds, but measured noisy or beside other load
# Out at first, in bounds when measured again: not a verdict on the node (exit 0 unless
# --strict).
TRANSIENT = "transient"
FAILING = (LOW, HIGH)
# How an out figure was confirmed: measured again later in its campaign, or out the same way
# in the node's previous campaign; or not at all.
REMEASURED, PERSISTS, UNCONFIRMED = "re-measured", "persists", "unconfirmed"
# Trial context flags that make a figure unreliable: never a reference, never a failure.
UNRELIABLE_FLAGS = ("noisy", "contended", "client_bound", "cpu_throttled", "retransmits")

# (hardware class, workload, params hash, metric, workload version)
Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Reference:
    """A robust centre and spread of trial medians, and how many trials they come from."""

    centre: float
    spread: float
    trials: int

    @classmethod
    def of(cls, medians: Iterable[float]) -> Reference | None:
        values = list(medians)
        if len(values) < MIN_REFERENCE_TRIALS:
            return None
        centre = statistics.median(values)
        mad = statistics.median(abs(v - centre) for v in values)
        return cls(centre, MAD_SCALE * mad, len(values))


@dataclass
class Judged:
    """One trial's figure against one reference."""

    verdict: str
    reference: Reference | None = None
    off_pct: float | None = None  # (value - centre) / centre, in percent
    off_spreads: float | None = None  # (value - centre) / spread; None when spread is 0


@dataclass
class TrialFigure:
    """A latest ok trial's primary figure, with where and how it was measured."""

    trial: int
    campaign: str
    benchmark: str
    workload: str
    params: dict[str, Any]
    params_hash: str
    workload_version: str
    metric: str
    unit: str
    higher_is_better: bool
    value: float
    hardware_class: str
    node_row: int | None  # the machine (nodes.id: one per fingerprint), across campaigns
    ray_node_id: str
    hostname: str
    ranks: list[dict[str, Any]] | None = None
    started_at: datetime | None = None
    flags: tuple[str, ...] = ()  # of UNRELIABLE_FLAGS, from the trial's context
    gpu: int | None = None  # per-GPU trials: position on the node, a pair's destination
    gpu_peer: int | None = None
    gpu_uuid: str | None = None
    trial_key: str = ""
    attempt: int = 1
    confirmation: bool = False  # a figure measured again because the first was out
    # Measured in rounds: the median's CI over the round medians (None for one round).
    rounds_ci: tuple[float, float] | None = None

    @property
    def machine(self) -> tuple[int | None, str | int | None, int | None]:
        """Whose own history the figure is judged against: the node, and on it the GPU (by
        UUID where known, so the history follows the GPU) and a pair's destination."""
        return (self.node_row, self.gpu_uuid or self.gpu, self.gpu_peer)

    @property
    def hosts(self) -> frozenset[str]:
        """The hosts a multi-rank trial's ranks ran on (its one host otherwise)."""
        if self.ranks:
            return frozenset(r.get("hostname", "") for r in self.ranks)
        return frozenset({self.hostname})

    @property
    def key(self) -> Key:
        return (
            self.hardware_class,
            self.workload,
            self.params_hash,
            self.metric,
            self.workload_version,
        )


def family_k(k: float, judged: int, alpha: float = FAMILY_ALPHA) -> float:
    """``k``, widened so that judging ``judged`` trials raises a false alarm with chance
    ``alpha`` at most (Bonferroni, normal tails): 3 for a few trials, 4.6 for 10,000.
    Without it a large fleet's check would flag a handful of healthy nodes by chance."""
    from scipy.special import ndtri

    if judged <= 1:
        return k
    return max(k, float(ndtri(1.0 - alpha / (2.0 * judged))))


def judge(value: float, ref: Reference | None, k: float, tolerance_pct: float) -> Judged:
    """pass, low or high against ``ref`` (no baseline without one)."""
    if ref is None:
        return Judged(NO_BASELINE)
    off = value - ref.centre
    pct = 100.0 * off / ref.centre if ref.centre else None
    spreads = off / ref.spread if ref.spread > 0 else None
    limit = max(k * ref.spread, tolerance_pct / 100.0 * abs(ref.centre))
    verdict = PASS if abs(off) <= limit else (HIGH if off > 0 else LOW)
    return Judged(verdict, ref, pct, spreads)


def figures(
    session: Session,
    *,
    campaigns: Iterable[str] | None = None,
    since: datetime | None = None,
    keys: set[tuple[str, str]] | None = None,
    every_attempt: bool = False,
) -> list[TrialFigure]:
    """Latest ok trials' primary-metric medians (every metric of trials stored before
    workloads declared a primary one), optionally of some campaigns, since a time, or of
    some (workload, params hash) keys; with ``every_attempt``, every ok attempt's."""
    t = (select(Trial) if every_attempt else latest_trials()).subquery()
    q = (
        select(
            t.c.id,
            t.c.campaign_id,
            t.c.benchmark,
            t.c.workload,
            t.c.params,
            t.c.params_hash,
            t.c.workload_version,
            t.c.ray_node_id,
            t.c.ranks,
            t.c.started_at,
            t.c.context,
            t.c.node_id,
            t.c.gpu_index,
            t.c.gpu_peer,
            t.c.gpu_uuid,
            t.c.trial_key,
            t.c.attempt,
            Node.hostname,
            Node.hardware_class,
            Metric.name,
            Metric.unit,
            Metric.higher_is_better,
            Metric.median,
            Metric.ci_low,
            Metric.ci_high,
        )
        .join(Metric, Metric.trial_id == t.c.id)
        .outerjoin(Node, Node.id == t.c.node_id)
        .where(
            t.c.status == TrialStatus.OK.value,
            Metric.median.is_not(None),
            Metric.name.not_like("rank_time.%"),
            or_(
                Metric.name == t.c.primary_metric,
                t.c.primary_metric == "",
                t.c.primary_metric.is_(None),
            ),
        )
    )
    if campaigns is not None:
        q = q.where(t.c.campaign_id.in_(list(campaigns)))
    if since is not None:
        q = q.where(t.c.started_at >= since)
    out = []
    for r in session.execute(q):
        if keys is not None and (r.workload, r.params_hash) not in keys:
            continue
        out.append(
            TrialFigure(
                trial=r.id,
                campaign=r.campaign_id,
                benchmark=r.benchmark,
                workload=r.workload,
                params=r.params,
                params_hash=r.params_hash,
                workload_version=r.workload_version or "",
                metric=r.name,
                unit=r.unit,
                higher_is_better=r.higher_is_better,
                value=r.median,
                hardware_class=r.hardware_class or "",
                node_row=r.node_id,
                ray_node_id=r.ray_node_id,
                hostname=r.hostname or "",
                ranks=r.ranks,
                started_at=r.started_at,
                flags=tuple(f for f in UNRELIABLE_FLAGS if (r.context or {}).get(f)),
                gpu=r.gpu_index,
                gpu_peer=r.gpu_peer,
                gpu_uuid=r.gpu_uuid,
                trial_key=r.trial_key,
                attempt=r.attempt,
                confirmation=bool((r.context or {}).get("confirmation")),
                rounds_ci=(
                    (r.ci_low, r.ci_high)
                    if (r.context or {}).get("rounds", 1) > 1 and r.ci_low is not None
                    else None
                ),
            )
        )
    return out


@dataclass
class HostJudgement:
    """The hosts of one key's cross-host trials (every pair of `network.p2p`, say), each by
    its best trial: a host whose every link is slow has a slow best, a healthy host has one
    fast link at least."""

    best: dict[str, float]  # host -> its best trial's figure
    judged: dict[str, Judged]  # host -> its best against the hosts' median best
    reference: Reference  # the hosts' median best, the pairs' spread

    @property
    def slow(self) -> set[str]:
        return {h for h, j in self.judged.items() if j.verdict in FAILING}


def judge_hosts(
    figs: Iterable[TrialFigure], k: float, tolerance_pct: float
) -> dict[Key, HostJudgement]:
    """For each key with unflagged cross-host trials over 3 hosts or more: every host's best
    figure, judged against the hosts' median best. A pair's figure is set by its slower end,
    so judging each trial against its key's trials would call a healthy pair out when most
    pairs touch one slow host; a host's best is its own link (two hosts cannot be told
    apart by their one pair, hence the 3)."""
    by_key: dict[Key, list[TrialFigure]] = defaultdict(list)
    for f in figs:
        if len(f.hosts) > 1 and not f.flags:
            by_key[f.key].append(f)
    out = {}
    for key, fs in by_key.items():
        better = max if fs[0].higher_is_better else min
        best: dict[str, float] = {}
        for f in fs:
            for host in f.hosts:
                best[host] = better(best.get(host, f.value), f.value)
        if len(best) < 3:
            continue
        # The centre is the hosts' median best (most hosts are healthy); the noise is the
        # spread of the key's pairs, not of the hosts' bests (two hosts share their pair's
        # figure); pairs jitter more than one node's figures, hence the wider floor. Only
        # a worse best names a host: one fast link is no fault.
        centre = statistics.median(best.values())
        noise = Reference.of(f.value for f in fs)
        ref = Reference(centre, noise.spread if noise else 0.0, len(best))
        worse = LOW if fs[0].higher_is_better else HIGH
        judged = {}
        for host, value in best.items():
            j = judge(value, ref, k, max(tolerance_pct, HOST_TOLERANCE_PCT))
            if j.verdict in FAILING and j.verdict != worse:
                j.verdict = PASS
            judged[host] = j
        out[key] = HostJudgement(best, judged, ref)
    return out


def build_references(figs: Iterable[TrialFigure]) -> dict[Key, tuple[Reference, str]]:
    """Per key, the reference of its trials' medians and the unit."""
    groups: dict[Key, list[TrialFigure]] = defaultdict(list)
    for f in figs:
        if not f.flags:
            groups[f.key].append(f)
    out = {}
    for key, fs in groups.items():
        ref = Reference.of(f.value for f in fs)
        if ref is not None:
            out[key] = (ref, fs[0].unit)
    return out


def pin_baseline(
    session: Session,
    name: str,
    *,
    since: datetime | None = None,
    campaigns: list[str] | None = None,
) -> tuple[int, int]:
    """Store the references the history gives now under ``name`` (replacing an older one
    of that name): (entries, trials behind them)."""
    for cid in campaigns or []:
        if session.get(Campaign, cid) is None:
            raise QueryError(f"no campaign {cid!r} in the store")
    figs = figures(session, campaigns=campaigns, since=since)
    refs = build_references(figs)
    if not refs:
        raise QueryError("no benchmark has 2 or more ok trials to build a baseline from")
    old = session.scalars(select(Baseline).where(Baseline.name == name)).one_or_none()
    if old is not None:
        session.delete(old)
        session.flush()
    baseline = Baseline(
        name=name,
        created_at=datetime.now(timezone.utc),
        source={
            "since": since.isoformat() if since else None,
            "campaigns": campaigns or None,
            "trials": len(figs),
        },
    )
    for (hw, workload, params_hash, metric, version), (ref, unit) in refs.items():
        baseline.entries.append(
            BaselineEntry(
                hardware_class=hw,
                workload=workload,
                params_hash=params_hash,
                metric=metric,
                workload_version=version,
                unit=unit,
                centre=ref.centre,
                spread=ref.spread,
                trials=ref.trials,
            )
        )
    session.add(baseline)
    session.commit()
    return len(refs), sum(ref.trials for ref, _ in refs.values())


def list_baselines(session: Session) -> list[dict[str, Any]]:
    """Every pinned baseline, newest first, with its entry count."""
    counts = dict(
        session.execute(
            select(BaselineEntry.baseline_id, func.count()).group_by(BaselineEntry.baseline_id)
        ).all()
    )
    return [
        {
            "name": b.name,
            "created_at": b.created_at.isoformat() if b.created_at else None,
            "entries": counts.get(b.id, 0),
            "trials": (b.source or {}).get("trials"),
            "since": (b.source or {}).get("since"),
            "campaigns": (b.source or {}).get("campaigns"),
        }
        for b in session.scalars(select(Baseline).order_by(Baseline.created_at.desc()))
    ]


def _pinned(session: Session, name: str) -> dict[Key, Reference]:
    baseline = session.scalars(select(Baseline).where(Baseline.name == name)).one_or_none()
    if baseline is None:
        known = ", ".join(session.scalars(select(Baseline.name))) or "none"
        raise QueryError(f"no baseline {name!r} (pinned: {known})")
    return {
        (e.hardware_class, e.workload, e.params_hash, e.metric, e.workload_version): Reference(
            e.centre, e.spread, e.trials
        )
        for e in baseline.entries
    }


def check(
    session: Session,
    campaign: str,
    *,
    baseline: str | None = None,
    k: float = K_SPREADS,
    tolerance_pct: float = TOLERANCE_PCT,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Each latest ok trial of ``campaign`` judged against its class and its node's history:
    one record per trial, worst first (failing verdicts, then the furthest off).

    An out figure is a verdict on its node when it was confirmed: measured again later in
    the campaign (``harness run --confirm``) and out the same way again, or out the same way
    in the node's previous campaign. One measured again in bounds is ``transient``: shown,
    failing only with ``strict``. One never measured again stays low/high, ``unconfirmed``.
    """
    if session.get(Campaign, campaign) is None:
        raise QueryError(f"no campaign {campaign!r} in the store")
    mine = figures(session, campaigns=[campaign])
    firsts = first_readings(session, campaign, mine)
    keys = {(f.workload, f.params_hash) for f in mine}
    history = [f for f in figures(session, keys=keys) if f.campaign != campaign and not f.flags]
    pinned = _pinned(session, baseline) if baseline else None
    k = family_k(k, len(mine))
    hosts = judge_hosts(mine, k, tolerance_pct)

    def through_slow_host(f: TrialFigure) -> set[str]:
        return f.hosts & hosts[f.key].slow if f.key in hosts else set()

    by_key: dict[Key, list[TrialFigure]] = defaultdict(list)
    for f in history + [m for m in mine if not m.flags]:
        by_key[f.key].append(f)
    history_of: dict[Key, list[TrialFigure]] = defaultdict(list)
    node_history: dict[tuple[Key, tuple], list[TrialFigure]] = defaultdict(list)
    for f in history:
        history_of[f.key].append(f)
        node_history[(f.key, f.machine)].append(f)
    whole = {
        key: Reference.of(o.value for o in fs)
        for key, fs in by_key.items()
        if len(fs) >= LEAVE_ONE_OUT_BELOW
    }
    records = []
    for f in mine:
        if pinned is not None:
            class_ref = pinned.get(f.key)
        elif f.key in whole:
            class_ref = whole[f.key]
        else:  # every other trial of the class: history, and this campaign's other nodes
            class_ref = Reference.of(o.value for o in by_key[f.key] if o.trial != f.trial)
        slow = sorted(through_slow_host(f))
        if slow and not f.flags:  # the slow host's verdict is the trial's
            on_class = hosts[f.key].judged[slow[0]]
        elif f.key in hosts and pinned is None:
            # Within the campaign, cross-host trials are compared host by host (above); a
            # healthy pair is judged against earlier campaigns' trials only.
            past = Reference.of(o.value for o in history_of.get(f.key, ()))
            if past is None:
                on_class = Judged(PASS, hosts[f.key].reference)
            else:
                on_class = judge(f.value, past, k, tolerance_pct)
        else:
            on_class = judge(f.value, class_ref, k, tolerance_pct)
        node_ref = Reference.of(o.value for o in node_history[(f.key, f.machine)])
        on_node = judge(f.value, node_ref, k, tolerance_pct)
        if f.rounds_ci is not None:  # rounds on both sides of a centre: not out
            on_class, on_node = _within_rounds(on_class, f), _within_rounds(on_node, f)
        record = {**_record(f, on_class, on_node, k), "slow_hosts": slow}
        first = firsts.get(f.trial_key)
        if first is not None:  # this figure confirms (or not) an earlier out one
            _confirm(record, first, class_ref if not slow else on_class.reference, node_ref,
                     k, tolerance_pct, strict)  # fmt: skip
        elif record["failed"]:
            before = _previous(node_history[(f.key, f.machine)], f)
            again = before is not None and _side(
                judge(before.value, class_ref, k, tolerance_pct).verdict,
                judge(before.value, node_ref, k, tolerance_pct).verdict,
            ) == _side(record["verdict"], record["node_verdict"])
            record["confirmation"] = PERSISTS if again else UNCONFIRMED
            if again:
                record["confirmed_by"] = {"campaign": before.campaign, "value": before.value}
        records.append(record)
    add_node_labels(records)
    records.sort(key=_severity)
    return records


def first_readings(
    session: Session, campaign: str, latest: list[TrialFigure]
) -> dict[str, TrialFigure]:
    """For each latest figure that is a confirmation, the reading it was taken to confirm:
    the key's latest earlier ok attempt that was not one (by trial key)."""
    wanted = {f.trial_key: f.attempt for f in latest if f.confirmation}
    if not wanted:
        return {}
    out: dict[str, TrialFigure] = {}
    for f in figures(session, campaigns=[campaign], every_attempt=True):
        if f.trial_key not in wanted or f.attempt >= wanted[f.trial_key] or f.confirmation:
            continue
        kept = out.get(f.trial_key)
        if kept is None or f.attempt > kept.attempt:
            out[f.trial_key] = f
    return out


def _previous(figs: list[TrialFigure], f: TrialFigure) -> TrialFigure | None:
    """The latest of ``figs`` started before ``f`` (the node's previous reading of it)."""
    if f.started_at is None:
        return None
    before = [o for o in figs if o.started_at is not None and o.started_at < f.started_at]
    return max(before, key=lambda o: o.started_at, default=None)


def _within_rounds(j: Judged, f: TrialFigure) -> Judged:
    """An out verdict taken back when the figure's rounds straddle the reference's centre
    (its CI over the round medians holds it): the rounds do not agree that it is out."""
    if j.verdict in FAILING and j.reference is not None and f.rounds_ci is not None:
        low, high = f.rounds_ci
        if low <= j.reference.centre <= high:
            return Judged(PASS, j.reference, j.off_pct, j.off_spreads)
    return j


def _confirm(
    record: dict[str, Any],
    first: TrialFigure,
    class_ref: Reference | None,
    node_ref: Reference | None,
    k: float,
    tolerance_pct: float,
    strict: bool,
) -> None:
    """Judge the first reading beside its confirmation: out both times on the same side, the
    verdict stands (re-measured); out at first and in bounds, or out on the other side,
    after: it does not repeat, ``transient``."""
    was = _side(judge(first.value, class_ref, k, tolerance_pct).verdict,
                judge(first.value, node_ref, k, tolerance_pct).verdict)  # fmt: skip
    now = _side(record["verdict"], record["node_verdict"])
    record["first_value"] = first.value
    record["first_trial"] = first.trial
    record["first_at"] = first.started_at.timestamp() if first.started_at else None
    if record["flags"] or was is None:  # nothing to weigh: an unreliable or in-bounds pair
        record["confirmation"] = UNCONFIRMED if record["failed"] else ""
        return
    if now == was:
        record["confirmation"] = REMEASURED
        return
    record["verdict"] = TRANSIENT
    record["confirmation"] = REMEASURED
    record["failed"] = strict


def _side(class_verdict: str, node_verdict: str) -> str | None:
    """The side a figure is out on (low or high; its class's verdict first), or None."""
    return next((v for v in (class_verdict, node_verdict) if v in FAILING), None)


def _record(f: TrialFigure, on_class: Judged, on_node: Judged, k: float) -> dict[str, Any]:
    failing = on_class.verdict in FAILING or on_node.verdict in FAILING
    if failing and f.flags:  # noisy or contended: say so, do not fail the campaign
        on_class.verdict = UNRELIABLE if on_class.verdict in FAILING else on_class.verdict
        on_node.verdict = UNRELIABLE if on_node.verdict in FAILING else on_node.verdict
        failing = False
    return {
        "trial": f.trial,
        "trial_key": f.trial_key,
        "campaign": f.campaign,
        "benchmark": f.benchmark,
        "workload": f.workload,
        "params": f.params,
        "params_hash": f.params_hash,
        "workload_version": f.workload_version,
        "node": f.hostname,
        "node_id": f.ray_node_id,
        "ranks": f.ranks,
        "gpu": f.gpu,
        "gpu_peer": f.gpu_peer,
        "gpu_uuid": f.gpu_uuid,
        "hardware_class": f.hardware_class,
        "metric": f.metric,
        "unit": f.unit,
        "higher_is_better": f.higher_is_better,
        "value": f.value,
        "verdict": on_class.verdict,
        "class_centre": on_class.reference.centre if on_class.reference else None,
        "class_spread": on_class.reference.spread if on_class.reference else None,
        "class_trials": on_class.reference.trials if on_class.reference else 0,
        "off_pct": on_class.off_pct,
        "off_spreads": on_class.off_spreads,
        "node_verdict": on_node.verdict,
        "node_centre": on_node.reference.centre if on_node.reference else None,
        "node_trials": on_node.reference.trials if on_node.reference else 0,
        "node_off_pct": on_node.off_pct,
        "flags": list(f.flags),
        "rounds_ci": list(f.rounds_ci) if f.rounds_ci else None,  # the between-round spread
        "k": k,
        "failed": failing,
        "confirmation": "",  # re-measured, persists or unconfirmed, for an out figure
    }


def _severity(r: dict[str, Any]) -> tuple[int, int, float]:
    return (0 if r["failed"] else 1, 0 if r["verdict"] == TRANSIENT else 1,
            -abs(r["off_pct"] or 0.0))  # fmt: skip


def _record_key(r: dict[str, Any]) -> Key:
    """The reference key of one of ``check``'s records."""
    return (
        r["hardware_class"],
        r["workload"],
        r["params_hash"],
        r["metric"],
        r["workload_version"],
    )


def control_history(
    session: Session, records: list[dict[str, Any]], limit: int = 6
) -> list[dict[str, Any]]:
    """For the first ``limit`` keys of ``check``'s records (worst first), every stored trial
    of that key on that class, with the reference the check used: control-chart data."""
    first: dict[Key, dict[str, Any]] = {}  # the worst record of each key
    for r in records:
        if r["class_centre"] is not None:
            first.setdefault(_record_key(r), r)
    keys = list(first)[:limit]
    if not keys:
        return []
    wanted = set(keys)
    by_key: dict[Key, list[TrialFigure]] = defaultdict(list)
    for f in figures(session, keys={(k[1], k[2]) for k in keys}):
        if f.key in wanted:
            by_key[f.key].append(f)
    out = []
    for key in keys:
        r = first[key]
        out.append(
            {
                "benchmark": r["benchmark"],
                "params": r["params"],
                "metric": r["metric"],
                "unit": r["unit"],
                "hardware_class": r["hardware_class"],
                "centre": r["class_centre"],
                "limit": r["k"] * (r["class_spread"] or 0.0),
                "points": [
                    (f.started_at.timestamp(), f.value, f.campaign == r["campaign"])
                    for f in by_key[key]
                    if f.started_at is not None
                ],
                # Trials measured in rounds: their CI over the round medians.
                "spreads": [
                    (f.started_at.timestamp(), *f.rounds_ci)
                    for f in by_key[key]
                    if f.started_at is not None and f.rounds_ci is not None
                ],
                # First readings that did not repeat when measured again.
                "transient": [
                    (x["first_at"], x["first_value"])
                    for x in records
                    if _record_key(x) == key and x["verdict"] == TRANSIENT and x.get("first_at")
                ],
            }
        )
    return out
