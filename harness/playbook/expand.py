"""Benchmarks x parameter matrix (cartesian, zip groups, exclude rules) -> trial specs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from harness.playbook.model import (
    Benchmark,
    Ladder,
    Playbook,
    RankLayout,
    Settings,
    effective_settings,
    short_hash,
    validation_lines,
)
from results_db.closest import did_you_mean
from results_db.vocabulary import EFFICIENCY
from workloads import UnavailableWorkload, UnknownWorkload, all_workloads, get_workload
from workloads.base import Workload


@dataclass(frozen=True)
class TrialSpec:
    """One trial before placement: what runs and how it is measured."""

    benchmark: str
    workload: str
    params: dict[str, Any]  # canonical: validated, defaults filled
    params_hash: str
    settings: Settings
    target: str
    each: bool | str  # True, "gpu" or "gpu_pair" (see playbook_model.Benchmark.each)
    optional: bool = False
    layout: RankLayout | None = None  # multi-rank trials only
    ladder: Ladder | None = None  # climbed one step at a time (harness.campaign.ladder)
    server_on: str | None = None  # target of the nodes hosting the endpoint it loads


def benchmark_name(b: Benchmark, index: int) -> str:
    """The benchmark's name, or ``workload[index]`` when it has none."""
    return b.name or f"{b.workload}[{index}]"


def combinations(b: Benchmark) -> list[dict[str, Any]]:
    """The raw parameter dicts of a benchmark: zip groups move together, the rest cross."""
    zipped = {name for group in b.zip for name in group}
    axes: list[list[dict[str, Any]]] = []
    for group in b.zip:
        columns = [_as_list(b.params[name]) for name in group]
        axes.append([dict(zip(group, row, strict=True)) for row in zip(*columns, strict=True)])
    for name, value in b.params.items():
        if name not in zipped:
            axes.append([{name: v} for v in _as_list(value)])
    combos = []
    for parts in itertools.product(*axes):
        combo: dict[str, Any] = {}
        for part in parts:
            combo.update(part)
        if not any(all(combo.get(k) == v for k, v in rule.items()) for rule in b.exclude):
            combos.append(combo)
    return combos


def combination_count(b: Benchmark) -> int:
    """How many combinations :func:`combinations` would build, before exclude rules; counted
    without building them."""
    zipped = {name for group in b.zip for name in group}
    count = 1
    for group in b.zip:
        count *= min((len(_as_list(b.params.get(name))) for name in group), default=1)
    for name, value in b.params.items():
        if name not in zipped:
            count *= len(_as_list(value))
    return count


