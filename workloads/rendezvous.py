"""Joining a multi-rank trial's process group across hosts.

gloo (and NCCL's socket bootstrap) pick the address they advertise from the hostname unless
told an interface; on many Debian/Ubuntu hosts the hostname resolves to 127.0.1.1, so peers
on other hosts are told to connect to a loopback address and the mesh times out minutes
later. Each rank here names the interface that carries its own Ray node's IP
(``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``), unless the user set them (theirs win); the
rendezvous goes to rank 0's node IP, never a hostname; and a rank that cannot reach rank 0
fails within RENDEZVOUS_TIMEOUT_S with one line naming both hosts, the address and the port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import timedelta
from typing import Any

from workloads.base import RankContext
from workloads.errors import UnsupportedParams, first_line
from workloads.lazy import lazy_module

IFNAME_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
RENDEZVOUS_TIMEOUT_S = 60.0  # rank 0 reachable, and every rank joined, within this
OP_TIMEOUT = timedelta(seconds=300)  # one collective (a large one over a slow link)


def interface_of(ip: str) -> str | None:
    """The name of the local interface holding ``ip``, or None."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family in (socket.AF_INET, socket.AF_INET6) and a.address == ip
               for a in addresses):  # fmt: skip
            return name
    return None


def choose_interfaces(node_ip: str) -> dict[str, Any]:
    """Set the socket interface variables to the interface carrying ``node_ip`` where the
    user has not set them; what was used and who chose it, for the trial's context."""
    chosen: dict[str, Any] = {}
    iface = interface_of(node_ip) if node_ip else None
    for name in IFNAME_VARIABLES:
        if os.environ.get(name):
            chosen[name] = {"value": os.environ[name], "set_by": "user"}
        elif iface:
            os.environ[name] = iface
            chosen[name] = {"value": iface, "set_by": "harness", "for": node_ip}
    return chosen


def _host(ctx: RankContext, rank: int) -> str:
    return ctx.hosts[rank] if rank < len(ctx.hosts) else f"rank {rank}'s host"


def wait_for_rank0(ctx: RankContext, timeout_s: float = RENDEZVOUS_TIMEOUT_S) -> None:
    """Return once rank 0's rendezvous port accepts a connection (it opens it as it joins);
    UnsupportedParams naming both hosts, the address and the port after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    reason = "no answer"
    while True:
        try:
            with socket.create_connection((ctx.master_addr, ctx.master_port), timeout=2):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            raise UnsupportedParams(
                f"rank {ctx.rank} on {_host(ctx, ctx.rank)} ({ctx.node_ip or '?'}) cannot reach "
                f"rank 0 on {_host(ctx, 0)} at {ctx.master_addr}:{ctx.master_port} within "
                f"{timeout_s:g} s ({reason})"
            )
        time.sleep(0.2)


def join(ctx: RankContext, backend: str) -> dict[str, Any]:
    """Set the interfaces, reach rank 0 and init the default process group; the context to
    record (interfaces, rendezvous address)."""
    torch = lazy_module("torch")

    chosen = choose_interfaces(ctx.node_ip)
    if ctx.rank != 0:
        wait_for_rank0(ctx)
    try:
        torch.distributed.init_process_group(
            backend,
            init_method=f"tcp://{ctx.master_addr}:{ctx.master_port}",
            rank=ctx.rank,
            world_size=ctx.world_size,
            timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S),  # bounds gloo's mesh connect
        )
    except Exception as exc:
        first = first_line(exc)
        raise UnsupportedParams(
            f"rank {ctx.rank} on {_host(ctx, ctx.rank)} could not join the {backend} group "
            f"of rank 0 on {_host(ctx, 0)} at {ctx.master_addr}:{ctx.master_port}: {first}"
        ) from None
    # Joined: operations get a longer bound than joining (torch's private setter; where a
    # torch lacks it, operations keep the rendezvous bound).
    set_timeout = getattr(torch.distributed.distributed_c10d, "_set_pg_timeout", None)
    if set_timeout is not None:
        with contextlib.suppress(ValueError, AssertionError, RuntimeError):
            set_timeout(OP_TIMEOUT)
    return {"rendezvous": f"{ctx.master_addr}:{ctx.master_port}", "socket_ifname": chosen}
