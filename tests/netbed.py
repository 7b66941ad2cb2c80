"""A multi-host test bed on one Linux machine (root): N network namespaces on a bridge, each
a host with its own address (10.77.x.0/24, inside namespaces this bed makes) and, through
``unshare --uts``, its own hostname, with a Ray node in each. Links are shaped with ``tc
tbf`` (both directions), lossy or cut with ``nftables``; processes can run in a host.

It tears down exactly what it made: every process in its namespaces (``ip netns pids``),
the namespaces, the bridge and its folder, on exit, on Ctrl-C and on a failing test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RAY_PORT = 6379
BURST_BYTES = 4096  # tbf's bucket: under three full frames pass at once
TOOLS = ("ip", "tc", "nft", "unshare")


def unavailable() -> str | None:
    """Why the bed cannot be made here (one line), or None."""
    if sys.platform != "linux":
        return "the multi-host bed needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the multi-host bed needs root (network namespaces, tc, nftables)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"the multi-host bed needs {', '.join(missing)} (.ci/run installs them)"
    probe = f"hbprobe{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class Host:
    """One host of the bed: its namespace, hostname, address and interface."""

    index: int
    netns: str
    hostname: str
    address: str
    peer: str  # the veth end on the bridge, in the root namespace
    ifname: str = "eth0"

    def cmd(self, *argv: str) -> list[str]:
        """``argv`` run in this host: its namespace and hostname."""
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--uts", "sh", "-c", f'hostname {self.hostname} && exec "$@"', "sh",
            *argv,
        ]  # fmt: skip


@dataclass
class NetBed:
    """The bed: hosts on a bridge, a Ray node in each (the first is the head)."""

    tag: str
    folder: Path
    bridge: str
    subnet: str  # "10.77.N"
    hosts: list[Host] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    ray_starts: dict[int, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.hosts[0].address}:{RAY_PORT}"

    # links ---------------------------------------------------------------------------------
    def shape(self, host: Host, mbit: float, burst_bytes: int = BURST_BYTES) -> None:
        """Cap the host's link at ``mbit`` Mbit/s each way (tbf: ``burst_bytes`` may pass
        at once, the rest at the rate)."""
        for ns, dev in ((["ip", "netns", "exec", host.netns], host.ifname), ([], host.peer)):
            sh(*ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
               f"{mbit}mbit", "burst", str(burst_bytes), "latency", "400ms")  # fmt: skip

    def unshape(self, host: Host) -> None:
        sh("ip", "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", host.ifname, "root",
           check=False)  # fmt: skip
        sh("tc", "qdisc", "del", "dev", host.peer, "root", check=False)

    def drop(self, host: Host, percent: int | None) -> None:
        """Drop ``percent`` of the host's incoming packets (100: the link is cut, both ways,
        as a pulled cable is); None restores the link."""
        if percent is None:
            chains = None
        elif percent >= 100:
            chains = {"input": ["iif", host.ifname, "drop"], "output": ["oif", host.ifname, "drop"]}
        else:
            chains = {"input": ["iif", host.ifname, "numgen", "random", "mod", "100", "<",
                                str(percent), "drop"]}  # fmt: skip
        _rules(host, "hbed", chains)

    def firewall(self, host: Host, source: Host | None, ports: str = "20000-65535") -> None:
        """Refuse new TCP connections from ``source`` to the host's ``ports`` (what a lab
        firewall that opens only Ray's ports does: the bed's Ray ports are below 20000);
        None lifts it."""
        chains = None if source is None else {"input": [
            "ip", "saddr", source.address, "tcp", "dport", ports,
            "tcp", "flags", "&", "(syn|ack)", "==", "syn", "drop",
        ]}  # fmt: skip
        _rules(host, "hbfw", chains)

    # processes -----------------------------------------------------------------------------
    def stop_host(self, host: Host) -> None:
        """Stop every process in the host (its Ray node, as a crashed machine would lose it)."""
        _stop(sh("ip", "netns", "pids", host.netns, check=False).stdout.split())

    def leftovers(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Processes running in the bed's hosts but those whose command starts with one of
        ``keep`` (a daemon the test started, slurmd, sshd): 'host pid: command' each."""
        left = []
        for host in self.hosts:
            for pid in sh("ip", "netns", "pids", host.netns, check=False).stdout.split():
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                if cmd and not any(Path(cmd.split()[0]).name.startswith(k) for k in keep):
                    left.append(f"{host.hostname} {pid}: {cmd[:120]}")
        return left

    def restart_ray(self, host: Host) -> None:
        """Stop the host's processes and start its Ray node again, as an operator would
        after Ray declared it dead (a raylet the cluster dropped does not rejoin)."""
        self.stop_host(host)
        args, env = self.ray_starts[host.index]
        self.start(host, *args, env=env, log=self.folder / f"{host.hostname}.log")

    def run(self, host: Host, *argv: str, env: dict[str, str] | None = None, timeout: float = 300,
            ) -> subprocess.CompletedProcess:  # fmt: skip
        """Run a command in a host and wait for it."""
        return subprocess.run(
            host.cmd(*argv), capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def start(self, host: Host, *argv: str, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen:  # fmt: skip
        """Start a command in a host; it is stopped with the bed."""
        out = open(log or os.devnull, "w")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            host.cmd(*argv), stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
        out.close()
        self.procs.append(proc)
        return proc


def _rules(host: Host, table: str, chains: dict[str, list[str]] | None) -> None:
    """Replace the host's nftables ``table`` by a chain per hook (input, output) holding its
    one rule (None: no table, the rules lifted)."""
    ns = ["ip", "netns", "exec", host.netns, "nft"]
    sh(*ns, "delete", "table", "inet", table, check=False)
    if chains is None:
        return
    sh(*ns, "add", "table", "inet", table)
    for hook, rule in chains.items():
        sh(*ns, "add", "chain", "inet", table, hook,
           f"{{ type filter hook {hook} priority 0 ; }}")  # fmt: skip
        sh(*ns, "add", "rule", "inet", table, hook, *rule)


def faketime_env(offset_s: float) -> dict[str, str]:
    """The environment that shifts a process's wall clock by ``offset_s`` (libfaketime; its
    monotonic clock moves with it: not faking it breaks Python's sleep under libfaketime)."""
    lib = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))), None)
    if lib is None:
        raise RuntimeError("libfaketime is not installed (Debian's faketime package)")
    return {"LD_PRELOAD": str(lib), "FAKETIME": f"{offset_s:+g}s", "FAKETIME_DONT_RESET": "1"}


