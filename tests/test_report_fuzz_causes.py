"""Fuzz causes are mechanisms: each finding is replayed and grouped by the rules it broke and
what the image of the crash that broke them lacks or resurrects against what the server had
written (as the explorer groups its states), not by configuration, model, faults or program
shape. One planted defect found under two policies or with two fault sets is one cause; two
defects with different mechanisms are two; every count adds up, also after ``report --merge``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from faults import Crash as CrashFault
from faults import CrashChoice, FaultOp, FaultPlan, NoSpace, PersistenceModel
from harness.cli import main
from harness.cli._report import REPORT_FORMAT, render_html
from harness.cli._report_violations import fuzz_mechanism, fuzz_violations, terminal_lines
from harness.machine._campaign import Finding, config_label
from harness.machine._steps import (
    ArmCrash,
    Crash,
    InjectFaults,
    Recover,
    Reproduction,
    RunConfig,
    Step,
    Tick,
    Write,
)

EXT4 = PersistenceModel.POWER
PROCESS = PersistenceModel.PROCESS
CUT_SHORT = "durability: the image has appendonly.aof cut short"
REFUSED_OWN = ("availability: the image holds exactly what the server had written (its own "
               "doing); the server: Bad file format reading the append only file")


def _finding(policy: str, defect: str, steps: Sequence[Step], rules: list[str]) -> Finding:
    repro = Reproduction(RunConfig(policy=policy, defects=frozenset({defect})), tuple(steps),
                         expected={"outcome": "violation", "rules": rules})
    return Finding("violation", repro.config, f"VIOLATION [{', '.join(rules)}]", rules, repro,
                   0, 1.0)


def _reply_before_fsync(*, crash_at_fdatasync: bool = False) -> Finding:
    """always + reply-before-fsync: an acknowledged SET only in the page cache at the crash
    (a crash now, or one armed at the deferred fdatasync the next write runs)."""
    crash: list[Step] = (
        [ArmCrash(FaultPlan((CrashFault(op=FaultOp.FDATASYNC, nth=1),))),
         Write((b"SET", b"k1", b"v"))] if crash_at_fdatasync else [Crash()])
    return _finding("always", "reply-before-fsync",
                    [Tick(10), Write((b"SET", b"k0", b"v")), *crash,
                     Recover(EXT4, CrashChoice(EXT4, 0, ()))], ["durability"])


def _short_write_kept(policy: str, model: PersistenceModel = EXT4) -> Finding:
    """short-write-kept: a short write's partial bytes stay, the retry appends the whole
    command after them; the server refuses its own file on the next start."""
    return _finding(policy, "short-write-kept",
                    [Write((b"SET", b"k0", b"a")),
                     InjectFaults(FaultPlan((NoSpace(times=1, partial_bytes=27),))),
                     Write((b"SET", b"k0", b"a")), Tick(1100), Crash(),
                     Recover(model, CrashChoice(model, 0, ()))], ["availability"])


def _report(violations: list[dict[str, Any]], groups: list[dict[str, Any]], *,
            shard: str = "0/1") -> dict[str, Any]:
    return {"format": REPORT_FORMAT, "command": "fuzz", "run_id": "fuzz-test",
            "run": {"seed": 0, "target": "reference", "shard": shard},
            "totals": {"examples": 10, "violations": len(violations), "causes": len(groups)},
            "configurations": [], "events": {}, "violations": violations, "groups": groups}


def _cause_table(page: str) -> list[int]:
    """The counts column of the causes table, its total row last."""
    table = page[page.index("<th>cause</th>"):]
    table = table[: table.index("</table>")]
    return [int(n) for n in re.findall(r"<td class='num'>(\d+)</td>", table)]


def test_one_planted_defect_found_under_two_policies_is_one_cause(tmp_path: Path) -> None:
    findings = [_short_write_kept("everysec"), _short_write_kept("no", PROCESS)]
    violations, groups = fuzz_violations(findings, tmp_path, config_label)
    assert [v["replayed_outcome"] for v in violations] == ["violation", "violation"]
    (cause,) = groups
    assert cause["count"] == 2 and cause["members"] == ["v1", "v2"]
    assert cause["mechanism"] == REFUSED_OWN
    # Where it was seen: both configurations and models, each finding with its own row.
    assert cause["configuration"] == ("everysec/safe/short-write-kept, "
                                      "no/safe/short-write-kept")
    assert cause["model"] == "power-ext4, process"
    assert [row["configuration"] for row in cause["seen"]] == [
        "everysec/safe/short-write-kept", "no/safe/short-write-kept"]


def test_one_planted_defect_found_with_two_fault_sets_is_one_cause(tmp_path: Path) -> None:
    findings = [_reply_before_fsync(), _reply_before_fsync(crash_at_fdatasync=True)]
    violations, groups = fuzz_violations(findings, tmp_path, config_label)
    assert [v["fault"] for v in violations] == ["crash now", "Crash fdatasync"]
    (cause,) = groups
    assert (cause["mechanism"], cause["count"]) == (CUT_SHORT, 2)
    assert cause["representative"] == "v1"  # the smaller program
    assert {row["fault"] for row in cause["seen"]} == {v["fault"] for v in violations}


def test_two_defects_with_different_mechanisms_are_two_causes_and_every_count_adds_up(
    tmp_path: Path,
) -> None:
    findings = [_reply_before_fsync(), _short_write_kept("everysec"),
                _reply_before_fsync(crash_at_fdatasync=True),
                _short_write_kept("no", PROCESS)]
    violations, groups = fuzz_violations(findings, tmp_path, config_label)
    assert [(g["mechanism"], g["count"]) for g in groups] == [(CUT_SHORT, 2), (REFUSED_OWN, 2)]
    assert [v["group"] for v in violations] == [1, 2, 1, 2]
    page = render_html(_report(violations, groups))
    assert "FAIL: 4 violation(s) from 2 cause(s)" in page
    assert _cause_table(page) == [2, 2, 4]
    assert "and where each was seen" in page
    assert ("Seen under everysec/safe/short-write-kept, no/safe/short-write-kept; model(s) "
            "power-ext4, process.") in page
    lines = terminal_lines(violations, groups, limit=5)
    assert lines[0] == "4 violation(s) from 2 cause(s):"
    shown = [int(m.group(1)) for line in lines
             if (m := re.search(r"\((\d+) violation\(s\)\)$", line))]
    assert shown == [2, 2]


def test_a_finding_no_recovery_broke_is_grouped_by_its_rules_and_first_line() -> None:
    read = ("read GET k3 in db 0 at 120 ms: server replied b'x', the model expects None\n"
            "more detail")
    assert fuzz_mechanism(["model-divergence"], None, read) == (
        "model-divergence: a read of GET disagreed with the model")
    liveness = "liveness: the rewrite started at 1200 ms never ended"
    assert fuzz_mechanism(["liveness"], None, liveness) == (
        "liveness: the rewrite started at N ms never ended")


def test_the_effects_of_the_breaking_crash_are_the_mechanism_and_a_refusal_says_its_kind(
) -> None:
    assert fuzz_mechanism(["durability"], ["has appendonly.aof empty"], "") == CUT_SHORT
    own = fuzz_mechanism(["durability"], [], "")
    assert own.endswith("(its own doing): acknowledged writes its own files do not give back")
    refused = fuzz_mechanism(["availability"], [], "", "Bad file format reading the append "
                             "only file: expected '$', got b'*' (at byte 27) (offset 23)")
    assert refused == REFUSED_OWN  # where the parser tripped is no part of the kind
    # A data rule no recovery broke in the replay (it did not reproduce): nothing explains it.
    assert fuzz_mechanism(["durability"], None, "VIOLATION: k=3 frontier=4") is None


def _shard_dir(base: Path, shard: str, findings: list[Finding]) -> Path:
    run_dir = base / f"shard{shard[0]}"
    run_dir.mkdir()
    violations, groups = fuzz_violations(findings, run_dir, config_label)
    report = _report(violations, groups, shard=shard)
    (run_dir / "report.json").write_text(json.dumps(report, default=str))
    return run_dir


def test_merged_shards_that_found_one_cause_show_it_once_with_every_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    a = _shard_dir(tmp_path, "0/2", [_short_write_kept("everysec"), _reply_before_fsync()])
    b = _shard_dir(tmp_path, "1/2", [_reply_before_fsync(crash_at_fdatasync=True)])
    code = main(["report", "--merge", str(a), str(b), "--reports", str(tmp_path / "out")])
    capsys.readouterr()
    assert code == 1  # the merged reports hold violations
    (path,) = (tmp_path / "out").glob("merged-*/report.json")
    merged = json.loads(path.read_text())
    violations, groups = merged["violations"], merged["groups"]
    assert [v["id"] for v in violations] == ["r1.v1", "r1.v2", "r2.v1"]
    assert [(g["mechanism"], g["count"], g["members"]) for g in groups] == [
        (CUT_SHORT, 2, ["r1.v2", "r2.v1"]), (REFUSED_OWN, 1, ["r1.v1"])]
    assert [v["group"] for v in violations] == [2, 1, 1]
    assert groups[0]["representative"] == "r1.v2"
    assert merged["totals"]["causes"] == 2
    page = (path.parent / "report.html").read_text()
    assert "FAIL: 3 violation(s) from 2 cause(s)" in page
    assert _cause_table(page) == [2, 1, 3]
