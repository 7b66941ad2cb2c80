"""Commands that need neither Ray nor torch do not import them (the time it saves is measured
in benchmarks/startup.py, not here): each runs in a fresh interpreter, which then reports
what it really loaded."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROBE = """
import sys
from typer.testing import CliRunner
from harness.cli.app import app
from workloads.lazy import is_loaded
result = CliRunner().invoke(app, sys.argv[1:])
print(result.exit_code)
heavy = [m for m in ("torch", "ray", "scipy", "sqlalchemy") if is_loaded(m)]
# What runs on a node (the runner, the telemetry sources) is no business of these commands.
heavy += [m for m in ("harness.node.runner", "collectors") if m in sys.modules]
heavy += sorted(m for m in sys.modules if m.startswith("collectors."))
print(" ".join(heavy))
"""


def probe(code: str, *argv: str) -> str:
    """What ``code`` prints in a fresh interpreter with only the project on its path."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def loaded_by(*argv: str) -> tuple[int, set[str]]:
    *_, code, modules = probe(PROBE, *argv).split("\n")[:-1]  # the last two lines printed
    return int(code), set(modules.split())


def test_help_loads_no_heavy_module() -> None:
    code, loaded = loaded_by("--help")
    assert code == 0
    assert loaded == set()


@pytest.mark.parametrize("argv", [("workloads",), ("playbook", "validate", "playbooks/smoke.yaml")])
def test_workload_listing_and_validation_load_neither_torch_nor_ray(argv: tuple[str, ...]) -> None:
    code, loaded = loaded_by(*argv)
    assert code == 0
    assert not loaded & {"torch", "ray"}
    assert not {m for m in loaded if m.startswith(("collectors", "harness.node"))}, loaded


def test_results_commands_load_the_store_but_not_torch_or_ray(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    assert (
        subprocess.run(
            [sys.executable, "-m", "harness", "db", "upgrade", "--db", str(db)],
            cwd=ROOT,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    code, loaded = loaded_by("results", "campaigns", "--db", str(db))
    assert code == 0
    assert "sqlalchemy" in loaded and not loaded & {"torch", "ray"}


def test_a_lazily_bound_torch_hands_out_the_real_modules_objects() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import workloads.kernel_gemm as g; from workloads.lazy import is_loaded; "
            "before = is_loaded('torch'); x = g.torch.ones(2); import torch; "
            "print(before, is_loaded('torch'), g.torch.ones is torch.ones, "
            "'ones' in vars(g.torch), float(x.sum()))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    # 'ones' kept in the stand-in's namespace: the next read is a plain dictionary lookup.
    assert proc.stdout.split() == ["False", "True", "True", "True", "2.0"], proc.stderr


SELF_DELETING = """
import sys
hidden = 1
delattr(sys.modules[__name__], "hidden")  # as torch 2.11's __init__ does while importing
answer = 42
"""
LAZY_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lazy", sys.argv[1])
lazy = importlib.util.module_from_spec(spec); spec.loader.exec_module(lazy)
m = lazy.lazy_module("selfdel")
print(lazy.is_loaded("selfdel"), m.answer, hasattr(m, "hidden"), lazy.is_loaded("selfdel"))
"""


TRIAL = """
import json, sys
sys.path.insert(0, "tests/plugins")  # the test plugin, found through its entry point
from harness.node.runner import run_trial
from workloads import UnknownWorkload, get_workload
settings = {"min_repetitions": 40, "min_duration_s": 0, "warmup_iterations": 0}
out = run_trial("test.flaky", {"sleep_s": 0.0001}, settings)
time = out.summaries["time"]
assert out.status == "ok" and time["n"] == 40 and time["ci_low"] <= time["median"], out
assert get_workload("memory.stream").name == "memory.stream"
try:
    get_workload("memory.strem")
except UnknownWorkload:
    pass
else:
    raise SystemExit("an unknown workload was found")
print(json.dumps([m for m in sys.modules if m.startswith(("workloads.", "scipy", "aiohttp"))]))
"""


def test_a_trial_loads_only_its_own_workload_and_no_scipy() -> None:
    """What a trial's fresh Ray worker does: look its workload up (a plugin's here), run it
    and summarise the repetitions. The other workloads' modules stay out (the serving one's
    aiohttp cost every worker 0.13 s), and so does scipy (0.44 s): a trial's samples are
    summarised without it up to harness.node.stats.EXACT_MAX_N."""
    loaded = set(json.loads(probe(TRIAL)))
    assert "workloads.memory_stream" in loaded
    assert not {m for m in loaded if m.startswith(("scipy", "aiohttp"))}, loaded
    assert not {"workloads.serving.workload", "workloads.kernel_gemm"} & loaded, loaded


def _pythons() -> list[str]:
    """This interpreter and any other CPython 3.12+ found here: importlib's LazyLoader
    recursed without end from 3.12.3 on, where a module deletes its own attribute."""
    found = [sys.executable]
    for v in ("3.12", "3.13", "3.14"):
        found += [p for p in [shutil.which(f"python{v}")] if p and "/shims/" not in p]
        found += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{v}.*/bin/python"))
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("python", _pythons())
def test_a_module_that_deletes_its_own_attribute_while_importing_loads_lazily(
    python: str, tmp_path: Path
) -> None:
    (tmp_path / "selfdel.py").write_text(SELF_DELETING)
    proc = subprocess.run(
        [python, "-c", LAZY_PROBE, str(ROOT / "workloads" / "lazy.py")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.stdout.split() == ["False", "42", "False", "True"], proc.stderr[-2000:]


def test_node_facts_unpickle_in_a_driver_without_torch() -> None:
    """A node's facts travel to the driver by pickle: a torch type among them (torch's
    TorchVersion) made every `harness run` import torch on the driver, 1.5 s here."""
    import pickle

    from harness.cluster.fingerprint import collect_facts

    facts = pickle.dumps(collect_facts())
    unpickle = (
        "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", unpickle], input=facts, capture_output=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [b"False"]


FACTS_PROBE = """
import sys
from workloads import devices
from workloads.lazy import is_loaded
if sys.argv[1] == "gpu":  # as on a machine with a GPU device node
    devices._gpu_device_nodes = lambda: True
facts = devices.torch_facts()
loaded = is_loaded("torch")
import torch
print(loaded, facts["torch"] == str(torch.__version__), facts["cuda_runtime"] == torch.version.cuda)
"""


@pytest.mark.parametrize("machine", ["cpu", "gpu"])
def test_torch_facts_import_torch_only_where_a_gpu_could_be(machine: str) -> None:
    """A Ray worker gathering a CPU node's facts reads torch's version file, not torch (a
    CPU-second per new worker); the facts are the same as torch's own."""
    from workloads.devices import _gpu_device_nodes

    if machine == "cpu" and _gpu_device_nodes():
        pytest.skip("this machine has a GPU device node")
    printed = probe(FACTS_PROBE, machine)
    assert printed.split() == [str(machine == "gpu"), "True", "True"], printed
