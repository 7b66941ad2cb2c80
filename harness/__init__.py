"""harness: playbooks dispatched over Ray, telemetry, and a SQL results store."""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    # Shipped to a node with a job (harness.cluster.ship), the code has no package metadata
    # there: the driver names its version in the job's environment.
    __version__ = os.environ.get("HARNESS_SHIPPED_VERSION") or version("harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
