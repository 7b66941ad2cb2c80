"""Telemetry sources (psutil, NVML) and the background sampler. No Ray, no SQL."""

from collectors.base import Sample, SourceStatus, SourceUnavailable
from collectors.sampler import TelemetrySampler, known_sources

__all__ = ["Sample", "SourceStatus", "SourceUnavailable", "TelemetrySampler", "known_sources"]
