"""`harness cluster up/down HOSTS_FILE`: Ray over a list of SSH hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_data_path

from harness.cli.common import DebugOpt, handled, out

HostsArg = Annotated[
    Path, typer.Argument(help="YAML: hosts (the head first), with labels; see the README")
]


def cluster_up(hosts_file: HostsArg, debug: DebugOpt = False) -> None:
    """Start Ray over SSH on every host of the file (checked first; up twice is fine)."""
    with handled(debug):
        from harness.cluster.fingerprint import ray_version
        from harness.launch.ssh import HostsError, check_hosts, head_address, load_hosts, up
        from harness.launch.ssh import token_path as token_file

        spec = load_hosts(hosts_file)
        problems = check_hosts(spec, ray_version() or "")
        if problems:
            raise HostsError([*problems, "nothing was started"])
        token = token_file(spec, user_data_path("harness"))
        for host, said in up(spec, token):
            out.print(f"{host}: {said}", markup=False)
        address = head_address(spec)
        out.print(f"Ray cluster {spec.name} at {address} ({len(spec.hosts)} hosts)", markup=False)
        out.print(
            f"  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token} harness run PLAYBOOK "
            f"--address {address}",
            markup=False,
        )
        out.print(f"  harness cluster down {hosts_file}", markup=False)


def cluster_down(hosts_file: HostsArg, debug: DebugOpt = False) -> None:
    """Stop on every host exactly the Ray that `harness cluster up` started there."""
    with handled(debug):
        from harness.launch.ssh import down, load_hosts

        spec = load_hosts(hosts_file)
        for host, said in down(spec):
            out.print(f"{host}: {said}", markup=False)
