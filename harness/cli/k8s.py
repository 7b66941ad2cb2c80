"""`harness k8s render`: a campaign as a KubeRay RayJob."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import DebugOpt, RunArgOpt, SetOpt, handled, run_args
from harness.playbook.limits import Limits
from harness.playbook.load import load_playbook

k8s_app = typer.Typer(help="Run a campaign on Kubernetes (KubeRay).", no_args_is_help=True)


@k8s_app.command("render")
def render(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file")],
    nodes: Annotated[int, typer.Option("--nodes", "-N", min=1, help="Ray nodes, head included")],
    image: Annotated[str, typer.Option(help="container image with harness, Ray and torch")],
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="GPUs per node")] = 0,
    cpus: Annotated[int, typer.Option("--cpus", min=1, help="CPUs per node")] = 4,
    memory: Annotated[str, typer.Option(help="memory per node (Kubernetes quantity)")] = "16Gi",
    name: Annotated[str | None, typer.Option(help="[default: harness-PLAYBOOK]")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace")] = None,
    db_secret: Annotated[
        str, typer.Option(help="Secret holding the store's URL (never put in the manifest)")
    ] = "harness-db",
    db_secret_key: Annotated[str, typer.Option(help="its key")] = "url",
    deadline: Annotated[
        int, typer.Option(min=1, help="activeDeadlineSeconds: the whole job, in seconds")
    ] = 24 * 3600,
    ttl: Annotated[
        int, typer.Option(min=0, help="ttlSecondsAfterFinished: keep the finished job")
    ] = 3600,
    set_: SetOpt = None,
    run_arg: RunArgOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print a ConfigMap (the playbook) and a RayJob that runs it; `kubectl apply -f -`."""
    with handled(debug):
        from harness.cluster.fingerprint import ray_version
        from harness.launch.k8s import RayJobSpec
        from harness.launch.k8s import render as render_job

        loaded = load_playbook(playbook, set_ or [], Limits.from_env(None, None, None))
        spec = RayJobSpec(
            playbook_name=playbook.name,
            playbook_text=loaded.text,
            nodes=nodes,
            image=image,
            gpus_per_node=gpus,
            cpus_per_node=cpus,
            memory_per_node=memory,
            name=name,
            namespace=namespace,
            db_secret=db_secret,
            db_secret_key=db_secret_key,
            deadline_s=deadline,
            ttl_s=ttl,
            ray_version=ray_version() or "",
            run_args=run_args(set_, run_arg),
        )
        sys.stdout.write(render_job(spec))
