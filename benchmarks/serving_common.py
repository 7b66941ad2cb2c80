"""Start `harness serve-model` for the serving benchmarks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from common import HARNESS


@contextmanager
def serve_model(*args: str) -> Iterator[str]:
    """`harness serve-model` on a free port in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [str(HARNESS), "serve-model", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"on (http://\S+)", line)
        if not match:
            raise SystemExit(f"serve-model did not start: {line}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
