"""`harness run`: parse options, load the playbook, call the campaign pipeline, print."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli.common import (
    AddressOpt,
    DbOpt,
    DebugOpt,
    MaxBytesOpt,
    MaxTokensOpt,
    MaxTrialsOpt,
    SetOpt,
    WideOpt,
    db_url,
    err,
    handled,
    out,
)
from harness.cli.fleet import print_expectations
from harness.cli.live import Live, planned_params
from harness.cli.results import print_trials
from harness.errors import StoreOutageError
from harness.playbook.limits import Limits
from harness.playbook.load import load_playbook
from harness.present.output import table
from harness.present.summary import varying_params
from results_db.journal import DEFAULT_STORE_RETRY_S
from results_db.urls import MASK, safe_url, scrub
from results_db.vocabulary import gpu_suffix

if TYPE_CHECKING:
    from harness.campaign.pipeline import RunRequest
    from harness.campaign.placement import PlacedTrial
    from harness.campaign.verdict import CampaignResult


def run(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file")],
    db: DbOpt = None,
    address: AddressOpt = None,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the trials and their nodes; run nothing")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="campaign id: run only its missing or failed trials"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a live progress bar")] = True,
    max_playbook_bytes: MaxBytesOpt = None,
    max_trials: MaxTrialsOpt = None,
    max_request_tokens: MaxTokensOpt = None,
    wide: WideOpt = False,
    skip_preflight: Annotated[
        bool,
        typer.Option(
            "--skip-preflight", help="do not check endpoints from here before the run starts"
        ),
    ] = False,
    store_retry: Annotated[
        float,
        typer.Option(
            "--store-retry",
            min=0,
            help="seconds to keep retrying a store that fails (down, restarting, full) while "
            "trials go on; measured trials wait in a local journal meanwhile",
        ),
    ] = DEFAULT_STORE_RETRY_S,
    allow_env: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-env",
            help="let the playbook send this environment variable as an endpoint's API key "
            "though its name does not end in API_KEY or API_TOKEN (repeatable)",
        ),
    ] = None,
    allow_skew: Annotated[
        bool,
        typer.Option(
            "--allow-skew",
            help="run on nodes whose harness, Ray or Python version differs from the driver's "
            "(each is printed; the versions are stored with the nodes)",
        ),
    ] = False,
    max_clock_skew: Annotated[
        float | None,
        typer.Option(
            "--max-clock-skew",
            min=0,
            help="refuse nodes whose wall clock is further than this many seconds from the "
            "driver's (by default they are corrected for, with a warning past 0.5 s)",
        ),
    ] = None,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="at the end, measure again each trial whose figure `harness check` calls "
            "out; check then calls a node low/high only when the second reading agrees",
        ),
    ] = False,
    min_nodes: Annotated[
        int | None,
        typer.Option(
            "--min-nodes",
            min=1,
            help="wait until this many Ray nodes have joined (a cluster still starting: a "
            "scheduler's job) before planning; an error after --join-timeout",
        ),
    ] = None,
    join_timeout: Annotated[
        float, typer.Option("--join-timeout", min=0, help="seconds --min-nodes waits")
    ] = 300.0,
    debug: DebugOpt = False,
) -> None:
    """Run a playbook's campaign and store every trial."""
    with handled(debug):
        from harness.campaign.pipeline import RunRequest, run_playbook

        loaded = load_playbook(
            playbook,
            set_ or [],
            Limits.from_env(max_playbook_bytes, max_trials, max_request_tokens),
        )
        request = RunRequest(
            db_url=db_url(db),
            address=address,
            resume=resume,
            dry_run=dry_run,
            preflight=not skip_preflight,
            store_retry_s=store_retry,
            allow_env=frozenset(allow_env or []),
            allow_skew=allow_skew,
            max_clock_skew_s=max_clock_skew,
            confirm=confirm,
            min_nodes=min_nodes,
            join_timeout_s=join_timeout,
        )
        again = resume_command(
            playbook,
            db,
            address,
            set_ or [],
            max_playbook_bytes,
            max_trials,
            _options_kept(request, max_request_tokens),
        )
        live = Live(progress and sys.stderr.isatty() and not dry_run)
        try:
            result = run_playbook(loaded, request, live)
        except KeyboardInterrupt:
            live.stop()
            if live.campaign_id:
                err.print(f"interrupted: to finish it, {again(live.campaign_id)}", markup=False)
            else:
                err.print("interrupted before any trial ran", markup=False)
            raise typer.Exit(130) from None
        except StoreOutageError as exc:
            live.stop()
            err.print(f"error: {scrub(str(exc))}", markup=False)
            err.print(
                f"once the store is back, store them and finish: {again(exc.campaign_id)}",
                markup=False,
            )
            raise typer.Exit(1) from None
        finally:
            live.stop()
        if result.dry_run:
            print_plan(result)
            return
        print_outcome(result, again, wide)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def print_plan(result: CampaignResult) -> None:
    """A dry run: the trials a run would start (only those left with --resume), in order."""
    plan = result.plan
    if plan.resume is not None:
        done = plan.already_done
        err.print(f"resuming {plan.resume}: {done} trial(s) already done", markup=False)
    _print_plan(plan.todo)


