"""Reports: JSON is the source of truth, HTML renders in a real browser, writes are atomic."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli._report import (
    ReportError,
    load_report,
    new_run_dir,
    render_html,
    write_atomic,
    write_report,
)

CHROMIUM = "/usr/bin/chromium"


def _report(violations: list[dict[str, object]]) -> dict[str, object]:
    return {
        "command": "fuzz",
        "run_id": "fuzz-test",
        "run": {"seed": 3, "budget_s": 5.0},
        "totals": {"examples": 12, "violations": len(violations)},
        "configurations": [{"configuration": "always/safe", "examples": 12}],
        "events": {"fault: ShortWrite": 4, "recover: power": 7},
        "violations": violations,
    }


def test_report_round_trips_through_json_and_renders_html(tmp_path: Path) -> None:
    json_path, html_path = write_report(tmp_path, _report([]))
    loaded = load_report(tmp_path)
    assert loaded["totals"] == {"examples": 12, "violations": 0}
    assert loaded == json.loads(json_path.read_text())
    page = html_path.read_text()
    assert "no violation found" in page
    assert "fault: ShortWrite" in page


def test_html_escapes_violation_text_and_links_the_reproduction() -> None:
    page = render_html(_report([{"rule": "durability", "text": "<script>x</script>",
                                 "reproduction": "repro-1.json"}]))
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;" in page
    assert "href='repro-1.json'" in page
    assert "1 violation(s) found" in page


def test_loading_something_that_is_not_a_report_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"format": "other"}')
    with pytest.raises(ReportError, match="not an aofcrash report"):
        load_report(tmp_path)
    with pytest.raises(ReportError, match="cannot read"):
        load_report(tmp_path / "missing")


def test_atomic_write_leaves_no_temporary_file_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_run_directories_never_collide(tmp_path: Path) -> None:
    a = new_run_dir(tmp_path, "fuzz", 1, "20260101-000000")
    b = new_run_dir(tmp_path, "fuzz", 1, "20260101-000000")
    assert a != b and a.is_dir() and b.is_dir()


@pytest.mark.real
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (bootstrap)")
def test_html_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    _, html_path = write_report(tmp_path, _report([{"rule": "durability", "text": "lost k1",
                                                     "reproduction": "repro-1.json"}]))
    profile = tmp_path / "chromium-profile"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    # The browser parsed the page: the verdict element and the violation are in its DOM.
    assert 'id="verdict"' in dom
    assert "1 violation(s) found" in dom
    assert "lost k1" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,800", html_path.as_uri()],
        capture_output=True, timeout=60, check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.rmtree(profile, ignore_errors=True)
