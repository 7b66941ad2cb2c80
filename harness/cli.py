"""The `harness` command line (Typer + rich).

Bad input (playbook, option, database URL, campaign id) prints one line per problem and
exits 2; `--debug` shows tracebacks. `harness run` exits 1 when any trial failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from platformdirs import user_data_path
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.campaign import CampaignError, plan, run_campaign
from harness.cluster import ClusterError, ClusterSession
from harness.output import emit, table
from harness.placement import PlacedTrial, PlacementError
from harness.playbook import PlaybookError, load_playbook
from harness.runner import TrialOutcome
from harness.summary import shown_params, trial_summaries, varying_params
from results_db import (
    Filters,
    QueryError,
    ResultStore,
    StoreError,
    group_records,
    list_campaigns,
    list_ceilings,
    query_records,
    sqlite_url,
)
from results_db.models import Trial

app = typer.Typer(
    help="Distributed benchmarking harness: run playbooks over Ray, query stored results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
results_app = typer.Typer(help="Query stored results.", no_args_is_help=True)
playbook_app = typer.Typer(help="Check playbooks.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
cluster_app = typer.Typer(help="Try multi-node campaigns on one machine.", no_args_is_help=True)
app.add_typer(results_app, name="results")
app.add_typer(playbook_app, name="playbook")
app.add_typer(db_app, name="db")
app.add_typer(cluster_app, name="cluster")

# Off a terminal rich assumes 80 columns; results tables are wider than that.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200
)
_state = {"debug": False}


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def default_db_url() -> str:
    """HARNESS_DB_URL, else a SQLite file in the user's data directory."""
    return os.environ.get("HARNESS_DB_URL") or sqlite_url(
        user_data_path("harness") / "results.sqlite"
    )


def db_url(value: str | None) -> str:
    """A --db value: a SQLAlchemy URL, or a plain path meaning a SQLite file."""
    if not value:
        return default_db_url()
    if "://" in value:
        return value
    return sqlite_url(Path(value).expanduser().resolve())


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy URL or SQLite path [env: HARNESS_DB_URL]", show_default=False
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", envvar="RAY_ADDRESS", help="join this Ray cluster instead of starting one"
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks")]

BAD_INPUT = (PlaybookError, StoreError, ClusterError, PlacementError, CampaignError, QueryError)


@contextmanager
def handled(debug: bool = False) -> Iterator[None]:
    """Turn our input errors into lines on stderr and exit code 2."""
    try:
        yield
    except BAD_INPUT as exc:
        if debug or _state["debug"]:
            raise
        for line in getattr(exc, "lines", None) or str(exc).splitlines() or [type(exc).__name__]:
            err.print(f"error: {line}", markup=False)
        raise typer.Exit(2) from None


@app.callback()
def _root(debug: DebugOpt = False) -> None:
    _state["debug"] = debug


# run ---------------------------------------------------------------------------------------
class _Live:
    """Progress bar and warnings while a campaign runs."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=err,
            disable=not enabled,
            transient=False,
        )
        self.task: Any = None
        self.campaign_id = ""

    def planned(self, campaign_id: str, total: int, skipped: int) -> None:
        self.campaign_id = campaign_id
        note = f" ({skipped} already done)" if skipped else ""
        err.print(f"campaign {campaign_id}: {total} trial(s) to run{note}", markup=False)
        self.task = self.progress.add_task("trials", total=total, last="")
        self.progress.start()

    def started(self, trial: PlacedTrial) -> None:
        self.progress.update(self.task, last=f"{trial.spec.benchmark} on {trial.node.hostname}")

    def finished(self, trial: PlacedTrial, outcome: TrialOutcome) -> None:
        if outcome.status != "ok":
            self.progress.console.print(
                f"[red]{outcome.status}[/red] {trial.spec.benchmark} "
                f"{shown_params(trial.spec.workload, trial.spec.params)} "
                f"on {trial.node.hostname}: "
                f"{outcome.failure_phase}: {outcome.failure_reason}",
                markup=True,
                highlight=False,
            )
        self.progress.advance(self.task)

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def info(self, message: str) -> None:
        err.print(message, markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


@app.command()
def run(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file")],
    db: DbOpt = None,
    address: AddressOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a playbook field: KEY.PATH=VALUE (repeatable)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the trials and their nodes; run nothing")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="campaign id: run only its missing or failed trials"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a live progress bar")] = True,
    debug: DebugOpt = False,
) -> None:
    """Run a playbook's campaign and store every trial."""
    with handled(debug):
        loaded = load_playbook(playbook, set_ or [])
        cluster_address = address or loaded.model.cluster.address
        store = None if dry_run else ResultStore(db_url(db))
        with ClusterSession(cluster_address) as session:
            if dry_run:
                planned = plan(loaded, session.inventory())
                for line in planned.skipped:
                    err.print(f"warning: optional benchmark skipped: {line}", markup=False)
                _print_plan(planned.trials)
                return
            assert store is not None
            live = _Live(progress and sys.stderr.isatty())
            try:
                result = run_campaign(loaded, store, session, live, resume=resume)
            except KeyboardInterrupt:
                live.stop()
                err.print(
                    f"interrupted: to finish it, harness run {playbook} "
                    f"--resume {live.campaign_id}",
                    markup=False,
                )
                raise typer.Exit(130) from None
            finally:
                live.stop()
        _print_trials(store, result.campaign_id, "table")
        ok = result.counts.get("ok", 0)
        bad = result.ran - ok
        out.print(
            f"campaign {result.campaign_id}: {ok} ok, {bad} failed, {result.skipped} skipped "
            f"(already done); stored in {store.describe()}",
            markup=False,
        )
        if bad:
            out.print(
                f"to retry failed trials: harness run {playbook} --resume {result.campaign_id}",
                markup=False,
            )
            raise typer.Exit(1)


