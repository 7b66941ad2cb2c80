"""A real Slurm on the multi-host bed (root): Debian's slurm-wlm and munge, a private munged,
slurmctld in the root network namespace on the bed's bridge address (its own hostname
through ``unshare --uts``), and one slurmd in each bed host (h1..hN, ``NodeAddr`` their
addresses). Everything it starts is stopped, by process id, when the context ends.

This machine mounts cgroup v1 controllers under a tmpfs at /sys/fs/cgroup, which slurmd's
autodetection refuses: ``cgroup.conf`` names ``cgroup/v1``; processes are tracked by
``proctrack/linuxproc`` (parentage), tasks are not bound (``task/none``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.netbed import NetBed, _stop, sh

TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "srun", "munged")
CPUS_PER_NODE = 4  # more than this VM has (config_overrides): two jobs can share a node


def unavailable() -> str | None:
    """Why a Slurm cannot be made here (one line), or None."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"the Slurm bed needs {', '.join(missing)} (Debian's slurm-wlm and munge)"
    return None


@dataclass
class SlurmBed:
    """A Slurm cluster over the bed's hosts; ``env`` is what a client (sbatch, squeue) needs."""

    bed: NetBed
    folder: Path
    conf: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command, from the root namespace."""
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}
        )

    def job_state(self, job_id: str) -> str:
        """The job's state as squeue shows it, or '' once it left the queue."""
        got = self.command("squeue", "-h", "-j", job_id, "-o", "%T")
        return got.stdout.strip()

    def wait_gone(self, job_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.job_state(job_id):
                return
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still queued after {timeout:g} s")


def _config(bed: NetBed, folder: Path, port: int, munge_socket: Path) -> str:
    nodes = "\n".join(
        f"NodeName={h.hostname} NodeAddr={h.address} CPUs={CPUS_PER_NODE} RealMemory=1000 "
        "State=UNKNOWN"
        for h in bed.hosts
    )
    names = ",".join(h.hostname for h in bed.hosts)
    return f"""\
ClusterName=hbed{bed.tag}
SlurmctldHost=hbctl{bed.tag}({bed.subnet}.1)
SlurmctldPort={port}
SlurmdPort={port + 1}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool-%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd-%n.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
{nodes}
PartitionName=bed Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def slurm_bed(bed: NetBed) -> Iterator[SlurmBed]:
    """Slurm's daemons over ``bed``'s hosts, until the context ends."""
    folder = bed.folder / "slurm"
    (folder / "state").mkdir(parents=True)
    port = 16000 + secrets.randbelow(900) * 2
    munge_socket = folder / "munge.socket"
    conf = folder / "slurm.conf"
    conf.write_text(_config(bed, folder, port, munge_socket))
    (folder / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
    slurm = SlurmBed(bed, folder, conf)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        munged = ["munged", "--force", "--foreground", f"--socket={munge_socket}",
                  f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                  f"--seed-file={folder}/munged.seed"]  # fmt: skip
        slurm.procs.append(
            subprocess.Popen(
                munged, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        _wait(lambda: munge_socket.exists(), 10, "munged did not make its socket")
        log = open(folder / "slurmctld.out", "w")  # noqa: SIM115 - the child holds it
        ctld = ["unshare", "--uts", "sh", "-c", f'hostname hbctl{bed.tag} && exec "$@"', "sh",
                "slurmctld", "-D", "-i"]  # fmt: skip
        slurm.procs.append(
            subprocess.Popen(
                ctld, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        )
        for host in bed.hosts:
            bed.start(host, "slurmd", "-D", "-N", host.hostname, env={"SLURM_CONF": str(conf)},
                      log=folder / f"slurmd-{host.hostname}.out")  # fmt: skip
        _wait(lambda: _idle_nodes(slurm) >= len(bed.hosts), 60, "Slurm nodes not idle")
        yield slurm
    finally:
        for job in slurm.command("squeue", "-h", "-o", "%i").stdout.split():
            slurm.command("scancel", job)
        for host in bed.hosts:  # the slurmds and whatever their jobs left
            _stop(sh("ip", "netns", "pids", host.netns, check=False).stdout.split())
        _stop([p.pid for p in slurm.procs if p.poll() is None])
        for proc in slurm.procs:
            with contextlib.suppress(Exception):
                proc.wait(1)


def _idle_nodes(slurm: SlurmBed) -> int:
    got = slurm.command("sinfo", "-h", "-N", "-o", "%N %t")
    return sum(1 for line in got.stdout.splitlines() if line.split()[-1] == "idle")


def _wait(ready, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(why)
