"""``harness serve-model``: a small OpenAI-compatible streaming server over our own decoder.

For trying ``inference.serving`` without a GPU or a serving engine, and for testing it
against known timings. ``/v1/completions`` and ``/v1/chat/completions`` stream server-sent
events as vLLM does (``stream_options.include_usage`` adds a usage chunk; ``ignore_eos`` is
implied: every request gets exactly ``max_tokens`` tokens). ``/v1/models`` lists the model.

Engines: ``model`` runs the Llama-style decoder (one engine thread, one decode step per
active request in turn, each request with its own KV cache); ``synthetic`` makes token ids
without compute, for measuring the client. Pacing (``first_token_ms``, ``token_ms``) holds
each token back until its scheduled time, so timings are known. ``fail_every`` injects
errors deterministically: request n (1-based) with n % fail_every == 0 fails, cycling through
the failure kinds (``status``: HTTP 500 before streaming; ``disconnect``: the connection is
dropped after a few tokens; ``stream_error``: an error object in the stream).

Planted truth, for judging load generators: the first-token delay may be drawn per request
from a stated distribution (``first_token_dist``: fixed, uniform, exponential or lognormal
with mean ``first_token_ms``; ``first_token_spread`` is uniform's half-width or lognormal's
sigma, as a share of the mean), each token gap may be jittered (``token_jitter_ms``, uniform
+-), both seeded; and ``truth_log`` writes the server's own record of every request (see
``workloads.serving.truth``): when it received it, got a slot, wrote each token and ended.

Tokens are words: the prompt's whitespace-separated words are its tokens (hashed into the
vocabulary), and each generated token is sent as one word.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import queue
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from workloads.serving.truth import TruthRecord

FAILURE_KINDS = ("status", "disconnect", "stream_error")


@dataclass
class ServeOptions:
    model: str = "tiny"
    engine: str = "model"  # model | synthetic
    first_token_ms: float = 0.0
    token_ms: float = 0.0
    fail_every: int = 0
    max_running: int = 0  # requests generating at once; more wait for a slot (0: no limit)
    failures: tuple[str, ...] = ("status",)
    api_key: str | None = None  # required as a bearer token when set; never logged
    stamp: bool = True  # add harness_sent_ns (CLOCK_MONOTONIC) to each chunk
    seed: int = 0
    first_token_dist: str = "fixed"  # fixed | uniform | exponential | lognormal
    first_token_spread: float = 0.0  # uniform: half-width; lognormal: sigma (share of mean)
    token_jitter_ms: float = 0.0  # each token gap is token_ms +- this (uniform)
    truth_log: str | None = None  # one JSON line per request: the server's own record

    def paced(self) -> bool:
        """Whether tokens are held back to a schedule at all."""
        return bool(self.first_token_ms or self.token_ms)


@dataclass
class _Record:
    """What the server did for one request, for the truth log (CLOCK_MONOTONIC ns)."""

    n: int
    received_ns: int
    prompt_tokens: int = 0
    max_tokens: int = 0
    slot_ns: int | None = None
    tokens_ns: list[int] = field(default_factory=list)
    done_ns: int = 0
    outcome: str = "gone"  # until it ends otherwise: the client went away
    first_token_planned_ms: float | None = None


@dataclass
class _Job:
    prompt_ids: list[int]
    max_tokens: int
    out: asyncio.Queue[int | None]
    loop: asyncio.AbstractEventLoop
    step: int = 0
    cache: Any = None
    last: Any = None
    cancelled: threading.Event = field(default_factory=threading.Event)


class Engine:
    """Runs generation on one thread: each active request advances one token per turn."""

    def __init__(self, preset: str, seed: int) -> None:
        import torch

        from workloads.llama import PRESETS, Llama

        self.torch = torch
        self.cfg = PRESETS[preset]
        torch.manual_seed(seed)
        self.model = Llama.random(self.cfg, 1234, torch.float32, torch.device("cpu"))
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def _loop(self) -> None:
        torch = self.torch
        torch.set_num_threads(1)  # many small steps: threads would only contend
        active: list[_Job] = []
        while True:
            try:
                while True:
                    active.append(self.jobs.get(block=not active))
            except queue.Empty:
                pass
            for job in list(active):
                if job.cancelled.is_set():
                    active.remove(job)
                    continue
                if job.step == 0:
                    length = len(job.prompt_ids) + job.max_tokens
                    job.cache = self.model.new_cache(1, length, torch.float32, torch.device("cpu"))
                    tokens = torch.tensor([job.prompt_ids])
                    logits = self.model(tokens, start=0, cache=job.cache)
                else:
                    start = len(job.prompt_ids) + job.step - 1
                    logits = self.model(job.last, start=start, cache=job.cache)
                job.last = logits[:, -1].argmax(-1, keepdim=True)
                job.step += 1
                job.loop.call_soon_threadsafe(job.out.put_nowait, int(job.last))
                if job.step >= job.max_tokens:
                    job.loop.call_soon_threadsafe(job.out.put_nowait, None)
                    job.cache = None
                    active.remove(job)


class Server:
    """The aiohttp application and its state."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.counter = itertools.count(1)
        self.engine = Engine(options.model, options.seed) if options.engine == "model" else None
        from workloads.llama_config import PRESETS  # without torch: the synthetic engine

        self.vocab = PRESETS[options.model].vocab
        self.max_seq = PRESETS[options.model].max_seq
        self.name = f"harness-llama-{options.model}"
        # A known saturation point: past max_running, requests queue and throughput is flat.
        self.slots = asyncio.Semaphore(options.max_running) if options.max_running else None
        self.running = self.waiting = 0  # /metrics, under vLLM's names
        self.rng = random.Random(options.seed)  # planted delays: the same seed, the same draws
        # Line-buffered: each record reaches the file when its request ends, so a reader
        # that waits for the last answer finds it.
        self.truth = None
        if options.truth_log:
            self.truth = open(options.truth_log, "a", buffering=1)  # noqa: SIM115

    def close(self) -> None:
        """Close the truth log (at shutdown)."""
        if self.truth is not None:
            self.truth.close()
            self.truth = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)

        async def _closed(_: web.Application) -> None:
            self.close()

        app.on_cleanup.append(_closed)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _authorised(self, request: web.Request) -> bool:
        key = self.options.api_key
        return key is None or request.headers.get("Authorization") == f"Bearer {key}"

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text with vLLM's names: requests generating, waiting for a slot, and
        the share of slots in use (as vLLM reports its KV cache's)."""
        model = f'{{model_name="{self.name}"}}'
        usage = self.running / self.options.max_running if self.options.max_running else 0.0
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{model} {self.running}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{model} {self.waiting}",
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            f"vllm:gpu_cache_usage_perc{model} {usage}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "invalid API key")
        return web.json_response(
            {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "me"}]}
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        received_ns = time.monotonic_ns()
        arrived = time.perf_counter()
        if not self._authorised(request):
            return _error(401, "invalid API key")
        try:
            body = await request.json()
            if chat:
                prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
            else:
                prompt = body["prompt"]
                max_tokens = body.get("max_tokens") or 16
            max_tokens = int(max_tokens)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _error(400, f"bad request: {exc}")
        prompt_ids = [zlib.crc32(w.encode()) % self.vocab for w in str(prompt).split()] or [0]
        if len(prompt_ids) + max_tokens > self.max_seq or max_tokens < 1:
            return _error(
                400,
                f"prompt ({len(prompt_ids)}) + max_tokens ({max_tokens}) must fit the "
                f"model's {self.max_seq} positions",
            )
        n = next(self.counter)
        record = _Record(n, received_ns, len(prompt_ids), max_tokens)
        try:
            failure = self._failure(n)
            if failure == "status":
                record.outcome = failure
                return _error(500, "injected failure")
            stream = bool(body.get("stream"))
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if self.slots is not None:
                self.waiting += 1
                try:
                    await self.slots.acquire()
                finally:
                    self.waiting -= 1
                record.slot_ns = time.monotonic_ns()
                arrived = time.perf_counter()  # generation starts with a slot; TTFT has the wait
            offsets = self._offsets(max_tokens)
            if offsets:
                record.first_token_planned_ms = 1e3 * offsets[0]
            job = None
            self.running += 1
            try:
                tokens, job = self._tokens(prompt_ids, max_tokens)
                paced = self._paced(tokens, arrived, offsets)
                return await self._respond(
                    request, chat, stream, usage, len(prompt_ids), max_tokens, paced, failure,
                    record,
                )  # fmt: skip
            finally:
                if job is not None:
                    job.cancelled.set()  # a client that went away frees the engine's slot
                self.running -= 1
                if self.slots is not None:
                    self.slots.release()
        finally:
            record.done_ns = record.done_ns or time.monotonic_ns()
            self._log(record)

    def _log(self, record: _Record) -> None:
        if self.truth is None:
            return
        line = TruthRecord(
            n=record.n,
            received_ns=record.received_ns,
            slot_ns=record.slot_ns,
            tokens_ns=tuple(record.tokens_ns),
            done_ns=record.done_ns,
            outcome=record.outcome,
            prompt_tokens=record.prompt_tokens,
            max_tokens=record.max_tokens,
            first_token_planned_ms=record.first_token_planned_ms,
        )
        self.truth.write(line.as_json() + "\n")

    async def _respond(
        self,
        request: web.Request,
        chat: bool,
        stream: bool,
        usage: bool,
        prompt_len: int,
        max_tokens: int,
        paced: AsyncIterator[int],
        failure: str | None,
        record: _Record,
    ) -> web.StreamResponse:
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        if not stream:
            words = []
            async for t in paced:
                record.tokens_ns.append(time.monotonic_ns())
                words.append(f"w{t}")
            text = " " + " ".join(words)
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text}
            )
            resp = web.json_response(
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "model": self.name,
                    "choices": [{**choice, "finish_reason": "length"}],
                    "usage": _usage(prompt_len, len(words)),
                }
            )
            record.outcome = "ok"
            return resp
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        count = 0
        async for token in paced:
            count += 1
            if failure == "disconnect" and count == 3:
                request.transport.close()  # the stream breaks mid-way
                record.outcome = failure
                return resp
            if failure == "stream_error" and count == 3:
                await self._send(resp, {"error": {"message": "injected failure", "code": 500}})
                await resp.write(b"data: [DONE]\n\n")
                record.outcome = failure
                return resp
            if chat:
                delta = {"content": f" w{token}"}
                if count == 1:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": f" w{token}", "finish_reason": None}
            if count == max_tokens:
                choice["finish_reason"] = "length"
            sent = await self._send(
                resp, {"id": rid, "object": kind, "model": self.name, "choices": [choice]}
            )
            record.tokens_ns.append(sent)
        if usage:
            await self._send(
                resp,
                {
                    "id": rid,
                    "object": kind,
                    "model": self.name,
                    "choices": [],
                    "usage": _usage(prompt_len, count),
                },
            )
        record.done_ns = time.monotonic_ns()  # before the write: a client may read it at once
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        record.outcome = "ok"
        return resp

    def _failure(self, n: int) -> str | None:
        every = self.options.fail_every
        if every <= 0 or n % every:
            return None
        kinds = self.options.failures
        return kinds[(n // every - 1) % len(kinds)]

    async def _send(self, resp: web.StreamResponse, data: dict[str, Any]) -> int:
        """Write one event; returns when it was written (CLOCK_MONOTONIC ns), the time the
        chunk carries as ``harness_sent_ns`` and the truth log records."""
        now = time.monotonic_ns()
        if self.options.stamp:
            data["harness_sent_ns"] = now
        await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        return now

    def _tokens(
        self, prompt_ids: list[int], max_tokens: int
    ) -> tuple[asyncio.Queue[int | None], _Job | None]:
        out: asyncio.Queue[int | None] = asyncio.Queue()
        if self.engine is None:  # synthetic: ids from the prompt, no compute
            seed = sum(prompt_ids)
            for i in range(max_tokens):
                out.put_nowait((seed + 7919 * i) % self.vocab)
            out.put_nowait(None)
            return out, None
        job = _Job(prompt_ids, max_tokens, out, asyncio.get_running_loop())
        self.engine.submit(job)
        return out, job

    def _offsets(self, max_tokens: int) -> list[float] | None:
        """Each token's planned time after arrival (s), drawn for this request; None when
        nothing is paced."""
        o = self.options
        if not o.paced():
            return None
        t = self._draw_first()
        offsets = [t]
        for _ in range(max_tokens - 1):
            jitter = (
                self.rng.uniform(-o.token_jitter_ms, o.token_jitter_ms)
                if o.token_jitter_ms
                else 0.0
            )
            t += max(0.0, o.token_ms + jitter) / 1e3
            offsets.append(t)
        return offsets

    def _draw_first(self) -> float:
        """A first-token delay (s) from the planted distribution, whose mean is
        ``first_token_ms``."""
        o = self.options
        mean = o.first_token_ms / 1e3
        if mean <= 0 or o.first_token_dist == "fixed":
            return mean
        if o.first_token_dist == "uniform":
            return mean * (1.0 + o.first_token_spread * self.rng.uniform(-1.0, 1.0))
        if o.first_token_dist == "exponential":
            return self.rng.expovariate(1.0 / mean)
        sigma = o.first_token_spread  # lognormal with this sigma and the stated mean
        return self.rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    async def _paced(
        self, tokens: asyncio.Queue[int | None], arrived: float, offsets: list[float] | None
    ) -> AsyncIterator[int]:
        """Tokens from the queue, each held back until its planned time (if pacing)."""
        i = 0
        while (token := await tokens.get()) is not None:
            if offsets:
                due = arrived + offsets[min(i, len(offsets) - 1)]
                # Again until due: uvloop's timers round to whole ms and may fire early.
                while (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
            yield token
            i += 1


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": status}},
        status=status,
    )


async def start(options: ServeOptions, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(Server(options).app(), access_log=None)
    await runner.setup()
    # aiohttp's default listen backlog (128) drops a burst of connections from a thousand
    # streams, which then wait a second for a SYN retransmit (TTFT p90 read 2 s at 1,200
    # streams); uvicorn, behind vLLM, uses 2048.
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


def tiny_hf_llama(folder: Path) -> Path:
    """A 2-layer random Llama over the prompt words with a word-level tokenizer, saved as a
    Hugging Face folder: a model third-party servers (`transformers serve`) load offline."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from workloads.serving.client import WORDS

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2}
    vocab.update({w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@contextlib.contextmanager
def spawned(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``harness serve-model ARGS`` in its own process on a free port; yields its base URL
    and stops it on exit (for tests and benchmarks)."""
    harness = Path(sys.executable).with_name("harness")  # the console script of this venv
    proc = subprocess.Popen(
        [str(harness), "serve-model", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"on (http://\S+)", line)
        if not match:
            rest = proc.stdout.read() if proc.poll() is not None else ""
            raise RuntimeError(f"serve-model did not start: {line}{rest}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def transformers_served(model: Path, hub: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """Hugging Face's ``transformers serve MODEL`` (a third-party OpenAI-compatible server)
    on a free loopback port, offline (``hub``: an empty cache of its own); yields its base
    URL once /health answers and stops it on exit (for tests and benchmarks). Its output
    goes to a file, not a pipe nobody reads; it is quoted when the server does not start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    exe = Path(sys.executable).with_name("transformers")
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [str(exe), "serve", str(model), "--port", str(port), "--host", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    urllib.request.urlopen(url + "/health", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        tail = log.read()[-2000:]
                        raise RuntimeError(f"transformers serve did not start: {tail}") from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def serve_forever(options: ServeOptions, host: str, port: int) -> None:
    """Run until interrupted, printing the URL once bound (port 0 picks a free one)."""

    async def main() -> None:
        runner, bound = await start(options, host, port)
        # What start-up made lives as long as the server: out of the collector's sight, so
        # that a full collection (tens of ms with torch loaded) does not stall the tokens.
        gc.freeze()
        print(f"serving {options.model} ({options.engine}) on http://{host}:{bound}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    from workloads.serving.client import run_async

    with contextlib.suppress(KeyboardInterrupt):
        run_async(main())
