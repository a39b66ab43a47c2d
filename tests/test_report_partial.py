"""Partial reports: a run stopped by Ctrl-C (a real SIGINT to a real process), by SIGKILL or
by its budget leaves a report of what finished, marked interrupted; written temp + rename as
it goes, so even a killed run leaves a readable report.json and report.html."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests._real import needs_server

_CLI = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


def _start(args: list[str], reports: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-c", _CLI, *args, "--progress", "never",
                             "--reports", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _report_with(reports: Path, enough: Any, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until the run's report.json satisfies `enough` (it is replaced whole, never seen
    half-written: temp + rename)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in reports.glob("*/report.json"):
            report: dict[str, Any] = json.loads(path.read_text())
            if enough(report):
                return report
        time.sleep(0.05)
    raise AssertionError(f"no report in {reports} reached the expected state")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()  # by PID: the process this test started
            proc.wait()
    return proc.returncode, err


@pytest.mark.real
def test_ctrl_c_during_verify_leaves_a_report_of_the_finished_trials_marked_interrupted(
    tmp_path: Path,
) -> None:
    needs_server("7.0")
    reports = tmp_path / "reports"
    proc = _start(["verify", "--server", "7.0", "--trials", "400", "--ops", "200",
                   "--workers", "1"], reports)
    try:
        _report_with(reports, lambda r: r["totals"]["trials"] >= 2)
        proc.send_signal(signal.SIGINT)
    finally:
        code, err = _finish(proc)
    assert code == 130, err
    assert "interrupted" in err and "report" in err
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    finished = report["totals"]["trials"]
    assert 2 <= finished < 400
    assert "Ctrl-C" in report["interrupted"]
    assert len(report["configurations"]) == finished
    page = (run_dir / "report.html").read_text()
    assert "Partial report" in page and "INTERRUPTED" in page
    assert not list(run_dir.glob("*.tmp*")) and not list(run_dir.glob(".*"))


@pytest.mark.real
def test_a_killed_verify_run_leaves_the_trials_that_finished_before_the_kill(
    tmp_path: Path,
) -> None:
    needs_server("7.0")
    reports = tmp_path / "reports"
    proc = _start(["verify", "--server", "7.0", "--trials", "400", "--ops", "200",
                   "--workers", "1"], reports)
    try:
        _report_with(reports, lambda r: r["totals"]["trials"] >= 2)
        proc.send_signal(signal.SIGKILL)
    finally:
        _finish(proc)
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["totals"]["trials"] >= 2
    assert "not finished when written" in report["interrupted"]
    assert "Partial report" in (run_dir / "report.html").read_text()


def test_ctrl_c_during_fuzz_leaves_a_report_of_the_finished_slices_marked_interrupted(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    proc = _start(["fuzz", "--budget", "120s", "--workers", "1", "--policy", "always",
                   "--model", "process", "--seed", "3"], reports)
    try:
        _report_with(reports, lambda r: r["totals"]["slices"] >= 1)
        proc.send_signal(signal.SIGINT)
    finally:
        code, err = _finish(proc)
    assert code == 130, err
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert "Ctrl-C" in report["interrupted"]
    assert report["totals"]["stopped_by"] == "interrupted"
    assert report["totals"]["slices"] >= 1 and report["totals"]["examples"] > 0
    assert "Partial report" in (run_dir / "report.html").read_text()


def test_ctrl_c_during_explore_leaves_a_report_of_the_crash_points_explored(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    proc = _start(["explore", "--workload", "mixed", "--ops", "3000", "--policy", "always",
                   "--defect", "reply-before-fsync", "--workers", "1", "--seed", "2"], reports)
    try:
        _report_with(reports, lambda r: r["totals"]["states"] > 0)
        proc.send_signal(signal.SIGINT)
    finally:
        code, err = _finish(proc)
    assert code == 130, err
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert "Ctrl-C" in report["interrupted"]
    explored, total = map(int, report["totals"]["crash_points"].split("/"))
    assert 0 < explored < total
    # What finished is judged and grouped like a whole run: the causes add up.
    assert sum(g["count"] for g in report["groups"]) == report["totals"]["violating_states"] > 0
    names = {p.name for p in run_dir.glob("*.aofrepro.json")}
    assert names == {v["reproduction"] for v in report["violations"] if v.get("reproduction")}
    assert "Partial report" in (run_dir / "report.html").read_text()


def test_an_explore_stopped_by_its_crash_point_budget_says_so_in_the_report(
    tmp_path: Path,
) -> None:
    from harness.cli import main

    code = main(["explore", "--workload", "mixed", "--ops", "30", "--policy", "always",
                 "--max-crash-points", "5", "--progress", "never", "--json",
                 "--reports", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert re.search(r"budget .* ran out: 5 of \d+ crash point", report["interrupted"])
    assert "Partial report" in (run_dir / "report.html").read_text()


def test_ctrl_c_during_the_default_explore_suite_keeps_the_runs_that_finished(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    proc = _start(["explore", "--ops", "400", "--workers", "1", "--seed", "1"], reports)
    try:
        # The suite persists its report after each run: wait for two.
        _report_with(reports, lambda r: r["totals"]["runs"] >= 2, timeout_s=300)
        proc.send_signal(signal.SIGINT)
    finally:
        code, err = _finish(proc)
    assert code == 130, err
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert "Ctrl-C" in report["interrupted"]
    assert report["totals"]["runs"] >= 2 and report["totals"]["runs_not_run"] >= 1
    assert sum(g["count"] for g in report["groups"]) == report["totals"]["violating_states"]


@pytest.mark.real
def test_ctrl_c_during_explore_server_leaves_a_report_saying_how_far_it_got(
    tmp_path: Path,
) -> None:
    needs_server("reference")
    reports = tmp_path / "reports"
    proc = _start(["explore", "--server", "reference", "--ops", "300", "--model",
                   "power-ext4", "--workers", "2"], reports)
    try:
        _report_with(reports, lambda r: r["totals"].get("phase") in ("enumerate", "recover"))
        proc.send_signal(signal.SIGINT)
    finally:
        code, err = _finish(proc)
    assert code == 130, err
    (run_dir,) = reports.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["interrupted"].startswith("Ctrl-C (SIGINT) during ")
    assert "no violation can be reported" in report["summary"]
    assert "Partial report" in (run_dir / "report.html").read_text()
