"""What the serving tests share: settings for one load run per trial, measured as it comes."""

from __future__ import annotations

from harness.playbook.load import Settings

ONE_LOAD_RUN = Settings(
    warmup_iterations=0,
    min_repetitions=1,
    max_repetitions=1,
    min_duration_s=0,
    telemetry={"sources": []},
).model_dump()
