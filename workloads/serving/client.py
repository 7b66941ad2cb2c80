"""The load generator behind ``inference.serving``: asyncio + aiohttp, OpenAI-compatible SSE.

Timing follows vLLM's serving benchmark (REFERENCES.md): TTFT is request sent -> first
streamed token, E2E is sent -> end of stream, "sent" being when the request's bytes go to the
socket (aiohttp's chunk-sent trace; building the request and taking a pooled connection are
the client's work, not the server's: up to half a millisecond that vLLM's benchmark counts),
ITL is the gap between streamed chunks that carry text, TPOT per request is (E2E - TTFT) /
(output_tokens - 1). Output tokens come from the server's ``usage`` when it reports it, else
one per text chunk.

The client measures its own delay: an event-loop lag probe, and, against servers that stamp
each chunk with ``harness_sent_ns`` (``harness serve-model`` does), the delivery delay from
the server's write to our timestamp (both CLOCK_MONOTONIC on one machine).
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import aiohttp
import numpy as np
from aiohttp.http_exceptions import LineTooLong

from workloads.serving.server_metrics import Scrape, load_parser, scrape, server_root


def prompt_words() -> list[str]:
    """Common English words (workloads/data/prompt_words.txt): most BPE tokenizers spell each
    (with its leading space) as one token, so a prompt of N words is close to N tokens; the
    server's usage says exactly."""
    text = (resources.files("workloads") / "data" / "prompt_words.txt").read_text()
    return [w for w in (line.strip() for line in text.splitlines()) if w and not w.startswith("#")]


WORDS = prompt_words()

LAG_PROBE_S = 0.005
START_S = 1.0  # a scheduled run's start-up: its lateness is kept apart, not judged
T = TypeVar("T")


@dataclass
class RequestPlan:
    """One request to send: when (seconds after the start), and its lengths."""

    arrival_s: float
    prompt: str
    prompt_len: int
    output_len: int
    session: str | None = None  # a conversation's turns: sent in order, with the history
    turn: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), at send


@dataclass
class RequestResult:
    """What one request measured (seconds; perf_counter based)."""

    ok: bool
    prompt_len: int
    output_len: int  # requested
    sent_at: float = 0.0
    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    input_tokens: int | None = None
    error: str | None = None  # kind: http_<status>, connect, timeout, disconnect, stream_error
    detail: str = ""
    delivery_ns: list[int] = field(default_factory=list)
    text: str = ""  # the answer: for a conversation's next turn, or a tokenizer to count
    prompt_text: str = ""  # what was sent as the prompt, when the endpoint keeps text
    usage_counted: bool = False  # output_tokens came from the server's usage

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.e2e is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


@dataclass
class Endpoint:
    """Where and how to send: base URL, ``completions`` or ``chat``, model, headers."""

    url: str
    api: str
    model: str
    headers: dict[str, str]
    ignore_eos: bool = True
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 300.0
    keep_text: bool = False  # keep each prompt and answer (a tokenizer counts them after)

    def path(self) -> str:
        return api_base(self.url) + ("/chat/completions" if self.api == "chat" else "/completions")

    def body(self, plan: RequestPlan) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.0,
        }
        if self.api == "chat":
            body["messages"] = [
                *({"role": role, "content": text} for role, text in plan.history),
                {"role": "user", "content": plan.prompt},
            ]
            body["max_completion_tokens"] = plan.output_len
        else:  # the conversation so far as one text, then the new input
            body["prompt"] = " ".join([*(text for _, text in plan.history), plan.prompt])
            body["max_tokens"] = plan.output_len
        if self.ignore_eos:  # vLLM's extension: generate exactly output_len tokens
            body["ignore_eos"] = True
            body["min_tokens"] = plan.output_len
        body.update(self.extra_body)
        return body


@dataclass(frozen=True)
class LengthDist:
    """Token lengths around ``mean``: fixed, uniform in mean x [1-spread, 1+spread], or normal
    with std = spread x mean; never below 1."""

    mean: int
    dist: str = "fixed"
    spread: float = 0.0

    def draw(self, rng: np.random.Generator) -> int:
        if self.dist == "fixed" or self.spread == 0:
            return self.mean
        if self.dist == "uniform":
            value = rng.uniform(self.mean * (1 - self.spread), self.mean * (1 + self.spread))
        elif self.dist == "normal":
            value = rng.normal(self.mean, self.spread * self.mean)
        else:
            raise ValueError(f"unknown length distribution {self.dist!r}")
        return max(1, round(value))


