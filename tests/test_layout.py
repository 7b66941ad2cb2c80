"""The import arrows of DESIGN.md, checked on the code: every import statement in the
project's packages (at the top of a module or inside a function, type-only ones too) goes
from a layer to one it may use."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("harness", "workloads", "collectors", "results_db")

# The layer of each part, and which layers it may import (its own always).
MAY_IMPORT: dict[str, set[str]] = {
    "cli": {
        "campaign",
        "cluster",
        "launch",
        "node",
        "playbook",
        "present",
        "shared",
        *PACKAGES[1:],
    },
    # Slurm, SSH, Kubernetes: they start clusters and read playbooks, never run a campaign
    "launch": {"cluster", "playbook", "shared", *PACKAGES[1:]},
    "campaign": {"cluster", "node", "playbook", "shared", *PACKAGES[1:]},
    "cluster": {"playbook", "shared", *PACKAGES[1:]},
    "node": {"playbook", "shared", *PACKAGES[1:]},
    "playbook": {"shared", *PACKAGES[1:]},
    "present": {"shared", "results_db"},  # reads stored rows only
    "shared": set(),
    "entry": {"cli"},  # python -m harness
    # The leaves know nothing of the orchestrator nor of each other, but for one plain type:
    # a serving load hands its server's /metrics back as telemetry samples.
    "workloads": {"collectors"},
    "collectors": set(),
    "results_db": set(),
}


def layer(module: str) -> str | None:
    """The layer of a dotted module name of ours; None for a third-party module."""
    parts = module.split(".")
    if parts[0] in PACKAGES[1:]:
        return parts[0]
    if parts[0] != "harness":
        return None
    if len(parts) == 1 or parts[1] == "errors":
        return "shared"
    if parts[1] == "__main__":
        return "entry"
    assert parts[1] in MAY_IMPORT, f"harness.{parts[1]} belongs to no layer"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module an import statement of the file names (relative ones resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path if path.name == "__init__.py" else path.parent)
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.add(base)
            # `from harness.present import charts` names a module too
            folder = ROOT.joinpath(*base.split("."))
            names.update(
                f"{base}.{a.name}"
                for a in node.names
                if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()
            )
    return names


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_import_follows_the_arrows() -> None:
    wrong = []
    for path in sources():
        here = layer(module_name(path))
        assert here is not None
        for target in imports(path):
            there = layer(target)
            if there is None or there == here:
                continue
            plain_type_only = here == "workloads" and target != "collectors.base"
            if there not in MAY_IMPORT[here] or (there == "collectors" and plain_type_only):
                wrong.append(f"{path.relative_to(ROOT)}: {here} -> {there} ({target})")
    assert not wrong, "\n".join(wrong)


def test_ray_is_imported_only_where_tasks_are_started_or_clusters_made() -> None:
    allowed = {
        "harness/cluster/session.py",  # connecting, the inventory
        "harness/cluster/local.py",  # several Ray nodes on this machine
        "harness/campaign/dispatch.py",  # trials as Ray tasks and actors
    }
    users = {
        str(p.relative_to(ROOT))
        for p in sources()
        if any(t == "ray" or t.startswith("ray.") for t in imports(p))
    }
    assert users <= allowed, users - allowed


def test_the_package_inits_import_nothing_of_ours_eagerly() -> None:
    """Start-up must not regress: a sub-package's __init__ is a docstring, no imports."""
    for pkg in ("cli", "campaign", "cluster", "node", "playbook", "present"):
        init = ROOT / "harness" / pkg / "__init__.py"
        tree = ast.parse(init.read_text())
        assert all(isinstance(n, ast.Expr) for n in tree.body), init
    assert not [
        n
        for n in ast.parse((ROOT / "collectors/__init__.py").read_text()).body
        if isinstance(n, (ast.Import, ast.ImportFrom))
    ]


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The walker is not blind: a leaf importing the orchestrator is caught."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from harness.campaign import plan\n")
    assert "harness.campaign" in imports(bad)
    assert layer("harness.campaign.plan") not in MAY_IMPORT["workloads"]
