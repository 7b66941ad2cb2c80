"""A bare torch STREAM loop (no harness): the same kernels as memory.stream, timed with
perf_counter, first pass excluded. Prints "OP best_GBs mean_GBs".

    python benchmarks/bare_stream.py triad ELEMENTS PASSES
"""

import sys
import time

import torch

op, n, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, b, c = (torch.rand(n, dtype=torch.float64) for _ in range(3))
kernel = {
    "copy": lambda: c.copy_(a),
    "scale": lambda: torch.mul(c, 3.0, out=b),
    "add": lambda: torch.add(a, b, out=c),
    "triad": lambda: torch.add(b, c, alpha=3.0, out=a),
}[op]
times = []
for _ in range(passes + 1):
    t = time.perf_counter()
    kernel()
    times.append(time.perf_counter() - t)
times = times[1:]
nbytes = (2 if op in ("copy", "scale") else 3) * 8 * n
print(op, nbytes / min(times) / 1e9, nbytes / (sum(times) / len(times)) / 1e9)
