"""`harness check` and `harness baseline ...`: is each number of a campaign normal?"""

from __future__ import annotations

from typing import Annotated, Any

import typer

import results_db as db_api
from harness.cli.common import DbOpt, Format, WideOpt, db_url, err, handled, out
from harness.present.output import Column, emit_records
from harness.present.summary import shown_params, varying_params
from results_db.errors import QueryError

baseline_app = typer.Typer(
    help="Pin references from the stored history for `harness check`.", no_args_is_help=True
)


def _off(r: dict[str, Any]) -> str:
    """'-38% (-12 MADs)': how far from the class centre."""
    if r["off_pct"] is None:
        return ""
    spreads = f" ({r['off_spreads']:+.1f} MADs)" if r["off_spreads"] is not None else ""
    return f"{r['off_pct']:+.1f}%{spreads}"


def _reference(r: dict[str, Any]) -> str:
    if r["class_centre"] is None:
        return ""
    return f"{r['class_centre']:.4g} ± {r['class_spread']:.2g} (n={r['class_trials']})"


def _node_history(r: dict[str, Any]) -> str:
    if r["node_centre"] is None:
        return r["node_verdict"]
    return f"{r['node_verdict']} ({r['node_off_pct']:+.1f}%, n={r['node_trials']})"


def check_columns(records: list[dict[str, Any]]) -> list[Column]:
    """The verdict table: each trial's figure, its class reference and both verdicts."""
    varying = varying_params([(r["benchmark"], r["params"]) for r in records])

    def params(r: dict[str, Any]) -> str:
        return shown_params(r["params"], None, varying.get(r["benchmark"], set()))

    return [
        ("verdict", "verdict"),
        ("benchmark", "benchmark"),
        ("params", params),
        ("node", "node_label"),
        ("metric", "metric"),
        ("value", lambda r: f"{r['value']:.4g} {r['unit']}"),
        ("class reference", _reference),
        ("off", _off),
        ("node history", _node_history),
        ("rounds", _rounds),
        ("confirmed", _confirmed),
        ("flags", lambda r: " ".join(r["flags"])),
    ]


def _rounds(r: dict[str, Any]) -> str:
    """The between-round spread of a trial measured in rounds: its round medians' CI."""
    if not r.get("rounds_ci"):
        return ""
    low, high = r["rounds_ci"]
    return f"{low:.4g}..{high:.4g}"


def _confirmed(r: dict[str, Any]) -> str:
    """How an out figure was confirmed: 'first 61.2, again 60.8' (measured again in its
    campaign), 'persists (c4: 60.1)' (its node's previous campaign), or 'unconfirmed'."""
    how = r.get("confirmation") or ""
    if how == "re-measured" and r.get("first_value") is not None:
        return f"first {r['first_value']:.4g}, again {r['value']:.4g}"
    if how == "persists" and r.get("confirmed_by"):
        return f"persists ({r['confirmed_by']['campaign']}: {r['confirmed_by']['value']:.4g})"
    return how


def print_expectations(results: list[dict[str, Any]], wide: bool = False) -> int:
    """The table of `expect:` results; the number that failed."""
    from results_db.expect import FAIL

    varying = varying_params([(r["benchmark"], r["params"]) for r in results])
    columns: list[Column] = [
        ("verdict", "verdict"),
        ("benchmark", "benchmark"),
        (
            "params",
            lambda r: shown_params(
                r["params"], r["param_defaults"], varying.get(r["benchmark"], set())
            ),
        ),
        ("node", "node_label"),
        ("metric", "metric"),
        ("median", lambda r: f"{r['median']:.4g} {r['unit']}"),
        ("expected", "expected"),
    ]
    emit_records(out, "table", "expectations (playbook expect:)", results, columns, wide=wide)
    return sum(r["verdict"] == FAIL for r in results)


