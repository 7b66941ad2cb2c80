"""A campaign as a KubeRay ``RayJob`` (ray.io/v1): `harness k8s render` prints the
manifests, for ``kubectl apply -f -``.

Two documents: a ConfigMap holding the playbook (mounted in the head's container) and the
RayJob, whose cluster has NODES Ray nodes (the head and NODES-1 workers, alike) with Ray's
token authentication on. Its entrypoint, run on the head by KubeRay's submitter, is
``harness run`` against the job's own cluster (``RAY_ADDRESS``, set by Ray's job
submission), waiting for every node. The store's URL comes from a Secret as an environment
variable of the head's container: it is never in the manifest.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PLAYBOOK_DIR = "/etc/harness"
PLAYBOOK_KEY = "playbook.yaml"


@dataclass
class RayJobSpec:
    """What `harness k8s render` was asked for."""

    playbook_name: str
    playbook_text: str
    nodes: int
    image: str
    gpus_per_node: int = 0
    cpus_per_node: int = 4
    memory_per_node: str = "16Gi"
    name: str | None = None
    namespace: str | None = None
    db_secret: str = "harness-db"  # a Secret in the namespace with the store's URL
    db_secret_key: str = "url"
    deadline_s: int = 24 * 3600  # activeDeadlineSeconds: the whole job, start-up included
    ttl_s: int = 3600  # the finished RayJob (and its logs) kept this long
    ray_version: str = ""
    run_args: list[str] = field(default_factory=list)


def job_name(spec: RayJobSpec) -> str:
    """A DNS-1123 name: lower case, digits and '-', at most 40 characters (KubeRay derives
    longer names for the cluster and its pods from it)."""
    raw = spec.name or f"harness-{Path(spec.playbook_name).stem}"
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:40].strip("-")
    return name or "harness"


def entrypoint(spec: RayJobSpec) -> str:
    """The command KubeRay runs on the head (a shell line: $HARNESS_PLAYBOOK is expanded)."""
    args = ["--min-nodes", str(spec.nodes), "--join-timeout", "600", "--no-progress"]
    args += spec.run_args
    return 'harness run "$HARNESS_PLAYBOOK" ' + " ".join(shlex.quote(a) for a in args)


def _container(spec: RayJobSpec, role: str) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": str(spec.cpus_per_node), "memory": spec.memory_per_node}
    if spec.gpus_per_node:
        amounts["nvidia.com/gpu"] = str(spec.gpus_per_node)
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": spec.image,
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
    }
    if role == "head":
        container["env"] = [
            {"name": "HARNESS_PLAYBOOK", "value": f"{PLAYBOOK_DIR}/{PLAYBOOK_KEY}"},
            {
                "name": "HARNESS_DB_URL",
                "valueFrom": {"secretKeyRef": {"name": spec.db_secret, "key": spec.db_secret_key}},
            },
        ]
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
        ]
        container["volumeMounts"] = [{"name": "playbook", "mountPath": PLAYBOOK_DIR}]
    return container


def _pod(spec: RayJobSpec, role: str, config_map: str) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [_container(spec, role)]}
    if role == "head":
        pod["volumes"] = [{"name": "playbook", "configMap": {"name": config_map}}]
    return {"spec": pod}


def manifests(spec: RayJobSpec) -> list[dict[str, Any]]:
    """The ConfigMap and the RayJob, as data."""
    name = job_name(spec)
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "harness"}}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{name}-playbook"},
        "data": {PLAYBOOK_KEY: spec.playbook_text},
    }
    start = {"num-gpus": str(spec.gpus_per_node)} if spec.gpus_per_node else {}
    cluster: dict[str, Any] = {
        "authOptions": {"mode": "token"},  # Ray's token auth; KubeRay makes the Secret
        "headGroupSpec": {
            "rayStartParams": dict(start),
            "template": _pod(spec, "head", f"{name}-playbook"),
        },
    }
    if spec.ray_version:
        cluster["rayVersion"] = spec.ray_version
    if spec.nodes > 1:
        cluster["workerGroupSpecs"] = [
            {
                "groupName": "workers",
                "replicas": spec.nodes - 1,
                "minReplicas": spec.nodes - 1,
                "maxReplicas": spec.nodes - 1,
                "rayStartParams": dict(start),
                "template": _pod(spec, "worker", f"{name}-playbook"),
            }
        ]
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": meta,
        "spec": {
            "entrypoint": entrypoint(spec),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": spec.ttl_s,
            "activeDeadlineSeconds": spec.deadline_s,
            "submissionMode": "K8sJobMode",
            "rayClusterSpec": cluster,
        },
    }
    return [config_map, job]


def render(spec: RayJobSpec) -> str:
    """The manifests as one YAML stream."""
    head = (
        f"# harness k8s render: {spec.playbook_name} on {spec.nodes} Ray node(s).\n"
        f"# The store's URL: Secret {spec.db_secret} (key {spec.db_secret_key}), e.g.\n"
        f"#   kubectl create secret generic {spec.db_secret} --from-literal="
        f"{spec.db_secret_key}=postgresql+psycopg://...\n"
    )
    return head + yaml.dump_all(manifests(spec), Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the playbook) as literal blocks, readable as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)
