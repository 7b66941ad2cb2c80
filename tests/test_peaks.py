"""Percent of peak: the datasheet table, peak keys, and ceilings measured by a campaign."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from collectors.base import Sample
from harness.campaign.recording import throttle_flags
from harness.node.outcome import TrialOutcome
from results_db import (
    CampaignRecord,
    Filters,
    MetricRecord,
    NodeRecord,
    ResultStore,
    TrialRecord,
    list_ceilings,
    query_records,
    sqlite_url,
)
from results_db.peaks import datasheet_for, datasheet_peak
from workloads.registry import ceiling_key as peak_key


@pytest.mark.parametrize(
    ("reported", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_gpu_names_map_to_their_datasheet(reported: str, sku: str) -> None:
    assert datasheet_for(reported).name == sku


def test_unknown_parts_have_no_datasheet() -> None:
    assert datasheet_for("NVIDIA T4") is None and datasheet_for("") is None


def test_peak_keys() -> None:
    assert peak_key("memory.stream", "bandwidth", {"device": "cuda:0"}) == "bandwidth:cuda"
    assert peak_key("kernel.norm", "bandwidth", {"device": "cpu"}) == "bandwidth:cpu"
    assert (
        peak_key("kernel.gemm", "throughput", {"device": "cuda", "dtype": "bf16"})
        == "throughput:cuda:bf16"
    )
    assert (
        peak_key("kernel.attention", "throughput", {"device": "cpu", "dtype": "fp32"})
        == "throughput:cpu:fp32"
    )
    assert peak_key("memory.copy", "bandwidth", {"direction": "h2d", "device": "cuda"}) is None
    assert peak_key("memory.copy", "bandwidth", {"direction": "d2d", "count": "one_way"}) is None
    assert (
        peak_key(
            "memory.copy",
            "bandwidth",
            {"direction": "d2d", "count": "read_write", "device": "cuda"},
        )
        == "bandwidth:cuda"
    )
    assert peak_key("kernel.gemm", "time", {"dtype": "fp32"}) is None
    assert datasheet_peak("NVIDIA H100 80GB HBM3", "throughput:cuda:bf16") == (989.4, "H100 SXM")
    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bandwidth:cuda") == (3350, "H100 SXM")
    assert datasheet_peak("NVIDIA A100-SXM4-80GB", "throughput:cuda:fp8") is None  # no fp8 on A100
    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bandwidth:cpu") is None


def _trial(cid, node_id, workload, params, metric, median, key):
    return TrialRecord(
        campaign_id=cid,
        trial_key=key,
        benchmark="b",
        workload=workload,
        params=params,
        params_hash=key,
        status="ok",
        attempt=1,
        node_id=node_id,
        metrics=[
            MetricRecord(
                metric,
                "X",
                True,
                [median],
                {"n": 1, "median": median},
                peak_key(workload, metric, params),  # as the driver declares it
            )
        ],
    )


def test_calibration_ceilings_and_percent_of_peak(tmp_path: Path) -> None:
    store = ResultStore(sqlite_url(tmp_path / "r.sqlite"))
    now = datetime.now(timezone.utc)
    for cid in ("cal", "run"):
        store.start_campaign(CampaignRecord(cid, cid, "", "", "", "", {}, now, "0"))
    gpu = store.upsert_node(
        NodeRecord("fp-gpu", "hw-h100", "g1", {}, gpu_model="NVIDIA H100 80GB HBM3")
    )
    cpu = store.upsert_node(NodeRecord("fp-cpu", "hw-epyc", "c1", {}, cpu_model="EPYC"))
    gemm = {"device": "cuda", "dtype": "bf16"}
    store.record_trial(_trial("cal", gpu, "kernel.gemm", gemm, "throughput", 700.0, "a"))
    store.record_trial(_trial("cal", gpu, "kernel.gemm", gemm, "throughput", 750.0, "b"))
    store.record_trial(
        _trial("cal", cpu, "memory.stream", {"device": "cpu"}, "bandwidth", 40.0, "c")
    )
    store.record_trial(
        _trial(
            "cal", cpu, "memory.copy", {"direction": "h2h", "device": "cpu"}, "bandwidth", 99.0, "d"
        )
    )
    rows = store.update_ceilings("cal")
    assert {(r.hardware_class, r.key, r.value) for r in rows} == {
        ("hw-h100", "throughput:cuda:bf16", 750.0),
        ("hw-epyc", "bandwidth:cpu", 40.0),
    }
    assert len(store.update_ceilings("cal")) == 2  # recomputing replaces, never duplicates

    store.record_trial(_trial("run", gpu, "kernel.attention", gemm, "throughput", 375.0, "e"))
    store.record_trial(_trial("run", cpu, "kernel.norm", {"device": "cpu"}, "bandwidth", 30.0, "f"))
    with store.session() as s:
        recs = {r["workload"]: r for r in query_records(s, Filters(campaign="run"))}
        ceilings = list_ceilings(s)
    assert recs["kernel.attention"]["pct_of_ceiling"] == pytest.approx(50.0)
    assert recs["kernel.attention"]["pct_of_datasheet"] == pytest.approx(100 * 375 / 989.4)
    assert recs["kernel.attention"]["datasheet_sku"] == "H100 SXM"
    assert recs["kernel.norm"]["pct_of_ceiling"] == pytest.approx(75.0)
    assert recs["kernel.norm"]["pct_of_datasheet"] is None  # no datasheet for host memory
    h100 = next(c for c in ceilings if c["hardware_class"] == "hw-h100")
    assert h100["pct_of_datasheet"] == pytest.approx(100 * 750 / 989.4)


def test_throttled_trials_are_flagged_from_nvml_samples() -> None:
    out = TrialOutcome(status="ok")
    assert throttle_flags(out) == {}  # no NVML: nothing claimed either way
    out.telemetry = [
        Sample(1.0, "nvml", "gpu0", "throttled", "bool", 0.0),
        Sample(1.1, "nvml", "gpu0", "throttled", "bool", 1.0),
        Sample(1.1, "nvml", "gpu1", "throttled", "bool", 0.0),
    ]
    assert throttle_flags(out) == {"throttled": True, "throttled_devices": ["gpu0"]}
