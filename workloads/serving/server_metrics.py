"""The serving engine's own view during a load run: its Prometheus ``/metrics`` scraped at
an interval, the names vLLM, SGLang and TGI export mapped onto one vocabulary (running and
waiting requests, KV-cache usage, batch size, preemptions), so a latency knee can be read
against the queue that caused it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp

# exporter's name -> (our name, unit, scale to our unit)
KNOWN: dict[str, tuple[str, str, float]] = {
    # vLLM (v0 and v1 names)
    "vllm:num_requests_running": ("running", "requests", 1.0),
    "vllm:num_requests_waiting": ("waiting", "requests", 1.0),
    "vllm:gpu_cache_usage_perc": ("kv_cache_usage", "%", 100.0),
    "vllm:kv_cache_usage_perc": ("kv_cache_usage", "%", 100.0),
    "vllm:num_preemptions": ("preemptions", "count", 1.0),
    # SGLang
    "sglang:num_running_reqs": ("running", "requests", 1.0),
    "sglang:num_queue_reqs": ("waiting", "requests", 1.0),
    "sglang:token_usage": ("kv_cache_usage", "%", 100.0),
    # Text Generation Inference
    "tgi_queue_size": ("waiting", "requests", 1.0),
    "tgi_batch_current_size": ("batch_size", "requests", 1.0),
}
SCRAPE_INTERVAL_S = 0.25


@dataclass
class Scrape:
    """What the scrape saw: (wall time, our name, unit, value) readings, and its status."""

    readings: list[tuple[float, str, str, float]] = field(default_factory=list)
    status: str = "not scraped"


def parse(text: str) -> dict[str, tuple[str, float]]:
    """Our name -> (unit, value) of the known metrics in a /metrics page, summed over label
    sets (one series per model or engine); counters by their total."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, tuple[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            known = KNOWN.get(name) or KNOWN.get(family.name)
            if known is None or sample.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            ours, unit, scale = known
            previous = out.get(ours, (unit, 0.0))[1]
            out[ours] = (unit, previous + scale * float(sample.value))
    return out


async def scrape(
    session: aiohttp.ClientSession, url: str, result: Scrape, stop: asyncio.Event
) -> None:
    """GET ``url`` every SCRAPE_INTERVAL_S until ``stop``; a page that is missing or holds
    none of the known names ends the scrape with a status saying so."""
    try:  # a runtime dependency, but a node set up from a bare wheel folder may lack it
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        result.status = "prometheus-client is not installed on this node: not scraped"
        return
    timeout = aiohttp.ClientTimeout(total=2.0)
    while not stop.is_set():
        try:
            async with session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    result.status = f"{url}: HTTP {resp.status}"
                    return
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.status = f"{url}: {type(exc).__name__}"
            return
        now = time.time()
        try:
            values = parse(text)
        except ValueError as exc:
            result.status = f"{url}: not Prometheus text ({exc})"
            return
        if not values:
            result.status = f"{url}: none of the known vLLM/SGLang/TGI metrics"
            return
        result.status = "ok"
        result.readings += [(now, name, unit, v) for name, (unit, v) in values.items()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SCRAPE_INTERVAL_S)


def server_root(url: str) -> str:
    """The server's root URL, whether given with or without its ``/v1`` API prefix."""
    return url.rstrip("/").removesuffix("/v1")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: where whatever is sent to it goes."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def metrics_url(base: str) -> str:
    """``/metrics`` at the server's root (engines serve it beside /v1, not under it)."""
    return server_root(base) + "/metrics"
