"""A campaign as a Slurm batch job: the sbatch script, and sbatch/squeue/scancel.

The script starts Ray the way Ray documents it for Slurm (the head on the job's first node,
one ``srun`` step per other node, each blocking), with job-scoped ports and temp folder so
jobs that share nodes never meet, and a token that only the job's own steps receive (Slurm
hands the environment to its steps). ``ray symmetric-run`` is not used: it ends with ``ray
stop``, which stops every Ray of the user on the node, another job's included. Each step
stops exactly its own process group: when the campaign ends, on ``scancel``, and at the
time limit (the batch shell is warned ``GRACE_S`` before it, so the campaign is marked
interrupted and resumes).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from harness.errors import ClusterError

GRACE_S = 60  # the batch shell's warning before the time limit (--signal=B:TERM@GRACE_S)
PORT_MIN = 12000  # job ports: PORT_MIN + (job id % PORT_SLOTS) * 1000 ... + 999, below
PORT_SLOTS = 20  # the kernel's ephemeral range (32768-), where trials bind their own ports
STOP_WAIT_S = 10  # a node's Ray gets this long after SIGTERM, then SIGKILL
DB_ENV = "HARNESS_DB_URL"  # the store's URL reaches the job in its environment, never the script


@dataclass
class SlurmJob:
    """What `harness slurm submit` was asked for."""

    playbook: Path
    nodes: int
    python: str = sys.executable  # the environment with Ray on every node (harness on the first)
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    cpus_per_node: int | None = None
    gpus_per_node: int | None = None
    output_dir: Path = field(default_factory=Path.cwd)
    tmp_root: str = "/tmp"
    job_name: str | None = None
    run_args: list[str] = field(default_factory=list)  # more `harness run` options
    sbatch_args: list[str] = field(default_factory=list)  # more #SBATCH lines, verbatim
    ray_version: str = ""


def time_limit_s(value: str | None) -> int | None:
    """sbatch's --time in seconds (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS); None
    when unset or not one of those."""
    if not value:
        return None
    days, _, rest = value.rpartition("-") if "-" in value else ("0", "", value)
    try:
        parts = [int(p) for p in rest.split(":")]
        d = int(days)
    except ValueError:
        return None
    if "-" in value:  # D-HH[:MM[:SS]]
        h, m, sec = [*parts, 0, 0][:3]
    elif len(parts) == 1:  # MM
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = parts[:3]
    return ((d * 24 + h) * 60 + m) * 60 + sec


def grace_s(time: str | None) -> int:
    """How long before the time limit the batch shell is told to stop: GRACE_S, or a
    quarter of a short limit (a 2-minute job is not told to stop at 1 minute)."""
    limit = time_limit_s(time)
    return GRACE_S if limit is None else max(5, min(GRACE_S, limit // 4))


def _directives(job: SlurmJob) -> list[str]:
    lines = [
        f"--job-name={job.job_name or 'harness-' + job.playbook.stem}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        f"--output={job.output_dir / 'harness-%j.out'}",
        f"--signal=B:TERM@{grace_s(job.time)}",
    ]
    if job.cpus_per_node:
        lines.append(f"--cpus-per-task={job.cpus_per_node}")
    if job.gpus_per_node:
        lines.append(f"--gpus-per-node={job.gpus_per_node}")
    for name in ("partition", "time", "account"):
        value = getattr(job, name)
        if value:
            lines.append(f"--{name}={value}")
    lines += job.sbatch_args
    return [f"#SBATCH {line}" for line in lines]


# One node's part, run by `srun` on it: check the environment, then start Ray in a process
# group of its own and stop exactly that group at the end.
NODE_STEP = r"""
set -u
role=$1
node=${SLURMD_NODENAME:-$(hostname -s)}
fail() { echo "error: node $node: $*" >&2; exit 3; }
have=$("$PYTHON" -c 'from importlib.metadata import version; print(version("ray"))' 2>/dev/null) \
  || fail "no Ray in $PYTHON (install ray==$RAY_VERSION there, or --python)"
