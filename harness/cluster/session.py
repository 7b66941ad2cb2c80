"""Ray: an embedded local cluster or an existing one, and the inventory of its nodes.

Token authentication is left as Ray configures it (on by default since 2.60): joining a
cluster that requires a token uses the one Ray finds (RAY_AUTH_TOKEN or ~/.ray/auth_token).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.cluster.clocks import ROUNDS, ClockReading, best, reading
from harness.cluster.fingerprint import collect_facts, fingerprint, hardware_class
from harness.cluster.inventory import NodeInfo, assign_identities, selector_fields
from harness.cluster.ship import runtime_env
from harness.errors import ClusterError as ClusterError
from workloads.errors import first_line

INVENTORY_TIMEOUT_S = 180
REACH_TIMEOUT_S = 5.0
SHIP_ENV = "HARNESS_SHIP"
SHIP_MODES = ("auto", "always", "never")
PROBE_TIMEOUT_S = 3.0  # a node's free TCP port reached from another node within this
ray_messages = logging.getLogger("harness.ray")


def _quiet_ray_messages() -> None:
    """Send the messages Ray's driver thread prints about the cluster (a raylet that died, a
    worker killed: dozens of coloured lines) to a logger instead of our stdout.

    With log_to_driver off, Ray still prints errors the GCS publishes through
    ``ray._private.worker.print_to_stdstream``; there is no option for it, so that one
    function is replaced. Our own dispatcher reports the same events as trial failures.
    """
    import ray._private.worker as ray_worker

    # "Token authentication is enabled for this Ray cluster ..." at every embedded start: the
    # README says how auth works; the line said on each run only pushed our output down.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)

    current = getattr(ray_worker, "print_to_stdstream", None)
    if current is None or getattr(current, "_harness_quiet", False):
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            ray_messages.info("(%s) %s", data.get("pid", "ray"), line)

    to_log._harness_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_log


def check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    if "://" in address or address == "auto" or ":" not in address:
        return  # Ray Client, discovery, or something Ray resolves itself
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"cannot connect to Ray at {address}: expected HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot connect to Ray at {address}: {exc.strerror or exc} "
            "(is `ray start --head` running there?)"
        ) from None


@ray.remote(num_cpus=0, max_retries=0)
def _facts_task() -> dict[str, Any]:
    return collect_facts()


def _task_error_line(exc: BaseException) -> str:
    """One line for a failed task: the task's own exception (a RayTaskError's first line
    names only the task and its process), else Ray's error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {first_line(cause)}"
    return first_line(exc)


@ray.remote(num_cpus=0, max_retries=0)
def _clock_task() -> float:
    import time

    return time.time()


@ray.remote(num_cpus=0, max_restarts=0)
class _PortProbe:
    """Listens on a free TCP port of its node's IP, as a rank's rendezvous and gloo's mesh
    do, and tries to reach the other nodes' probes."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind((ray.util.get_node_ip_address(), 0))
        self.sock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def endpoint(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def reach(self, targets: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
        """(target's name, why) for each (name, address, port) not reached in time."""
        from concurrent.futures import ThreadPoolExecutor

        def one(target: tuple[str, str, int]) -> tuple[str, str] | None:
            name, host, port = target
            try:
                socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                if isinstance(exc, TimeoutError) or why == "timed out":
                    why = f"no answer in {PROBE_TIMEOUT_S:g} s"
                return name, f"{host}:{port}: {why}"
            return None

        with ThreadPoolExecutor(max_workers=16) as pool:
            return [r for r in pool.map(one, targets) if r is not None]


def _terminate_as_interrupt() -> Any:
    """SIGTERM (a scheduler's cancel or time limit, ``kill``) ends the run as Ctrl-C does,
    the campaign marked interrupted and resumable. ``ray.init`` installs a handler that
    exits at once instead, leaving the campaign `running` until its heartbeat goes stale.
    Only the first SIGTERM interrupts: ``scancel`` signals every process of the job and the
    batch shell passes it on, and a second KeyboardInterrupt raised while the first is
    marking the campaign cut that short (it stayed `running`; tests/test_slurm.py, 1 run in
    4). The scheduler's SIGKILL after its grace still bounds the wait."""
    import signal
    import threading

    fired = False

    def interrupt(*_: object) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)  # the one before, put back on exit


def _all_nodes_here() -> bool:
    """Whether every live node of the cluster has an address of this machine."""
    import psutil

    here = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return bool(nodes) and all(n.get("NodeManagerAddress") in here for n in nodes)


def _pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id, soft=False)


