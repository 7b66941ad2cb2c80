"""`harness results ...`: campaigns, show, ceilings, query, matrix, compare, history,
export."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import results_db as db_api  # names load on first use: listing commands stays fast
from harness.cli.common import DbOpt, Format, WideOpt, db_url, err, handled, out
from harness.errors import CampaignError
from harness.present.output import Column, emit, emit_records, fmt_number, table
from harness.present.summary import (
    HEADERS,
    shown_params,
    summary_rows,
    trial_summaries,
    varying_params,
)
from results_db.errors import QueryError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

results_app = typer.Typer(help="Query stored results.", no_args_is_help=True)


def _params(r: dict[str, Any]) -> str:
    return shown_params(r["params"], r.get("param_defaults"))


def _columns(spec: list[Column], records: list[dict[str, Any]]) -> list[Column]:
    """``spec`` with its params column showing, besides values that differ from the
    defaults, every parameter that varies among these rows (as `results show` does), so
    ``op=triad`` is not the one row without an op because triad is the default."""

    def group(r: dict[str, Any]) -> str:
        return r.get("benchmark") or r.get("workload") or ""

    varying = varying_params([(group(r), r["params"]) for r in records])

    def params(r: dict[str, Any]) -> str:
        return shown_params(r["params"], r.get("param_defaults"), varying.get(group(r), set()))

    return [(header, params if value is _params else value) for header, value in spec]


# What each results table shows: (header, record key or how to compute the cell).
CAMPAIGN_COLUMNS: list[Column] = [
    ("campaign", "campaign"),
    ("name", "name"),
    ("status", "status"),
    ("created", "created_at"),
    ("trials", "trials"),
    ("ok", "trials_ok"),
    ("failed", lambda r: r["trials_failed"] + r["trials_timeout"]),
]
CEILING_COLUMNS: list[Column] = [
    ("hardware class", "hardware_class"),
    ("node", "node"),
    ("model", lambda r: r["gpu_model"] or r["cpu_model"]),
    ("key", "key"),
    ("ceiling", lambda r: f"{r['value']:.4g} {r['unit']}"),
    ("datasheet", lambda r: f"{r['datasheet']:g} ({r['datasheet_sku']})" if r["datasheet"] else ""),
    ("% of datasheet", lambda r: f"{r['pct_of_datasheet']:.0f}%" if r["pct_of_datasheet"] else ""),
    ("campaign", "campaign"),
]
GROUP_COLUMNS: list[Column] = [
    ("workload", "workload"),
    ("params", _params),
    ("metric", "metric"),
    ("unit", "unit"),
    ("trials", "trials"),
    ("median of medians", "median"),
    ("min", "min"),
    ("max", "max"),
]
QUERY_COLUMNS: list[Column] = [
    ("campaign", "campaign"),
    ("trial", "trial"),
    ("workload", "workload"),
    ("params", _params),
    ("node", "node_label"),
    ("status", "status"),
    ("metric", "metric"),
    ("unit", "unit"),
    ("n", "n"),
    ("median", "median"),
    ("mean", "mean"),
    ("min", "min"),
    ("max", "max"),
]
COMPARE_COLUMNS: list[Column] = [
    ("workload", "workload"),
    ("params", _params),
    ("metric", "metric"),
    ("baseline", lambda r: f"{r['baseline_median']:.4g}"),
    ("candidate", lambda r: f"{r['candidate_median']:.4g}"),
    ("unit", "unit"),
    ("change", lambda r: f"{r['change_pct']:+.1f}%"),
    ("p", lambda r: f"{r['p_value']:.2g}"),
    ("verdict", "verdict"),
]
HISTORY_COLUMNS: list[Column] = [
    ("started", "started_at"),
    ("campaign", "campaign"),
    ("node", "node_label"),
    ("params", _params),
    ("median", lambda r: f"{r['median']:.4g} {r['unit']}"),
    ("change", lambda r: "" if r["change_pct"] is None else f"{r['change_pct']:+.1f}%"),
    ("step", lambda r: r["step"] or ""),
]


def _read(db: str | None, query: Callable[[Session], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run a read-only query on the results store (never creates or migrates a schema)."""
    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        with store.session() as s:
            return query(s)


@results_app.command("campaigns")
def results_campaigns(
    db: DbOpt = None, format: Annotated[Format, typer.Option("--format")] = Format.table
) -> None:
    """Stored campaigns, newest first."""
    emit_records(out, format.value, "campaigns", _read(db, db_api.list_campaigns), CAMPAIGN_COLUMNS)


