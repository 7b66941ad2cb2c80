"""Telemetry sources (psutil, NVML, RAPL, amdsmi) and the background sampler. No Ray, no SQL.

Empty on purpose: importing the package loads no source (pynvml, psutil), only the module
asked for: ``collectors.base`` (plain data), ``collectors.sampler``, ``collectors.energy``.
"""
