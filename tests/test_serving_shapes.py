"""Load shapes of `inference.serving` beyond a fixed rate: trace replay (timing, speed-up,
multi-turn sessions whose context grows), shared prefixes, and a bad trace refused in one
line with exit 2 before any load is sent."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from tests.serving_helpers import ONE_LOAD_RUN
from workloads.serving.client import (
    Endpoint,
    LengthDist,
    SharedPrefix,
    first_model,
    plan_stream,
    plan_trace,
    run_load,
)
from workloads.serving.serve_model import spawned
from workloads.serving.trace import TraceError, load_trace

runner = CliRunner()


def write_trace(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("", "no requests in it"),
        ('{"timestamp": 0, "input_length": 4, "output_length": 2}\nnot json\n', ":2: not JSON"),
        ("[1, 2]\n", ":1: expected an object, got list"),
        ('{"timestamp": "soon", "input_length": 4, "output_length": 2}\n', ":1: timestamp"),
        ('{"timestamp": 0, "input_length": 0, "output_length": 2}\n', "input_length must be"),
        ('{"timestamp": 0, "input_length": 4}\n', ":1: no output_length"),
    ],
)
def test_bad_traces_are_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TraceError) as exc:
        load_trace(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_trace_times_units_speedup_sessions_and_aliases(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path / "t.jsonl",
        [
            {"timestamp": 1500, "input_tokens": 8, "output_tokens": 3, "session_id": "a"},
            {"timestamp": 1000, "input_length": 4, "output_length": 2, "session_id": "a"},
            {"timestamp": 2000, "prompt_len": 6, "output_len": 5},
        ],
    )
    reqs = load_trace(path, time_unit="ms", speedup=2)
    assert [r.arrival_s for r in reqs] == [0.0, 0.25, 0.5]  # sorted, ms, twice as fast
    assert [(r.session, r.turn) for r in reqs] == [("a", 0), ("a", 1), (None, 0)]
    assert [(r.input_len, r.output_len) for r in reqs] == [(4, 2), (8, 3), (6, 5)]
    assert len(load_trace(path, limit=2)) == 2


def test_prompts_share_a_prefix_only_when_asked() -> None:
    lengths = LengthDist(32), LengthDist(4)
    plain = [next(s) for s in [plan_stream(1, *lengths, None)] for _ in range(20)]
    assert len({p.prompt.split()[0] for p in plain}) > 10  # no common start: no cache hit
    stream = plan_stream(1, *lengths, None, prefix=SharedPrefix(16, share=0.5))
    shared = [next(stream) for _ in range(200)]
    heads = [" ".join(p.prompt.split()[:16]) for p in shared]
    common = max(set(heads), key=heads.count)
    assert 70 <= heads.count(common) <= 130  # about half start with the one prefix
    assert all(len(p.prompt.split()) == 32 for p in shared)  # the prefix counts in the length


def test_replay_keeps_the_traces_timing_and_grows_each_conversation(tmp_path: Path) -> None:
    rows = [{"timestamp": 0.2 * i, "input_length": 8, "output_length": 4} for i in range(6)]
    rows += [
        {"timestamp": 0.05 * t, "input_length": 5, "output_length": 6, "session_id": "chat"}
        for t in range(3)
    ]
    reqs = load_trace(write_trace(tmp_path / "t.jsonl", rows), speedup=2)
    with spawned("--engine", "synthetic", "--first-token-ms", "30", "--token-ms", "10") as url:
        headers = {"Content-Type": "application/json"}
        model = asyncio.run(first_model(url, headers))
        endpoint = Endpoint(url, "completions", model, headers)
        run = asyncio.run(run_load(endpoint, plan_trace(reqs, 0), [], None, 0.0, len(reqs), 60))
    assert all(r.ok for r in run.results) and len(run.results) == 9
    t0 = min(r.sent_at for r in run.results)
    offsets = sorted(r.sent_at - t0 for r in run.results if r.prompt_len == 8)
    for i, off in enumerate(offsets):  # sent at 0, 0.1, ... 0.5 s: the trace, twice as fast
        assert abs(off - 0.1 * i) < 0.03, offsets
    turns = [r for r in run.results if r.prompt_len == 5]
    for before, after in itertools.pairwise(turns):
        assert after.sent_at >= before.sent_at + before.e2e  # never before the answer
        # the conversation so far: its prompt, its answer (one word per token), new input
        assert after.input_tokens >= before.input_tokens + before.output_tokens + 5


def test_a_bad_trace_stops_the_run_before_any_load(tmp_path: Path) -> None:
    playbook = tmp_path / "trace.yaml"
    playbook.write_text(
        "campaign: {name: replay}\n"
        "benchmarks:\n"
        "  - workload: inference.serving\n"
        f"    params: {{url: 'http://127.0.0.1:9', trace: {{path: '{tmp_path}/none.jsonl'}}}}\n"
    )
    db = tmp_path / "r.db"
    for args in (["playbook", "validate", str(playbook)], ["run", str(playbook), "--db", str(db)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output + result.stderr
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "none.jsonl: No such file or directory" in lines[0], lines
    assert not db.exists()  # refused before anything was stored or sent


def test_a_trace_trial_sends_every_request_and_says_so(tmp_path: Path) -> None:
    from harness.node.runner import run_trial

    rows = [{"timestamp": 0.02 * i, "input_length": 6, "output_length": 3} for i in range(5)]
    rows.append({"timestamp": 0.01, "input_length": 4, "output_length": 3, "session_id": 7})
    path = write_trace(tmp_path / "t.jsonl", rows)
    settings = ONE_LOAD_RUN
    with spawned("--engine", "synthetic") as url:
        params = {"url": url, "trace": {"path": str(path)}, "prefix": {"tokens": 2}}
        out = run_trial("inference.serving", params, settings)
    assert out.status == "ok", out.failure_reason
    assert out.context["requests"] == out.context["completed"] == 6
    assert out.context["trace"] == {"requests": 6, "sessions": 1, "span_s": pytest.approx(0.08)}


@pytest.mark.quiet
def test_a_starved_client_marks_its_run_client_bound() -> None:
    """A thread holding the GIL in 50 ms slices starves the client's event loop: the run says
    it measured the client (loop and send lag), where an unloaded run does not."""
    import sys
    import threading
    import time

    from harness.node.runner import run_trial

    settings = ONE_LOAD_RUN
    with spawned("--engine", "synthetic", "--token-ms", "2") as url:
        params = {"url": url, "rate": 50, "min_requests": 20, "output_len": 8}
        calm = run_trial("inference.serving", params, settings)
        stop = threading.Event()

        def hog() -> None:
            while not stop.is_set():
                sum(range(10_000))

        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.05)
        thread = threading.Thread(target=hog, daemon=True)
        thread.start()
        try:
            starved = run_trial("inference.serving", params, settings)
        finally:
            stop.set()
            thread.join()
            sys.setswitchinterval(interval)
            time.sleep(0)
    assert calm.status == starved.status == "ok"
    # Unloaded, the loop answers within a fraction of that (not asserted unflagged: a busy
    # CI machine may itself delay the loop by a few ms).
    assert calm.context["loop_lag_p99_ms"] < starved.context["loop_lag_p99_ms"] / 3
    assert starved.context["client_bound"] is True
    reasons = " ".join(starved.context["client_bound_reasons"])
    assert "loop_lag p99" in reasons and starved.context["loop_lag_p99_ms"] > 20


def test_the_servers_metrics_are_scraped_during_the_load() -> None:
    """serve-model generates 2 requests at once; 6 in flight leave 4 waiting. Its /metrics
    (vLLM's names) is read during the run and stored as the trial's server telemetry."""
    from harness.node.runner import run_trial

    settings = ONE_LOAD_RUN
    with spawned(
        "--engine", "synthetic", "--first-token-ms", "20", "--token-ms", "20", "--max-running", "2"
    ) as url:
        params = {"url": url, "concurrency": 6, "min_requests": 24, "output_len": 10}
        out = run_trial("inference.serving", params, settings)
        off = run_trial("inference.serving", {**params, "server_metrics": False}, settings)
    assert out.status == "ok", out.failure_reason
    server = out.context["server_metrics"]
    assert server["status"] == "ok"
    assert server["running"]["max"] == 2 and server["waiting"]["max"] == 4
    assert server["kv_cache_usage"]["max"] == 100.0
    samples = [s for s in out.telemetry if s.source == "server"]
    assert {s.metric for s in samples} == {"running", "waiting", "kv_cache_usage"}
    assert len(samples) >= 3 * 3  # a reading every 0.25 s of a ~2 s run
    assert "server_metrics" not in off.context and not any(
        s.source == "server" for s in off.telemetry
    )


def test_a_server_without_metrics_says_so() -> None:
    from workloads.serving.server_metrics import parse

    assert parse("# HELP x y\nx 1\n") == {}
    got = parse(
        'sglang:num_running_reqs{a="1"} 3\nsglang:num_running_reqs{a="2"} 2\n'
        "tgi_queue_size 7\nvllm:num_preemptions_total 5\n"
    )
    assert got == {
        "running": ("requests", 5.0),
        "waiting": ("requests", 7.0),
        "preemptions": ("count", 5.0),
    }


def test_params_added_later_keep_older_trials_keys() -> None:
    """Trials stored before trace, prefix, slo_search and server_metrics existed hashed
    params without them: at their defaults they stay out of the canonical params."""
    from workloads.serving.workload import ServingParams

    plain = ServingParams(concurrency=4).canonical()
    assert not {"trace", "prefix", "slo_search", "server_metrics"} & set(plain)
    assert plain["concurrency"] == 4 and plain["prompt_len"] == {
        "mean": 128,
        "dist": "fixed",
        "spread": 0.0,
    }
    off = ServingParams(concurrency=4, server_metrics=False).canonical()
    assert off["server_metrics"] is False


def save_tokenizer(folder: Path, split_digits: bool) -> Path:
    """A word-level tokenizer over the prompt words and the server's output words (w<id>),
    saved as a Hugging Face folder; with ``split_digits`` "w123" is two tokens, "w" + "123"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from workloads.serving.client import WORDS

    vocab = {"[UNK]": 0, "w": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    splits = [pre_tokenizers.WhitespaceSplit()]
    if split_digits:
        splits.append(pre_tokenizers.Digits(individual_digits=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    return folder


def test_a_local_tokenizer_counts_tokens_and_says_so(tmp_path: Path) -> None:
    """The server streams words "w<id>", one token each by its usage. A tokenizer that splits
    the digits off counts two per word: with it, output tokens (and so throughput) double,
    prompts are exactly prompt_len of its tokens, and the context names the tokenizer."""
    from harness.node.runner import run_trial

    folder = save_tokenizer(tmp_path / "tok", split_digits=True)
    settings = ONE_LOAD_RUN
    with spawned("--engine", "synthetic", "--token-ms", "5") as url:
        params = {
            "url": url,
            "concurrency": 2,
            "min_requests": 8,
            "prompt_len": 20,
            "output_len": 6,
        }
        usage = run_trial("inference.serving", params, settings)
        counted = run_trial("inference.serving", {**params, "tokenizer": str(folder)}, settings)
        missing = run_trial(
            "inference.serving", {**params, "tokenizer": str(tmp_path / "no")}, settings
        )
    assert usage.status == counted.status == "ok", counted.failure_reason
    assert usage.context["token_counts"] == "server usage"
    assert counted.context["token_counts"] == f"tokenizer {folder}"
    assert counted.context["mean_input_tokens"] == 20  # prompts cut to exactly prompt_len
    assert counted.context["mean_output_tokens"] == 12  # six words, two tokens each
    assert usage.context["mean_output_tokens"] == 6
    ratio = (
        counted.summaries["output_throughput"]["median"]
        / usage.summaries["output_throughput"]["median"]
    )
    assert 1.7 < ratio < 2.3, ratio
    assert missing.status == "failed" and "no such folder" in missing.failure_reason


def test_an_unreachable_endpoint_stops_the_run_before_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    playbook = tmp_path / "gone.yaml"
    playbook.write_text(
        "campaign: {name: gone}\n"
        "benchmarks:\n"
        "  - name: load\n"
        "    workload: inference.serving\n"
        f"    params: {{url: 'http://127.0.0.1:{port}', concurrency: [1, 2]}}\n"
    )
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["run", str(playbook), "--db", str(db)])
    assert result.exit_code == 2, result.output + result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, lines  # one line, though two trials name the endpoint
    assert f"benchmark load: endpoint http://127.0.0.1:{port} does not answer" in lines[0]
    assert not db.exists()


def test_a_node_without_prometheus_client_runs_the_load_unscraped(monkeypatch) -> None:
    """A GPU node set up from the bare wheel folder may lack prometheus-client: the scrape
    says so and ends; it does not fail the load run."""
    import asyncio
    import sys

    import aiohttp

    from workloads.serving.server_metrics import Scrape, scrape

    monkeypatch.setitem(sys.modules, "prometheus_client.parser", None)  # import fails

    async def go() -> Scrape:
        result = Scrape()
        async with aiohttp.ClientSession() as session:
            await scrape(session, "http://127.0.0.1:9/metrics", result, asyncio.Event())
        return result

    assert (
        asyncio.run(go()).status == "prometheus-client is not installed on this node: not scraped"
    )


def sharegpt_entry(prompt: str, answer: str | None) -> dict:
    turns = [{"from": "human", "value": prompt}]
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    return {"id": prompt[:8], "conversations": turns}


def test_a_sharegpt_dataset_sends_its_prompts_and_answer_lengths(tmp_path: Path) -> None:
    """A ShareGPT file read as vLLM's benchmark reads it: one-turn conversations, pairs under
    4 tokens and prompts over 1024 left out (and counted); the rest sent as written, each
    asking for its answer's length. Four usable pairs and eight requests: each pair is sent
    twice (a seeded shuffle, again from the start), so the means are the pairs' exactly."""
    from harness.node.runner import run_trial
    from workloads.serving.client import WORDS
    from workloads.serving.dataset import DatasetError, load_sharegpt
    from workloads.serving.tokens import TokenCounter

    folder = save_tokenizer(tmp_path / "tok", split_digits=False)
    words = list(dict.fromkeys(WORDS))
    usable = [(words[i : i + 5 + 3 * i], " ".join(["ok"] * (4 + 2 * i))) for i in range(4)]
    entries = [sharegpt_entry(" ".join(p), a) for p, a in usable]
    entries[1:1] = [
        sharegpt_entry("one turn only here", None),
        sharegpt_entry("too short", "an answer long enough"),
        sharegpt_entry(" ".join(words[:10] * 110), "an answer long enough"),
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(entries))
    read = load_sharegpt(path, TokenCounter.load(str(folder)))
    assert [(r.input_len, r.output_len) for r in read.requests] == [
        (5 + 3 * i, 4 + 2 * i) for i in range(4)
    ]
    assert read.left_out == {"one turn": 1, "under 4 tokens": 1, "over the length limits": 1}
    for content, message in (
        ("[{]", "not JSON"),
        ('[{"conversations": "hi"}]', "entry 0: expected an object with a conversations list"),
        (json.dumps([sharegpt_entry("hi", None)]), "no usable conversation in it"),
    ):
        path.with_suffix(".bad").write_text(content)
        with pytest.raises(DatasetError) as exc:
            load_sharegpt(path.with_suffix(".bad"), TokenCounter.load(str(folder)))
        assert message in str(exc.value) and "\n" not in str(exc.value)

    params = {
        "concurrency": 2,
        "min_requests": 8,
        "tokenizer": str(folder),
        "dataset": {"path": str(path)},
    }
    with spawned("--engine", "synthetic", "--token-ms", "2") as url:
        out = run_trial("inference.serving", {**params, "url": url}, ONE_LOAD_RUN)
    assert out.status == "ok", out.failure_reason
    assert out.context["requests"] == 8 and out.context["completed"] == 8
    assert out.context["mean_input_tokens"] == sum(5 + 3 * i for i in range(4)) / 4
    assert out.context["mean_output_tokens"] == sum(4 + 2 * i for i in range(4)) / 4
    assert out.context["dataset"] == {
        "format": "sharegpt",
        "entries": 7,
        "usable": 4,
        "left_out": {"one turn": 1, "under 4 tokens": 1, "over the length limits": 1},
    }


def test_a_dataset_needs_a_tokenizer_and_is_read_before_anything_runs(tmp_path: Path) -> None:
    def validate(params: str) -> tuple[int, str]:
        pb = tmp_path / "pb.yaml"
        pb.write_text(
            "campaign: {name: v}\nbenchmarks:\n  - workload: inference.serving\n"
            f"    params: {{url: 'http://127.0.0.1:9', concurrency: 1, {params}}}\n"
        )
        result = runner.invoke(app, ["playbook", "validate", str(pb)])
        return result.exit_code, result.stderr

    missing = tmp_path / "none.json"
    code, err = validate(f"dataset: {{path: '{missing}'}}")
    assert code == 2 and "a dataset's lengths are counted in the model's tokenizer" in err, err
    folder = save_tokenizer(tmp_path / "tok", split_digits=False)
    code, err = validate(f"dataset: {{path: '{missing}'}}, tokenizer: '{folder}'")
    assert code == 2 and f"dataset {missing}: No such file or directory" in err, err
    code, err = validate(f"dataset: {{path: '{missing}'}}, tokenizer: '{folder}', output_len: 9")
    assert code == 2 and "a dataset sets output_len itself: remove it" in err, err
