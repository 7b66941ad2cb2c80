"""A Ray cluster over a list of SSH hosts: `harness cluster up HOSTS_FILE` and `down`.

Every host is checked first (reachable over SSH, its Python has Ray, at the driver's
version): one line per host that fails, and nothing starts. Then Ray starts on the head
(the first host), then on the others, each as ``ray start --block`` in a process group of
its own (``setsid``), its group id kept on the host; ``down`` stops exactly that group. Up
twice is fine: a host whose group is alive is left as it is. Ray's token authentication
stays on: the token is made here, kept in this user's data folder, and sent to each host
on the SSH session's standard input (never on a command line, which others can read).
"""

from __future__ import annotations

import secrets
import shlex
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ClusterError

SSH_TIMEOUT_S = 10  # connect; a command's own time is bounded per call below
START_TIMEOUT_S = 90  # a Ray node reports "Ray runtime started" within this
STOP_WAIT_S = 10  # SIGTERM, then SIGKILL after this


class HostsError(ClusterError):
    """Hosts that cannot take part; ``lines`` names each, one line per host."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Host(BaseModel):
    """One host of the file: how SSH reaches it and what its Ray node offers."""

    model_config = ConfigDict(extra="forbid")

    ssh: str = Field(description="what `ssh` is given: a name from your SSH config, user@host")
    address: str | None = Field(None, description="the IP Ray binds and others reach")
    labels: dict[str, str] = Field(default_factory=dict)
    cpus: int | None = Field(None, ge=0)
    gpus: int | None = Field(None, ge=0)
    python: str | None = None  # this host's Python with Ray; the file's default otherwise

    @field_validator("ssh")
    @classmethod
    def _no_option(cls, value: str) -> str:
        if not value or value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError("expected a host name or user@host (no spaces, no options)")
        return value


class HostsFile(BaseModel):
    """The hosts file: the head first."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("harness", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    python: str = "python3"  # the Python with Ray on every host (absolute path advised)
    ray_port: int = Field(6379, ge=1024, le=65535)
    temp_root: str = "/tmp"  # node-local: the cluster keeps TEMP_ROOT/hr-NAME.HOST there
    ssh_config: str | None = None  # `ssh -F`: else the user's own ~/.ssh/config
    hosts: list[Host] = Field(min_length=1)

    def folder(self) -> str:
        """The cluster's folder on a host, as a shell word: apart per host, since hosts may
        share a filesystem, and short, since Ray's socket paths go inside it."""
        root = shlex.quote(self.temp_root.rstrip("/") or "/")
        return f'{root}/hr-{self.name}."$(hostname -s | cut -c1-16)"'


def load_hosts(path: Path) -> HostsFile:
    """Read and validate a hosts file (YAML, data only); ClusterError lines on bad input."""
    from harness.playbook.load import parse_yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = parse_yaml(text, max_expanded=1 << 20)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"{path}: not YAML: {message}") from None
    if isinstance(data, list):
        data = {"hosts": data}
    try:
        spec = HostsFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "file"
            lines.append(f"{path}: {where}: {e['msg']}")
        raise HostsError(lines) from None
    names = [h.ssh for h in spec.hosts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ClusterError(f"{path}: hosts listed twice: {', '.join(twice)}")
    return spec


def _ssh(spec: HostsFile, host: Host, remote: str, stdin: str = "", timeout: float = 60):
    argv = ["ssh"]
    if spec.ssh_config:
        argv += ["-F", str(Path(spec.ssh_config).expanduser())]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT_S}", host.ssh, remote]
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", f"no answer in {timeout:g} s")