def print_outcome(result: CampaignResult, again: Callable[[str], str], wide: bool) -> None:
    """After a run: its trials, its expectations, the verdict line, how to retry."""
    assert result.store is not None
    print_trials(result.store, result.campaign_id, "table", wide)
    if result.expectations:
        print_expectations(result.expectations, wide)
    out.print(f"{result.summary()}; stored in {result.store.describe()}", markup=False)
    if result.retry:
        out.print(f"to retry failed trials: {again(result.campaign_id)}", markup=False)


def _options_kept(request: RunRequest, max_tokens: int | None) -> list[str]:
    """The options besides the playbook's own a resume must be given again."""
    kept = []
    if request.store_retry_s != DEFAULT_STORE_RETRY_S:
        kept += ["--store-retry", f"{request.store_retry_s:g}"]
    for name in sorted(request.allow_env):
        kept += ["--allow-env", name]
    if max_tokens:
        kept += ["--max-request-tokens", str(max_tokens)]
    if request.allow_skew:
        kept.append("--allow-skew")
    if request.confirm:
        kept.append("--confirm")
    if request.max_clock_skew_s is not None:
        kept += ["--max-clock-skew", f"{request.max_clock_skew_s:g}"]
    return kept


def resume_command(
    playbook: Path,
    db: str | None,
    address: str | None,
    sets: list[str],
    max_playbook_bytes: int | None,
    max_trials: int | None,
    more: list[str] | None = None,
) -> Callable[[str], str]:
    """The command that resumes a campaign with the options this one was given (a masked
    password is noted: the shell history is no place for it)."""
    args = ["harness", "run", str(playbook)]
    if db:
        args += ["--db", safe_url(db)]
    if address:
        args += ["--address", address]
    for assignment in sets:
        args += ["--set", assignment]
    if max_playbook_bytes:
        args += ["--max-playbook-bytes", str(max_playbook_bytes)]
    if max_trials:
        args += ["--max-trials", str(max_trials)]
    args += more or []
    note = (
        " (put the database password back where *** stands)" if db and MASK in safe_url(db) else ""
    )
    return lambda campaign_id: shlex.join([*args, "--resume", campaign_id]) + note


def _where(p: PlacedTrial) -> str:
    """The node of a trial, or each node of a multi-rank one with its rank count, and the
    GPU (pair) of a per-GPU trial."""
    nodes = {n.ray_node_id: n for n in p.ranks}
    per_node = len(p.ranks) // len(nodes)
    suffix = f" x{per_node}" if per_node > 1 else ""
    gpus = gpu_suffix(*p.gpus) if p.gpus else ""
    return ", ".join(f"{n.hostname} ({n.short_id}){suffix}" for n in nodes.values()) + gpus


def _print_plan(placed: list[PlacedTrial]) -> None:
    varying = varying_params([(p.spec.benchmark, p.spec.params) for p in placed])
    rows = [
        (
            i + 1,
            p.spec.benchmark,
            p.spec.workload,
            planned_params(p.spec.workload, p.spec.params, varying[p.spec.benchmark]),
            _where(p),
            p.key,
        )
        for i, p in enumerate(placed)
    ]
    out.print(
        table(
            f"{len(placed)} trial(s)", ["#", "benchmark", "workload", "params", "node", "key"], rows
        )
    )
