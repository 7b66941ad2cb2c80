"""The HTML report: self-contained, escaped, and rendered by a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from tests.test_compare import fill

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INJECTED = "<script>alert('x')</script> & <b>bold</b>"


def make_report(tmp_path: Path) -> Path:
    url, _ = fill(tmp_path / "r.sqlite")
    db = sqlite3.connect(tmp_path / "r.sqlite")
    db.execute("update campaigns set description=? where id='c2'", (INJECTED,))
    db.execute("update nodes set hostname='a1<i>' where hostname='a1'")
    db.commit()
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["report", "c2", "--compare", "c1", "--db", url, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    html = make_report(tmp_path).read_text()
    assert "<script" not in html.replace("&lt;script", "")  # no script of ours, none injected
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "a1&lt;i&gt;" in html and "a1<i>" not in html
    for fetch in ('src="http', 'href="http', "@import", "url(http"):
        assert fetch not in html  # nothing is fetched: works offline
    assert html.count("<svg") >= 4  # comparison bars and telemetry at least
    assert html.count('id="bar-') >= 4 and 'id="ci-' in html  # bars with 95% CI error bars
    assert "<text" in html and ">c1<" in html.replace(" ", "")  # labels are text, legend named


def test_report_of_unknown_campaign_exits_2(tmp_path: Path) -> None:
    url, _ = fill(tmp_path / "r.sqlite")
    result = CliRunner().invoke(app, ["report", "nope", "--db", url, "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and result.stderr.startswith("error: no campaign 'nope'")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (scripts/test installs it)",
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM, "chromium missing: scripts/test installs Debian's chromium"
    page = make_report(tmp_path)
    profile = tempfile.mkdtemp(prefix="hcr")
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    try:
        dom = subprocess.run(
            [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
        )
        shot = tmp_path / "report.png"
        subprocess.run(
            [*flags, "--window-size=1300,3000", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr  # no console message of any level, errors included
    rendered = dom.stdout
    assert rendered.count("<svg") >= 4 and rendered.count('id="bar-') >= 4
    assert "<h2>Roofline</h2>" in rendered and "<h2>Telemetry</h2>" in rendered
    assert shot.exists() and shot.stat().st_size > 20_000  # a real picture, not a blank page
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_labels_from_stored_text_are_shown_as_written() -> None:
    from harness.present import charts

    svg = charts.bars(
        "kernel.gemm $x$ <b>",
        {"m=256 dtype=bf16": {"vm (a48ead27)": charts.Point(1.0, 0.9, 1.1)}},
        "TFLOP/s",
    )
    assert svg.startswith('<svg class="chart"') and "<script" not in svg
    assert "$x$ &lt;b&gt;" in svg  # not mathtext, not markup
    assert "dtype=bf16" in svg and "vm (a48ead27)" in svg  # the label that tells bars apart
    assert 'id="ci-0-0"' in svg  # the 95% CI drawn


def test_size_ticks_read_as_written() -> None:
    from harness.present.charts import _size_tick

    assert [_size_tick(v) for v in (256, 1024, 65536)] == ["256", "1024", "65536"]
    assert _size_tick(2**30) == "1.07374G"