[ "$have" = "$RAY_VERSION" ] || fail "Ray $have in $PYTHON, the driver's is $RAY_VERSION"
if [ "$role" = check ]; then
  if [ "$node" = "$HEAD_NODE" ]; then
    "$PYTHON" -c 'import harness' 2>/dev/null || fail "no harness in $PYTHON, where the \
campaign's driver runs (install it there, or --python)"
  fi
  exit 0
fi
addr=$(node_ip "$node")
# Node-local, and apart per node where nodes share /tmp; short: Ray's socket paths in it
# must stay under the kernel's 108 bytes.
JOB_TMP="$JOB_TMP.${node:0:16}"
mkdir -p "$JOB_TMP" && chmod 700 "$JOB_TMP"
export HARNESS_NODE_NAME=$node
# On SIGTERM `ray start --block` drains the node for up to 30 s first (for Serve's
# replicas): past Slurm's KillWait; a finished campaign has nothing to hand over.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
# No log monitor: it streams workers' output to drivers, and this job's driver takes none
# (harness runs with log_to_driver off); the workers' logs stay in the session folder.
args=(--block --disable-usage-stats --include-log-monitor=false --temp-dir="$JOB_TMP"
      --num-cpus="${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}"
      --num-gpus="${SLURM_GPUS_ON_NODE:-0}"
      --node-manager-port=$((PORT_BASE + 1)) --object-manager-port=$((PORT_BASE + 2))
      --runtime-env-agent-port=$((PORT_BASE + 3)) --dashboard-agent-grpc-port=$((PORT_BASE + 4))
      --dashboard-agent-listen-port=$((PORT_BASE + 5)) --metrics-export-port=$((PORT_BASE + 6))
      --min-worker-port=$((PORT_BASE + 100)) --max-worker-port=$((PORT_BASE + 999))
      --labels="slurm_node=$node")  # the job id would make every job's nodes new ones
[ -n "$addr" ] && args+=(--node-ip-address="$addr")
# Ray Client's server (port 10001 on every head by default) only where ray[client] is in:
# found without importing them (importing Ray costs the node most of a CPU-second).
"$PYTHON" -c 'import importlib.util as u, os, sys
ray = u.find_spec("ray")
hook = ray and os.path.join(ray.submodule_search_locations[0], "_private", "client_mode_hook.py")
sys.exit(0 if hook and os.path.exists(hook) and u.find_spec("grpc") else 1)' 2>/dev/null \
  && args+=(--ray-client-server-port=$((PORT_BASE + 7)))
if [ "$role" = head ]; then
  args+=(--head --port="$PORT_BASE" --include-dashboard=false)
else
  args+=(--address="$HEAD_ADDRESS")
fi
log="$RAY_LOGS.$node.log"
setsid "$PYTHON" -m ray.scripts.scripts start "${args[@]}" >"$log" 2>&1 &
ray_pid=$!
stop() {
  kill -TERM -- "-$ray_pid" 2>/dev/null
  for _ in $(seq $((STOP_WAIT_S * 10))); do
    kill -0 -- "-$ray_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$ray_pid" 2>/dev/null
  rm -rf -- "$JOB_TMP"
}
trap 'stop; exit 0' TERM INT USR1
wait "$ray_pid"
code=$?
stop
[ "$code" = 0 ] \
  || fail "Ray stopped with exit code $code: $(grep -v '^\s' "$log" | tail -n 1) (all: $log)"
"""

# Slurm's address for a node (NodeAddr, as slurmd is reached), so Ray binds the interface
# the scheduler uses; a name that resolves to loopback (Debian's 127.0.1.1) is left to Ray.
NODE_IP = r"""
node_ip() {
  local a
  a=$(scontrol show node "$1" 2>/dev/null | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
  case $a in
    *[!0-9.]*|'') a=$(getent ahostsv4 "${a:-$1}" | awk 'NR == 1 {print $1}') ;;
  esac
  case $a in 127.*) a= ;; esac
  echo "$a"
}
"""

BATCH = r"""
set -u
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export RAY_AUTH_TOKEN  # to this job's own steps only: Slurm hands them its environment
export PORT_BASE=${HARNESS_PORT_BASE:-$((PORT_MIN + (SLURM_JOB_ID % PORT_SLOTS) * 1000))}
export JOB_TMP="$TMP_ROOT/hj$SLURM_JOB_ID"
export RAY_LOGS="$OUTPUT_DIR/harness-$SLURM_JOB_ID.ray"  # each node's `ray start` output
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
export HEAD_NODE=${nodes[0]}
export HEAD_ADDRESS="$(node_ip "$HEAD_NODE"):$PORT_BASE"
[ "${HEAD_ADDRESS%%:*}" ] || HEAD_ADDRESS="$HEAD_NODE:$PORT_BASE"
export -f node_ip
echo "harness: Slurm job $SLURM_JOB_ID on ${nodes[*]}: Ray at $HEAD_ADDRESS, temp $JOB_TMP.NODE"
srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=0 \
  bash -c "$NODE_STEP" node-step check || exit 2