@results_app.command("show")
def results_show(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
    wide: WideOpt = False,
) -> None:
    """A campaign's trials (latest attempts) with their key metric."""
    with handled():
        store = db_api.ResultStore(db_url(db), upgrade=False)
        if store.get_campaign(campaign) is None:
            raise CampaignError(f"no campaign {campaign!r} in {store.describe()}")
        print_trials(store, campaign, format.value, wide)


def print_trials(store: db_api.ResultStore, campaign: str, fmt: str, wide: bool = False) -> None:
    """A campaign's trials, one row each (its primary figure), or their records."""
    with store.session() as s:
        records = db_api.query_records(s, db_api.Filters(campaign=campaign, status=None))
        contexts = db_api.trial_contexts(s, campaign)
    summaries = trial_summaries(records, contexts)
    rows = summary_rows(summaries, lambda r: r["node_label"], wide=wide)
    tbl = table(f"campaign {campaign}", HEADERS, rows, wide=wide)
    emit(out, fmt, [t["record"] for t in summaries] if fmt != "table" else records, tbl, wide=wide)


@results_app.command("ceilings")
def results_ceilings(
    db: DbOpt = None, format: Annotated[Format, typer.Option("--format")] = Format.table
) -> None:
    """Measured ceilings (from `calibrate: true` campaigns) beside datasheet peaks."""
    records = _read(db, db_api.list_ceilings)
    emit_records(out, format.value, "measured ceilings", records, CEILING_COLUMNS)


def parse_when(value: str | None, option: str) -> datetime | None:
    """An ISO date or date-time option; naive values are taken as UTC."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{option} {value!r}: expected an ISO date or date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


_WHERE_KEY = re.compile(r"(?:node\.|params\.)?[A-Za-z_][A-Za-z0-9_]*")


def _parse_where(items: list[str]) -> list[tuple[str, Any]]:
    from harness.playbook.load import parse_scalar

    parsed = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise QueryError(f"--where {item!r}: expected KEY=VALUE (params key or node.FIELD)")
        if not _WHERE_KEY.fullmatch(key):
            raise QueryError(
                f"--where {item!r}: {key!r} is not a parameter name or node.FIELD "
                "(letters, digits and _)"
            )
        parsed.append((key, parse_scalar(value.strip())))
    return parsed


# The filters `results query` and `results export` share.
CampaignOpt = Annotated[str | None, typer.Option("--campaign", help="campaign id")]
WorkloadOpt = Annotated[str | None, typer.Option("--workload", help="workload name (glob)")]
WhereOpt = Annotated[
    list[str] | None, typer.Option("--where", help="PARAM=VALUE or node.FIELD=VALUE (globs)")
]
MetricOpt = Annotated[list[str] | None, typer.Option("--metric", help="metric name (repeatable)")]
StatusOpt = Annotated[str, typer.Option("--status", help="ok, failed, timeout, skipped or all")]
AllAttemptsOpt = Annotated[bool, typer.Option("--all-attempts", help="include superseded attempts")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="ISO date/time: started at or after")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="ISO date/time: started before")]


def _filters(
    campaign: str | None,
    workload: str | None,
    where: list[str] | None,
    metric: list[str] | None,
    status: str,
    all_attempts: bool,
    since: str | None,
    until: str | None,
) -> db_api.Filters:
    """The store's filters from the shared options (bad ones raise QueryError)."""
    return db_api.Filters(
        campaign=campaign,
        workload=workload,
        metrics=metric or [],
        status=None if status == "all" else status,
        where=_parse_where(where or []),
        all_attempts=all_attempts,
        since=parse_when(since, "--since"),
        until=parse_when(until, "--until"),
    )


@results_app.command("query")
def results_query(
    db: DbOpt = None,
    campaign: CampaignOpt = None,
    workload: WorkloadOpt = None,
    where: WhereOpt = None,
    metric: MetricOpt = None,
    status: StatusOpt = "ok",
    all_attempts: AllAttemptsOpt = False,
    since: SinceOpt = None,
    until: UntilOpt = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="hardware_class, gpu_model, cpu_model or node")
    ] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
    wide: WideOpt = False,
) -> None:
    """Metric records filtered by campaign, workload, params and node fields."""
    with handled():
        filters = _filters(campaign, workload, where, metric, status, all_attempts, since, until)
    records = _read(db, lambda s: db_api.query_records(s, filters))
    if group_by:
        with handled():
            grouped = db_api.group_records(records, group_by)
        title = f"{len(grouped)} group(s) by {group_by}"
        columns = [(group_by, group_by), *GROUP_COLUMNS]
        emit_records(out, format.value, title, grouped, _columns(columns, grouped), wide=wide)
        return
    title = f"{len(records)} record(s)"
    emit_records(out, format.value, title, records, _columns(QUERY_COLUMNS, records), wide=wide)


