"""`harness k8s render`: the RayJob validates against KubeRay's own CRD schema (vendored in
tests/schemas, v1.7.0), says what a lab needs (GPUs, deadline, clean-up, token auth) and
never holds the store's URL. Its entrypoint runs against Ray on the bed in test_ship.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

HARNESS = str(Path(sys.executable).with_name("harness"))
SCHEMA = Path(__file__).parent / "schemas" / "kuberay-1.7.0-rayjob-v1.json"
PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


def render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HARNESS, "k8s", "render", *args], capture_output=True, text=True, timeout=60
    )


def rayjob_errors(job: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(job)]


def test_the_rendered_rayjob_validates_against_kuberays_crd() -> None:
    done = render(str(PLAYBOOKS / "smoke.yaml"), "--nodes", "3", "--image", "lab/harness:1",
                  "--gpus", "2", "--deadline", "7200", "--set", "defaults.timeout_s=60",
                  "--namespace", "bench")  # fmt: skip
    assert done.returncode == 0, done.stderr
    config_map, job = yaml.safe_load_all(done.stdout)
    assert rayjob_errors(job) == []
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["activeDeadlineSeconds"] == 7200
    assert spec["entrypoint"] == (
        'harness run "$HARNESS_PLAYBOOK" --min-nodes 3 --join-timeout 600 --no-progress '
        "--set defaults.timeout_s=60"
    )
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == 2
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = workers["template"]["spec"]["containers"][0]
    for container in (head, worker):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e for e in head["env"]}
    assert env["HARNESS_DB_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "harness-db", "key": "url"}
    }
    assert "value" not in env["HARNESS_DB_URL"]
    assert config_map["data"]["playbook.yaml"] == (PLAYBOOKS / "smoke.yaml").read_text()
    assert job["metadata"]["namespace"] == config_map["metadata"]["namespace"] == "bench"


def test_the_schema_check_is_real() -> None:
    """The same manifest, spoilt as a hand edit would: the vendored schema refuses it."""
    done = render(str(PLAYBOOKS / "smoke.yaml"), "--nodes", "2", "--image", "lab/harness:1")
    _, job = yaml.safe_load_all(done.stdout)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "one"
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    errors = rayjob_errors(job)
    assert any("replicas" in e and "'one' is not of type 'integer'" in e for e in errors), errors
    assert any("shutdownAfterJobFinishes" in e and "boolean" in e for e in errors), errors


def test_a_bad_playbook_is_one_line_before_anything_is_printed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign: {name: x}\nbenchmarks: [{name: a, workload: nope.none}]\n")
    done = render(str(bad), "--nodes", "1", "--image", "x")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "unknown workload 'nope.none'" in done.stderr
