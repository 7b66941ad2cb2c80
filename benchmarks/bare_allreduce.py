"""A bare torch.distributed all_reduce loop over gloo on this machine (no harness).

Two processes, each timing every call with perf_counter after warm-up; per iteration the
ranks' times are averaged (nccl-tests' default), and the median algbw is printed per size.

    python benchmarks/bare_allreduce.py ITERATIONS SIZE_BYTES [SIZE_BYTES ...]
"""

import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank: int, world: int, port: int, sizes: list[int], iters: int, q) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    out = {}
    for size in sizes:
        buf = torch.rand(size // 4)
        for _ in range(3):
            dist.all_reduce(buf)
        dist.barrier()
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t)
        out[size] = times
    q.put((rank, out))
    dist.destroy_process_group()


def main() -> None:
    iters, sizes = int(sys.argv[1]), [int(s) for s in sys.argv[2:]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, 2, port, sizes, iters, q)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(q.get() for _ in procs)
    for p in procs:
        p.join()
    for size in sizes:
        per_iter = [
            statistics.fmean(ts) for ts in zip(results[0][size], results[1][size], strict=True)
        ]
        print(size, size / statistics.median(per_iter) / 1e9)


if __name__ == "__main__":
    main()
