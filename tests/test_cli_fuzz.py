"""`aofcrash fuzz`, `replay` and `report`: exit codes, JSON summaries, reports, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main, parse_budget

AOFCRASH = Path(sys.executable).parent / "aofcrash"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_fuzz_of_the_safe_reference_exits_0_and_writes_both_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "fuzz", "--budget", "3s", "--policy", "always", "--seed", "4",
                          "--json", "--reports", str(tmp_path), "--progress", "never")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "ok"
    assert summary["examples"] > 0
    report = json.loads(Path(summary["report"]).read_text())
    assert report["command"] == "fuzz" and report["violations"] == []
    assert Path(summary["html"]).read_text().startswith("<!doctype html>")
    assert any(name.startswith("feature: ") for name in report["events"])


def test_fuzz_finds_a_defect_and_its_reproduction_replays_to_the_same_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "fuzz", "--defect", "reply-before-fsync", "--policy", "always",
                        "--model", "power", "--budget", "120s", "--shrink-budget", "10s", "--json",
                        "--reports", str(tmp_path), "--progress", "never")
    assert code == 1
    summary = json.loads(out)
    assert summary["status"] == "violation"
    finding = summary["findings"][0]
    assert finding["rule"] == "durability"
    run_dir = Path(summary["report"]).parent
    repro = run_dir / finding["reproduction"]
    code, out, _ = _run(capsys, "replay", str(repro), "--json")
    assert code == 1
    replayed = json.loads(out)
    assert replayed["status"] == "violation" and replayed["matches_expected"]
    assert replayed["text"] == finding["text"]
    # `report` re-renders the HTML from the JSON and summarises it.
    code, out, _ = _run(capsys, "report", str(run_dir))
    assert code == 1 and "1 violation(s)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fuzz", "--budget", "soon"], "invalid budget 'soon'"),
        (["fuzz", "--budget", "0"], "must be positive"),
        (["fuzz", "--policy", "sometimes"], "invalid choice: 'sometimes'"),
        (["fuzz", "--defect", "no-such-defect", "--budget", "1"], "unknown defect"),
        (["fuzz", "--seed", "-1"], "must be >= 0"),
        (["replay", "/nonexistent/repro.json"], "cannot read"),
        (["report", "/nonexistent/run"], "cannot read"),
        (["teleport"], "invalid choice: 'teleport'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if argv[0] == "fuzz":
        argv = [*argv, "--reports", str(tmp_path)]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_replay_of_a_malformed_file_names_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "aofcrash-repro/1", "config": {}, "steps": [{"step": "jump"}]}')
    code, _, err = _run(capsys, "replay", str(bad))
    assert code == 2
    assert "steps[0].step: unknown step 'jump'" in err


def test_budgets_accept_seconds_minutes_and_hours() -> None:
    assert parse_budget("90") == 90.0
    assert parse_budget("90s") == 90.0
    assert parse_budget("2m") == 120.0
    assert parse_budget("1h") == 3600.0


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("fuzz", "explore", "verify", "replay", "check-aof", "report", "loaders"):
        code, out, _ = _run(capsys, command, "--help")
        assert code == 0
        # --seed only where randomness exists.
        assert "--json" in out and ("--seed" in out) == (command in ("fuzz", "explore", "verify",
                                                                     "loaders")), command


def test_the_installed_command_runs_and_exits_2_on_usage_errors(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([str(AOFCRASH), "fuzz", "--budget", "nope"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "invalid budget" in done.stderr
