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


# A page is read up to this size (engines' pages are tens to hundreds of KiB): a larger one
# marks the scrape, and is never held whole or parsed.
MAX_PAGE_BYTES = 2 * 1024 * 1024
SCRAPE_TIMEOUT_S = 2.0
_WANTED = tuple(name.encode() for name in KNOWN)


def known_lines(page: bytes) -> str:
    """The page's lines about the metrics we read (their samples and # TYPE lines), decoded
    leniently: what the parser needs, a small part of an engine's page."""
    keep = []
    for line in page.splitlines():
        bare = line[7:] if line.startswith((b"# TYPE ", b"# HELP ")) else line
        if bare.startswith(_WANTED):
            keep.append(line.decode("utf-8", "replace"))
    return "\n".join(keep) + "\n"


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


def parse_page(page: bytes) -> dict[str, tuple[str, float]]:
    """``parse`` of a page's known lines (ValueError when they are not Prometheus text)."""
    return parse(known_lines(page))


async def _read_page(session: aiohttp.ClientSession, url: str) -> bytes | str:
    """The page's bytes, or why there are none (a status, an error, a page too large)."""
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    try:
        async with session.get(url, timeout=timeout) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}"
            page = bytearray()
            while part := await resp.content.read(MAX_PAGE_BYTES + 1 - len(page)):
                page += part
                if len(page) > MAX_PAGE_BYTES:
                    return f"page over {MAX_PAGE_BYTES // 1024 // 1024} MiB, not read"
            return bytes(page)
    except TimeoutError:
        return f"no whole page within {SCRAPE_TIMEOUT_S:g} s"
    except Exception as exc:  # a bad page marks the scrape, never the trial
        return type(exc).__name__


def load_parser() -> bool:
    """Import the Prometheus text parser now; False where it is not installed (a runtime
    dependency, but a node set up from a bare wheel folder may lack it). Call it before a
    load: the first import takes 20-70 ms, which at the scrape's start held up the load's
    first requests on the event loop."""
    try:
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        return False
    return True


async def scrape(
    session: aiohttp.ClientSession, url: str, result: Scrape, stop: asyncio.Event
) -> None:
    """GET ``url`` every SCRAPE_INTERVAL_S until ``stop``. A page that is missing, slow, too
    large or holds none of the known names ends the scrape with a status saying so; the load
    is never disturbed: pages are size-capped, decoded leniently and parsed off the event
    loop, and ``stop`` cancels a read in flight."""
    if not load_parser():
        result.status = "prometheus-client is not installed on this node: not scraped"
        return
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            read = asyncio.create_task(_read_page(session, url))
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
                if result.status == "not scraped":
                    result.status = f"{url}: no page before the load ended"
                return
            page = read.result()
            if isinstance(page, str):
                result.status = f"{url}: {page}"
                return
            now = time.time()
            try:
                values = await asyncio.to_thread(parse_page, page)
            except Exception as exc:  # the parser's errors are not all ValueError
                result.status = f"{url}: not Prometheus text ({type(exc).__name__}: {exc})"[:300]
                return
            if not values:
                result.status = f"{url}: none of the known vLLM/SGLang/TGI metrics"
                return
            result.status = "ok"
            result.readings += [(now, name, unit, v) for name, (unit, v) in values.items()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stopped), timeout=SCRAPE_INTERVAL_S)
    finally:
        stopped.cancel()


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
