"""A stand-in ``pynvml`` module for subprocesses (put this folder first on PYTHONPATH).

One GPU whose power follows :class:`tests.fakes.CurveNvml`'s curve from the Unix epoch, so
every process on the machine (the harness's Ray workers, the GPU check's own poller) reads
the same power and the same energy counter at the same wall-clock time.
"""

from tests.fakes import CurveNvml

_gpu = CurveNvml(base=300.0, amp=100.0, period=0.7, update_s=0.01, t0=0.0)


def __getattr__(name: str):
    return getattr(_gpu, name)