@dataclass(frozen=True)
class SharedPrefix:
    """``tokens`` words every prompt of a ``share`` of the requests starts with (the rest of
    its length random), to measure prefix caching; without one, every prompt is random words
    from its first, so a prefix cache never hits."""

    tokens: int
    share: float = 1.0


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def _prompt(rng: np.random.Generator, n_in: int, prefix: SharedPrefix | None, text: str) -> str:
    if prefix is not None and rng.random() < prefix.share:
        return text + " " + _words(rng, max(1, n_in - prefix.tokens))
    return _words(rng, n_in)


def plan_stream(
    seed: int,
    prompt_len: LengthDist,
    output_len: LengthDist,
    rate: float | None,
    burstiness: float = 1.0,
    prefix: SharedPrefix | None = None,
    constant: bool = False,
    dataset: Sequence[Any] | None = None,
) -> Iterator[RequestPlan]:
    """Requests without end, seeded: the same seed gives the same prompts, lengths and times.

    Send times are 0 without a rate (or an infinite one: everything at once, or as fast as
    the concurrency allows); else the cumulative sum of gamma gaps with shape = burstiness
    and scale = 1 / (rate x burstiness), as vLLM draws them (burstiness 1 is Poisson), or
    with ``constant`` gaps of exactly 1 / rate. With a ``dataset`` (``DatasetRequest``s),
    its prompts and lengths in a seeded shuffle, again from the start once all were sent.
    """
    rng = np.random.default_rng(seed)
    shared = _words(np.random.default_rng(seed + 7), prefix.tokens) if prefix else ""
    order = np.random.default_rng(seed + 11)  # its own: the order is apart from the gaps
    picks: list[int] = []
    t = 0.0
    first = True
    while True:
        if rate is not None and not math.isinf(rate) and not first:
            if constant:
                t += 1.0 / rate
            else:
                t += float(rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness)))
        first = False
        if dataset:
            if not picks:
                picks = [int(i) for i in order.permutation(len(dataset))][::-1]
            r = dataset[picks.pop()]
            yield RequestPlan(t, r.prompt, r.input_len, r.output_len)
            continue
        n_in, n_out = prompt_len.draw(rng), output_len.draw(rng)
        yield RequestPlan(t, _prompt(rng, n_in, prefix, shared), n_in, n_out)


def plan_trace(
    requests: Sequence[Any], seed: int, prefix: SharedPrefix | None = None
) -> list[RequestPlan]:
    """A trace's requests (``serving_trace.TraceRequest``) as plans: its times and lengths,
    random words (seeded) of its input lengths; a turn's words are its new input only."""
    rng = np.random.default_rng(seed)
    shared = _words(np.random.default_rng(seed + 7), prefix.tokens) if prefix else ""
    return [
        RequestPlan(
            r.arrival_s,
            _prompt(rng, r.input_len, prefix, shared),
            r.input_len,
            r.output_len,
            r.session,
            r.turn,
        )
        for r in requests
    ]


# What a failed request is counted as (the README's list is this one). Each stays on its
# request: the load run goes on and the other requests keep their figures.
ERROR_KINDS = {
    "http_<status>": "the server answered with another status than 200",
    "connect": "no connection (refused, unreachable, DNS)",
    "timeout": "no whole answer within the request timeout",
    "disconnect": "the connection closed or was reset before the stream ended",
    "stream_error": "the stream carried an error object",
    "bad_stream": "a data line that is not JSON, not UTF-8, or JSON of the wrong shape",
    "line_too_long": "a line longer than the client reads (128 KiB)",
    "too_large": "an answer over MAX_RESPONSE_BYTES",
    "empty": "a whole stream with no text in it",
    "client": "any other failure of the HTTP client on this request",
}
# An answer is read up to this many bytes: a server streaming without end cannot grow the
# client past it (the load's other requests share its memory).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 128 * 1024  # one SSE line (a chunk of a few tokens is well under 1 KiB)
MAX_DETAIL_CHARS = 200


class BadChunk(ValueError):
    """A data line that is JSON but not an OpenAI stream chunk."""


