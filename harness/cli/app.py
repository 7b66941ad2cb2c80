"""The `harness` command line (Typer + rich).

Bad input (playbook, option, database URL, campaign id) prints one line per problem and
exits 2; `--debug` shows tracebacks. `harness run` exits 1 when any trial failed.
"""

from __future__ import annotations

import sys
import traceback

import typer

from harness.cli import hosts, info, local, run, store
from harness.cli.common import DebugOpt, err, state
from harness.cli.fleet import baseline_app, check
from harness.cli.k8s import k8s_app
from harness.cli.results import results_app
from harness.cli.slurm import slurm_app
from results_db.urls import scrub

# Ray, torch and scipy are imported inside the commands that use them (the campaign
# pipeline, the cluster session): `--help`, `playbook validate` and the results commands
# start in well under a second without them.

app = typer.Typer(
    help="Distributed benchmarking harness: run playbooks over Ray, query stored results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
playbook_app = typer.Typer(help="Check playbooks.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="Ray clusters: several nodes on this machine, or over SSH hosts.", no_args_is_help=True
)
app.add_typer(results_app, name="results")
app.add_typer(playbook_app, name="playbook")
app.add_typer(db_app, name="db")
app.add_typer(cluster_app, name="cluster")
app.add_typer(baseline_app, name="baseline")
app.add_typer(slurm_app, name="slurm")
app.add_typer(k8s_app, name="k8s")
app.command("check")(check)


@app.callback()
def _root(debug: DebugOpt = False) -> None:
    state["debug"] = debug


app.command()(run.run)
app.command()(info.nodes)
app.command()(info.workloads)
playbook_app.command("validate")(info.playbook_validate)
app.command()(store.report)
db_app.command("upgrade")(store.db_upgrade)
db_app.command("replay")(store.db_replay)
cluster_app.command("local")(local.cluster_local)
cluster_app.command("up")(hosts.cluster_up)
cluster_app.command("down")(hosts.cluster_down)
app.command("serve-model")(local.serve_model)


def _usage_error() -> type[Exception]:
    """Click's UsageError (a bad option value, a missing argument, an unknown command),
    wherever this typer takes Click from (its own copy since 0.2x, the click package before)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """Console-script entry point: bad usage is one line and exit 2 (Click's own report is a
    box under the usage line); an unexpected error is one line unless --debug is given; with
    --debug the traceback is printed with every known secret masked."""
    usage_error = _usage_error()
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `harness` or group: its help
            exc.show()
        else:
            where = exc.ctx.command_path if exc.ctx else "harness"
            message = exc.format_message().strip().replace("\n", " ")
            err.print(f"error: {where}: {message} (see {where} --help)", markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(1)
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
    sys.exit(code if isinstance(code, int) else 0)  # Exit(n) comes back as n
