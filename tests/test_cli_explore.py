"""`aofcrash explore` without --workload: the explorer's default suite, one combined result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.explore import DEFAULT_SUITE, WORKLOADS, suite_config
from harness.explore._workloads import FULL_PASS

# Small but real: every run of the suite with a few writes, one worker, the process model.
SMALL = ["--ops", "3", "--workers", "1", "--model", "process", "--progress", "never"]


def test_the_suite_and_its_configs_are_public_names_of_harness_explore() -> None:
    assert all(workload in WORKLOADS for workload, _, _ in DEFAULT_SUITE)
    config = suite_config("auto-rewrite", "always")
    assert config.policy == "always"
    assert config.auto_rewrite_min_size_bytes == 4096


def test_the_suite_without_ops_runs_the_quick_pass_then_the_full_pass() -> None:
    from harness.cli import build_parser
    from harness.cli._explore import _suite

    runs = _suite(build_parser().parse_args(["explore"]))
    assert [(r.workload, r.config.policy, r.ops) for r in runs] == list(DEFAULT_SUITE)
    assert len(runs) == 2 * len(FULL_PASS)


def test_explore_with_ops_runs_each_run_of_the_full_pass_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", *SMALL, "--json", "--reports", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["status"] == "ok"
    assert [(r["workload"], r["policy"]) for r in out["suite"]] == [
        (w, p) for w, p, _ in FULL_PASS]
    assert out["runs"] == len(FULL_PASS)
    assert out["states"] == sum(r["states"] for r in out["suite"]) > 0
    report = json.loads(Path(out["report"]).read_text(encoding="utf-8"))
    assert report["run"]["workload"] == "default suite"
    assert len(report["configurations"]) == len(FULL_PASS)


def test_the_suite_prints_a_line_per_run_and_the_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", *SMALL, "--policy", "no", "--reports", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    runs = [(w, p) for w, p, _ in FULL_PASS if p == "no"]
    assert code == 0
    assert lines[0].startswith(f"explore: the default suite, {len(runs)} runs")
    for workload, policy in runs:
        assert any(line.startswith(f"  {workload} ({policy}, ops=3):") for line in lines)
    assert any(line.startswith("total: ") for line in lines)
    assert "no violation" in lines


def test_policy_without_a_workload_keeps_only_that_policys_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", *SMALL, "--policy", "always", "--json", "--reports",
                 str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    expected = [w for w, p, _ in FULL_PASS if p == "always"]
    assert expected and len(expected) < len(FULL_PASS)
    assert [r["workload"] for r in out["suite"]] == expected
    assert {r["policy"] for r in out["suite"]} == {"always"}


def test_a_violation_in_any_run_of_the_suite_exits_1_with_a_replayable_reproduction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", *SMALL, "--policy", "always", "--model", "power",
                 "--defect", "reply-before-fsync", "--max-reproductions", "2", "--json",
                 "--reports", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["status"] == "violation"
    assert out["violating_states"] == sum(r["violating_states"] for r in out["suite"]) > 0
    # Ids and causes stay unique across runs; each violation names its run's workload.
    assert len({f["id"] for f in out["findings"]}) == len(out["findings"])
    assert len({g["group"] for g in out["groups"]}) == len(out["groups"])
    assert {f["workload"] for f in out["findings"]} <= {w for w, _, _ in FULL_PASS}
    written = [f["reproduction"] for f in out["findings"] if f.get("reproduction")]
    assert 1 <= len(written) <= 2
    run_dir = Path(out["report"]).parent
    assert main(["replay", str(run_dir / written[0])]) == 1


def test_a_named_workload_still_runs_alone(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", "--workload", "mixed", *SMALL, "--json", "--reports",
                 str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert "suite" not in out and "runs" not in out
    report = json.loads(Path(out["report"]).read_text(encoding="utf-8"))
    assert report["run"]["workload"] == "mixed (ops=3, seed=0)"
    assert report["run"]["policy"] == "everysec"


def test_the_suite_on_the_example_target_runs_every_workload_it_can(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tinyaof writes its own log file: the multi-epoch workloads' crashes (they were armed for
    appendonly.aof, never fired, and the suite exited 2 with an empty report directory:
    "recover: the server has not crashed") now hit its log; the reference-only workload is
    skipped with one line naming it and why; every other run is explored and reported."""
    code = main(["explore", *SMALL, "--policy", "always", "--target", "tinyaof:make_target",
                 "--json", "--reports", str(tmp_path)])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 0 and out["status"] == "ok"
    skipped = {r["workload"]: r["skipped"] for r in out["runs_not_run"]}
    assert set(skipped) == {"surface"} and "bundled reference only" in skipped["surface"]
    assert "explore: skipped surface (always, ops=3): " in captured.err
    ran = {r["workload"] for r in out["suite"]}
    expected = {w for w, p, _ in FULL_PASS if p == "always"} - set(skipped)
    assert {"second-epoch", "big-aof"} <= ran == expected and out["states"] > 0
    report = json.loads(Path(out["report"]).read_text(encoding="utf-8"))
    assert len(report["runs_not_run"]) == 1 and len(report["configurations"]) == len(expected)