@results_app.command("matrix")
def results_matrix(
    campaign: Annotated[str, typer.Argument(help="campaign id")],
    db: DbOpt = None,
    benchmark: Annotated[
        str | None, typer.Option("--benchmark", help="only this benchmark's trials")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="default: each trial's primary metric")
    ] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Pairwise and per-GPU results as matrices: GPU to GPU on each node (`each: gpu_pair`),
    node to node (two-rank trials with `each: true`), and node x GPU (`each: gpu`)."""
    from results_db.matrix import campaign_matrices

    found = _read(db, lambda s: campaign_matrices(s, campaign, benchmark, metric))
    if format != Format.table:
        emit(out, format.value, found, None)
        return
    for m in found:
        rows = [
            [r, *("" if v is None else fmt_number(v) for v in values)]
            for r, values in zip(m["rows"], m["values"], strict=True)
        ]
        corner = "from \\ to" if m["kind"] != "per GPU" else "node"
        title = f"{m['title']} [{m['unit']}]"
        out.print(table(title, [corner, *m["columns"]], rows, wide=True))


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
    all_metrics: Annotated[
        bool,
        typer.Option("--all-metrics", help="every metric, not only each workload's primary one"),
    ] = False,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
    wide: WideOpt = False,
) -> None:
    """Compare two campaigns (or hardware classes, or time windows), trial by trial: one
    row per benchmark and primary metric, the worst change first.

    Exit code 1 when a significant regression beyond --threshold is found, 0 otherwise,
    2 for bad input (unknown campaign, nothing in common).
    """
    from results_db.compare import compare

    with handled():
        sides = [_side(baseline, by), _side(candidate, by)]
        store = db_api.ResultStore(db_url(db), upgrade=False)
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
                all_metrics=all_metrics,
            )
        if not records:
            raise QueryError(f"{baseline} and {candidate} have no trials and metrics in common")
    title = f"{baseline} -> {candidate} (change > 0 is better; Mann-Whitney U, alpha {alpha:g})"
    emit_records(out, format.value, title, records, _columns(COMPARE_COLUMNS, records), wide=wide)
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
    wide: WideOpt = False,
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
    title = f"{workload} {metric} over time"
    emit_records(out, format.value, title, records, _columns(HISTORY_COLUMNS, records), wide=wide)


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"
    json = "json"


class ExportWhat(str, Enum):
    metrics = "metrics"
    samples = "samples"
    telemetry = "telemetry"


# File extensions that say the export format when --format does not.
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}


def export_format(output: Path, given: ExportFormat | None) -> ExportFormat:
    """--format when given, else the one the file's extension names (QueryError if none)."""
    if given is not None:
        return given
    name = EXTENSIONS.get(output.suffix.lower())
    if name is None:
        known = ", ".join(EXTENSIONS)
        suffix = output.suffix or "no extension"
        raise QueryError(
            f"-o {output}: no format for {suffix!r}; name it {known}, or give --format"
        )
    return ExportFormat(name)


@results_app.command("export")
def results_export(
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
    what: Annotated[ExportWhat, typer.Option("--what")] = ExportWhat.metrics,
    format: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="default: from the extension (.csv, .parquet, .json)"),
    ] = None,
    campaign: CampaignOpt = None,
    workload: WorkloadOpt = None,
    where: WhereOpt = None,
    metric: MetricOpt = None,
    status: StatusOpt = "all",
    all_attempts: AllAttemptsOpt = False,
    since: SinceOpt = None,
    until: UntilOpt = None,
    db: DbOpt = None,
) -> None:
    """Write metrics, raw samples or telemetry as CSV, Parquet or JSON (records), selected
    with the filters of `results query`."""
    from results_db import frames

    with handled():
        fmt = export_format(output, format)
        f = _filters(campaign, workload, where, metric, status, all_attempts, since, until)
        url = db_url(db)
        frame = {
            ExportWhat.metrics: frames.metrics,
            ExportWhat.samples: frames.samples,
            ExportWhat.telemetry: frames.telemetry,
        }[what](url, **vars(f))
        try:
            if fmt is ExportFormat.csv:
                frame.to_csv(output, index=False)
            elif fmt is ExportFormat.parquet:
                frame.to_parquet(output, index=False)
            else:
                frame.to_json(output, orient="records", indent=1, date_format="iso")
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    out.print(f"{len(frame)} {what.value} row(s) -> {output} ({fmt.value})", markup=False)
