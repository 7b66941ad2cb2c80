"""The `harness` command line (Typer + rich).

Bad input (playbook, option, database URL, campaign id) prints one line per problem and
exits 2; `--debug` shows tracebacks. `harness run` exits 1 when any trial failed.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

import results_db as db_api  # SQLAlchemy loads on first use, not for --help
from harness.cli_common import (
    AddressOpt,
    BadOption,
    DbOpt,
    DebugOpt,
    ListFormat,
    MaxBytesOpt,
    MaxTrialsOpt,
    WideOpt,
    db_url,
    err,
    handled,
    out,
    state,
)
from harness.cli_fleet import baseline_app, check, judged_expectations, print_expectations
from harness.cli_results import print_trials, results_app
from harness.errors import CampaignError
from harness.eta import Eta, format_eta
from harness.limits import Limits
from harness.output import emit, table
from harness.playbook import load_playbook
from harness.summary import planned_params, varying_params
from harness.visible import visible
from results_db.errors import QueryError
from results_db.urls import MASK, safe_url, scrub
from results_db.vocabulary import TrialStatus, gpu_suffix

if TYPE_CHECKING:
    from harness.cluster import ClusterSession
    from harness.placement import PlacedTrial
    from harness.playbook import LoadedPlaybook
    from harness.runner import TrialOutcome
    from results_db.store import ResultStore

# Ray, torch and scipy are imported inside the commands that use them (harness.campaign,
# harness.cluster): `--help`, `playbook validate` and the results commands start in well
# under a second without them.

app = typer.Typer(
    help="Distributed benchmarking harness: run playbooks over Ray, query stored results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
playbook_app = typer.Typer(help="Check playbooks.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
cluster_app = typer.Typer(help="Try multi-node campaigns on one machine.", no_args_is_help=True)
app.add_typer(results_app, name="results")
app.add_typer(playbook_app, name="playbook")
app.add_typer(db_app, name="db")
app.add_typer(cluster_app, name="cluster")
app.add_typer(baseline_app, name="baseline")
app.command("check")(check)


@app.callback()
def _root(debug: DebugOpt = False) -> None:
    state["debug"] = debug


# run ---------------------------------------------------------------------------------------
class _EtaColumn(ProgressColumn):
    """Time left from the plan, recomputed at each refresh (not only when a trial ends)."""

    def __init__(self, live: _Live) -> None:
        super().__init__()
        self.live = live

    def render(self, task: Any) -> Text:
        eta = self.live.eta
        return Text(format_eta(eta.seconds_left()) if eta else "", style="progress.remaining")


def running_line(running: list[PlacedTrial], width: int = 60) -> str:
    """'running: bench[params] on host (id8)' for each trial running now, cut to ``width``."""
    if not running:
        return ""
    parts = [
        f"{t.spec.benchmark}[{planned_params(t.spec.workload, t.spec.params)}] "
        f"on {t.node.hostname} ({t.node.short_id})" + (gpu_suffix(*t.gpus) if t.gpus else "")
        for t in running
    ]
    text = "running: " + "; ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


class _Live:
    """Progress bar (done/total, elapsed, ETA, what runs where) and warnings while a
    campaign runs."""

    def __init__(self, enabled: bool) -> None:
        self.eta: Eta | None = None
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _EtaColumn(self),
            TextColumn("{task.fields[running]}", markup=False),
            console=err,
            disable=not enabled,
            transient=False,
        )
        self.task: Any = None
        self.campaign_id = ""

    def planned(self, campaign_id: str, trials: list[PlacedTrial], skipped: int) -> None:
        self.campaign_id = campaign_id
        self.eta = Eta(trials)
        note = f" ({skipped} already done)" if skipped else ""
        err.print(f"campaign {campaign_id}: {len(trials)} trial(s) to run{note}", markup=False)
        self.task = self.progress.add_task("trials", total=len(trials), running="")
        self.progress.start()

    def _show_running(self) -> None:
        assert self.eta is not None
        width = max(30, self.progress.console.width - 70)
        self.progress.update(self.task, running=running_line(self.eta.running(), width))

    def started(self, trial: PlacedTrial) -> None:
        assert self.eta is not None
        self.eta.started(trial)
        self._show_running()

    def finished(self, trial: PlacedTrial, outcome: TrialOutcome) -> None:
        assert self.eta is not None
        self.eta.finished(trial)
        self._show_running()
        if outcome.status not in (TrialStatus.OK, TrialStatus.SKIPPED):
            # Failure reasons and params are the trial's text, never markup.
            line = (
                f"{trial.spec.benchmark} "
                f"{planned_params(trial.spec.workload, trial.spec.params)} "
                f"on {trial.node.hostname}: "
                f"{outcome.failure_phase}: {outcome.failure_reason}"
            )
            self.progress.console.print(
                Text.assemble((str(outcome.status), "red"), " ", visible(line)), highlight=False
            )
        self.progress.advance(self.task)

    def warn(self, message: str) -> None:
        err.print(Text.assemble(("warning:", "yellow"), " ", visible(message)), highlight=False)

    def info(self, message: str) -> None:
        err.print(visible(message), markup=False, highlight=False)

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
    max_playbook_bytes: MaxBytesOpt = None,
    max_trials: MaxTrialsOpt = None,
    wide: WideOpt = False,
    skip_preflight: Annotated[
        bool,
        typer.Option(
            "--skip-preflight", help="do not check endpoints from here before the run starts"
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Run a playbook's campaign and store every trial."""
    with handled(debug):
        from harness.campaign import check_resume, run_campaign
        from harness.cluster import ClusterSession

        limits = Limits.from_env(max_playbook_bytes, max_trials)
        loaded = load_playbook(playbook, set_ or [], limits)
        cluster_address = address or loaded.model.cluster.address
        if not dry_run and not skip_preflight:
            from harness.preflight import preflight

            preflight(loaded)  # before anything is stored or sent
        store = None
        if not dry_run:
            store = db_api.ResultStore(db_url(db))
        elif resume is not None:  # a dry run reads which trials are done; it writes nothing
            store = db_api.ResultStore(db_url(db), upgrade=False)
        if resume is not None:
            assert store is not None
            check_resume(store, resume, loaded)  # before Ray starts: an unknown id is instant
        again = resume_command(playbook, db, address, set_ or [], max_playbook_bytes, max_trials)
        with ClusterSession(cluster_address) as session:
            if dry_run:
                _dry_run(loaded, session, store, resume)
                return
            assert store is not None
            live = _Live(progress and sys.stderr.isatty())
            try:
                result = run_campaign(loaded, store, session, live, resume=resume)
            except KeyboardInterrupt:
                live.stop()
                if live.campaign_id:
                    err.print(f"interrupted: to finish it, {again(live.campaign_id)}", markup=False)
                else:
                    err.print("interrupted before any trial ran", markup=False)
                raise typer.Exit(130) from None
            finally:
                live.stop()
        print_trials(store, result.campaign_id, "table", wide)
        with store.session() as s:
            expected = judged_expectations(s, result.campaign_id)
        missed = print_expectations(expected, wide) if expected else 0
        ok = result.counts.get(TrialStatus.OK.value, 0)
        climbed = result.counts.get(TrialStatus.SKIPPED.value, 0)  # not run: a ladder stopped
        bad = result.ran - ok - climbed
        left = len(result.left_failed)
        out.print(
            f"campaign {result.campaign_id}: {ok} ok, {bad} failed, {result.skipped} skipped "
            f"(already done)"
            + (f", {climbed} not run (ladder stopped)" if climbed else "")
            + (f", {left} left failed (not in this plan)" if left else "")
            + (f", {missed} expectation(s) missed" if missed else "")
            + f"; stored in {store.describe()}",
            markup=False,
        )
        if bad or left:
            out.print(f"to retry failed trials: {again(result.campaign_id)}", markup=False)
        if bad or left or missed:
            raise typer.Exit(1)


