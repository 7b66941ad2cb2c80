"""CPU cost of the telemetry sampler: percent of one core at a given rate, all sources on.

The main thread only sleeps, so the process's CPU time over the window is the sampler's
(plus a baseline measured the same way without it, subtracted). Sources that cannot run on
this machine are listed as unavailable. Where the machine has no RAPL tree, a static one in
a temporary folder stands in, so the sysfs reads are still paid for.

    python benchmarks/sampler_overhead.py --seconds 20 --hz 10
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from collectors.rapl import POWERCAP_ROOT, ROOT_ENV
from collectors.sampler import TelemetrySampler, known_sources


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(sources: list[str] | None, seconds: float, hz: float) -> tuple[float, dict, int]:
    sampler = TelemetrySampler(sources, 1.0 / hz) if sources else None
    c0, t0 = cpu_seconds(), time.perf_counter()
    if sampler:
        sampler.start()
    time.sleep(seconds)
    if sampler:
        sampler.stop()
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    statuses = {k: v.available for k, v in sampler.statuses.items()} if sampler else {}
    return cpu / wall, statuses, len(sampler.samples) if sampler else 0


def fake_rapl(root: Path) -> None:
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:2", "dram")):
        (root / zone).mkdir(parents=True)
        (root / zone / "name").write_text(name + "\n")
        (root / zone / "max_energy_range_uj").write_text("262143328850\n")
        (root / zone / "energy_uj").write_text("123456789\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hz", type=float, default=10.0)
    args = parser.parse_args()
    if not POWERCAP_ROOT.is_dir() and ROOT_ENV not in os.environ:
        root = Path(tempfile.mkdtemp()) / "powercap"
        fake_rapl(root)
        os.environ[ROOT_ENV] = str(root)
        print(f"no {POWERCAP_ROOT}: reading a static stand-in tree at {root}")
    baseline, _, _ = measure(None, args.seconds, args.hz)
    used, statuses, n = measure(known_sources(), args.seconds, args.hz)
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    states = ", ".join(f"{k}={'on' if v else 'unavailable'}" for k, v in statuses.items())
    print(f"sources: {states}")
    print(f"{n} samples in {args.seconds:g} s at {args.hz:g} Hz")
    print(
        f"sampler CPU: {100 * (used - baseline):.3f}% of one core "
        f"(process {100 * used:.3f}%, idle baseline {100 * baseline:.3f}%)"
    )


if __name__ == "__main__":
    main()