def _chunk(payload: bytes) -> dict[str, Any]:
    """A data line's JSON, checked for the shape read from it (BadChunk, ValueError)."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise BadChunk(f"a data line is {type(data).__name__}, not an object")
    choices = data.get("choices")
    if choices is not None:
        if not isinstance(choices, list):
            raise BadChunk(f"choices is {type(choices).__name__}, not a list")
        for choice in choices:
            if not isinstance(choice, dict):
                raise BadChunk(f"a choice is {type(choice).__name__}, not an object")
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                raise BadChunk(f"a delta is {type(delta).__name__}, not an object")
    usage = data.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise BadChunk(f"usage is {type(usage).__name__}, not an object")
        for key in ("completion_tokens", "prompt_tokens"):
            count = usage.get(key)
            if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
                raise BadChunk(f"usage.{key} is {count!r:.40}, not a count")
    stamp = data.get("harness_sent_ns")
    if stamp is not None and (not isinstance(stamp, int) or isinstance(stamp, bool)):
        raise BadChunk("harness_sent_ns is not an integer")
    return data


def _fail(result: RequestResult, kind: str, detail: str) -> RequestResult:
    result.error, result.detail = kind, detail[:MAX_DETAIL_CHARS]
    return result


async def send(
    session: aiohttp.ClientSession, endpoint: Endpoint, plan: RequestPlan
) -> RequestResult:
    """Send one streaming request and time its chunks; any failure is this request's, named
    by one of ERROR_KINDS."""
    result = RequestResult(ok=False, prompt_len=plan.prompt_len, output_len=plan.output_len)
    payload_body = endpoint.body(plan)
    if endpoint.keep_text:
        result.prompt_text = payload_body.get("prompt") or " ".join(
            m["content"] for m in payload_body.get("messages", [])
        )
    try:
        return await _stream(session, endpoint, plan, json.dumps(payload_body), result)
    except TimeoutError:
        return _fail(result, "timeout", f"no answer within {endpoint.timeout_s:g} s")
    except aiohttp.ClientConnectorError as exc:
        return _fail(result, "connect", str(exc))
    except (
        aiohttp.ClientPayloadError,
        aiohttp.ServerDisconnectedError,
        ConnectionError,
        asyncio.IncompleteReadError,
    ) as exc:
        return _fail(result, "disconnect", f"{type(exc).__name__}: {exc}")
    except LineTooLong:
        return _fail(result, "line_too_long", f"a line over {MAX_LINE_BYTES:,} bytes")
    except ValueError as exc:  # not JSON, not UTF-8, or the wrong shape (BadChunk)
        return _fail(result, "bad_stream", f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        return _fail(result, "client", f"{type(exc).__name__}: {exc}")


async def _stream(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    plan: RequestPlan,
    body: str,
    result: RequestResult,
) -> RequestResult:
    keep = endpoint.keep_text or plan.session is not None
    timeout = aiohttp.ClientTimeout(total=endpoint.timeout_s)
    chunks = 0
    usage_tokens: int | None = None
    done = False
    finished = False  # a choice said why it ended (finish_reason): the answer is whole
    received = 0
    written: dict[str, float] = {}  # the chunk-sent trace puts the write's time here
    result.sent_at = sent = time.perf_counter()
    async with session.post(
        endpoint.path(),
        data=body,
        headers=endpoint.headers,
        timeout=timeout,
        trace_request_ctx=written,
    ) as resp:
        result.sent_at = sent = written.get("at", sent)
        last = sent
        if resp.status != 200:
            head = await resp.content.read(4 * MAX_DETAIL_CHARS)
            return _fail(result, f"http_{resp.status}", head.decode("utf-8", "replace"))
        while raw := await resp.content.readline(max_line_length=MAX_LINE_BYTES):
            now = time.perf_counter()
            received += len(raw)
            if received > MAX_RESPONSE_BYTES:
                return _fail(result, "too_large", f"more than {MAX_RESPONSE_BYTES:,} bytes")
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, "event:" lines
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            data = _chunk(payload)
            if "error" in data:
                return _fail(result, "stream_error", str(data["error"]))
            stamp = data.get("harness_sent_ns")
            if stamp is not None:
                result.delivery_ns.append(time.monotonic_ns() - stamp)
            choices = data.get("choices") or ()
            if any(c.get("finish_reason") for c in choices):
                finished = True
            usage = data.get("usage")
            if usage:
                usage_tokens = usage.get("completion_tokens")
                result.input_tokens = usage.get("prompt_tokens")
            piece = _text(choices)
            if not piece:
                continue
            if keep:
                result.text += piece
            if chunks == 0:
                result.ttft = now - sent
            else:
                result.itl.append(now - last)
            last = now
            chunks += 1
        result.e2e = time.perf_counter() - sent
    # `transformers serve` ends its streams after the finish_reason chunk with no [DONE]: a
    # stream that closed cleanly after a finish_reason is whole; one cut before it is not.
    if not done and not finished:
        return _fail(result, "disconnect", "stream ended without [DONE]")
    if chunks == 0:
        return _fail(result, "empty", "no text in the stream")
    result.output_tokens = usage_tokens if usage_tokens is not None else chunks
    result.usage_counted = usage_tokens is not None
    result.ok = True
    return result


def _text(choices: Iterable[dict[str, Any]]) -> str:
    """The text a chunk's choices carry (completions' ``text``, chat's ``delta.content``);
    empty for a chunk with none (a role, a finish_reason, usage)."""
    return "".join(
        str(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
        for choice in choices
    )


@dataclass
class LoadRun:
    """A finished run: measured results in send order, and the client's own delays."""

    results: list[RequestResult]
    duration_s: float  # first measured send -> last measured completion
    loop_lag_s: list[float]
    cancelled: int = 0
    stop: str = ""
    # The client's own check: how late each open-loop request was written against its
    # schedule (a concurrency cap's wait left out), and the CPU the client's process used
    # over the run (1.0 = one core, all the time).
    send_lag_s: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server: Scrape = field(default_factory=Scrape)  # the endpoint's /metrics, when scraped
    started_wall: float = 0.0  # time.time() at the first measured send
    send_lag_start_s: list[float] = field(default_factory=list)  # the run's first second's
    # Seconds from the start barrier every rank passed together to the first measured send:
    # ranks merge by it, as no host's clock offset is in it (None: no barrier).
    started_after_s: float | None = None


