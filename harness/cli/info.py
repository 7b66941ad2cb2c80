"""What there is: `harness nodes`, `harness workloads`, `harness playbook validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    AddressOpt,
    ListFormat,
    MaxBytesOpt,
    MaxTokensOpt,
    MaxTrialsOpt,
    err,
    handled,
    out,
)
from harness.playbook.limits import Limits
from harness.playbook.load import load_playbook
from harness.present.output import emit, table


def nodes(
    address: AddressOpt = None,
    format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """Inventory of the cluster's nodes (starts an embedded cluster without --address)."""
    from harness.cluster.session import ClusterSession
    from harness.cluster.versions import driver_versions, version_skew

    with handled(), ClusterSession(address) as session:
        inventory = session.inventory()
    refused, mixed = version_skew(inventory, driver_versions())
    for line in refused:
        err.print(f"warning: {line}: `harness run` refuses it (--allow-skew)", markup=False)
    for line in mixed:
        err.print(f"warning: {line}", markup=False)
    records = [
        {
            "node_id": n.ray_node_id,
            "hostname": n.hostname,
            "address": n.address,
            "labels": n.labels,
            "resources": {k: v for k, v in n.resources.items() if not k.startswith("node:")},
            "fingerprint": n.fingerprint,
            "hardware_class": n.hardware_class,
            **n.fields,
            **{k: n.facts.get(k) for k in ("harness", "harness_code", "ray", "python")},
            "gpus": n.facts.get("gpus", []),
        }
        for n in inventory
    ]
    rows = [
        (
            n.short_id,
            n.hostname,
            n.facts.get("cpu_model"),
            n.facts.get("cpu_threads"),
            f"{(n.facts.get('memory_bytes') or 0) / 2**30:.1f}",
            f"{n.facts.get('gpu_count', 0)} {n.facts.get('gpu_model', '')}".strip(),
            " ".join(f"{k}={n.facts.get(k)}" for k in ("harness", "ray", "python", "torch")),
            " ".join(f"{k}={v}" for k, v in n.labels.items()),
            " ".join(
                f"{k}={v:g}"
                for k, v in n.resources.items()
                if not k.startswith("node:") and k not in ("memory", "object_store_memory")
            ),
        )
        for n in inventory
    ]
    tbl = table(
        f"{len(inventory)} node(s)",
        [
            "node",
            "hostname",
            "cpu",
            "threads",
            "mem GiB",
            "gpus",
            "software",
            "labels",
            "resources",
        ],
        rows,
    )
    emit(out, format.value, records, tbl)


def workloads(format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table) -> None:
    """Every registered workload: parameters (type, default) and metrics (unit, direction)."""
    from workloads import all_workloads, plugin_problems

    records = [cls.describe() for cls in all_workloads().values()]
    for name, problem in plugin_problems().items():
        err.print(f"warning: workload plugin {name}: {problem}", markup=False)
    rows = [
        (
            r["name"],
            "\n".join(
                f"{p['name']}: {p['type']} = {p['default']!r}"
                if not p["required"]
                else f"{p['name']}: {p['type']} (required)"
                for p in r["params"]
            ),
            "\n".join(
                f"{m['name']} [{m['unit']}] "
                f"{'higher' if m['higher_is_better'] else 'lower'} is better"
                for m in r["metrics"]
            ),
            r["description"],
        )
        for r in records
    ]
    emit(
        out,
        format.value,
        records,
        table("workloads", ["workload", "params", "metrics", "description"], rows),
    )


def playbook_validate(
    playbook: Annotated[Path, typer.Argument(help="playbook YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: KEY.PATH=VALUE")
    ] = None,
    max_playbook_bytes: MaxBytesOpt = None,
    max_trials: MaxTrialsOpt = None,
    max_request_tokens: MaxTokensOpt = None,
) -> None:
    """Check a playbook without running it: every problem, one line each."""
    from harness.playbook.expand import expand

    with handled():
        limits = Limits.from_env(max_playbook_bytes, max_trials, max_request_tokens)
        loaded = load_playbook(playbook, set_ or [], limits)
        specs = expand(loaded.model)
    n = len(specs)
    per_gpu = sum(s.each in ("gpu", "gpu_pair") for s in specs)
    out.print(
        f"{playbook}: valid, {len(loaded.model.benchmarks)} benchmark(s), "
        f"{n} trial(s) per matching node"
        + (f" ({per_gpu} of them per GPU or GPU pair)" if per_gpu else ""),
        markup=False,
    )