class ClusterSession:
    """Connect on enter, disconnect on exit. ``address=None`` starts an embedded cluster.

    Joining a cluster ships our packages with the job (``ship``): its nodes need no harness
    installed, and run exactly the driver's code. An embedded cluster runs this machine's."""

    def __init__(self, address: str | None = None, ship: str | None = None) -> None:
        self.address = address
        # auto: ship unless every node is on this machine (they import these very files);
        # always / never: as said. HARNESS_SHIP sets it from outside.
        self.ship = ship or os.environ.get(SHIP_ENV, "auto")
        if self.ship not in SHIP_MODES:
            raise ClusterError(f"{SHIP_ENV}={self.ship!r}: expected one of {', '.join(SHIP_MODES)}")
        self.shipped = False
        self._sigterm: Any = None

    @property
    def description(self) -> str:
        return self.address or "embedded local Ray cluster"

    def __enter__(self) -> ClusterSession:
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        _quiet_ray_messages()
        try:
            if self.address:
                check_reachable(self.address)
                if self.ship == "always":
                    kwargs["runtime_env"] = runtime_env()
                ray.init(address=self.address, **kwargs)
                if self.ship == "auto" and not _all_nodes_here():
                    # The job's runtime_env is fixed when it connects: again, shipping.
                    ray.shutdown()
                    kwargs["runtime_env"] = runtime_env()
                    ray.init(address=self.address, **kwargs)
                self.shipped = "runtime_env" in kwargs
            else:
                # "local" always starts a fresh cluster, never one a stale address file names.
                ray.init(address="local", include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot connect to Ray at {self.description}: {message}") from None
        self._sigterm = _terminate_as_interrupt()
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        ray.shutdown()
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)

    def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        """Return once ``count`` Ray nodes are alive (a cluster whose workers are still
        joining, as in a scheduler's job); ClusterError after ``timeout_s``."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= count:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"{alive} of {count} Ray nodes joined {self.description} within "
                    f"{timeout_s:g} s (--min-nodes)"
                )
            time.sleep(0.5)

    def clock_offsets(self, nodes: list[NodeInfo]) -> dict[str, ClockReading]:
        """Each node's clock against this driver's: the shortest-round-trip reading of
        ROUNDS exchanges with a task pinned to it, one node at a time (a few ms each)."""
        import time

        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        nodes = [n for n in nodes if n.ray_node_id in alive]  # a lost node cannot answer
        got: dict[str, list[ClockReading]] = {n.ray_node_id: [] for n in nodes}
        for _ in range(ROUNDS):
            for node in nodes:
                pinned = _pinned(node.ray_node_id)
                t_sent = time.time()
                try:
                    t_node = ray.get(
                        _clock_task.options(scheduling_strategy=pinned).remote(), timeout=30
                    )
                except ray.exceptions.RayError:
                    continue  # a node that cannot answer has no reading; the run will say why
                got[node.ray_node_id].append(reading(t_sent, t_node, time.time()))
        return {node_id: best(r) for node_id, r in got.items() if r}

    def unreachable(self, nodes: list[NodeInfo]) -> list[str]:
        """Between nodes of different hosts: one line per (node, node) where the first
        cannot open a TCP connection to a free port on the second's IP, as multi-rank
        trials must (the rendezvous at rank 0, and gloo's mesh between every pair). A
        firewall that lets Ray through but not these ports fails every such trial."""
        if len({n.address for n in nodes}) < 2:
            return []  # one host: nothing between hosts to check
        probes = [
            _PortProbe.options(scheduling_strategy=_pinned(n.ray_node_id)).remote() for n in nodes
        ]
        try:
            ends = ray.get([p.endpoint.remote() for p in probes], timeout=INVENTORY_TIMEOUT_S)
            names = [f"{n.hostname} ({n.short_id})" for n in nodes]
            asks = [
                p.reach.remote(
                    [
                        (names[j], *ends[j])
                        for j, other in enumerate(nodes)
                        if other.address != node.address
                    ]
                )
                for p, node in zip(probes, nodes, strict=True)
            ]
            got = ray.get(asks, timeout=INVENTORY_TIMEOUT_S)
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"port probe failed: {_task_error_line(exc)}") from None
        finally:
            for p in probes:
                ray.kill(p)
        return [
            f"node {names[i]} at {node.address} cannot reach {target} on a free port "
            f"({why}): multi-rank trials between them would fail"
            for i, node in enumerate(nodes)
            for target, why in got[i]
        ]

    def inventory(self) -> list[NodeInfo]:
        """Facts of every alive node, gathered by one task pinned to each node."""
        alive = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            _facts_task.options(scheduling_strategy=_pinned(n["NodeID"])).remote() for n in alive
        ]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=INVENTORY_TIMEOUT_S)
            facts = []
            for n, ref in zip(alive, refs, strict=True):
                try:
                    facts.append(ray.get(ref, timeout=0))
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, ray.exceptions.GetTimeoutError):
                        raise
                    where = n.get("NodeManagerAddress", n["NodeID"][:8])
                    raise ClusterError(
                        f"node inventory failed on {where}: {_task_error_line(exc)}"
                    ) from None
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(
                f"node inventory did not finish in {INVENTORY_TIMEOUT_S} s"
            ) from None
        nodes = []
        for raw, node_facts in zip(alive, facts, strict=True):
            labels = {
                k: v for k, v in (raw.get("Labels") or {}).items() if not k.startswith("ray.io/")
            }
            resources = dict(raw.get("Resources") or {})
            info = NodeInfo(
                ray_node_id=raw["NodeID"],
                address=raw.get("NodeManagerAddress", ""),
                labels=labels,
                resources=resources,
                facts=node_facts,
                fingerprint=fingerprint(node_facts, resources, labels),
                hardware_class=hardware_class(node_facts),
            )
            info.fields = selector_fields(info)
            nodes.append(info)
        return assign_identities(nodes)