def too_many_trials(count: int, limit: int, what: str) -> str:
    """The refusal of a plan past the trial limit, with the count and the way to raise it."""
    return (
        f"{what} {count:,} trials, over the limit of {limit:,}; "
        "raise it with --max-trials N (or $HARNESS_MAX_TRIALS) for a campaign that big"
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_benchmarks(pb: Playbook, source: str, max_trials: int = 100_000) -> list[str]:
    """Every problem in the benchmarks that can be known before running, one line each.

    The parameter matrix is counted before it is built: past ``max_trials`` it is refused.
    """
    errors: list[str] = []
    total = 0
    known = ", ".join(all_workloads())
    for i, b in enumerate(pb.benchmarks):
        at = f"{source}: benchmarks[{i}]"
        try:
            wl = get_workload(b.workload)
        except UnknownWorkload:
            hint = did_you_mean(b.workload, all_workloads()) or f"; expected one of: {known}"
            errors.append(f"{at}.workload: unknown workload {b.workload!r}{hint}")
            continue
        except UnavailableWorkload as exc:  # the driver lacks its library: say which
            errors.append(f"{at}.workload: {exc}")
            continue
        metrics = [m.name for m in wl.metrics] + [name for name, _, _ in EFFICIENCY.values()]
        for metric in b.expect:
            if metric not in metrics:
                hint = did_you_mean(metric, metrics) or f"; expected one of: {', '.join(metrics)}"
                errors.append(f"{at}.expect: {b.workload} has no metric {metric!r}{hint}")
        for field_name in ("on", "server_on"):
            target = getattr(b, field_name)
            if target is not None and target != "any" and target not in pb.targets:
                names = ", ".join(["any", *pb.targets])
                errors.append(
                    f"{at}.{field_name}: unknown target {target!r}; expected one of: {names}"
                )
        if wl.multi_rank and b.ranks is None and not wl.ranks_optional:
            errors.append(
                f"{at}.ranks: {b.workload} runs over ranks; give ranks: N or "
                "ranks: {nodes: N, per_node: R}"
            )
        elif not wl.multi_rank and b.ranks is not None:
            errors.append(f"{at}.ranks: {b.workload} runs as one process; remove ranks")
        elif isinstance(b.ranks, RankLayout):
            n, hi = b.ranks.world_size, wl.max_ranks
            if n < wl.min_ranks or (hi is not None and n > hi):
                wanted = f"exactly {hi}" if hi == wl.min_ranks else f"at least {wl.min_ranks}"
                errors.append(f"{at}.ranks: {b.workload} needs {wanted} ranks, got {n}")
        errors += _check_per_gpu(b, wl, at)
        errors += _check_ladder(b, wl, at)
        try:
            effective_settings(pb.defaults, {**wl.default_settings, **b.settings})
        except ValidationError as exc:
            errors += validation_lines(source, exc, ("benchmarks", i, "settings"))
        fields = set(wl.Params.model_fields)
        structural = [
            f"{at}.params.{name}: unknown parameter of {b.workload}; "
            f"expected any of: {', '.join(sorted(fields))}"
            for name in b.params
            if name not in fields
        ]
        structural += _check_zip_exclude(b, at)
        errors += structural
        if structural:  # the matrix cannot be expanded meaningfully
            continue
        count = combination_count(b)
        total += count
        if total > max_trials:
            what = f"{at}.params: expands to" if count == total else f"{source}: expands to"
            errors.append(too_many_trials(total, max_trials, what))
            break
        combos = combinations(b)
        if not combos:
            errors.append(f"{at}.exclude: every parameter combination is excluded")
        for combo in combos:
            try:
                valid = wl.Params.model_validate(combo)
            except ValidationError as exc:
                errors += validation_lines(source, exc, ("benchmarks", i, "params"))
                continue
            errors += [f"{at}.params: {line}" for line in wl.check_params(valid.model_dump())]
    return list(dict.fromkeys(errors))


def _check_per_gpu(b: Benchmark, wl: type[Workload], at: str) -> list[str]:
    """``each: gpu`` / ``gpu_pair`` need a single-process workload that runs on the GPU(s) it
    is shown: each trial sees its own GPU as ``cuda`` (a pair as cuda:0 and cuda:1)."""
    if b.each not in ("gpu", "gpu_pair"):
        return []
    if b.ranks is not None or (wl.multi_rank and not wl.ranks_optional):
        return [f"{at}.each: each: {b.each} places single-process trials; remove ranks"]
    if b.each == "gpu_pair":
        if wl.gpu_pair is None:
            return [f"{at}.each: {b.workload} does not measure between two GPUs; use each: gpu"]
        wanted = wl.gpu_pair
    else:
        wanted = {"device": "cuda:0"}
    errors = []
    for name, value in wanted.items():
        if name not in wl.Params.model_fields:
            errors.append(f"{at}.each: {b.workload} has no {name} parameter; use each: true")
            continue
        given = _as_list(b.params.get(name, wl.Params.model_fields[name].default))
        same = {value, "cuda"} if value == "cuda:0" else {value}
        if not all(v in same for v in given):
            sees = "its one GPU as cuda" if b.each == "gpu" else "its two GPUs as cuda:0, cuda:1"
            shown = "cuda" if b.each == "gpu" else value
            errors.append(
                f"{at}.params.{name}: each: {b.each} shows each trial {sees}; set {name}: {shown}"
            )
    return errors


def _check_ladder(b: Benchmark, wl: type[Workload], at: str) -> list[str]:
    """A ladder climbs a swept numeric param, and stops on metrics the workload has."""
    if b.ladder is None:
        return []
    over = b.ladder.over
    steps = b.params.get(over)
    errors = []
    if not isinstance(steps, list) or len(steps) < 2:
        errors.append(f"{at}.ladder.over: params.{over} must be a list of at least two steps")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in steps):
        errors.append(f"{at}.ladder.over: params.{over} must hold numbers to climb")
    if any(over in group for group in b.zip):
        errors.append(f"{at}.ladder.over: {over!r} cannot be zipped with other params")
    names = [m.name for m in wl.metrics]
    for metric in b.ladder.max_p99:
        if metric not in names:
            hint = did_you_mean(metric, names) or f"; expected one of: {', '.join(names)}"
            errors.append(f"{at}.ladder.max_p99: {b.workload} has no metric {metric!r}{hint}")
    return errors


def _check_zip_exclude(b: Benchmark, at: str) -> list[str]:
    errors = []
    seen: set[str] = set()
    for g, group in enumerate(b.zip):
        lengths = set()
        for name in group:
            if name not in b.params:
                errors.append(f"{at}.zip[{g}]: {name!r} is not one of this benchmark's params")
            elif not isinstance(b.params[name], list):
                errors.append(f"{at}.zip[{g}]: params.{name} must be a list to be zipped")
            else:
                lengths.add(len(b.params[name]))
            if name in seen:
                errors.append(f"{at}.zip[{g}]: {name!r} is already in another zip group")
            seen.add(name)
        if len(lengths) > 1:
            errors.append(f"{at}.zip[{g}]: zipped lists differ in length {sorted(lengths)}")
    for r, rule in enumerate(b.exclude):
        for name in rule:
            if name not in b.params:
                errors.append(f"{at}.exclude[{r}]: {name!r} is not one of this benchmark's params")
    return errors


def expand(pb: Playbook) -> list[TrialSpec]:
    """Trial specs of an already checked playbook, in playbook order."""
    specs = []
    for i, b in enumerate(pb.benchmarks):
        wl = get_workload(b.workload)
        settings = effective_settings(pb.defaults, {**wl.default_settings, **b.settings})
        for combo in combinations(b):
            params = wl.Params.model_validate(combo).canonical()
            specs.append(
                TrialSpec(
                    benchmark=benchmark_name(b, i),
                    workload=b.workload,
                    params=params,
                    params_hash=short_hash([b.workload, params]),
                    settings=settings,
                    target=b.on,
                    each=b.each,
                    optional=b.optional,
                    layout=b.ranks if isinstance(b.ranks, RankLayout) else None,
                    ladder=b.ladder,
                    server_on=b.server_on,
                )
            )
    return specs
