"""``aofcrash report --merge``: the shards of one campaign merge, anything else is refused in
one line (exit 2) unless --allow-mixed; missing shards are named; exit 1 when any merged report
holds a violation; the summary reads as text, not Python reprs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.cli._report import REPORT_FORMAT
from harness.cli._report_summary import duration, totals_lines


def _shard(base: Path, name: str, *, shard: str = "0/2", seed: int = 1,
           target: str = "reference", policies: tuple[str, ...] = ("always",),
           command: str = "fuzz", violations: int = 0) -> Path:
    """A run directory holding a fuzz-like report.json of one shard."""
    run_dir = base / name
    run_dir.mkdir(parents=True)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "command": command, "run_id": name,
        "summary": f"shard {shard}",
        "run": {"seed": seed, "target": target, "policies": list(policies),
                "models": ["process", "power-ext4"], "shard": shard, "units": 3,
                "budget_s": 60.0, "command_line": f"aofcrash fuzz --shard {shard}"},
        "totals": {"examples": 40, "elapsed_s": 39.995, "violations": violations,
                   "first_failure_s": None,
                   "time_s": {"examples": 39.99500001, "shrinking": 0.0, "workers": 1}},
        "events": {"crash": 5},
        "configurations": [{"configuration": "always", "examples": 40}],
        "violations": [{"rule": "durability", "text": f"lost write {i}",
                        "reproduction": f"v{i}.aofrepro.json"} for i in range(violations)],
        "groups": [],
    }
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir


def _merge(capsys: pytest.CaptureFixture[str], tmp_path: Path, *dirs: Path | str,
           extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    code = main(["report", "--merge", *map(str, dirs), "--reports", str(tmp_path / "out"),
                 *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _merged_report(tmp_path: Path) -> dict[str, Any]:
    (path,) = (tmp_path / "out").glob("merged-*/report.json")
    return dict(json.loads(path.read_text()))


def _one_line_refusal(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_the_shards_of_one_campaign_merge_with_their_totals_added_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    b = _shard(tmp_path, "b/fuzz-1", shard="1/2")
    code, out, err = _merge(capsys, tmp_path, a, b)
    assert (code, err) == (0, "")
    report = _merged_report(tmp_path)
    assert report["totals"]["examples"] == 80
    assert report["run"]["shard"] == "0/2, 1/2"
    assert "merge_warnings" not in report["run"]
    assert "merged: 2 reports, shards 0/2, 1/2" in out


def test_the_same_report_given_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "fuzz-1")
    err = _one_line_refusal(*_merge(capsys, tmp_path, a, a / "report.json"))
    assert "the same report is given twice" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_shard_given_twice_is_refused_naming_the_shard_and_both_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="1/2")
    copy = _shard(tmp_path, "copy/fuzz-1", shard="1/2")
    err = _one_line_refusal(*_merge(capsys, tmp_path, a, copy))
    assert "shard 1/2 given twice" in err and str(a) in err and str(copy) in err


@pytest.mark.parametrize(("field", "kind", "changes"), [
    ("target", "targets", {"target": "tinyaof:make_target"}),
    ("seed", "seeds", {"seed": 2}),
    ("policies", "configurations", {"policies": ("always", "no")}),
])
def test_reports_of_different_campaigns_are_refused_naming_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, kind: str,
    changes: dict[str, Any],
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    b = _shard(tmp_path, "b/fuzz-1", shard="1/2", **changes)
    err = _one_line_refusal(*_merge(capsys, tmp_path, a, b))
    assert f"cannot merge reports of different {kind}: {field} " in err
    assert "--allow-mixed" in err


def test_allow_mixed_merges_different_targets_and_says_the_target_is_mixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/1")
    b = _shard(tmp_path, "b/fuzz-1", shard="0/1", target="tinyaof:make_target")
    code, _, err = _merge(capsys, tmp_path, a, b, extra=("--allow-mixed",))
    assert (code, err) == (0, "")
    report = _merged_report(tmp_path)
    assert report["run"]["target"] == "mixed: reference, tinyaof:make_target"
    assert "mixed target" in report["summary"]


def test_reports_of_different_commands_are_refused_even_with_allow_mixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    b = _shard(tmp_path, "b/verify-1", shard="1/2", command="verify")
    err = _one_line_refusal(*_merge(capsys, tmp_path, a, b, extra=("--allow-mixed",)))
    assert "different commands: fuzz, verify" in err


def test_shards_dealt_in_different_counts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    b = _shard(tmp_path, "b/fuzz-1", shard="1/4")
    err = _one_line_refusal(*_merge(capsys, tmp_path, a, b))
    assert "dealt differently" in err and "0/2" in err and "1/4" in err


def test_missing_shards_are_a_warning_naming_them_and_the_rest_is_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/4")
    c = _shard(tmp_path, "c/fuzz-1", shard="2/4")
    code, out, err = _merge(capsys, tmp_path, a, c, extra=("--json",))
    assert code == 0
    assert err == ("aofcrash report: warning: shard(s) 1/4, 3/4 missing: the merged report "
                   "covers 2 of 4 shards\n")
    warning = err.split("warning: ")[1][:-1]
    assert json.loads(out)["warnings"] == [warning]
    assert _merged_report(tmp_path)["run"]["merge_warnings"] == [warning]


def test_a_violation_in_any_merged_report_makes_the_merge_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    violating = _shard(tmp_path, "b/fuzz-1", shard="1/2", violations=2)
    assert main(["report", str(violating)]) == 1  # the violating shard alone
    capsys.readouterr()
    code, out, _ = _merge(capsys, tmp_path, clean, violating, extra=("--json",))
    assert code == 1
    assert json.loads(out)["status"] == "violation"
    reproductions = [v["reproduction"] for v in _merged_report(tmp_path)["violations"]]
    assert reproductions == [str((violating / f"v{i}.aofrepro.json").resolve())
                             for i in range(2)]


def test_a_reference_run_and_a_violating_target_run_merged_with_allow_mixed_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = _shard(tmp_path, "a/fuzz-1", shard="0/1")
    target = _shard(tmp_path, "b/fuzz-1", shard="0/1", target="tinyaof:make_target",
                    violations=1)
    code, _, _ = _merge(capsys, tmp_path, reference, target, extra=("--allow-mixed",))
    assert code == 1


def test_allow_mixed_without_merge_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "fuzz-1")
    assert main(["report", str(a), "--allow-mixed"]) == 2
    assert "--allow-mixed is for --merge" in capsys.readouterr().err


def test_the_merge_summary_reads_as_text_with_rounded_units_not_python_reprs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard(tmp_path, "a/fuzz-1", shard="0/2")
    b = _shard(tmp_path, "b/fuzz-1", shard="1/2")
    code, out, _ = _merge(capsys, tmp_path, a, b)
    assert code == 0
    assert "{" not in out and "None" not in out and "0000" not in out
    assert "  elapsed: 40.0 s\n" in out  # the longest shard
    assert "  first failure: none\n" in out
    assert "  time: examples 1 min 20 s, shrinking 0.00 s, workers 2\n" in out


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.00 s"), (0.254, "0.25 s"), (12.34, "12.3 s"), (79.99, "1 min 20 s"),
    (3599.6, "1 h 00 min"), (7300, "2 h 01 min"),
])
def test_durations_read_in_rounded_units(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_totals_lines_name_rates_and_sizes_in_words() -> None:
    assert totals_lines({"trials_per_s": 3.25, "size_bytes": 12, "ok": True,
                         "models": ["process", "power-ext4"]}) == [
        "  trials per second: 3.25", "  size: 12 bytes", "  ok: yes",
        "  models: process, power-ext4"]