async def _on_chunk_sent(
    session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestChunkSentParams
) -> None:
    """The request's first bytes go to the socket now (headers and body together)."""
    written = ctx.trace_request_ctx
    if written is not None and "at" not in written:
        written["at"] = time.perf_counter()


def _write_trace() -> aiohttp.TraceConfig:
    """A session's trace that times each request's write (see ``_stream``)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_on_chunk_sent)
    return trace


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop where it is installed (unless HARNESS_EVENT_LOOP=asyncio), else
    on asyncio's own loop: uvloop costs less per request, so one core keeps a higher rate
    to its schedule (benchmarks/README.md)."""
    if os.environ.get("HARNESS_EVENT_LOOP") == "asyncio":  # to compare the two
        return asyncio.run(coro)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _sleep_until(deadline: float, clock: ThreadPoolExecutor) -> None:
    """Wait until ``deadline`` (perf_counter) to within about 0.1 ms. asyncio's timers wake
    up to 1 ms late (epoll's timeout is in whole milliseconds, rounded up): late by ~1 ms at
    p99 at any rate. So the last stretch is a thread's sleep (nanosleep), whose end wakes
    the loop; long waits take the loop's timer first, to stay cheap."""
    delay = deadline - time.perf_counter()
    if delay > 0.02:
        await asyncio.sleep(delay - 0.002)
        delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.get_running_loop().run_in_executor(clock, time.sleep, delay)


