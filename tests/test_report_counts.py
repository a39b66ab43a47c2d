"""Causes and counts: one cause per mechanism (what the crash image lacks or resurrects, the
rules broken), not per rule, crash point, model or trial; and every total a report prints equals
the sum of what it summarises (the verdict, the causes table, the terminal lines)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli._report import render_html
from harness.cli._report_violations import terminal_lines
from tests._real import needs_server


def _explore(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any], Path]:
    from harness.cli import main

    code = main(["explore", "--workload", "mixed", "--ops", "60", "--seed", "2", "--policy",
                 "always", "--defect", "reply-before-fsync", "--progress", "never",
                 "--reports", str(tmp_path), *extra])
    (run_dir,) = tmp_path.iterdir()
    return code, json.loads((run_dir / "report.json").read_text()), run_dir


def _cause_table(page: str) -> list[int]:
    """The counts column of the causes table, its total row last."""
    table = page[page.index("<th>cause</th>"):]
    table = table[: table.index("</table>")]
    return [int(n) for n in re.findall(r"<td class='num'>(\d+)</td>", table)]


def test_one_planted_bug_under_three_models_is_one_cause_counting_every_violating_state(
    tmp_path: Path,
) -> None:
    code, report, run_dir = _explore(tmp_path, "--model", "process", "--model", "power-ext4",
                                     "--model", "power-xfs")
    assert code == 1
    totals = report["totals"]
    by_model = report["explore"]["by_model"]
    states = sum(counts.get("violation", 0) for counts in by_model.values())
    assert totals["violating_states"] == states > len(report["violations"])
    (cause,) = report["groups"]  # reply-before-fsync: the AOF cut short, under both models
    assert cause["count"] == states
    assert cause["mechanism"] == "durability: the image has appendonly.aof cut short"
    assert cause["model"] == "power-ext4, power-xfs"
    page = (run_dir / "report.html").read_text()
    assert f"FAIL: {states} violating state(s) from 1 cause(s)" in page


def test_every_total_in_a_report_equals_the_sum_of_what_it_summarises(tmp_path: Path) -> None:
    _, report, run_dir = _explore(tmp_path, "--model", "process", "--model", "power-ext4",
                                  "--torn")
    groups = report["groups"]
    assert len(groups) >= 2, [g["mechanism"] for g in groups]
    total = report["totals"]["violating_states"]
    assert sum(g["count"] for g in groups) == total
    assert report["totals"]["causes"] == len(groups)
    page = (run_dir / "report.html").read_text()
    counts = _cause_table(page)
    assert counts[:-1] == [g["count"] for g in groups] and counts[-1] == total
    assert f"FAIL: {total} violating state(s) from {len(groups)} cause(s)" in page
    lines = terminal_lines(report["violations"], groups, total=total, limit=len(groups))
    assert lines[0] == f"{total} violating state(s) from {len(groups)} cause(s):"
    shown = [int(m.group(1)) for line in lines
             if (m := re.search(r"\((\d+) violating state\(s\)\)$", line))]
    assert sum(shown) == total


def test_a_report_whose_groups_hold_fewer_than_its_total_shows_the_rest_as_not_grouped(
) -> None:
    violations = [{"id": "v1", "rule": "durability", "signature": "a"},
                  {"id": "v2", "rule": "durability", "signature": "b"}]
    groups = [{"group": 1, "count": 7, "representative": "v1", "members": ["v1"],
               "signature": "a"},
              {"group": 2, "count": 3, "representative": "v2", "members": ["v2"],
               "signature": "b"}]
    page = render_html({"command": "explore", "totals": {"violating_states": 12},
                        "violations": violations, "groups": groups})
    assert _cause_table(page) == [7, 3, 2, 12]
    assert "not grouped" in page and "FAIL: 12 violation(s) from 2 cause(s)" in page


@pytest.mark.real
def test_verify_groups_trials_by_mechanism_and_fills_configuration_model_and_fault() -> None:
    needs_server("7.0")
    from collections.abc import Mapping

    from harness.targets import dump_keyspace
    from harness.verify import VerifyConfig, run_verify, verify_report

    def lossy_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        dump = dump_keyspace(client, now_ms=now_ms)
        for keys in dump.values():
            del keys[sorted(keys)[0]]
            break
        return dump

    result = run_verify(VerifyConfig(server="7.0", policy="always", trials=3, ops=40, seed=5),
                        dump=lossy_dump, attribution=False)
    report = verify_report(result, run_id="test")
    (group,) = report["groups"]  # three trials, one mechanism: one cause, not three
    assert group["count"] == report["totals"]["violations"] == 3
    assert group["members"] == [v["id"] for v in report["violations"]]
    for v in report["violations"]:
        assert v["configuration"].startswith("redis 7.0") and "always" in v["configuration"]
        assert v["model"] == "process" and v["fault"] == "no fault"
    page = render_html({"format": "aofcrash-report/1", **report})
    assert "FAIL: 3 violating trial(s) from 1 cause(s)" in page
    card = page[page.index("class='card violation'"):]
    for fact, value in (("configuration", "redis 7.0"), ("fault", "no fault"),
                        ("what explains it", "prefix-consistency: the image holds")):
        assert re.search(f"<dt>{fact}</dt><dd>{value}", card), fact
    assert "model process" in card


@pytest.mark.real
@pytest.mark.slow
def test_explore_server_reports_one_planted_bug_under_two_models_as_one_cause(
    tmp_path: Path,
) -> None:
    needs_server("reference")
    from harness.cli import main

    code = main(["explore", "--server", "reference", "--defect", "reply-before-fsync",
                 "--ops", "8", "--rewrite-at", "-1", "--model", "power-ext4", "--model",
                 "power-xfs", "--workers", "2", "--progress", "never",
                 "--reports", str(tmp_path)])
    assert code == 1
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    (cause,) = report["groups"]  # empty or cut short, under either model: one mechanism
    assert cause["count"] == report["totals"]["violating_states"] > 1
    assert cause["model"] == "power-ext4, power-xfs"
    assert len(cause["members"]) > 1  # the state groups it stands for, each listed


def test_a_kernel_flush_point_is_compared_with_the_files_before_and_after_its_call() -> None:
    from harness.verify._explore_kernel import _kernel_effects, _KGroup

    def group(position: int, *, flush: bool) -> _KGroup:
        return _KGroup(position, "p", 0, "digest", None, 1, flush)  # type: ignore[arg-type]

    before = {"a.aof": b"SET1", "b.aof": b"x"}
    after = {"a.aof": b"SET1SET2", "b.aof": b"x", "c.aof": b"new"}
    visible = [before, after]
    lost_a = {"a.aof": b"", "b.aof": b"x"}
    # A marker point: its own marker's files.
    assert _kernel_effects(visible, group(0, flush=False), lost_a) == ("has a.aof empty",)
    # A flush: the effect both comparisons share (the call's new c.aof is not one).
    assert _kernel_effects(visible, group(0, flush=True), lost_a) == ("has a.aof empty",)
    # Equal to the files before the call: the crash lost nothing written before it.
    assert _kernel_effects(visible, group(0, flush=True), before) == ()
    # Nothing shared: which moment of the call it shows is unknown.
    between = {"a.aof": b"SET1SET2", "b.aof": b"x"}  # older than before, lacks after's c
    assert _kernel_effects(visible, group(0, flush=True), between) is None
    # No files read at the point: no mechanism.
    assert _kernel_effects([], group(0, flush=False), before) is None
