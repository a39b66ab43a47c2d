"""Reports: JSON is the source of truth; the HTML puts the verdict and violations first (rule in
plain words, lost writes, a diff that shows where values differ, a timeline, the program, every
crash epoch, an absolute replay command), groups violations by cause, and renders in a real
browser with no console error and the violation and a plot in the first screen."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from faults import CrashChoice, PersistenceModel
from harness.cli._report import (
    REPORT_FORMAT,
    ReportError,
    load_report,
    new_run_dir,
    render_html,
    write_atomic,
    write_report,
)
from harness.cli._report_violations import fuzz_violations, group_violations
from harness.machine._campaign import Finding, config_label
from harness.machine._steps import Crash, Recover, Reproduction, RunConfig, Tick, Write
from harness.oracle import KeyDiff, KeyValue

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


def test_a_finding_file_renders_beside_itself_and_leaves_report_html_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    finding = tmp_path / "6.0-always-power-none.json"
    finding.write_text(json.dumps({"format": REPORT_FORMAT, **_report([])}))
    assert main(["report", str(finding)]) == 0
    assert "no violation found" in (tmp_path / "6.0-always-power-none.html").read_text()
    assert not (tmp_path / "report.html").exists()
    assert str(tmp_path / "6.0-always-power-none.html") in capsys.readouterr().out


def test_html_escapes_violation_text_and_links_the_reproduction() -> None:
    page = render_html(_report([{"rule": "durability", "text": "<script>x</script>",
                                 "reproduction": "repro-1.json"}]))
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;" in page
    assert "href='repro-1.json'" in page
    assert "FAIL: 1 violation(s)" in page


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




# -- a real violation, found by replaying a reproduction ------------------------------------


def _found(tmp_path: Path, value: bytes = b"v") -> dict[str, object]:
    """A report of one real violation: reply-before-fsync loses an acknowledged SET."""
    repro = Reproduction(
        RunConfig(policy="always", defects=frozenset({"reply-before-fsync"})),
        (Tick(10), Write((b"SET", b"k0", value)), Crash(),
         Recover(PersistenceModel.POWER, CrashChoice(PersistenceModel.POWER, 0, ()))),
        expected={"outcome": "violation", "rules": ["durability"]})
    finding = Finding("violation", repro.config, "VIOLATION [durability] ...", ["durability"],
                      repro, 0, 1.0)
    violations, groups = fuzz_violations([finding], tmp_path, config_label)
    return {**_report(violations), "groups": groups}


def test_a_violation_is_written_as_an_aofrepro_file_with_an_absolute_replay_command(
    tmp_path: Path,
) -> None:
    report = _found(tmp_path)
    (v,) = report["violations"]  # type: ignore[misc]
    assert v["reproduction"].endswith(".aofrepro.json")
    assert (tmp_path / v["reproduction"]).exists()
    command = v["replay"].split()
    assert command[-2] == "replay" and Path(command[-1]).is_absolute()
    assert Path(command[-1]) == (tmp_path / v["reproduction"]).absolute()


def test_the_page_puts_verdict_then_violations_then_what_ran_then_configuration(
    tmp_path: Path,
) -> None:
    page = render_html(_found(tmp_path))
    order = [page.index(marker) for marker in (
        "id='verdict'", "id='violations'", "class='card violation'", "id='what-ran'",
        "id='configuration'")]
    assert order == sorted(order)
    # The event counts are collapsed below what ran, not above the violation.
    assert page.index("fault: ShortWrite") > page.index("id='what-ran'")


def test_a_violation_shows_the_rule_in_words_the_lost_write_and_the_program(
    tmp_path: Path,
) -> None:
    page = render_html(_found(tmp_path))
    assert "Acknowledged writes were lost" in page
    assert "Acknowledged writes lost (1)" in page and "SET k0 v" in page
    assert "<code>SET k0 v</code>" in page and "acknowledged at 10 ms, LOST" in page
    assert "Every crash epoch (1)" in page
    assert "<svg" in page and "Timeline of the violating run" in page
    assert "--expect fixed" in page
    # No Python reprs of crash choices or JSON in cells.
    assert "{'model'" not in page and '{"model"' not in page


def test_the_diff_elides_the_common_prefix_and_marks_the_differing_bytes() -> None:
    long_a = "v34-" + "x" * 60 + "AB"
    long_b = "v34-" + "x" * 60 + "AC"
    diff = [{"db": 0, "key": "k", "expected": {"type": "string", "value": long_a,
                                               "expire_at_ms": None},
             "recovered": {"type": "string", "value": long_b, "expire_at_ms": None}}]
    v = {"rule": "prefix-consistency", "verdict": {"violations": [
        {"rule": "prefix-consistency", "diff": diff, "differing_keys": 1, "diff_k": 3}]}}
    page = render_html(_report([v]))
    assert "equal bytes]" in page
    assert "<mark>B</mark>" in page and "<mark>C</mark>" in page


def test_the_terminal_diff_shows_where_two_long_values_differ() -> None:
    a = KeyValue("string", b"v34-" + b"x" * 60 + b"AB")
    b = KeyValue("string", b"v34-" + b"x" * 60 + b"AC")
    text = KeyDiff(0, b"k", a, b).render()
    expected, recovered = text.splitlines()[1:]
    assert expected != recovered.replace("recovered:", "expected: ")
    assert "AB" in expected and "AC" in recovered and "equal bytes" in expected


def test_violations_with_one_cause_form_one_group_with_a_count() -> None:
    def v(i: int, sig: str, steps: int) -> dict[str, object]:
        return {"id": f"v{i}", "signature": sig, "rule": "durability", "configuration": "c",
                "model": "power", "fault": "f", "shape": "s", "program": [{}] * steps}

    violations = [v(1, "a", 9), v(2, "a", 4), v(3, "b", 5), v(4, "a", 6)]
    groups = group_violations(violations)  # type: ignore[arg-type]
    assert [(g["signature"], g["count"], g["representative"]) for g in groups] == [
        ("a", 3, "v2"), ("b", 1, "v3")]
    assert [x["group"] for x in violations] == [1, 1, 2, 1]


def test_a_report_json_with_fields_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_bytes(b'{"format": "aofcrash-report/1", "run": []}')
    with pytest.raises(ReportError, match="field 'run' must be a JSON object"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ReportError, match="not UTF-8"):
        load_report(tmp_path)


# -- in a real browser -----------------------------------------------------------------------

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--enable-logging=stderr", "--v=0", "--window-size=1280,900"]

# Appended to a copy of the page only: where the verdict, the violation and the first plot
# are on the first screen (the report itself has no script).
_PROBE = """<script>
function shown(el) { if (!el) return false; const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.top < innerHeight && r.bottom > 0; }
document.body.setAttribute("data-probe", JSON.stringify({
  verdict: shown(document.getElementById("verdict")),
  violation: shown(document.querySelector(".violation h3")),
  plot: shown(document.querySelector("svg.plot")), height: innerHeight}));