async def _lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    """How long a ready callback waits for the loop: the delay a chunk's timestamp can
    carry when the loop is busy with other streams (timer granularity left out)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(LAG_PROBE_S)
        ready = loop.create_future()
        t = time.perf_counter()
        loop.call_soon(ready.set_result, None)
        await ready
        lags.append(time.perf_counter() - t)


async def run_load(
    endpoint: Endpoint,
    plans: Iterable[RequestPlan],
    warmup: Sequence[RequestPlan],
    concurrency: int | None,
    duration_s: float,
    min_requests: int,
    max_duration_s: float,
    scrape_url: str | None = None,
    start_together: Callable[[], None] | None = None,
) -> LoadRun:
    """Warm up, then send ``plans`` at their arrival times (at most ``concurrency`` in flight)
    until both ``duration_s`` has passed and ``min_requests`` were sent; ``max_duration_s``
    cancels what is still running. ``scrape_url``: the server's /metrics, read meanwhile.
    ``start_together``: called once between the warm-up and the first measured send (even
    when the warm-up timed out), so that several ranks' measured loads start at once."""
    if scrape_url:
        load_parser()  # not at the scrape's start, where it held up the first sends ~19 ms
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[_write_trace()]
    ) as session:
        gate = asyncio.Semaphore(concurrency) if concurrency else None
        try:  # the warm-up, too, is bounded by max_duration_s
            await asyncio.wait_for(_send_all(session, endpoint, warmup, gate), max_duration_s)
        except TimeoutError:
            if start_together is not None:  # the other ranks wait for this one
                start_together()
            return LoadRun([], 0.0, [], stop="warm-up did not finish within max_duration_s")
        together = None
        if start_together is not None:
            # Blocking the loop is harmless here: nothing is in flight between warm-up and
            # load. After the warm-up, not before it: a rank whose warm-up took longer (a
            # slower first connection, a busy core) would otherwise start its share late
            # and the merged span would count the gap as the server's time.
            start_together()
            together = time.perf_counter()
        lags: list[float] = []
        stop_probe = asyncio.Event()
        probe = asyncio.create_task(_lag_probe(lags, stop_probe))
        server = Scrape()
        scraper = (
            asyncio.create_task(scrape(session, scrape_url, server, stop_probe))
            if scrape_url
            else None
        )
        tasks: list[asyncio.Task[RequestResult]] = []
        sessions: dict[str, _Conversation] = {}
        # (task, when it was due after t0, how late it was dispatched, when it was): its
        # lateness is that plus the wait from dispatch to the request's write (a
        # concurrency cap's wait left out).
        scheduled: list[tuple[asyncio.Task[RequestResult], float, float, float]] = []
        clock = ThreadPoolExecutor(1, thread_name_prefix="send-clock")
        # No cyclic collection during the load: with torch loaded a full one takes ~50 ms on
        # a slow core, and even the young generations' took 1-3 ms at 1,000 requests/s,
        # landing in the latencies and the send schedule. A run leaves about one cyclic
        # object per request for the collector, once the load is over.
        collecting = gc.isenabled()
        gc.disable()
        try:
            cpu0 = time.process_time()
            wall0 = time.time()
            t0 = time.perf_counter()
            stop = "plans exhausted"
            for plan in plans:
                elapsed = time.perf_counter() - t0
                if len(tasks) >= min_requests and elapsed >= duration_s:
                    stop = "duration and min_requests met"
                    break
                if max(elapsed, plan.arrival_s) >= max_duration_s:
                    stop = "max_duration_s"
                    break
                if plan.arrival_s > elapsed:
                    await _sleep_until(t0 + plan.arrival_s, clock)
                late = None
                if plan.arrival_s > 0:  # on a schedule: how late the client is against it
                    late = max(0.0, time.perf_counter() - t0 - plan.arrival_s)
                if gate is not None:
                    # Closed loop: wait for a free slot, but not past max_duration_s.
                    left = max_duration_s - (time.perf_counter() - t0)
                    try:
                        await asyncio.wait_for(gate.acquire(), timeout=max(left, 0.0))
                    except TimeoutError:
                        stop = "max_duration_s"
                        break
                conversation = None
                if plan.session is not None:
                    conversation = sessions.setdefault(plan.session, _Conversation())
                tasks.append(
                    asyncio.create_task(_gated(session, endpoint, plan, gate, conversation))
                )
                if late is not None:
                    scheduled.append((tasks[-1], plan.arrival_s, late, time.perf_counter()))
            left = max(0.0, max_duration_s - (time.perf_counter() - t0))
            done, pending = await asyncio.wait(tasks, timeout=left) if tasks else (set(), set())
            for task in pending:
                task.cancel()
            if pending:
                stop = "max_duration_s"
                await asyncio.gather(*pending, return_exceptions=True)
            stop_probe.set()
            await probe
            if scraper is not None:
                await scraper
        finally:
            if collecting:
                gc.enable()
            clock.shutdown(wait=False)
        results = [t.result() for t in tasks if t in done]
        # Judged in the steady state: in a run's first second the client opens a connection
        # per request in flight (hundreds at thousands of requests/s), a cost it pays once;
        # that second's lateness is kept apart (send_lag_start_s).
        # A run shorter than two such seconds is judged whole.
        send_lag: list[float] = []
        send_lag_start: list[float] = []
        last_due = max((due for _, due, _, _ in scheduled), default=0.0)
        judged_from = START_S if last_due >= 2 * START_S else 0.0
        for task, due, late, dispatched in scheduled:
            if task in done:
                lag = late + max(0.0, task.result().sent_at - dispatched)
                (send_lag if due >= judged_from else send_lag_start).append(lag)
        ends = [r.sent_at + (r.e2e or 0.0) for r in results]
        # From the first request's write, not from t0: opening the first connection is the
        # client's set-up, and the server's record starts when a request reaches it.
        first = min((r.sent_at for r in results if r.sent_at), default=t0)
        duration = (max(ends) if ends else time.perf_counter()) - first
        wall = time.perf_counter() - t0
        cpu = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
        started = wall0 + (first - t0)
        return LoadRun(
            results,
            duration,
            lags,
            len(pending),
            stop,
            send_lag,
            cpu,
            server,
            started,
            send_lag_start,
            None if together is None else first - together,
        )