def check(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="a pinned baseline (default: the stored history)"),
    ] = None,
    k: Annotated[float, typer.Option("--k", min=0, help="out beyond this many scaled MADs")] = 3.0,
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0, help="... and beyond this percent of the centre"),
    ] = 5.0,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="fail on transient figures too (out, then in bounds)"),
    ] = False,
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
    wide: WideOpt = False,
) -> None:
    """Judge every trial of a campaign against its hardware class and its node's history.

    A verdict per trial: pass, low, high, no baseline, unreliable (out of bounds but
    flagged noisy, contended, throttled or resent), or transient (out, then in bounds when
    `run --confirm` measured it again); and the playbook's `expect:` references. Exit 1
    when any trial is out (transient ones only with --strict) or misses an expectation (a
    CI job or an acceptance script can gate on it), 2 for bad input.
    """
    from harness.campaign.verdict import judged_expectations
    from results_db.baseline import check as judge_campaign

    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            records = judge_campaign(
                s, campaign, baseline=baseline, k=k, tolerance_pct=tolerance, strict=strict
            )
            expected = judged_expectations(s, campaign)
        if not records:
            raise QueryError(f"campaign {campaign!r} has no ok trial to judge")
    by_trial: dict[int, list[dict[str, Any]]] = {}
    for e in expected:
        by_trial.setdefault(e["trial"], []).append(e)
    for r in records:
        r["expect"] = [
            {k: e[k] for k in ("metric", "median", "expected", "verdict")}
            for e in by_trial.get(r["trial"], [])
        ]
        r["failed"] = r["failed"] or any(e["verdict"] == "fail" for e in r["expect"])
    against = f"baseline {baseline}" if baseline else "the stored history and its peers"
    k_used = records[0]["k"]  # widened with the number of trials judged
    title = f"{campaign} against {against} (out: beyond {k_used:.2g} MADs and {tolerance:g}%)"
    emit_records(out, format.value, title, records, check_columns(records), wide=wide)
    if expected and format is Format.table:
        print_expectations(expected, wide)
    failed = [r for r in records if r["failed"]]
    if failed:
        nodes = sorted({r["node_label"] for r in failed})
        err.print(
            f"{len(failed)} of {len(records)} trial(s) out of bounds or short of an expectation, "
            f"on: {', '.join(nodes)}",
            markup=False,
        )
        slow = sorted({h for r in failed for h in r.get("slow_hosts", ())})
        if slow:  # cross-host trials: the host every out trial went through
            err.print(
                f"slow host: {', '.join(slow)} (each of its links reads out against the other "
                "hosts' links)",
                markup=False,
            )
        raise typer.Exit(1)


@baseline_app.command("build")
def baseline_build(
    name: Annotated[str, typer.Argument(help="the baseline's name (replaces one so named)")],
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date/time: trials started at or after")
    ] = None,
    campaign: Annotated[
        list[str] | None, typer.Option("--campaign", help="only these campaigns (repeatable)")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Pin the references the stored history gives now (per hardware class, benchmark and
    workload version: median of trial medians and scaled MAD)."""
    from harness.cli.results import parse_when
    from results_db.baseline import pin_baseline

    with handled():
        when = parse_when(since, "--since")
        store = db_api.ResultStore(db_url(db))
        with store.session() as s:
            entries, trials = pin_baseline(s, name, since=when, campaigns=campaign)
    out.print(f"baseline {name}: {entries} reference(s) from {trials} trial(s)", markup=False)


@baseline_app.command("list")
def baseline_list(
    db: DbOpt = None, format: Annotated[Format, typer.Option("--format")] = Format.table
) -> None:
    """The pinned baselines, newest first."""
    from results_db.baseline import list_baselines

    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            records = list_baselines(s)
    columns: list[Column] = [
        ("name", "name"),
        ("created", "created_at"),
        ("references", "entries"),
        ("trials", "trials"),
        ("since", lambda r: r["since"] or ""),
        ("campaigns", lambda r: " ".join(r["campaigns"] or [])),
    ]
    emit_records(out, format.value, "baselines", records, columns)
