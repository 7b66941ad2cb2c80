from pathlib import Path

import pytest

from harness.playbook.expand import combinations, expand
from harness.playbook.load import PlaybookError, load_playbook, load_playbook_text

GOOD = """
campaign: {name: unit, description: d}
defaults:
  min_repetitions: 3
  telemetry: {interval_s: 0.2, sources: [host]}
targets:
  big: {labels: {tier: head}}
benchmarks:
  - name: s
    workload: memory.stream
    on: big
    params: {op: [copy, triad], size_mib: [1, 2, 4]}
    exclude: [{op: copy, size_mib: 4}]
    settings: {min_duration_s: 0.0, telemetry: {interval_s: 0.05}}
  - workload: kernel.gemm
    params: {m: [16, 32], n: [16, 32], k: [8, 8], dtype: [fp32, bf16]}
    zip: [[m, n, k]]
"""


def errors_of(text: str, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(PlaybookError) as exc:
        load_playbook_text(text, "pb.yaml", overrides)
    return exc.value.lines


def test_valid_playbook_expands_cartesian_zip_and_exclude() -> None:
    loaded = load_playbook_text(GOOD, "pb.yaml")
    specs = expand(loaded.model)
    stream = [s for s in specs if s.workload == "memory.stream"]
    gemm = [s for s in specs if s.workload == "kernel.gemm"]
    assert len(stream) == 2 * 3 - 1  # copy@4 excluded
    assert {(s.params["op"], s.params["size_mib"]) for s in stream} == {
        ("copy", 1.0),
        ("copy", 2.0),
        ("triad", 1.0),
        ("triad", 2.0),
        ("triad", 4.0),
    }
    assert len(gemm) == 2 * 2  # (m,n,k) zipped: 2 shapes x 2 dtypes
    assert {(s.params["m"], s.params["n"], s.params["k"]) for s in gemm} == {
        (16, 16, 8),
        (32, 32, 8),
    }
    # Canonical params carry the defaults, so equal trials hash equally across playbooks.
    assert stream[0].params["dtype"] == "fp64" and stream[0].params["device"] == "cpu"
    assert stream[0].target == "big"
    assert gemm[0].benchmark == "kernel.gemm[1]"
    # Benchmark settings merge onto the defaults (telemetry merged key by key).
    assert stream[0].settings.min_repetitions == 3
    assert stream[0].settings.min_duration_s == 0.0
    assert stream[0].settings.telemetry.interval_s == 0.05
    assert stream[0].settings.telemetry.sources == ["host"]
    assert gemm[0].settings.min_duration_s == 1.0


def test_on_is_a_string_not_a_yaml11_boolean() -> None:
    loaded = load_playbook_text(GOOD, "pb.yaml")
    assert loaded.model.benchmarks[0].on == "big"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("memory.stream", "memory.streem"),
            "pb.yaml: benchmarks[0].workload: unknown workload 'memory.streem'; did you mean 'memory.stream'?",
        ),
        (
            GOOD.replace("[copy, triad]", "[copy, tirad]"),
            "pb.yaml: benchmarks[0].params.op: Input should be 'copy', 'scale', 'add' or 'triad' (got 'tirad')",
        ),
        (
            GOOD.replace("size_mib: [1, 2, 4]", "size_mib: [1, -2, 4]"),
            "pb.yaml: benchmarks[0].params.size_mib: Input should be greater than 0 (got -2)",
        ),
        (
            GOOD.replace("size_mib: [1", "sizemib: [1"),
            "pb.yaml: benchmarks[0].params.sizemib: unknown parameter of memory.stream; expected any of:",
        ),
        (
            GOOD.replace("on: big", "on: huge"),
            "pb.yaml: benchmarks[0].on: unknown target 'huge'; expected one of: any, big",
        ),
        (
            GOOD.replace("k: [8, 8]", "k: [8, 8, 8]"),
            "pb.yaml: benchmarks[1].zip[0]: zipped lists differ in length [2, 3]",
        ),
        (
            GOOD.replace("{op: copy, size_mib: 4}", "{opp: copy}"),
            "pb.yaml: benchmarks[0].exclude[0]: 'opp' is not one of this benchmark's params",
        ),
        (
            GOOD.replace("campaign: {name: unit, description: d}", "campaign: {description: d}"),
            "pb.yaml: campaign.name: required field is missing",
        ),
        (
            GOOD.replace("min_repetitions: 3", "min_repetitions: 3\n  max_repetitions: 2"),
            "pb.yaml: defaults: min_repetitions (3) exceeds max_repetitions (2)",
        ),
        (
            GOOD.replace("sources: [host]", "sources: [host, rapl9]"),
            "pb.yaml: defaults.telemetry.sources: unknown source(s) ['rapl9']",
        ),
        (
            GOOD.replace("min_duration_s: 0.0,", "min_duration_s: -1,"),
            "pb.yaml: benchmarks[0].settings.min_duration_s: Input should be greater than or equal to 0 (got -1)",
        ),
        (GOOD + "extra_key: 1\n", "pb.yaml: extra_key: unknown field"),
        (
            GOOD.replace("m: [16, 32]", "m: [16, 0]"),
            "pb.yaml: benchmarks[1].params.m: Input should be greater than or equal to 1 (got 0)",
        ),
    ],
)
def test_each_error_names_file_path_and_expectation(text: str, expected: str) -> None:
    lines = errors_of(text)
    assert any(line.startswith(expected) for line in lines), lines