def _last(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "(no message)"


def _python(spec: HostsFile, host: Host) -> str:
    return host.python or spec.python


CHECK = (
    "{python} -c 'from importlib.metadata import version; print(version(\"ray\"))' 2>&1 "
    "|| echo no-ray"
)


def check_hosts(spec: HostsFile, ray_version: str) -> list[str]:
    """One line per host that is unreachable over SSH, lacks Ray, or has another Ray than
    ``ray_version``; empty when every host can start."""

    def one(host: Host) -> str | None:
        python = _python(spec, host)
        got = _ssh(spec, host, CHECK.format(python=shlex.quote(python)), timeout=30)
        if got.returncode == 255:
            return f"host {host.ssh}: unreachable over SSH: {_last(got.stderr)}"
        out = got.stdout.strip().splitlines()
        have = out[-1].strip() if out else ""
        if got.returncode != 0 or have == "no-ray" or not have[:1].isdigit():
            return f"host {host.ssh}: no Ray in {python} (install ray=={ray_version} there)"
        if have != ray_version:
            return f"host {host.ssh}: Ray {have} in {python}, the driver's is {ray_version}"
        return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return [line for line in pool.map(one, spec.hosts) if line]


# On a host: start Ray in its own process group unless this cluster's group is alive there,
# then wait for Ray to say it started. The script, token included, comes on stdin.
START = r"""
set -u
token=@TOKEN@
dir=@FOLDER@
mkdir -p "$dir" && chmod 700 "$dir"
if [ -f "$dir/pgid" ] && kill -0 -- "-$(cat "$dir/pgid")" 2>/dev/null; then
  echo "already up: process group $(cat "$dir/pgid")"; exit 0
fi
(umask 077; printf '%s' "$token" > "$dir/token")
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/token"
# On SIGTERM `ray start --block` drains the node for up to 30 s first (for Serve's
# replicas); a benchmark cluster that is told to stop has nothing to hand over.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
setsid @PYTHON@ -m ray.scripts.scripts start --block --temp-dir="$dir/ray" @ARGS@ \
  >"$dir/ray.log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$dir/pgid"
for _ in $(seq @POLLS@); do
  if grep -q "Ray runtime started" "$dir/ray.log" 2>/dev/null; then
    echo "started: process group $pid"; exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
echo "Ray did not start: $(grep -v '^\s' "$dir/ray.log" | tail -n 1) (all: $dir/ray.log)"
kill -KILL -- "-$pid" 2>/dev/null
rm -f "$dir/pgid"
exit 3
"""

STOP = r"""
set -u
dir=@FOLDER@
[ -f "$dir/pgid" ] || { echo "not up"; exit 0; }
pgid=$(cat "$dir/pgid")
kill -TERM -- "-$pgid" 2>/dev/null
for _ in $(seq @POLLS@); do
  kill -0 -- "-$pgid" 2>/dev/null || break
  sleep 0.1
done
kill -KILL -- "-$pgid" 2>/dev/null
rm -rf -- "$dir"
echo "stopped: process group $pgid"
"""


def _fill(script: str, **values: str) -> str:
    """The script with @NAME@ replaced (bash has braces of its own)."""
    for name, value in values.items():
        script = script.replace(f"@{name}@", value)
    return script


def _ray_args(spec: HostsFile, host: Host, head: str | None) -> list[str]:
    args = ["--disable-usage-stats"]
    if host.address:
        args.append(f"--node-ip-address={host.address}")
    if host.cpus is not None:
        args.append(f"--num-cpus={host.cpus}")
    if host.gpus is not None:
        args.append(f"--num-gpus={host.gpus}")
    labels = {"ssh_host": host.ssh.rpartition("@")[2], **host.labels}
    args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
    if head is None:
        args += ["--head", f"--port={spec.ray_port}", "--include-dashboard=false"]
    else:
        args.append(f"--address={head}")
    return args


def head_address(spec: HostsFile) -> str:
    head = spec.hosts[0]
    return f"{head.address or head.ssh.rpartition('@')[2]}:{spec.ray_port}"


def token_path(spec: HostsFile, data_dir: Path) -> Path:
    """This cluster's Ray token here (made by the first `up`, kept for the next)."""
    return data_dir / "clusters" / spec.name / "auth_token"


def _token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(token)
    return token


def _start(spec: HostsFile, host: Host, head: str | None, token: str) -> tuple[bool, str]:
    args = " ".join(shlex.quote(a) for a in _ray_args(spec, host, head))
    script = _fill(
        START,
        FOLDER=spec.folder(),
        PYTHON=shlex.quote(_python(spec, host)),
        ARGS=args,
        POLLS=str(int(START_TIMEOUT_S / 0.2)),
        TOKEN=shlex.quote(token),
    )
    got = _ssh(spec, host, "bash -s", stdin=script, timeout=START_TIMEOUT_S + 30)
    said = _last(got.stdout + ("\n" + got.stderr if got.returncode else ""))
    return got.returncode == 0, said


def _wait_for_port(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


def up(spec: HostsFile, token_file: Path) -> list[tuple[str, str]]:
    """Start Ray on every host (the head first); (host, what happened) for each.
    HostsError when a host fails to start (the hosts started stay up: `down` stops them)."""
    token = _token(token_file)
    head = spec.hosts[0]
    ok, said = _start(spec, head, None, token)
    if not ok:
        raise HostsError([f"host {head.ssh}: {said}"])
    address = head_address(spec)
    if not _wait_for_port(address, 30):
        raise HostsError([f"host {head.ssh}: Ray's head does not answer at {address}"])
    results = [(head.ssh, said)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        started = list(pool.map(lambda h: _start(spec, h, address, token), spec.hosts[1:]))
    failed = []
    for host, (ok, said) in zip(spec.hosts[1:], started, strict=True):
        results.append((host.ssh, said))
        if not ok:
            failed.append(f"host {host.ssh}: {said}")
    if failed:
        raise HostsError(failed)
    return results


def down(spec: HostsFile) -> list[tuple[str, str]]:
    """Stop what `up` started on every host (workers first, then the head)."""
    script = _fill(STOP, FOLDER=spec.folder(), POLLS=str(STOP_WAIT_S * 10))

    def one(host: Host) -> tuple[str, str]:
        got = _ssh(spec, host, "bash -s", stdin=script, timeout=STOP_WAIT_S + 40)
        if got.returncode == 255:
            return host.ssh, f"unreachable over SSH: {_last(got.stderr)}"
        return host.ssh, _last(got.stdout + got.stderr)

    with ThreadPoolExecutor(max_workers=16) as pool:
        workers = list(pool.map(one, spec.hosts[1:]))
    return [one(spec.hosts[0]), *workers]