def _where(p: PlacedTrial) -> str:
    """The node of a trial, or each node of a multi-rank one with its rank count."""
    nodes = {n.ray_node_id: n for n in p.ranks}
    per_node = len(p.ranks) // len(nodes)
    suffix = f" x{per_node}" if per_node > 1 else ""
    return ", ".join(f"{n.hostname} ({n.short_id}){suffix}" for n in nodes.values())


def _print_plan(placed: list[PlacedTrial]) -> None:
    varying = varying_params([(p.spec.benchmark, p.spec.params) for p in placed])
    rows = [
        (
            i + 1,
            p.spec.benchmark,
            p.spec.workload,
            shown_params(p.spec.workload, p.spec.params, varying[p.spec.benchmark]),
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


# nodes, workloads, playbook ----------------------------------------------------------------
@app.command()
def nodes(
    address: AddressOpt = None,
    format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """Inventory of the cluster's nodes (starts an embedded cluster without --address)."""
    with handled(), ClusterSession(address) as session:
        inventory = session.inventory()
    records = [
        {
            "node_id": n.ray_node_id,
            "hostname": n.hostname,
            "address": n.address,
            "labels": n.labels,
            "resources": {k: v for k, v in n.resources.items() if not k.startswith("node:")},
            "fingerprint": n.fingerprint,
            "hardware_class": n.hardware_class,
            **n.fields,
            "gpus": n.facts.get("gpus", []),
        }
        for n in inventory
    ]
    rows = [
        (
            n.short_id,
            n.hostname,
            n.facts.get("cpu_model"),
            n.facts.get("cpu_threads"),
            f"{(n.facts.get('memory_bytes') or 0) / 2**30:.1f}",
            f"{n.facts.get('gpu_count', 0)} {n.facts.get('gpu_model', '')}".strip(),
            " ".join(f"{k}={v}" for k, v in n.labels.items()),
            " ".join(
                f"{k}={v:g}"
                for k, v in n.resources.items()
                if not k.startswith("node:") and k not in ("memory", "object_store_memory")
            ),
        )
        for n in inventory
    ]
    tbl = table(
        f"{len(inventory)} node(s)",
        ["node", "hostname", "cpu", "threads", "mem GiB", "gpus", "labels", "resources"],
        rows,
    )
    emit(out, format.value, records, tbl)


@app.command()
def workloads(format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table) -> None:
    """Every registered workload: parameters (type, default) and metrics (unit, direction)."""
    from workloads import all_workloads, plugin_problems

    records = [cls.describe() for cls in all_workloads().values()]
    for name, problem in plugin_problems().items():
        err.print(f"warning: workload plugin {name}: {problem}", markup=False)
    rows = [
        (
            r["name"],
            "\n".join(
                f"{p['name']}: {p['type']} = {p['default']!r}"
                if not p["required"]
                else f"{p['name']}: {p['type']} (required)"
                for p in r["params"]
            ),
            "\n".join(
                f"{m['name']} [{m['unit']}] "
                f"{'higher' if m['higher_is_better'] else 'lower'} is better"
                for m in r["metrics"]
            ),
            r["description"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table("workloads", ["workload", "params", "metrics", "description"], rows),
    )


@playbook_app.command("validate")
def playbook_validate(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: KEY.PATH=VALUE")
    ] = None,
) -> None:
    """Check a playbook without running it: every problem, one line each."""
    from harness.expand import expand

    with handled():
        loaded = load_playbook(playbook, set_ or [])
        n = len(expand(loaded.model))
    out.print(
        f"{playbook}: valid, {len(loaded.model.benchmarks)} benchmark(s), "
        f"{n} trial(s) per matching node",
        markup=False,
    )


# results -----------------------------------------------------------------------------------
def _read(db: str | None, query: Callable[[Session], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run a read-only query on the results store (never creates or migrates a schema)."""
    with handled():
        store = ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            return query(s)


@results_app.command("campaigns")
def results_campaigns(
    db: DbOpt = None, format: Annotated[Format, typer.Option("--format")] = Format.table
) -> None:
    """Stored campaigns, newest first."""
    records = _read(db, list_campaigns)
    rows = [
        (
            r["campaign"],
            r["name"],
            r["status"],
            r["created_at"],
            r["trials"],
            r["trials_ok"],
            r["trials_failed"] + r["trials_timeout"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table(
            "campaigns", ["campaign", "name", "status", "created", "trials", "ok", "failed"], rows
        ),
    )


@results_app.command("show")
def results_show(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """A campaign's trials (latest attempts) with their key metric."""
    with handled():
        store = ResultStore(db_url(db), upgrade=False)
        if store.get_campaign(campaign) is None:
            raise CampaignError(f"no campaign {campaign!r} in {store.describe()}")
        _print_trials(store, campaign, format.value)


def _print_trials(store: ResultStore, campaign: str, fmt: str) -> None:
    with store.session() as s:
        records = query_records(s, Filters(campaign=campaign, status=None))
        contexts = {
            t.id: t.context for t in s.scalars(select(Trial).where(Trial.campaign_id == campaign))
        }
    summaries = trial_summaries(records, contexts)
    columns = [
        "trial",
        "benchmark",
        "params",
        "node",
        "status",
        "metric",
        "median",
        "ci",
        "peak",
        "efficiency",
        "detail",
    ]
    rows = [[t["record"]["node"] if c == "node" else t[c] for c in columns] for t in summaries]
    headers = [{"ci": "95% CI", "peak": "of peak"}.get(c, c) for c in columns]
    tbl = table(f"campaign {campaign}", headers, rows)
    emit(out, fmt, [t["record"] for t in summaries] if fmt != "table" else records, tbl)


@results_app.command("ceilings")
def results_ceilings(
    db: DbOpt = None, format: Annotated[Format, typer.Option("--format")] = Format.table
) -> None:
    """Measured ceilings (from `calibrate: true` campaigns) beside datasheet peaks."""
    records = _read(db, list_ceilings)
    rows = [
        (
            r["hardware_class"],
            r["node"],
            r["gpu_model"] or r["cpu_model"],
            r["key"],
            f"{r['value']:.4g} {r['unit']}",
            f"{r['datasheet']:g} ({r['datasheet_sku']})" if r["datasheet"] else "",
            f"{r['pct_of_datasheet']:.0f}%" if r["pct_of_datasheet"] else "",
            r["campaign"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table(
            "measured ceilings",
            [
                "hardware class",
                "node",
                "model",
                "key",
                "ceiling",
                "datasheet",
                "% of datasheet",
                "campaign",
            ],
            rows,
        ),
    )


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO date or date-time option; naive values are taken as UTC."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{option} {value!r}: expected an ISO date or date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _parse_where(items: list[str]) -> list[tuple[str, Any]]:
    from harness.playbook import parse_scalar

    parsed = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QueryError(f"--where {item!r}: expected KEY=VALUE (params key or node.FIELD)")
        parsed.append((key.strip(), parse_scalar(value.strip())))
    return parsed


@results_app.command("query")
def results_query(
    db: DbOpt = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="campaign id")] = None,
    workload: Annotated[str | None, typer.Option("--workload", help="workload name (glob)")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="PARAM=VALUE or node.FIELD=VALUE (globs)")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="metric name (repeatable)")
    ] = None,
    status: Annotated[str, typer.Option("--status", help="ok, failed, timeout or all")] = "ok",
    all_attempts: Annotated[
        bool, typer.Option("--all-attempts", help="include superseded attempts")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date/time: started at or after")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO date/time: started before")
    ] = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="hardware_class, gpu_model, cpu_model or node")
    ] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Metric records filtered by campaign, workload, params and node fields."""
    with handled():
        filters = Filters(
            campaign=campaign,
            workload=workload,
            metrics=metric or [],
            status=None if status == "all" else status,
            where=_parse_where(where or []),
            all_attempts=all_attempts,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
        )
    records = _read(db, lambda s: query_records(s, filters))
    if group_by:
        with handled():
            grouped = group_records(records, group_by)
        rows = [
            (
                g[group_by],
                g["workload"],
                shown_params(g["workload"], g["params"]),
                g["metric"],
                g["unit"],
                g["trials"],
                g["median"],
                g["min"],
                g["max"],
            )
            for g in grouped
        ]
        emit(
            out,
            format.value,
            grouped,
            table(
                f"{len(grouped)} group(s) by {group_by}",
                [
                    group_by,
                    "workload",
                    "params",
                    "metric",
                    "unit",
                    "trials",
                    "median of medians",
                    "min",
                    "max",
                ],
                rows,
            ),
        )
        return
    rows = [
        (
            r["campaign"],
            r["trial"],
            r["workload"],
            shown_params(r["workload"], r["params"]),
            r["node"],
            r["status"],
            r["metric"],
            r["unit"],
            r["n"],
            r["median"],
            r["mean"],
            r["min"],
            r["max"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table(
            f"{len(records)} record(s)",
            [
                "campaign",
                "trial",
                "workload",
                "params",
                "node",
                "status",
                "metric",
                "unit",
                "n",
                "median",
                "mean",
                "min",
                "max",
            ],
            rows,
        ),
    )


class CompareBy(str, Enum):
    campaign = "campaign"
    hardware = "hardware"
    time = "time"


def _side(label: str, by: CompareBy) -> Any:
    from results_db.compare import Side, parse_window

    if by is CompareBy.campaign:
        return Side(label, campaign=label)
    if by is CompareBy.hardware:
        return Side(label, hardware=label)
    since, until = parse_window(label)
    return Side(label, since=since, until=until)


@results_app.command("compare")
def results_compare(
    baseline: Annotated[str, typer.Argument(help="campaign id, hardware, or START..END")],
    candidate: Annotated[str, typer.Argument(help="the same kind as BASELINE")],
    by: Annotated[
        CompareBy, typer.Option("--by", help="what the two sides are")
    ] = CompareBy.campaign,
    db: DbOpt = None,
    workload: Annotated[str | None, typer.Option("--workload", help="workload (glob)")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="repeatable")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0, help="percent")] = 5.0,
    alpha: Annotated[float, typer.Option("--alpha", min=0, max=1)] = 0.05,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Compare two campaigns (or hardware classes, or time windows), trial by trial.

    Exit code 1 when a significant regression beyond --threshold is found, 0 otherwise,
    2 for bad input (unknown campaign, nothing in common).
    """
    from results_db.compare import compare

    with handled():
        sides = [_side(baseline, by), _side(candidate, by)]
        store = ResultStore(db_url(db), upgrade=False)
        for side in sides:
            if side.campaign and store.get_campaign(side.campaign) is None:
                raise CampaignError(f"no campaign {side.campaign!r} in {store.describe()}")
        with store.session() as s:
            records = compare(
                s,
                *sides,
                workload=workload,
                metrics=metric or [],
                threshold_pct=threshold,
                alpha=alpha,
            )
        if not records:
            raise QueryError(f"{baseline} and {candidate} have no trials and metrics in common")
    rows = [
        (
            r["workload"],
            shown_params(r["workload"], r["params"]),
            r["metric"],
            f"{r['baseline_median']:.4g}",
            f"{r['candidate_median']:.4g}",
            r["unit"],
            f"{r['change_pct']:+.1f}%",
            f"{r['p_value']:.2g}",
            r["verdict"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table(
            f"{baseline} -> {candidate} (change > 0 is better; Mann-Whitney U, alpha {alpha:g})",
            [
                "workload",
                "params",
                "metric",
                "baseline",
                "candidate",
                "unit",
                "change",
                "p",
                "verdict",
            ],
            rows,
        ),
    )
    regressions = [r for r in records if r["regression"]]
    if regressions:
        err.print(
            f"{len(regressions)} significant regression(s) beyond {threshold:g}%", markup=False
        )
        raise typer.Exit(1)


@results_app.command("history")
def results_history(
    workload: Annotated[str, typer.Option("--workload", help="workload (glob)")],
    metric: Annotated[str, typer.Option("--metric")],
    db: DbOpt = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="PARAM=VALUE")] = None,
    node: Annotated[str | None, typer.Option("--node", help="hostname (glob)")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", help="class or model glob")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0, help="percent")] = 5.0,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """A series over time (per node, or per hardware class), step changes marked."""
    from results_db.compare import history

    records = _read(
        db,
        lambda s: history(
            s,
            workload=workload,
            metric=metric,
            where=_parse_where(where or []),
            node=node,
            hardware=hardware,
            threshold_pct=threshold,
        ),
    )
    rows = [
        (
            r["started_at"],
            r["campaign"],
            r["node"],
            shown_params(workload, r["params"]),
            f"{r['median']:.4g} {r['unit']}",
            "" if r["change_pct"] is None else f"{r['change_pct']:+.1f}%",
            r["step"] or "",
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table(
            f"{workload} {metric} over time",
            ["started", "campaign", "node", "params", "median", "change", "step"],
            rows,
        ),
    )


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"
    json = "json"


class ExportWhat(str, Enum):
    metrics = "metrics"
    samples = "samples"
    telemetry = "telemetry"


@results_app.command("export")
def results_export(
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
    what: Annotated[ExportWhat, typer.Option("--what")] = ExportWhat.metrics,
    format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.csv,
    campaign: Annotated[str | None, typer.Option("--campaign")] = None,
    workload: Annotated[str | None, typer.Option("--workload")] = None,
    db: DbOpt = None,
) -> None:
    """Write metrics, raw samples or telemetry as CSV, Parquet or JSON (records)."""
    from results_db import frames

    with handled():
        url = db_url(db)
        if what is ExportWhat.metrics:
            frame = frames.metrics(url, campaign=campaign, workload=workload, status=None)
        elif what is ExportWhat.samples:
            frame = frames.samples(url, campaign=campaign, workload=workload)
        else:
            frame = frames.telemetry(url, campaign=campaign)
        try:
            if format is ExportFormat.csv:
                frame.to_csv(output, index=False)
            elif format is ExportFormat.parquet:
                frame.to_parquet(output, index=False)
            else:
                frame.to_json(output, orient="records", indent=1, date_format="iso")
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    out.print(f"{len(frame)} {what.value} row(s) -> {output}", markup=False)


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path(
        "report.html"
    ),
    compare: Annotated[str | None, typer.Option("--compare", help="another campaign id")] = None,
    db: DbOpt = None,
) -> None:
    """Write one self-contained HTML report (works offline) of a campaign."""
    from harness.report import render
    from results_db.report_data import campaign_data

    with handled():
        store = ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            data = campaign_data(s, campaign)
            other = campaign_data(s, compare) if compare else None
        for cid, found in ((campaign, data), (compare, other)):
            if cid and found is None:
                raise CampaignError(f"no campaign {cid!r} in {store.describe()}")
        try:
            output.write_text(render(data, other))
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    out.print(f"report of {campaign} -> {output}", markup=False)


# db ----------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Apply the schema migrations to the database."""
    from results_db import schema
    from results_db.store import open_engine, safe_url

    with handled():
        url = db_url(db)
        engine = open_engine(url)
        before = schema.current_revision(engine)
        schema.upgrade(engine)
        after = schema.current_revision(engine)
    out.print(f"{safe_url(url)}: schema {before or '(empty)'} -> {after}", markup=False)


@cluster_app.command("local")
def cluster_local(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=16, help="Ray nodes to start")] = 3,
    cpus_per_node: Annotated[int, typer.Option("--cpus-per-node", min=1)] = 1,
) -> None:
    """Start a Ray cluster of several nodes on this machine until Ctrl-C.

    Node i gets the labels node=<i> and role=head|worker, and every second worker a custom
    resource `fast`, so selectors have something to tell apart. Ray's token auth stays on.
    """
    import tempfile
    import time

    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="hcl", dir="/tmp")  # short: raylet socket paths are limited
    os.makedirs(os.path.join(tmp, "ray"))
    os.environ["RAY_TMPDIR"] = tmp  # never touch another Ray's address file
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": cpus_per_node,
            "labels": {"node": "0", "role": "head"},
            "include_dashboard": False,
        },
    )
    try:
        for i in range(1, nodes):
            cluster.add_node(
                num_cpus=cpus_per_node,
                labels={"node": str(i), "role": "worker"},
                resources={"fast": 1} if i % 2 == 0 else {},
            )
        cluster.wait_for_nodes()
        out.print(f"{nodes} Ray node(s) on this machine at {cluster.address}", markup=False)
        out.print(f"  harness nodes --address {cluster.address}", markup=False)
        out.print(f"  harness run PLAYBOOK --address {cluster.address}", markup=False)
        out.print("Ctrl-C stops them (only them).", markup=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()


def main() -> None:
    """Console-script entry point: an unexpected error is one line unless --debug is given."""
    try:
        app()
    except Exception as exc:
        if "--debug" in sys.argv:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"error: internal: {type(exc).__name__}: {first} (rerun with --debug)", markup=False
        )
        sys.exit(1)