steps=()
driver=
finish() {
  # srun hands SIGUSR1 to each node's step, which stops its own Ray and temp folder; TERM
  # would have srun end the steps after Slurm's KillWait, with SIGKILL
  kill -USR1 "${steps[@]}" 2>/dev/null
  for _ in $(seq $((STOP_WAIT_S * 10 + 50))); do
    running=0
    for p in "${steps[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  kill -TERM "${steps[@]}" 2>/dev/null
  wait "${steps[@]}" 2>/dev/null
  echo "harness: Slurm job $SLURM_JOB_ID ended ($1)"
  exit "$1"
}
trap 'finish 143' TERM INT
srun --nodes=1 --ntasks=1 -w "$HEAD_NODE" bash -c "$NODE_STEP" node-step head &
steps+=($!)
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" bash -c "$NODE_STEP" node-step worker &
  steps+=($!)
done
for _ in $(seq 600); do  # the head's GCS answering, or its step gone (it said why)
  (exec 3<>"/dev/tcp/${HEAD_ADDRESS%%:*}/$PORT_BASE") 2>/dev/null && break
  kill -0 "${steps[0]}" 2>/dev/null \
    || { echo "error: Ray's head did not start on $HEAD_NODE" >&2; finish 2; }
  sleep 0.2
done
export HARNESS_LAUNCH="slurm job $SLURM_JOB_ID, script $SCRIPT_COPY"
"$PYTHON" -m harness run "$PLAYBOOK" --address "$HEAD_ADDRESS" \
  --min-nodes "$SLURM_JOB_NUM_NODES" --join-timeout 120 --no-progress "${RUN_ARGS[@]}" &
driver=$!
ended() {  # the campaign is marked interrupted (it resumes); then Ray stops
  kill -TERM "$driver" 2>/dev/null
  wait "$driver"
  finish 143
}
trap ended TERM INT
wait "$driver"
finish $?
"""


def render(job: SlurmJob) -> str:
    """The sbatch script for ``job``: no credential in it (the store's URL comes from the
    submitter's environment, the Ray token is made inside the job)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = {
        "PYTHON": job.python,
        "PLAYBOOK": str(job.playbook),
        "RAY_VERSION": job.ray_version,
        "TMP_ROOT": job.tmp_root,
        "PORT_MIN": str(PORT_MIN),
        "PORT_SLOTS": str(PORT_SLOTS),
        "STOP_WAIT_S": str(STOP_WAIT_S),
        "OUTPUT_DIR": str(job.output_dir),
    }
    assigned = [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]
    assigned.append('export SCRIPT_COPY="$OUTPUT_DIR/harness-$SLURM_JOB_ID.sbatch"')
    run_args = " ".join(shlex.quote(a) for a in job.run_args)
    return "\n".join(
        [
            "#!/bin/bash",
            *_directives(job),
            f"# Rendered by harness {__version__} on {stamp}: a campaign of {job.playbook.name}",
            f"# on {job.nodes} node(s). The store's URL comes from ${DB_ENV} in the job's",
            "# environment (sbatch passes the submitter's); Ray's token is made in the job.",
            *assigned,
            f"RUN_ARGS=({run_args})",
            "# One node's part, run by srun on each node (check, head or worker):",
            f"export NODE_STEP=$(cat <<'END'\n{NODE_STEP.strip()}\nEND\n)",
            NODE_IP.strip(),
            BATCH.strip(),
            "",
        ]
    )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"{name} not found: `harness slurm` needs Slurm's commands on PATH")
    return found


