"""Shared fixtures: the test plugin on the path, one real multi-node Ray cluster per session."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
REPO = Path(__file__).resolve().parent.parent

# The plugin is found through its .dist-info entry point, here and in every Ray worker.
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p
)

from workloads import registry  # noqa: E402

registry._plugins.cache_clear()
registry._discover.cache_clear()
registry.get_workload.cache_clear()

# Campaign journals go to a folder of the test session's own, never the user's state folder.
_STATE = tempfile.mkdtemp(prefix="hstate", dir="/tmp")
os.environ["HARNESS_STATE_DIR"] = _STATE


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(_STATE, ignore_errors=True)


# A test marked `quiet` judges timing that another test's load would move, so it runs alone:
# scripts/test runs the quiet tests in a phase of their own, after the rest. Where a run
# with `-n` includes both (pytest-xdist, by hand), a quiet test holds the machine
# exclusively, every other test holds it shared, from its fixtures' set-up to their
# tear-down. The turnstile keeps a stream of shared holders from starving a quiet test. The
# lock files live in a folder the controlling process makes before its workers start.
LOCKS_ENV = "HARNESS_TEST_LOCKS"
_LOCKS: tuple[int, int] | None = None


def pytest_configure(config) -> None:
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[LOCKS_ENV] = tempfile.mkdtemp(prefix="hlock", dir="/tmp")


def pytest_unconfigure(config) -> None:
    if os.environ.get(LOCKS_ENV) and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(LOCKS_ENV), ignore_errors=True)


def _machine_locks() -> tuple[int, int] | None:
    global _LOCKS
    folder = os.environ.get(LOCKS_ENV)
    if folder and os.environ.get("PYTEST_XDIST_WORKER") and _LOCKS is None:
        turnstile, machine = (os.path.join(folder, n) for n in ("turnstile", "machine"))
        _LOCKS = (
            os.open(turnstile, os.O_RDWR | os.O_CREAT),
            os.open(machine, os.O_RDWR | os.O_CREAT),
        )
    return _LOCKS


def _cpu_s() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and those its hypervisor took (steal),
    from /proc/stat, for the timeline."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    # user, nice, system, idle, iowait, irq, softirq, steal: busy is all but idle, iowait
    # and steal (time a hypervisor gave away is not this machine's work, but it stalls
    # whatever runs, and a timing test that failed may have met it)
    tick = os.sysconf("SC_CLK_TCK")
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:7]) - fields[3] - fields[4]) / tick, steal / tick


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    locks = _machine_locks()
    if locks is not None:
        turnstile, machine = locks
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            quiet = item.get_closest_marker("quiet") is not None
            fcntl.flock(machine, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    started, (busy, stolen) = time.time(), _cpu_s()
    try:
        yield
    finally:
        if locks is not None:
            fcntl.flock(locks[1], fcntl.LOCK_UN)
        # Which process ran what, when, and the machine's CPU seconds meanwhile (in one
        # process, the test's own cost, its clusters and servers included).
        timeline = os.environ.get("HARNESS_TEST_TIMELINE")
        if timeline:
            with open(timeline, "a") as f:
                worker = os.environ.get("PYTEST_XDIST_WORKER", "")
                now_busy, now_stolen = _cpu_s()
                f.write(
                    f"{worker},{started:.1f},{time.time():.1f},{now_busy - busy:.1f},"
                    f"{now_stolen - stolen:.1f},{item.nodeid}\n"
                )


class RayCluster:
    """A real Ray cluster of three nodes on this machine, each with its own labels/resources."""

    def __init__(self) -> None:
        from harness.cluster.local import NodeSpec, local_cluster

        # Token auth is on by default in Ray 2.60; this private test cluster opts out.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self._stack = contextlib.ExitStack()
        local = self._stack.enter_context(
            local_cluster(
                [
                    NodeSpec(1, {"tier": "head"}),
                    NodeSpec(1, {"tier": "worker", "zone": "a"}, {"fast": 1}),
                    NodeSpec(1, {"tier": "worker", "zone": "b"}),
                ],
                prefix="hrt",
            )
        )
        self.cluster = local.cluster
        self.address = local.address
        self.head_id = local.cluster.head_node.node_id
        self.worker_ids = [w.node_id for w in local.workers]

    def shutdown(self) -> None:
        self._stack.close()  # stops only the processes this cluster started, removes its folder


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite"


def write_playbook(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class PostgresServer:
    """A private PostgreSQL server (Debian's binaries) on a loopback port in a temp folder,
    password-authenticated, started as the postgres user when the tests run as root."""

    PASSWORD = "s3cret-pw"

    def __init__(self) -> None:
        import glob
        import pwd
        import socket
        import subprocess

        bindir = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
        if bindir is None and shutil.which("initdb"):
            bindir = os.path.dirname(os.path.realpath(shutil.which("initdb")))
        if bindir is None:
            message = "PostgreSQL server binaries not found (.ci/run installs Debian's postgresql)"
            if os.environ.get("CI"):
                raise RuntimeError(message)
            pytest.skip(message)
        self.tmp = tempfile.mkdtemp(prefix="hpg", dir="/tmp")
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.tmp, user.pw_uid, user.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        pwfile = os.path.join(self.tmp, "pw")
        with open(pwfile, "w") as f:
            f.write(self.PASSWORD)
        if as_user:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = os.path.join(self.tmp, "data")
        run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
        run(
            f"{bindir}/initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "--pwfile",
            pwfile,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
        )
        run(
            f"{bindir}/pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(self.tmp, "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1",
            "start",
        )
        self.pg_ctl = [*as_user, f"{bindir}/pg_ctl", "-D", data, "-w"]
        self.start_options = [
            "-l",
            os.path.join(self.tmp, "log"),
            "-o",
            f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1",
        ]
        self.stop_cmd = [*self.pg_ctl, "-m", "fast", "stop"]
        with self.connect("postgres", autocommit=True) as c:
            c.execute("create database harness_test")
        self.url = (
            f"postgresql+psycopg://postgres:{self.PASSWORD}@127.0.0.1:{self.port}/harness_test"
        )

    def connect(self, dbname: str = "harness_test", autocommit: bool = False):
        """A psycopg connection to one of the server's databases, as the superuser."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.PASSWORD,
            dbname=dbname,
            autocommit=autocommit,
        )

    def stop(self) -> None:
        """Stop the server (fast: connections cut), as an outage would."""
        import subprocess

        subprocess.run(self.stop_cmd, check=True, capture_output=True)

    def start(self) -> None:
        import subprocess

        subprocess.run(
            [*self.pg_ctl, *self.start_options, "start"], check=True, capture_output=True
        )

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection cut, the server back at once."""
        import subprocess

        subprocess.run(
            [*self.pg_ctl, *self.start_options, "-m", "fast", "restart"],
            check=True,
            capture_output=True,
        )

    def shutdown(self) -> None:
        import subprocess

        subprocess.run(self.stop_cmd, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.shutdown()


# The long poles first (multi-host beds, Ray campaigns), so the test processes, each
# handed whole files, finish together rather than one waiting on a late long file.
LONG_FILES = (
    "test_link_faults.py",
    "test_multihost.py",
    "test_slurm.py",
    "test_serving_results.py",
    "test_store_outage.py",
    "test_gpu_placement.py",
    "test_campaign_ray.py",
    "test_documented_features.py",
    "test_ship.py",
    "test_ssh_hosts.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
