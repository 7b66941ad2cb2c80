"""A database password never reaches our output, in any form a URL can hold it, through
every command that takes a database, their errors and --debug tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from results_db.urls import safe_url, scrub, url_secrets

ROOT = Path(__file__).parent.parent
SMOKE = str(ROOT / "playbooks" / "smoke.yaml")
PIECES = ("Sekr1t", "Pw")  # no piece of the password may show, not even half of it


def forms(tmp_path: Path) -> dict[str, str]:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("*:*:*:*:Sekr1tPw\n")
    pgpass.chmod(0o600)
    base = "postgresql+psycopg://alice{auth}@127.0.0.1:1/h{query}"
    return {
        "userinfo": base.format(auth=":Sekr1tPw", query=""),
        "query": base.format(auth="", query="?password=Sekr1tPw"),
        "encoded_at": base.format(auth=":Sekr1t%40Pw", query=""),
        "unencoded_at": base.format(auth=":Sekr1t@Pw", query=""),
        "sslpassword": base.format(auth="", query="?sslmode=disable&sslpassword=Sekr1tPw"),
        "passfile": base.format(auth="", query=f"?passfile={pgpass}"),
    }


COMMANDS = [
    ["run", SMOKE],
    ["results", "query"],
    ["results", "campaigns"],
    ["report", "some-campaign"],
    ["db", "upgrade"],
]


def assert_clean(text: str) -> None:
    for piece in PIECES:
        assert piece not in text, text


@pytest.mark.parametrize(
    "form", ["userinfo", "query", "encoded_at", "unencoded_at", "sslpassword", "passfile"]
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("how", ["option", "env"])
def test_no_form_of_the_password_is_printed(
    form: str, command: list[str], how: str, tmp_path: Path
) -> None:
    url = forms(tmp_path)[form]
    if how == "option":
        result = CliRunner().invoke(app, [*command, "--db", url])
    else:
        result = CliRunner().invoke(app, command, env={"HARNESS_DB_URL": url})
    assert result.exit_code == 2, result.output + result.stderr
    assert_clean(result.output + result.stderr)
    assert "alice" in result.stderr  # the message still says which database


def test_debug_tracebacks_are_scrubbed_too(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for url in forms(tmp_path).values():
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "--debug", "results", "query", "--db", url],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr
        assert_clean(proc.stdout + proc.stderr)


def test_a_real_server_rejecting_the_password_does_not_echo_it(postgres) -> None:
    wrong = postgres.url.replace(postgres.PASSWORD, "Sekr1tPw")
    result = CliRunner().invoke(app, ["results", "campaigns", "--db", wrong])
    assert result.exit_code == 2 and "password authentication failed" in result.stderr
    assert_clean(result.output + result.stderr)
    # And with the right one, what a command prints names the database without it.
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", postgres.url])
    assert result.exit_code == 0 and ":***@127.0.0.1" in result.stdout
    assert postgres.PASSWORD not in result.output + result.stderr


def test_masking_works_on_the_text_not_on_a_parse_that_splits_the_secret() -> None:
    assert (
        safe_url("postgresql+psycopg://u:Sekr1t@Pw@db/h?password=Sekr1tPw&sslmode=require")
        == "postgresql+psycopg://u:***@db/h?password=***&sslmode=require"
    )
    assert url_secrets("postgresql://u:a%40b@h/d") == ["a%40b", "a@b"]
    assert scrub("x a@b y", ["a@b"]) == "x *** y"


EXFILTRATE = """
campaign: {{name: exfil}}
benchmarks:
  - {{workload: inference.serving, params: {{url: "http://127.0.0.1:{port}", api_key_env: {name},
     concurrency: 1, min_requests: 1, warmup_requests: 0}}}}
"""


@pytest.mark.parametrize(
    "name, allowed",
    [
        ("HARNESS_DB_URL", ()),
        ("HARNESS_DB_URL", ("HARNESS_DB_URL",)),  # never, even when allowed
        ("RAY_AUTH_TOKEN", ()),
        ("PGPASSWORD", ()),
        ("GITHUB_TOKEN", ()),  # a token, but not an API key: only with --allow-env
        ("AWS_SECRET_ACCESS_KEY", ()),
    ],
)
def test_api_key_env_cannot_send_other_secrets(name: str, allowed: tuple, tmp_path: Path) -> None:
    import socket

    # An endpoint that would see any request: nothing may reach it, not even the preflight.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0)
        port = listener.getsockname()[1]
        pb = tmp_path / "pb.yaml"
        pb.write_text(EXFILTRATE.format(port=port, name=name))
        db = tmp_path / "r.sqlite"
        env = {name: "postgresql://u:Sekr1tPw@db/x"}
        args = ["run", str(pb), "--db", str(db)]
        for a in allowed:
            args += ["--allow-env", a]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, result.output + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"api_key_env {name}" in lines[0], lines
        assert f"http://127.0.0.1:{port}" in lines[0]
        assert_clean(result.output + result.stderr)
        assert not db.exists()
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_the_key_rule_and_allow_env(tmp_path: Path) -> None:
    from harness.campaign.secrets_rule import check_sent_secrets
    from harness.errors import CampaignError
    from harness.playbook.limits import Limits
    from harness.playbook.load import load_playbook

    def pairs(name: str, allow: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        pb = tmp_path / f"{name}.yaml"
        pb.write_text(EXFILTRATE.format(port=9, name=name).replace("127.0.0.1", "h.example"))
        return check_sent_secrets(load_playbook(pb, [], Limits()), allow)

    assert pairs("OPENAI_API_KEY") == [("OPENAI_API_KEY", "http://h.example:9")]
    assert pairs("VLLM_API_TOKEN") == [("VLLM_API_TOKEN", "http://h.example:9")]
    assert pairs("HF_TOKEN", frozenset({"HF_TOKEN"})) == [("HF_TOKEN", "http://h.example:9")]
    with pytest.raises(CampaignError, match="--allow-env"):
        pairs("HF_TOKEN")
    with pytest.raises(CampaignError, match="never sent"):
        pairs("RAY_API_KEY", frozenset({"RAY_API_KEY"}))