def _ray_node(
    bed: NetBed,
    host: Host,
    cpus: int,
    labels: dict[str, str],
    extra_env: dict[str, str],
    python: str = sys.executable,
) -> None:
    args = [python, "-m", "ray.scripts.scripts", "start", "--block",
            f"--node-ip-address={host.address}", f"--num-cpus={cpus}",
            "--num-gpus=0", "--disable-usage-stats", "--include-log-monitor=false",
            f"--temp-dir={bed.folder / host.hostname}",
            "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
            # Ray's ports fixed below 20000 (workers take 10002-19999 by default), as a lab
            # firewall would have them: what is above is free for the trials' own ports.
            "--node-manager-port=7001", "--object-manager-port=7002",
            "--runtime-env-agent-port=7003", "--dashboard-agent-grpc-port=7004",
            "--dashboard-agent-listen-port=7005", "--metrics-export-port=7006"]  # fmt: skip
    if host.index == 0:
        args += ["--head", f"--port={RAY_PORT}", "--include-dashboard=false"]
    else:
        args += [f"--address={bed.address}"]
    env = {"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(bed.folder), **extra_env}
    bed.ray_starts[host.index] = (args, env)
    bed.start(host, *args, env=env, log=bed.folder / f"{host.hostname}.log")


def wait_for_port(host: Host, port: int, timeout: float) -> None:
    """Return once something listens on the host's ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host.address, port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on {host.hostname}:{port} within {timeout:g} s")


def wait_for_nodes(bed: NetBed, count: int, timeout: float) -> None:
    """Return once ``count`` Ray nodes are alive in the head's node table, asked of the GCS
    from here with Ray's own client (private, but a test's helper may lean on it): `ray
    status` lagged registration by seconds (the autoscaler's poll) and cost 1-3 CPU-seconds
    a call."""
    from ray._raylet import GcsClient

    client = GcsClient(address=bed.address)
    deadline = time.monotonic() + timeout
    alive = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the head may not answer yet
            nodes = client.get_all_node_info(timeout=5).values()
            alive = sum(1 for n in nodes if n.state == 0)  # GcsNodeInfo.ALIVE
            if alive >= count:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{count} Ray nodes not alive within {timeout:g} s ({alive} are)")


@contextlib.contextmanager
def netbed(
    n: int,
    *,
    cpus: int = 1,
    labels: Sequence[dict[str, str]] = (),
    ray: bool = True,
    env: dict[int, dict[str, str]] | None = None,
    python: dict[int, str] | None = None,
) -> Iterator[NetBed]:
    """A bed of ``n`` hosts (h1..hn) with a Ray node in each (``env``: more environment for
    the node of host index i, e.g. ``faketime_env``; ``python``: the interpreter its Ray
    node runs from, the project's by default); everything it made goes after."""
    # Another bed may be up (the suite may run in two processes): a subnet no address uses.
    in_use = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    while True:
        tag = secrets.token_hex(2)
        subnet = f"10.77.{int(tag, 16) % 200 + 20}"
        if f" {subnet}." not in in_use:
            break
    bed = NetBed(tag, Path(tempfile.mkdtemp(prefix=f"hb{tag}", dir="/tmp")), f"hb{tag}", subnet)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on SIGTERM too
    try:
        sh("ip", "link", "add", bed.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet}.1/24", "dev", bed.bridge)
        sh("ip", "link", "set", bed.bridge, "up")
        for i in range(n):
            host = Host(i, f"hb{tag}-h{i + 1}", f"h{i + 1}", f"{subnet}.{11 + i}", f"hb{tag}v{i}")
            sh("ip", "netns", "add", host.netns)
            bed.hosts.append(host)
            # Debian's default: the hostname resolves to a loopback address (`ip netns exec`
            # bind-mounts /etc/netns/NS/hosts over /etc/hosts for the host's processes).
            etc = Path("/etc/netns") / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.hostname}\n")
            sh("ip", "link", "add", host.peer, "type", "veth", "peer", "name", "hbtmp" + tag)
            sh("ip", "link", "set", "hbtmp" + tag, "netns", host.netns, "name", host.ifname)
            sh("ip", "link", "set", host.peer, "master", bed.bridge, "up")
            inside = ["ip", "netns", "exec", host.netns, "ip"]
            sh(*inside, "addr", "add", f"{host.address}/24", "dev", host.ifname)
            sh(*inside, "link", "set", host.ifname, "up")
            sh(*inside, "link", "set", "lo", "up")
        if ray:
            for host in bed.hosts:
                host_labels = (
                    labels[host.index] if host.index < len(labels) else {"host": host.hostname}
                )
                _ray_node(
                    bed, host, cpus, host_labels, (env or {}).get(host.index, {}),
                    (python or {}).get(host.index, sys.executable),
                )  # fmt: skip
                if host.index == 0:
                    wait_for_port(host, RAY_PORT, 60)
            wait_for_nodes(bed, n, 90)
        yield bed
    finally:
        teardown(bed)
        signal.signal(signal.SIGTERM, previous)


def _stop(listed: Sequence[str | int], grace_s: float = 1.0) -> None:
    """SIGTERM these processes, then SIGKILL what is left after ``grace_s``: a bed's Ray
    processes signalled all at once outlasted 6 s of SIGTERM (`ray start`, its GCS and
    raylets), and the bed keeps nothing that needs a graceful stop."""
    pids = {int(p) for p in listed}
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)}
            time.sleep(0.05)
        if not pids:
            break
    for pid in {int(p) for p in listed}:
        # libfaketime's shared clock (faketime_env), which only a normal exit removes.
        for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
            with contextlib.suppress(FileNotFoundError):
                (Path("/dev/shm") / name).unlink()


def teardown(bed: NetBed) -> None:
    """Stop every process in the bed's namespaces, then remove them, the bridge, the folder."""
    for _ in range(2):  # again for any process started while the first ones stopped
        pids: set[int] = {p.pid for p in bed.procs if p.poll() is None}
        for host in bed.hosts:
            listed = sh("ip", "netns", "pids", host.netns, check=False).stdout.split()
            pids |= {int(p) for p in listed}
        _stop(list(pids))
    for proc in bed.procs:
        with contextlib.suppress(Exception):
            proc.wait(1)
    for host in bed.hosts:
        sh("ip", "netns", "del", host.netns, check=False)
        shutil.rmtree(Path("/etc/netns") / host.netns, ignore_errors=True)
    sh("ip", "link", "del", bed.bridge, check=False)
    shutil.rmtree(bed.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return state != "Z"
    return True