def _dry_run(
    loaded: LoadedPlaybook, session: ClusterSession, store: ResultStore | None, resume: str | None
) -> None:
    """Print the trials a run would start and their nodes (only those left with --resume)."""
    from harness.campaign import not_done, plan

    planned = plan(loaded, session.inventory())
    for line in planned.skipped:
        err.print(f"warning: optional benchmark skipped: {line}", markup=False)
    trials = planned.trials
    if resume is not None and store is not None:
        trials = not_done(trials, store.attempts(resume))
        done = len(planned.trials) - len(trials)
        err.print(f"resuming {resume}: {done} trial(s) already done", markup=False)
    _print_plan(trials)


def resume_command(
    playbook: Path,
    db: str | None,
    address: str | None,
    sets: list[str],
    max_playbook_bytes: int | None,
    max_trials: int | None,
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


# nodes, workloads, playbook ----------------------------------------------------------------
@app.command()
def nodes(
    address: AddressOpt = None,
    format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """Inventory of the cluster's nodes (starts an embedded cluster without --address)."""
    from harness.cluster import ClusterSession

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
    max_playbook_bytes: MaxBytesOpt = None,
    max_trials: MaxTrialsOpt = None,
) -> None:
    """Check a playbook without running it: every problem, one line each."""
    from harness.expand import expand

    with handled():
        limits = Limits.from_env(max_playbook_bytes, max_trials)
        loaded = load_playbook(playbook, set_ or [], limits)
        specs = expand(loaded.model)
    n = len(specs)
    per_gpu = sum(s.each in ("gpu", "gpu_pair") for s in specs)
    out.print(
        f"{playbook}: valid, {len(loaded.model.benchmarks)} benchmark(s), "
        f"{n} trial(s) per matching node"
        + (f" ({per_gpu} of them per GPU or GPU pair)" if per_gpu else ""),
        markup=False,
    )


# results -----------------------------------------------------------------------------------
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
        store = db_api.ResultStore(db_url(db), upgrade=False)
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
    from results_db.store import upgrade_schema

    with handled():
        url = db_url(db)
        before, after = upgrade_schema(url)
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
    import signal
    import time

    from harness.local_cluster import NodeSpec, local_cluster

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    specs = [
        NodeSpec(
            cpus_per_node,
            {"node": str(i), "role": "head" if i == 0 else "worker"},
            {"fast": 1} if i and i % 2 == 0 else {},
        )
        for i in range(nodes)
    ]
    try:
        # Ctrl-C may come at any point, the start-up included: the helper stops what
        # started and removes its temporary folder (sockets, logs, session files).
        with local_cluster(specs) as cluster:
            signal.signal(signal.SIGTERM, _interrupt)  # again: a Ray node installs its own
            out.print(f"{nodes} Ray node(s) on this machine at {cluster.address}", markup=False)
            out.print(f"  harness nodes --address {cluster.address}", markup=False)
            out.print(f"  harness run PLAYBOOK --address {cluster.address}", markup=False)
            out.print("Ctrl-C stops them (only them).", markup=False)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass


class Engine(str, Enum):
    model = "model"
    synthetic = "synthetic"


@app.command("serve-model")
def serve_model(
    model: Annotated[str, typer.Option(help="decoder size preset")] = "tiny",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 8000,
    engine: Annotated[
        Engine, typer.Option(help="model: our decoder; synthetic: tokens without compute")
    ] = Engine.model,
    first_token_ms: Annotated[
        float, typer.Option(min=0, help="hold the first token until this long after arrival")
    ] = 0.0,
    token_ms: Annotated[float, typer.Option(min=0, help="then one token every this long")] = 0.0,
    fail_every: Annotated[int, typer.Option(min=0, help="fail every N-th request (0: never)")] = 0,
    max_running: Annotated[
        int, typer.Option(min=0, help="generate at most N requests at once, queue the rest")
    ] = 0,
    failure: Annotated[
        list[str] | None,
        typer.Option(help="status | disconnect | stream_error (repeat to cycle through)"),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="require the key held by this environment variable as a bearer token"),
    ] = None,
) -> None:
    """Serve our Llama-style decoder over an OpenAI-compatible streaming API (to try and test
    inference.serving without a GPU or a serving engine)."""
    from harness.serve_model import FAILURE_KINDS, ServeOptions, serve_forever
    from workloads.llama_config import PRESETS

    with handled():
        if model not in PRESETS:
            raise BadOption(f"--model {model!r}: expected one of {', '.join(PRESETS)}")
        failures = tuple(failure or ["status"])
        for f in failures:
            if f not in FAILURE_KINDS:
                raise BadOption(f"--failure {f!r}: expected one of {', '.join(FAILURE_KINDS)}")
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BadOption(f"--api-key-env: ${api_key_env} is not set")
        options = ServeOptions(
            model=model,
            engine=engine.value,
            first_token_ms=first_token_ms,
            token_ms=token_ms,
            fail_every=fail_every,
            max_running=max_running,
            failures=failures,
            api_key=key,
        )
        try:
            serve_forever(options, host, port)
        except OSError as exc:  # the port is taken, the address is not ours
            raise BadOption(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def main() -> None:
    """Console-script entry point: an unexpected error is one line unless --debug is given;
    with --debug the traceback is printed with every known secret masked."""
    try:
        app()
    except Exception as exc:
        if "--debug" in sys.argv:
            sys.stderr.write(scrub("".join(traceback.format_exception(exc))))
            sys.exit(1)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"error: internal: {type(exc).__name__}: {scrub(first)} (rerun with --debug)",
            markup=False,
        )
        sys.exit(1)
