"""A bare torch GEMM loop (no harness): torch.matmul(out=) timed with perf_counter per call,
after warm-up. Prints the median GFLOP/s.

    python benchmarks/bare_gemm.py M N K ITERATIONS
"""

import os
import statistics
import sys
import time

import torch

m, n, k, iters = (int(x) for x in sys.argv[1:5])
torch.set_num_threads(len(os.sched_getaffinity(0)))
torch.set_float32_matmul_precision("highest")
a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
for _ in range(3):
    torch.matmul(a, b, out=c)
times = []
for _ in range(iters):
    t = time.perf_counter()
    torch.matmul(a, b, out=c)
    times.append(time.perf_counter() - t)
print(2 * m * n * k / statistics.median(times) / 1e9)
