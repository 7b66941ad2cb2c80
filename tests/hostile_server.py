"""A hostile OpenAI-compatible streaming server for the tests (run as its own process):
well-formed streams, except that every tenth completion is broken in one chosen way (``--bad
KIND``, or a request for model ``bad:KIND``), and a
/metrics page that is well-formed, binary, endless (300 MB) or never answers.

    python -m tests.hostile_server --port P --bad KIND --metrics MODE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from aiohttp import web

TOKEN_S = 0.005
FIRST_TOKEN_S = 0.02
GOOD_METRICS = (
    "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 2\n"
    "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
)
HUGE_BLOCK = (GOOD_METRICS * 20_000).encode()[: 1 << 20]  # made once: the server's own work
# must not be what slows the load
# Each hostile answer, as the raw bytes of one SSE data line (or a special action).
BAD_LINES = {
    "long_line": b'data: {"choices": [{"text": "' + b"a" * 200_000 + b'"}]}\n\n',
    "not_object": b"data: 5\n\n",
    "bad_choices": b'data: {"choices": "abc"}\n\n',
    "bad_usage": b'data: {"choices": [{"text": " w"}], "usage": "lots"}\n\n',
    "not_utf8": b'data: {"choices": [{"text": "\xff\xfe"}]}\n\n',
    "not_json": b"data: {this is not json\n\n",
}


def chunk(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class Hostile:
    def __init__(self, bad: str, metrics: str) -> None:
        self.bad, self.metrics_mode, self.n = bad, metrics, 0

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "hostile"}]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        model = str(body.get("model") or "")
        kind = model.removeprefix("bad:") if model.startswith("bad:") else self.bad
        self.n += 1
        bad = kind if self.n % 10 == 0 else ""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(FIRST_TOKEN_S)
        for i in range(tokens):
            if i == 1 and bad in BAD_LINES:
                await resp.write(BAD_LINES[bad])
            if i == 1 and bad == "reset":
                request.transport.abort()
                return resp
            if i == 1 and bad == "too_large":  # valid lines without end (the client cuts)
                line = chunk({"choices": [{"text": "a" * 60_000}]})
                for _ in range(200):
                    await resp.write(line)
            await resp.write(chunk({"choices": [{"text": " w"}]}))
            await asyncio.sleep(TOKEN_S)
        await resp.write(chunk({"choices": [{"text": "", "finish_reason": "length"}]}))
        await resp.write(chunk({"choices": [], "usage": {"completion_tokens": tokens}}))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        mode = self.metrics_mode
        if mode == "hang":
            await asyncio.sleep(60)
        if mode == "binary":
            return web.Response(body=b"\xff\xfe\x00\x81 junk\n" + GOOD_METRICS.encode())
        if mode == "huge":  # 300 MB, streamed
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for _ in range(300):
                await resp.write(HUGE_BLOCK)
            return resp
        return web.Response(text=GOOD_METRICS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bad", default="")
    parser.add_argument("--metrics", default="good")
    args = parser.parse_args()
    server = Hostile(args.bad, args.metrics)
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_get("/metrics", server.metrics)
    # The client cutting a hostile answer short is the point: not worth a traceback here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=0.5,  # a hanging /metrics answer must not hold the exit
    )


if __name__ == "__main__":
    main()
