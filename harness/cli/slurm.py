"""`harness slurm submit/status/cancel`: a campaign as a Slurm batch job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import DbOpt, DebugOpt, RunArgOpt, SetOpt, db_url, handled, out, run_args
from harness.playbook.limits import Limits
from harness.playbook.load import load_playbook

slurm_app = typer.Typer(help="Run a campaign as a Slurm batch job.", no_args_is_help=True)

OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        help="where the job's output and its script are kept (shared by the nodes) "
        "[default: the current folder]",
        show_default=False,
    ),
]


@slurm_app.command("submit")
def submit(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file (on a shared filesystem)")],
    nodes: Annotated[int, typer.Option("--nodes", "-N", min=1, help="nodes to allocate")] = 1,
    partition: Annotated[str | None, typer.Option(help="Slurm partition")] = None,
    time: Annotated[str | None, typer.Option(help="time limit, as sbatch takes it")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account")] = None,
    cpus_per_node: Annotated[
        int | None, typer.Option("--cpus-per-node", min=1, help="CPUs for Ray on each node")
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", min=0, help="GPUs on each node")
    ] = None,
    db: DbOpt = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="the Python on the nodes with Ray (and harness on the first node) "
            "[default: this one]",
            show_default=False,
        ),
    ] = None,
    output_dir: OutputDirOpt = None,
    tmp_root: Annotated[
        str, typer.Option(help="node-local folder for the job's Ray temp folder")
    ] = "/tmp",
    job_name: Annotated[str | None, typer.Option(help="[default: harness-PLAYBOOK]")] = None,
    set_: SetOpt = None,
    run_arg: RunArgOpt = None,
    sbatch_arg: Annotated[
        list[str] | None,
        typer.Option("--sbatch-arg", help="one more #SBATCH option, e.g. --exclusive"),
    ] = None,
    print_: Annotated[
        bool, typer.Option("--print", help="print the sbatch script; submit nothing")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Submit a campaign as an sbatch job: Ray on the allocated nodes, `harness run` on the
    first, Ray stopped at the end, on scancel and at the time limit."""
    with handled(debug):
        from harness.cluster.fingerprint import ray_version
        from harness.launch.slurm import SlurmJob, render
        from harness.launch.slurm import submit as sbatch

        path = playbook.expanduser().resolve()
        load_playbook(path, set_ or [], Limits.from_env(None, None, None))  # bad input: here
        forwarded = run_args(set_, run_arg)
        job = SlurmJob(
            playbook=path,
            nodes=nodes,
            python=python or sys.executable,
            partition=partition,
            time=time,
            account=account,
            cpus_per_node=cpus_per_node,
            gpus_per_node=gpus_per_node,
            output_dir=(output_dir or Path.cwd()).expanduser().resolve(),
            tmp_root=tmp_root,
            job_name=job_name,
            run_args=forwarded,
            sbatch_args=list(sbatch_arg or []),
            ray_version=ray_version() or "",
        )
        script = render(job)
        if print_:
            sys.stdout.write(script)
            return
        url = db_url(db)
        job_id = sbatch(job, script, url)
        out.print(f"submitted Slurm job {job_id}", markup=False)
        out.print(f"  output: {job.output_dir / f'harness-{job_id}.out'}", markup=False)
        out.print(f"  script: {job.output_dir / f'harness-{job_id}.sbatch'}", markup=False)
        out.print(f"  follow: harness slurm status {job_id}", markup=False)
        out.print(f"  stop:   harness slurm cancel {job_id}", markup=False)


@slurm_app.command("status")
def status(
    job_id: Annotated[str, typer.Argument(help="the job id submit printed")],
    output_dir: OutputDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """The job's state, its campaign, and the last line of its output."""
    with handled(debug):
        from harness.launch.slurm import status as job_status

        got = job_status(job_id, (output_dir or Path.cwd()).expanduser().resolve())
        state = got.state or "no longer queued (ended)"
        where = f" on {got.nodes}" if got.nodes else ""
        took = f", {got.elapsed} so far" if got.elapsed else ""
        out.print(f"job {job_id}: {state}{where}{took}", markup=False)
        if got.campaign:
            out.print(f"  campaign: {got.campaign}", markup=False)
        if got.output is not None:
            out.print(f"  output: {got.output}", markup=False)
        if got.last_line:
            out.print(f"  last: {got.last_line}", markup=False)


@slurm_app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(help="the job id submit printed")],
    debug: DebugOpt = False,
) -> None:
    """Stop the job: its campaign is marked interrupted (`--run-arg=--resume` in a new job
    finishes it), then each node's Ray stops; waits for that (a minute at most), then
    scancels whatever is left."""
    with handled(debug):
        from harness.launch.slurm import cancel as stop_job

        if stop_job(job_id):
            out.print(
                f"stopped Slurm job {job_id} as at its time limit: a campaign it was running "
                "is marked interrupted",
                markup=False,
            )
        else:
            out.print(f"cancelled Slurm job {job_id}", markup=False)
