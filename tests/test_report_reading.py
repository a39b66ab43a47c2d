"""A report a person can read: long values elided as the README says, raw bytes escaped,
timeline labels that do not run into each other at 50 steps, a heat map with a legend, "What
ran" in words with each time said for what it is, and a page that never scrolls sideways."""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from faults import CrashChoice, PersistenceModel
from harness.cli._plots import heatmap_svg, timeline_figure
from harness.cli._report import render_html, write_report
from harness.cli._report_violations import fuzz_violations
from harness.machine._campaign import Finding, config_label
from harness.machine._steps import Crash, Recover, Reproduction, RunConfig, Tick, Write

CHROMIUM = "/usr/bin/chromium"


def _study(tmp_path: Path, writes: int) -> dict[str, Any]:
    """A real violation (reply-before-fsync loses the last acknowledged SET) of `writes`
    writes, with a control byte in every key, replayed for the report."""
    steps: list[Any] = [Tick(10)]
    for i in range(writes):
        steps.append(Write((b"SET", b"key\x03%d" % i, b"value-%d" % i)))
        if i % 7 == 3:
            steps.append(Tick(5))
    steps += [Crash(), Recover(PersistenceModel.POWER,
                               CrashChoice(PersistenceModel.POWER, 0, ()))]
    repro = Reproduction(RunConfig(policy="always", defects=frozenset({"reply-before-fsync"})),
                         tuple(steps), expected={"outcome": "violation", "rules": ["durability"]})
    finding = Finding("violation", repro.config, "VIOLATION [durability]", ["durability"],
                      repro, 0, 1.0)
    (v,), groups = fuzz_violations([finding], tmp_path, config_label)
    return {"v": v, "groups": groups}


def test_timeline_labels_overlap_neither_each_other_nor_the_title_at_50_steps(
    tmp_path: Path,
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    v = _study(tmp_path, 50)["v"]
    assert len(v["program"]) >= 50
    fig = timeline_figure({"events": v["events"], "epochs": v["epochs"]},
                          title="Timeline of the violating run (durability)")
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts]
    texts.append(("the title", ax.title.get_window_extent(renderer)))
    labels = [name for name, _ in texts if name.startswith("SET ")]
    assert len(labels) >= 10  # many writes are named, not only the lost one
    assert any("value-49" in name for name in labels)  # the lost write always is
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        assert not box_a.overlaps(box_b), (a, b)
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    for box_a, box_b in itertools.pairwise(ticks):
        assert not box_a.overlaps(box_b)
    axes = ax.get_window_extent(renderer)
    for name, box in texts:
        if name.startswith("SET "):
            assert axes.x0 - 1 <= box.x0 and box.x1 <= axes.x1 + 1, name


def test_raw_bytes_are_escaped_in_timeline_labels_lost_writes_and_the_diff(
    tmp_path: Path,
) -> None:
    found = _study(tmp_path, 3)
    v = found["v"]
    page = render_html({"command": "fuzz", "violations": [v], "groups": found["groups"]})
    assert "\x03" not in page
    assert "key\\x032" in page  # the lost write's key, in the lost writes and the diff
    labels = [t.get_text() for t in timeline_figure(
        {"events": v["events"], "epochs": v["epochs"]}).axes[0].texts]
    assert all(ch.isprintable() for label in labels for ch in label), labels


def _diff_report(key: str, expected: str, recovered: str | None) -> dict[str, Any]:
    diff = [{"db": 0, "key": key,
             "expected": {"type": "string", "value": expected, "expire_at_ms": None},
             "recovered": None if recovered is None else {
                 "type": "string", "value": recovered, "expire_at_ms": None}}]
    v = {"id": "v1", "rule": "prefix-consistency", "verdict": {"violations": [
        {"rule": "prefix-consistency", "diff": diff, "differing_keys": 1, "diff_k": 3}]}}
    return {"command": "explore", "violations": [v]}


def test_long_values_and_keys_in_the_diff_are_elided_with_the_bytes_left_out_counted() -> None:
    long_key = "user:" + "k" * 300
    long_value = "v" * 5000
    page = render_html(_diff_report(long_key, long_value, None))
    table = page[page.index("<table class='diff'>"):]
    table = table[: table.index("</table>")]
    assert "k" * 100 not in table and "v" * 100 not in table
    assert re.search(r"\[\d+ bytes\]", table) and "(5000 bytes)" in table
    # Two long values that differ in the middle: the equal prefix elided as the README says.
    page = render_html(_diff_report("k", "x" * 61 + "A" + "y" * 4000, "x" * 61 + "B" + "y" * 4000))
    assert "[55 equal bytes]" in page and "<mark>A</mark>" in page and "y" * 100 not in page


def test_what_ran_says_each_total_in_words_and_which_time_is_which() -> None:
    report = {"command": "fuzz", "violations": [],
              "totals": {"examples": 79, "elapsed_s": 20.3, "violating_states": 0,
                         "first_failure_s": None, "stopped_by": "budget",
                         "time_s": {"examples": 79.99, "shrinking": 0.0, "workers": 4}},
              "configurations": [{"trial": 0, "fault_fired": True, "seconds": 1.5,
                                  "acknowledged_then_unavailable": False}]}
    page = render_html(report)
    ran = page[page.index("id='what-ran'"):page.index("id='configuration'")]
    headers = re.findall(r"<th>([^<]*)</th>", ran)
    assert not [h for h in headers if "_" in h], headers  # no raw JSON keys
    assert "fault fired" in headers and "acknowledged then unavailable" in headers
    assert "elapsed (s, wall clock, the whole run)" in headers
    assert "summed over 4 worker process(es), so it can exceed the elapsed time" in ran
    assert "{" not in html.unescape(ran)  # no Python or JSON reprs


def test_the_coverage_heat_map_has_a_legend_for_its_colours_and_its_red_zeros() -> None:
    svg = heatmap_svg(["fault: ShortWrite", "fault: NoSpace"], ["always/safe", "no/safe"],
                      [[3, 0], [250, 12]], title="Coverage")
    assert "count (log scale)" in svg
    assert "a red 0 is a gap (never exercised)" in svg
    assert ">250<" in svg or "250" in svg  # the scale reaches the largest count


_WIDTH_PROBE = """<script>
document.body.setAttribute("data-width", JSON.stringify({
  page: document.documentElement.scrollWidth, window: innerWidth}));
</script>"""


@pytest.mark.real
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (bootstrap)")
def test_a_page_with_long_keys_and_values_never_scrolls_sideways_in_a_real_browser(
    tmp_path: Path,
) -> None:
    report = _diff_report("user:" + "k" * 400, "v" * 5000, "w" * 3000)
    report["violations"][0]["text"] = "x" * 3000
    _, page = write_report(tmp_path, {"run_id": "wide", **report})
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _WIDTH_PROBE + "</body>"))
    profile = tmp_path / "chromium-profile"
    try:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--window-size=1024,800", f"--user-data-dir={profile}", "--dump-dom",
             probe.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    start = done.stdout.index('data-width="') + len('data-width="')
    width = json.loads(html.unescape(done.stdout[start:done.stdout.index('"', start)]))
    assert width["page"] <= width["window"], width
