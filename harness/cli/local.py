"""Trying things on one machine: `harness cluster local` (several Ray nodes) and
`harness serve-model` (an OpenAI-compatible server to load)."""

from __future__ import annotations

import os
from enum import Enum
from typing import Annotated

import typer

from harness.cli.common import BadOption, handled, out


def cluster_local(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=16, help="Ray nodes to start")] = 3,
    cpus_per_node: Annotated[int, typer.Option("--cpus-per-node", min=1)] = 1,
) -> None:
    """Start a Ray cluster of several nodes on this machine until Ctrl-C.

    Node i gets the labels node=<i> and role=head|worker, and every second worker a custom
    resource `fast`, so selectors have something to tell apart. Ray's token auth stays on.
    """
    import signal
    import time

    from harness.cluster.local import NodeSpec, local_cluster

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    specs = [
        NodeSpec(
            cpus_per_node,
            {"node": str(i), "role": "head" if i == 0 else "worker"},
            {"fast": 1} if i and i % 2 == 0 else {},
        )
        for i in range(nodes)
    ]
    try:
        # Ctrl-C may come at any point, the start-up included: the helper stops what
        # started and removes its temporary folder (sockets, logs, session files).
        with local_cluster(specs) as cluster:
            signal.signal(signal.SIGTERM, _interrupt)  # again: a Ray node installs its own
            out.print(f"{nodes} Ray node(s) on this machine at {cluster.address}", markup=False)
            out.print(f"  harness nodes --address {cluster.address}", markup=False)
            out.print(f"  harness run PLAYBOOK --address {cluster.address}", markup=False)
            out.print("Ctrl-C stops them (only them).", markup=False)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass


class Engine(str, Enum):
    model = "model"
    synthetic = "synthetic"


class FirstTokenDist(str, Enum):
    fixed = "fixed"
    uniform = "uniform"
    exponential = "exponential"
    lognormal = "lognormal"


def serve_model(
    model: Annotated[str, typer.Option(help="decoder size preset")] = "tiny",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 8000,
    engine: Annotated[
        Engine, typer.Option(help="model: our decoder; synthetic: tokens without compute")
    ] = Engine.model,
    first_token_ms: Annotated[
        float, typer.Option(min=0, help="hold the first token until this long after arrival")
    ] = 0.0,
    token_ms: Annotated[float, typer.Option(min=0, help="then one token every this long")] = 0.0,
    first_token_dist: Annotated[
        FirstTokenDist,
        typer.Option(help="draw each first-token delay from this, mean --first-token-ms"),
    ] = FirstTokenDist.fixed,
    first_token_spread: Annotated[
        float,
        typer.Option(min=0, help="uniform: half-width, lognormal: sigma (share of the mean)"),
    ] = 0.0,
    token_jitter_ms: Annotated[
        float, typer.Option(min=0, help="each token gap is --token-ms +- this (uniform)")
    ] = 0.0,
    truth_log: Annotated[
        str | None,
        typer.Option(help="append the server's own record of each request (JSON lines)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for the model and the planted delays")] = 0,
    fail_every: Annotated[int, typer.Option(min=0, help="fail every N-th request (0: never)")] = 0,
    max_running: Annotated[
        int, typer.Option(min=0, help="generate at most N requests at once, queue the rest")
    ] = 0,
    failure: Annotated[
        list[str] | None,
        typer.Option(help="status | disconnect | stream_error (repeat to cycle through)"),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="require the key held by this environment variable as a bearer token"),
    ] = None,
) -> None:
    """Serve our Llama-style decoder over an OpenAI-compatible streaming API (to try and test
    inference.serving without a GPU or a serving engine)."""
    from workloads.llama_config import PRESETS
    from workloads.serving.serve_model import FAILURE_KINDS, ServeOptions, serve_forever

    with handled():
        if model not in PRESETS:
            raise BadOption(f"--model {model!r}: expected one of {', '.join(PRESETS)}")
        failures = tuple(failure or ["status"])
        for f in failures:
            if f not in FAILURE_KINDS:
                raise BadOption(f"--failure {f!r}: expected one of {', '.join(FAILURE_KINDS)}")
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BadOption(f"--api-key-env: ${api_key_env} is not set")
        if first_token_dist is FirstTokenDist.uniform and first_token_spread > 1:
            raise BadOption(
                f"--first-token-spread {first_token_spread:g}: a uniform spread above 1 "
                "would draw negative delays"
            )
        if token_jitter_ms > token_ms:
            raise BadOption(
                f"--token-jitter-ms {token_jitter_ms:g}: more than --token-ms {token_ms:g} "
                "would draw negative gaps"
            )
        if truth_log:
            try:
                open(truth_log, "a").close()  # only checking that it can be written
            except OSError as exc:
                raise BadOption(
                    f"--truth-log {truth_log}: cannot write: {exc.strerror or exc}"
                ) from None
        options = ServeOptions(
            model=model,
            engine=engine.value,
            first_token_ms=first_token_ms,
            token_ms=token_ms,
            fail_every=fail_every,
            max_running=max_running,
            failures=failures,
            api_key=key,
            seed=seed,
            first_token_dist=first_token_dist.value,
            first_token_spread=first_token_spread,
            token_jitter_ms=token_jitter_ms,
            truth_log=truth_log,
        )
        try:
            serve_forever(options, host, port)
        except OSError as exc:  # the port is taken, the address is not ours
            raise BadOption(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
