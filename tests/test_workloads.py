import pytest
import torch

from workloads import UnsupportedParams, VerificationError, all_workloads, get_workload
from workloads.kernel_gemm import GemmWorkload
from workloads.memory_stream import StreamWorkload


def make(cls, **params):
    wl = cls(cls.Params.model_validate(params))
    wl.setup()
    return wl


@pytest.mark.parametrize(("op", "words"), [("copy", 2), ("scale", 2), ("add", 3), ("triad", 3)])
def test_stream_counts_bytes_like_stream(op: str, words: int) -> None:
    wl = make(StreamWorkload, op=op, size_mib=1, dtype="fp64")
    n = 2**20 // 8
    assert wl.n == n
    assert wl.work().bytes == words * n * 8
    wl.run_iteration()
    wl.verify()
    # Rates derive from the same bytes: 1 ms per iteration -> bytes / 1e-3 / 1e9 GB/s.
    assert wl.derive([1e-3])["bandwidth"] == [pytest.approx(words * n * 8 / 1e-3 / 1e9)]
    assert wl.derive([1e-3])["time"] == [pytest.approx(1.0)]
    wl.teardown()


@pytest.mark.parametrize("op", ["copy", "scale", "add", "triad"])
def test_stream_verification_catches_a_wrong_element(op: str) -> None:
    wl = make(StreamWorkload, op=op, size_mib=0.25, dtype="fp32")
    wl.run_iteration()
    out = {"copy": wl.c, "scale": wl.b, "add": wl.c, "triad": wl.a}[op]
    out[123] += 1.0
    with pytest.raises(VerificationError, match="1 of"):
        wl.verify()


def test_stream_that_never_ran_fails_verification() -> None:
    # Outputs start random, so a kernel that did nothing cannot pass.
    wl = make(StreamWorkload, op="triad", size_mib=0.25)
    with pytest.raises(VerificationError):
        wl.verify()


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_gemm_flops_and_verification(dtype: str) -> None:
    wl = make(GemmWorkload, m=64, n=48, k=32, dtype=dtype)
    assert wl.work().flops == 2 * 64 * 48 * 32
    wl.run_iteration()
    wl.verify()
    assert wl.derive([1e-6])["throughput"] == [pytest.approx(2 * 64 * 48 * 32 / 1e-6 / 1e12)]
    wl.c[3, 5] += 10.0
    with pytest.raises(VerificationError, match="exceeds"):
        wl.verify()
    wl.teardown()


def test_gemm_restores_matmul_precision() -> None:
    before = torch.get_float32_matmul_precision()
    wl = make(GemmWorkload, m=8, n=8, k=8)
    assert torch.get_float32_matmul_precision() == "highest"
    wl.teardown()
    assert torch.get_float32_matmul_precision() == before


def test_impossible_params_fail_clearly_on_this_node() -> None:
    with pytest.raises(UnsupportedParams, match="tf32 needs a CUDA device"):
        make(GemmWorkload, m=8, n=8, k=8, dtype="tf32", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedParams, match="no usable CUDA device"):
            make(StreamWorkload, device="cuda")
    with pytest.raises(UnsupportedParams, match="GiB free"):
        make(StreamWorkload, size_mib=64 * 2**20)  # 64 TiB per array


def test_registry_has_builtins_and_the_entry_point_plugin() -> None:
    names = set(all_workloads())
    assert {"memory.stream", "kernel.gemm", "test.flaky"} <= names
    assert get_workload("test.flaky").__module__ == "harness_testplug"


def test_describe_lists_params_with_types_defaults_and_metric_units() -> None:
    d = get_workload("memory.stream").describe()
    params = {p["name"]: p for p in d["params"]}
    assert params["op"]["type"] == "copy|scale|add|triad" and params["op"]["default"] == "triad"
    assert params["size_mib"]["default"] == 64.0
    metrics = {m["name"]: m for m in d["metrics"]}
    assert metrics["bandwidth"] == {
        "name": "bandwidth",
        "unit": "GB/s",
        "higher_is_better": True,
        "description": metrics["bandwidth"]["description"],
    }
    assert metrics["time"]["unit"] == "ms" and metrics["time"]["higher_is_better"] is False
