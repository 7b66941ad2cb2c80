"""The bandwidth and kernel families: work declared, outputs verified, bad shapes refused."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from workloads import UnsupportedParams, VerificationError
from workloads.kernel_attention import AttentionWorkload
from workloads.kernel_conv2d import Conv2dWorkload
from workloads.kernel_gemm import GemmWorkload
from workloads.kernel_norm import NormWorkload
from workloads.memory_copy import CopyWorkload


def make(cls, **params):
    wl = cls(cls.Params.model_validate(params))
    wl.setup()
    return wl


@pytest.mark.parametrize(("count", "factor"), [("one_way", 1), ("read_write", 2)])
def test_host_copy_counts_bytes_by_the_stated_convention(count: str, factor: int) -> None:
    wl = make(CopyWorkload, direction="h2h", device="cpu", size_mib=2, count=count)
    wl.run_iteration()
    wl.verify()
    assert wl.work().bytes == factor * 2 * 2**20
    assert wl.context()["byte_convention"] == count
    wl.dst[7] = -1.0
    with pytest.raises(VerificationError, match="1 of"):
        wl.verify()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"direction": "h2h", "device": "cuda"}, "h2h copies host memory"),
        ({"direction": "d2h", "device": "cpu"}, "d2h needs a CUDA device"),
        ({"direction": "h2d", "count": "read_write"}, "read_write counting applies"),
        ({"direction": "p2p", "device": "cuda:1", "peer": "cuda:1"}, "peer GPU other than"),
    ],
)
def test_copy_directions_and_devices_must_agree(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CopyWorkload.Params.model_validate(params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_device_copies_fail_clearly_without_a_gpu() -> None:
    with pytest.raises(UnsupportedParams, match="no usable CUDA device"):
        make(CopyWorkload, direction="h2d", size_mib=1)


def test_attention_flops_gqa_and_verification() -> None:
    wl = make(
        AttentionWorkload, batch=2, heads=8, kv_heads=2, seq_len=64, head_dim=32, dtype="fp32"
    )
    assert wl.work().flops == 4 * 2 * 8 * 64 * 64 * 32
    wl.run_iteration()
    wl.verify()
    assert wl.context()["gqa_group"] == 4
    wl.out[0, 1, 3, 5] += 1.0
    with pytest.raises(VerificationError, match="attention output"):
        wl.verify()


def test_causal_attention_counts_half_and_masks() -> None:
    wl = make(AttentionWorkload, heads=4, seq_len=48, head_dim=16, causal=True, dtype="bf16")
    assert wl.work().flops == 4 * 4 * 48 * 48 * 16 / 2
    wl.run_iteration()
    wl.verify()  # the reference masks the upper triangle: a non-causal kernel would fail


def test_decode_shape_attention() -> None:
    wl = make(
        AttentionWorkload,
        batch=3,
        heads=8,
        kv_heads=1,
        seq_len=1,
        kv_len=256,
        head_dim=64,
        dtype="fp32",
    )
    wl.run_iteration()
    wl.verify()
    assert wl.work().flops == 4 * 3 * 8 * 1 * 256 * 64


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"heads": 6, "kv_heads": 4}, "multiple of kv_heads"),
        ({"seq_len": 1, "kv_len": 128, "causal": True}, "causal needs kv_len == seq_len"),
    ],
)
def test_attention_shapes_are_checked_at_validation(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AttentionWorkload.Params.model_validate(params)


@pytest.mark.parametrize(("dtype", "channels_last"), [("fp32", False), ("bf16", True)])
def test_conv2d_flops_and_verification(dtype: str, channels_last: bool) -> None:
    wl = make(
        Conv2dWorkload,
        batch=2,
        in_channels=8,
        out_channels=16,
        height=12,
        width=10,
        kernel=3,
        stride=2,
        padding=1,
        dtype=dtype,
        channels_last=channels_last,
    )
    assert wl.context()["output_hw"] == [6, 5]
    assert wl.work().flops == 2 * 2 * 16 * 6 * 5 * 8 * 9
    wl.run_iteration()
    wl.verify()
    wl.out[0, 0, 0, 0] += 5.0
    with pytest.raises(VerificationError):
        wl.verify()


def test_conv2d_kernel_larger_than_input_is_refused() -> None:
    with pytest.raises(UnsupportedParams, match="does not fit"):
        make(Conv2dWorkload, height=2, width=2, kernel=5, padding=0)


@pytest.mark.parametrize(
    ("op", "param_vectors"), [("layernorm", 2), ("rmsnorm", 1), ("softmax", 0)]
)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_norms_count_bytes_and_verify(op: str, param_vectors: int, dtype: str) -> None:
    wl = make(NormWorkload, op=op, rows=96, cols=256, dtype=dtype)
    elem = 4 if dtype == "fp32" else 2
    assert wl.work().bytes == (2 * 96 * 256 + param_vectors * 256) * elem
    wl.run_iteration()
    wl.verify()
    wl.out[5, 7] += 3.0
    with pytest.raises(VerificationError, match=f"{op} output"):
        wl.verify()


def test_fp8_gemm_is_refused_where_the_device_lacks_it() -> None:
    with pytest.raises(
        UnsupportedParams, match=r"fp8 needs a CUDA device of compute capability 8\.9"
    ):
        make(GemmWorkload, m=16, n=16, k=16, dtype="fp8", device="cpu")


def test_gpu_timing_options_are_recorded_as_not_applied_on_a_host() -> None:
    wl = make(GemmWorkload, m=8, n=8, k=8)
    step, flush, facts = wl.timing_hooks(flush_l2=True, cuda_graph=True)
    assert flush is None and step == wl.run_iteration
    assert facts["flush_l2"] is False and facts["cuda_graph"] is False
    assert "not applied" in facts["timing_note"]
    _, flush, facts = wl.timing_hooks(flush_l2=False, cuda_graph=False)
    assert flush is None and "timing_note" not in facts


def test_host_kernels_name_the_cpu_code_they_ran_on() -> None:
    """A host trial records PyTorch's CPU dispatch level and the CPU's matrix features (a
    bf16 matmul without native bf16 ran 150x slower than fp32 here)."""
    from workloads.devices import host_kernel_facts, matmul_flags

    with open("/proc/cpuinfo") as f:
        real = f.read()
    for cls, params in (
        (GemmWorkload, {"m": 8, "n": 8, "k": 8, "dtype": "bf16"}),
        (NormWorkload, {"rows": 8, "cols": 8}),
    ):
        ctx = make(cls, device="cpu", **params).context()
        assert ctx["cpu_dispatch"] == torch.backends.cpu.get_cpu_capability()
        assert ctx["cpu_matmul_flags"] == matmul_flags(real)
    line = next(x for x in real.splitlines() if x.split(":")[0].strip() in ("flags", "Features"))
    assert set(matmul_flags(real)) <= set(line.split(":", 1)[1].split())
    # Both layouts: an x86 "flags" line and an Arm "Features" line; only the first counts.
    x86 = "processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert matmul_flags(x86 + "flags\t\t: sse\n") == [
        "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"
    ]  # fmt: skip
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve bf16 i8mm\n"
    assert matmul_flags(arm) == ["asimd", "asimddp", "bf16", "i8mm", "sve"]
    assert matmul_flags("model name\t: something\n") == []
    assert host_kernel_facts(torch.device("cuda", 0)) == {}  # a GPU trial's are its GPU's