</script>"""


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    try:
        return subprocess.run(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.real
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (bootstrap)")
def test_the_console_check_catches_a_page_that_logs_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><body><script>console.error('boom')</script></body>")
    assert any("boom" in line for line in _console(_chromium(tmp_path, bad, "--dump-dom").stderr))


@pytest.mark.real
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (bootstrap)")
def test_a_real_violation_report_opens_with_no_console_error_and_shows_it_first(
    tmp_path: Path,
) -> None:
    _, html_path = write_report(tmp_path, _found(tmp_path))
    done = _chromium(tmp_path, html_path, "--dump-dom")
    assert _console(done.stderr) == []
    dom = done.stdout
    assert 'id="verdict"' in dom and "FAIL: 1 violation(s)" in dom
    assert "Acknowledged writes were lost" in dom
    # The first screen (1280x900) shows the verdict, the violation and its timeline.
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html_path.read_text().replace("</body>", _PROBE + "</body>"))
    dom = _chromium(tmp_path, probe_page, "--dump-dom").stdout
    start = dom.index('data-probe="') + len('data-probe="')
    probe = json.loads(html.unescape(dom[start:dom.index('"', start)]))
    assert probe == {"verdict": True, "violation": True, "plot": True,
                     "height": probe["height"]}, probe
    shot = tmp_path / "report.png"
    _chromium(tmp_path, html_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_coverage_heat_map_shows_never_injected_faults_as_zero_cells() -> None:
    from harness.cli._report_violations import fuzz_coverage

    matrix = fuzz_coverage({"always/safe": Counter({"fault: ShortWrite": 3,
                                                    "recover: power": 2})},
                           ["always/safe", "no/safe"], ["power", "process"])
    rows = dict(zip(matrix["rows"], matrix["values"], strict=True))
    assert rows["fault: ShortWrite"] == [3, 0]
    assert rows["fault: Crash rename"] == [0, 0]  # a gap, listed although never drawn
    assert rows["recover: process"] == [0, 0]
    page = render_html({**_report([]), "coverage_matrix": matrix})
    assert page.count("<svg") == 1 and "Coverage: faults injected" in page


def test_a_damaged_timeline_in_report_json_still_renders_the_rest(tmp_path: Path) -> None:
    report = _found(tmp_path)
    (v,) = report["violations"]  # type: ignore[misc]
    v["events"] = [{"seq": "x"}]
    page = render_html(report)
    assert "timeline not drawn" in page and "Acknowledged writes lost (1)" in page


def test_explore_groups_its_violating_states_with_one_reproduction_per_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    code = main(["explore", "--workload", "mixed", "--ops", "25", "--seed", "2", "--policy",
                 "always", "--defect", "reply-before-fsync", "--json", "--progress", "never",
                 "--reports", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    groups = summary["groups"]
    assert summary["violating_states"] > len(groups) >= 1
    assert sum(g["count"] for g in groups) == len(summary["findings"])
    run_dir = Path(summary["report"]).parent
    files = sorted(p.name for p in run_dir.glob("*.json") if p.name != "report.json")
    assert files and all(name.endswith(".aofrepro.json") for name in files)
    assert len(files) == len(groups)  # one (the smallest) per cause, not one per state
    page = (run_dir / "report.html").read_text()
    assert page.count("class='card violation'") == len(groups)


def test_pictures_draw_control_bytes_escaped_and_warn_about_no_missing_glyph() -> None:
    import warnings

    from harness.cli import _plots

    # A real server's history names keys by their raw bytes: matplotlib warned "Glyph 3 (^C)
    # missing from font(s)" for each, putting the control byte itself into logs.
    study = {
        "events": [
            {"seq": 0, "epoch": 1, "t": 0, "kind": "submit", "entry": 0, "client": 0,
             "text": "SET k\x03 v\x1b"},
            {"seq": 1, "epoch": 1, "t": 0, "kind": "ack", "entry": 0, "outcome": "ok"},
            {"seq": 2, "epoch": 1, "t": 5, "kind": "fault", "fault": "Crash on \x07"},
            {"seq": 3, "epoch": 1, "t": 5, "kind": "crash"},
        ],
        "epochs": [{"epoch": 1, "crash_ms": 5, "frontier": 1, "window_ms": None,
                    "entries": [{"entry": 0, "status": "lost", "position": 1}]}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        timeline = _plots.timeline_svg(study, title="run \x03")
        heat = _plots.heatmap_svg(["fault: \x03"], ["col\x1b"], [[1]], title="coverage")
        series = _plots.series_svg([[0, 1], [1, 2]], title="t", xlabel="s", ylabel="n",
                                   marks=[(1, "violation \x03")])
    for svg in (timeline, heat, series):
        assert "\x03" not in svg and "\x1b" not in svg and "\x07" not in svg
    assert "SET k\\x03 v\\x1b" in timeline and "\\x07" in timeline
    assert "fault: \\x03" in heat and "violation \\x03" in series