def rank_starts(runs: Sequence[LoadRun]) -> tuple[list[float], bool]:
    """When each rank's first measured send went out: seconds after the start barrier they
    all passed where every run has that (True), else on the wall clock (False), where ranks
    on separate hosts would add their clocks' offset."""
    after = [r.started_after_s for r in runs]
    if all(a is not None for a in after):
        return [float(a or 0.0) for a in after], True
    return [r.started_wall for r in runs], False


def merge_runs(runs: Sequence[LoadRun]) -> LoadRun:
    """One run of several clients' (ranks') runs of the same load at once: their requests
    together, over the span from the first send to the last answer (``rank_starts``)."""
    begins, barrier = rank_starts(runs)
    span = max(b + r.duration_s for b, r in zip(begins, runs, strict=True)) - min(begins)
    return LoadRun(
        results=[x for r in runs for x in r.results],
        duration_s=span,
        loop_lag_s=[x for r in runs for x in r.loop_lag_s],
        cancelled=sum(r.cancelled for r in runs),
        stop="; ".join(sorted({r.stop for r in runs})),
        send_lag_s=[x for r in runs for x in r.send_lag_s],
        send_lag_start_s=[x for r in runs for x in r.send_lag_start_s],
        client_cpu=max(r.client_cpu for r in runs),
        server=runs[0].server,  # rank 0 scrapes
        started_wall=min(r.started_wall for r in runs),
        started_after_s=min(begins) if barrier else None,
    )


@dataclass
class _Conversation:
    """A session's history; its lock (FIFO) sends the turns one after another, in order."""

    history: list[tuple[str, str]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def _gated(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    plan: RequestPlan,
    gate: asyncio.Semaphore | None,
    conversation: _Conversation | None = None,
) -> RequestResult:
    try:
        if conversation is None:
            return await send(session, endpoint, plan)
        async with conversation.lock:  # the previous turn's answer is in the history
            plan.history = list(conversation.history)
            result = await send(session, endpoint, plan)
            if result.ok:
                conversation.history += [("user", plan.prompt), ("assistant", result.text)]
            if not endpoint.keep_text:
                result.text = ""  # kept in the history only
            return result
    finally:
        if gate is not None:
            gate.release()


async def _send_all(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    plans: Sequence[RequestPlan],
    gate: asyncio.Semaphore | None,
) -> list[RequestResult]:
    async def one(plan: RequestPlan) -> RequestResult:
        if gate is not None:
            await gate.acquire()
        return await _gated(session, endpoint, plan, gate)

    return list(await asyncio.gather(*(one(p) for p in plans)))


def api_base(url: str) -> str:
    """The OpenAI API's base (``.../v1``) of an endpoint given with or without it."""
    return server_root(url) + "/v1"


async def first_model(url: str, headers: dict[str, str], timeout_s: float = 30.0) -> str:
    """The id of the first model the endpoint lists at /v1/models."""
    base = api_base(url)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(base + "/models", headers=headers) as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"GET {base}/models answered HTTP {resp.status}")
        data = await resp.json()
    models = data.get("data") or []
    if not models:
        raise RuntimeError(f"GET {base}/models listed no models")
    return str(models[0]["id"])