def submit(job: SlurmJob, script: str, db_url: str) -> str:
    """sbatch the script (the store's URL in its environment); the job id. The script is
    kept beside the job's output as harness-JOBID.sbatch."""
    job.output_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [_tool("sbatch"), "--parsable"],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, DB_ENV: db_url},
        timeout=60,
    )
    if done.returncode != 0:
        raise ClusterError(f"sbatch refused the job: {_first_line(done.stderr)}")
    job_id = done.stdout.strip().split(";")[0]
    (job.output_dir / f"harness-{job_id}.sbatch").write_text(script)
    return job_id


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[0] if lines else "(no message)"


@dataclass
class JobStatus:
    """A job as Slurm shows it, and what its output says of the campaign."""

    job_id: str
    state: str  # squeue's state, or "" once it left the queue
    nodes: str = ""
    elapsed: str = ""
    output: Path | None = None
    campaign: str = ""  # the campaign's id, from the driver's first line
    last_line: str = ""


def status(job_id: str, output_dir: Path | None = None) -> JobStatus:
    """The job's state (squeue) and, from its output file, its campaign and last line."""
    listed = subprocess.run(
        [_tool("squeue"), "-h", "-j", job_id, "-o", "%T|%N|%M"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    state, nodes, elapsed = "", "", ""
    if listed.returncode == 0 and listed.stdout.strip():
        state, nodes, elapsed = [*listed.stdout.strip().splitlines()[0].split("|"), "", ""][:3]
    output = _output_file(job_id, output_dir)
    result = JobStatus(job_id, state, nodes, elapsed, output)
    if output is not None and output.exists():
        lines = [x for x in output.read_text(errors="replace").splitlines() if x.strip()]
        for line in lines:
            if line.startswith("campaign ") and ":" in line:
                result.campaign = line.split()[1].rstrip(":")
                break
        result.last_line = lines[-1] if lines else ""
    return result


def _output_file(job_id: str, output_dir: Path | None) -> Path | None:
    shown = subprocess.run(
        [_tool("scontrol"), "show", "job", job_id], capture_output=True, text=True, timeout=60
    )
    for word in shown.stdout.split():
        if word.startswith("StdOut="):
            return Path(word.split("=", 1)[1])
    if output_dir is not None:  # the job has left slurmctld's memory: where submit put it
        return output_dir / f"harness-{job_id}.out"
    return None


def _state(job_id: str) -> str | None:
    """squeue's state of the job; "" once it left the queue; None when squeue cannot say
    (slurmctld busy: a job that looks gone may be running yet)."""
    listed = subprocess.run(
        [_tool("squeue"), "-h", "-j", job_id, "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        return "" if "Invalid job id" in listed.stderr else None
    lines = listed.stdout.strip().splitlines()
    return lines[0].strip() if lines else ""


def cancel(job_id: str, wait_s: float = GRACE_S, poll_s: float = 0.5) -> bool:
    """Stop the job as its time limit does: SIGTERM to the batch shell alone, which hands it
    to the driver (the campaign is marked interrupted, resumable) and only then stops each
    node's Ray. A plain ``scancel`` signals the driver and every node's Ray at once: the
    head's raylet can go before the driver has written the mark, and the campaign is left
    `running` until its heartbeat goes stale. A job not running yet, or still running after
    ``wait_s``, is scancelled outright. True when the job stopped gracefully."""
    if _state(job_id) in ("RUNNING", None):
        try:
            _scancel(job_id, "--batch", "--signal=TERM")
        except ClusterError:
            pass  # not running after all: the plain scancel below says what is wrong
        else:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if _state(job_id) not in ("RUNNING", None):  # COMPLETING: processes gone
                    return True
                time.sleep(poll_s)
    _scancel(job_id)
    return False


def _scancel(job_id: str, *options: str) -> None:
    done = subprocess.run(
        [_tool("scancel"), *options, job_id], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise ClusterError(f"scancel {job_id}: {_first_line(done.stderr)}")