def test_a_run_that_cannot_run_is_skipped_and_the_others_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first run of the suite fails as a workload that cannot run (planted): one line
    naming it and why, exit 0, the other runs reported."""
    import harness.cli._explore as cli_explore
    from harness.cli._common import UsageError

    real = cli_explore._run_explore
    calls: list[int] = []

    def run(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise UsageError("the workload cannot be run: a planted reason")
        return real(*args)

    monkeypatch.setattr(cli_explore, "_run_explore", run)
    code = main(["explore", *SMALL, "--policy", "always", "--json", "--reports",
                 str(tmp_path)])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    first = next(w for w, p, _ in FULL_PASS if p == "always")
    assert code == 0
    assert [r["workload"] for r in out["runs_not_run"]] == [first]
    assert (f"explore: skipped {first} (always, ops=3): the workload cannot be run: a "
            "planted reason") in captured.err
    assert len(out["suite"]) == sum(1 for _, p, _ in FULL_PASS if p == "always") - 1


def test_a_crash_that_never_fires_before_a_recovery_names_the_files_it_was_armed_for() -> None:
    from faults import Crash as CrashFault
    from faults import FaultOp, FaultPlan, PersistenceModel
    from harness.explore._record import record
    from harness.machine._steps import ArmCrash, Recover, RunConfig, Write

    steps = (Write((b"SET", b"a", b"1")),
             ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.WRITE, path_glob="other.log"),))),
             Write((b"SET", b"b", b"2")), Recover(PersistenceModel.PROCESS))
    with pytest.raises(ValueError, match=r"crash that never happened.*'other\.log'"):
        record(RunConfig(), steps)


def test_a_fast_path_disagreement_is_a_harness_bug_in_the_report_not_an_abort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A planted explorer bug (the fast path calls every state a violation): each run of the
    suite still ends, the oracle's verdicts count (no violation on the safe reference), and
    the disagreements are reported as harness bugs with reproductions, in the summary too
    (it used to be `internal error: ExplorerError`, exit 2, and the other runs lost)."""
    from harness.explore._explorer import _Walk

    monkeypatch.setattr(_Walk, "_fast",
                        lambda self, *a: ("violation", ("prefix-consistency",)))
    code = main(["explore", *SMALL, "--policy", "always", "--json", "--reports", str(tmp_path)])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 0 and out["status"] == "ok"
    assert len(out["suite"]) == sum(1 for _, p, _ in FULL_PASS if p == "always")
    assert out["harness_bugs"] and "harness bug(s)" in captured.err
    report = json.loads(Path(out["report"]).read_text(encoding="utf-8"))
    assert "harness bug(s)" in report["summary"]
    run_dir = Path(out["report"]).parent
    for bug in report["harness_bugs"]:
        assert (run_dir / bug["reproduction"]).exists()
        assert bug["oracle_outcome"] == "consistent"