def test_all_errors_are_reported_together() -> None:
    bad = GOOD.replace("[copy, triad]", "[copy, tirad]").replace("on: big", "on: huge")
    lines = errors_of(bad)
    assert any(".on:" in line for line in lines) and any(".params.op:" in line for line in lines)


def test_yaml_syntax_error_names_line_and_column() -> None:
    lines = errors_of("campaign: {name: x\nbenchmarks: [")
    assert len(lines) == 1 and lines[0].startswith("pb.yaml:") and "invalid YAML" in lines[0]
    assert lines[0].split(":")[1].isdigit()


def test_yaml_is_data_only() -> None:
    lines = errors_of("campaign: !!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in lines[0]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as exc:
        load_playbook(tmp_path / "nope.yaml")
    assert exc.value.lines == [f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"]


def test_every_combination_excluded_is_an_error() -> None:
    text = GOOD.replace("exclude: [{op: copy, size_mib: 4}]", "exclude: [{op: copy}, {op: triad}]")
    assert any("every parameter combination is excluded" in line for line in errors_of(text))


def test_overrides_by_index_name_and_with_lists() -> None:
    loaded = load_playbook_text(
        GOOD,
        "pb.yaml",
        [
            "defaults.min_repetitions=7",
            "benchmarks.s.params.size_mib=[8]",
            "benchmarks.1.params.dtype=fp32",
            "campaign.name=renamed",
        ],
    )
    specs = expand(loaded.model)
    assert loaded.model.campaign.name == "renamed"
    assert {s.params["size_mib"] for s in specs if s.workload == "memory.stream"} == {8.0}
    assert {s.params["dtype"] for s in specs if s.workload == "kernel.gemm"} == {"fp32"}
    assert all(s.settings.min_repetitions == 7 for s in specs)
    assert loaded.effective["defaults"]["min_repetitions"] == 7


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("defaults.min_repetitions", "expected KEY.PATH=VALUE"),
        ("benchmarks.9.params.op=copy", "no list item with index or name '9'"),
        ("benchmarks.nosuch.params.op=copy", "no list item with index or name 'nosuch'"),
        (
            "defaults.min_repetitions=many",
            "defaults.min_repetitions: Input should be a valid integer",
        ),
    ],
)
def test_bad_overrides(override: str, fragment: str) -> None:
    assert any(fragment in line for line in errors_of(GOOD, [override]))


def test_combinations_without_lists_is_one_trial() -> None:
    loaded = load_playbook_text(
        "campaign: {name: x}\nbenchmarks: [{workload: kernel.gemm, params: {m: 8, n: 8, k: 8}}]"
    )
    assert combinations(loaded.model.benchmarks[0]) == [{"m": 8, "n": 8, "k": 8}]


def test_shipped_playbooks_are_valid() -> None:
    for path in (Path(__file__).parent.parent / "playbooks").glob("*.yaml"):
        assert expand(load_playbook(path).model)


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ("{bandwith: {min: 1}}", "has no metric 'bandwith'; did you mean 'bandwidth'?"),
        ("{bandwidth: {}}", "give min, max, of_ceiling or of_peak"),
        ("{bandwidth: {min: 5, max: 1}}", "min (5.0) exceeds max (1.0)"),
        ("{bandwidth: {of_peak: 3}}", "of_peak"),
    ],
)
def test_bad_expectations_are_refused(tmp_path, expect: str, message: str) -> None:
    from harness.playbook.load import PlaybookError, load_playbook

    path = tmp_path / "pb.yaml"
    path.write_text(
        "campaign: {name: x}\nbenchmarks:\n  - workload: memory.stream\n"
        f"    params: {{op: triad}}\n    expect: {expect}\n"
    )
    with pytest.raises(PlaybookError) as err:
        load_playbook(path)
    assert message in str(err.value)
