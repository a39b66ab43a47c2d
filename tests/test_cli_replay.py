"""``aofcrash replay``: the program as readable steps, every crash epoch, and ``--expect`` which
turns a found violation into a regression test the pytest plugin runs (``*.aofrepro.json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from faults import CrashChoice, PersistenceModel
from harness.cli import main
from harness.cli._report_replay import study
from harness.machine._steps import (
    Crash,
    Recover,
    Reproduction,
    RunConfig,
    Tick,
    Write,
)

POWER_DURABLE = CrashChoice(PersistenceModel.POWER, 0, ())


def _repro(*, defects: frozenset[str] = frozenset({"reply-before-fsync"}),
           epochs: int = 1) -> Reproduction:
    """SET, crash, recover under power with only durable data: with reply-before-fsync the
    acknowledged SET is lost (durability); without the defect it survives."""
    steps: list[object] = []
    for i in range(epochs):
        steps += [Tick(10), Write((b"SET", f"k{i}".encode(), b"v" * (i + 1))), Crash(),
                  Recover(PersistenceModel.POWER, POWER_DURABLE)]
    return Reproduction(config=RunConfig(policy="always", defects=defects),
                        steps=tuple(steps),  # type: ignore[arg-type]
                        expected={"outcome": "violation", "rules": ["durability"]})


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_prints_the_program_as_steps_with_what_each_write_got(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "found.aofrepro.json"
    path.write_text(_repro().to_json())
    code, out, err = _run(capsys, "replay", str(path))
    assert code == 1, err
    assert "VIOLATION [durability]" in out
    assert "  2. SET k0 v  -> acknowledged at 10 ms, LOST" in out
    assert "  3. crash now" in out
    assert "recovered S(0), F=1: VIOLATION durability" in out
    assert "recorded outcome: violation [durability]; now: violation [durability]" in out


def test_every_crash_epoch_is_shown_not_only_the_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two epochs without the defect (both consistent), then one with it: three epochs.
    ok = _repro(defects=frozenset(), epochs=2)
    seen = study(ok)
    assert seen["outcome"] == "consistent"
    assert [e["epoch"] for e in seen["epochs"]] == [1, 2]
    assert [e["k"] for e in seen["epochs"]] == [1, 2]  # the second epoch keeps the first write
    path = tmp_path / "two.aofrepro.json"
    path.write_text(Reproduction(ok.config, ok.steps).to_json())
    code, out, _ = _run(capsys, "replay", str(path))
    assert code == 0
    assert "epoch 1: crash at 10 ms" in out and "epoch 2: crash at 20 ms" in out


def test_the_study_records_the_timeline_in_the_order_things_happened() -> None:
    seen = study(_repro())
    kinds = [(e["kind"], e.get("op")) for e in seen["events"]]
    submit = kinds.index(("submit", None))
    write = kinds.index(("op", "write"))
    ack = kinds.index(("ack", None))
    crash = kinds.index(("crash", None))
    # The defect shows in the order: the reply is released before any fsync.
    assert submit < write < ack < crash
    assert ("op", "fsync") not in kinds[ack:crash] or kinds.index(("op", "fsync")) > ack
    last = seen["epochs"][-1]
    assert last["frontier"] == 1 and last["k"] == 0
    assert [e["status"] for e in last["entries"]] == ["lost"]


def test_expect_fixed_refuses_while_the_violation_is_still_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "found.aofrepro.json"
    path.write_text(_repro().to_json())
    before = path.read_bytes()
    code, _, err = _run(capsys, "replay", "--expect", "fixed", str(path))
    assert code == 1
    assert "still shows violation [durability]: not recorded as fixed" in err
    assert path.read_bytes() == before


def test_expect_fixed_turns_the_reproduction_into_a_passing_regression_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "found.aofrepro.json"
    found = _repro()
    # "Fix the bug": the same steps without the defect keep the contract.
    fixed = Reproduction(RunConfig(policy="always"), found.steps, found.expected)
    path.write_text(fixed.to_json())
    code, out, _ = _run(capsys, "replay", "--expect", "fixed", str(path))
    assert code == 0
    assert "expected outcome is now 'consistent'" in out
    data = json.loads(path.read_text())
    assert data["expected"]["outcome"] == "consistent" and data["expected"]["rules"] == []
    assert data["expected"]["found"] == {"outcome": "violation", "rules": ["durability"]}
    assert [p.name for p in tmp_path.iterdir()] == ["found.aofrepro.json"]  # atomic
    # The pytest plugin collects it, and it passes; the defect coming back fails it.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(path)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    data["config"]["defects"] = ["reply-before-fsync"]
    path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(path)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert "recorded outcome 'consistent', replay gave 'violation'" in done.stdout


def test_expect_current_records_what_the_replay_shows_and_names_the_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "found.json"
    path.write_text(Reproduction(_repro().config, _repro().steps).to_json())  # no expected
    code, out, _ = _run(capsys, "replay", "--expect", "current", str(path))
    assert code == 1
    assert json.loads(path.read_text())["expected"] == {"outcome": "violation",
                                                        "rules": ["durability"]}
    assert "pytest collects only *.aofrepro.json files: rename it to found.aofrepro.json" in out


def test_replay_json_carries_the_program_and_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "found.aofrepro.json"
    path.write_text(_repro().to_json())
    code, out, _ = _run(capsys, "replay", "--json", str(path))
    summary = json.loads(out)
    assert code == 1 and summary["status"] == "violation" and summary["matches_expected"]
    assert summary["program"][1]["text"] == "SET k0 v"
    assert summary["epochs"][0]["frontier"] == 1


def test_an_impossible_program_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.aofrepro.json"
    bad = Reproduction(RunConfig(), (Recover(PersistenceModel.POWER, POWER_DURABLE),))
    path.write_text(bad.to_json())
    code, _, err = _run(capsys, "replay", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot replay it" in err and "has not crashed" in err


# -- every rule a campaign judges ------------------------------------------------------------


def _torn_tail_repro(*, recover: bool) -> Reproduction:
    """Two SETs, the second torn 5 bytes into its AOF write (a process crash): the loader cuts
    the torn tail. A campaign's check-aof finding on that image, as recorded before its
    recovery step was kept (ends crashed) or with it."""
    from faults import Crash as CrashFault
    from faults import FaultOp, FaultPlan
    from harness.machine._steps import ArmCrash

    steps: list[Any] = [
        Write((b"SET", b"a", b"1")),
        ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.WRITE, torn_bytes=5),))),
        Write((b"SET", b"b", b"2")),
    ]
    if recover:
        steps.append(Recover(model=PersistenceModel.PROCESS,
                             choice=CrashChoice(PersistenceModel.PROCESS, 0, ())))
    return Reproduction(config=RunConfig(policy="always"), steps=tuple(steps),
                        expected={"outcome": "check-aof", "rules": ["check-aof"]})


def _check_aof_calls_every_file_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check-aof mutant: every file is whole (so it disagrees with the loader's cut)."""
    import dataclasses

    import reference
    from reference import check_aof

    monkeypatch.setattr(reference, "check_aof", lambda data: dataclasses.replace(
        check_aof(data), valid=True))


@pytest.mark.parametrize("recover", [False, True], ids=["ends-crashed", "ends-with-recovery"])
def test_a_check_aof_finding_replays_as_that_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    recover: bool,
) -> None:
    """It used to print "recorded outcome: check-aof; now: consistent (DIFFERENT)" and exit 0:
    replay judged only the data rules."""
    _check_aof_calls_every_file_valid(monkeypatch)
    path = tmp_path / "r.json"
    path.write_text(_torn_tail_repro(recover=recover).to_json(), encoding="utf-8")
    code = main(["replay", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "check-aof disagrees with the loader" in out
    assert "recorded outcome: check-aof [check-aof]; now: check-aof [check-aof]" in out
    assert "DIFFERENT" not in out
    judged = next(line for line in out.splitlines() if line.startswith("judged: "))
    assert "check-aof" in judged and "availability" in judged and "durability" in judged


def test_without_the_check_aof_bug_the_same_reproduction_replays_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "r.json"
    path.write_text(_torn_tail_repro(recover=True).to_json(), encoding="utf-8")
    assert main(["replay", "--json", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "consistent" and not out["matches_expected"]
    assert "check-aof" in out["judged"]


def _rewrite_repro(defects: frozenset[str]) -> Reproduction:
    from harness.machine._steps import BgRewrite, ChildStep, ClearFaults

    return Reproduction(
        config=RunConfig(defects=defects),
        steps=(Write((b"SET", b"a", b"1")), ClearFaults(), BgRewrite(), ChildStep(1_000_000),
               Tick(100)),
        expected={"outcome": "liveness", "rules": ["liveness"],
                  "liveness": "rewrite-takes-effect"})


@pytest.mark.parametrize(("defects", "outcome"), [
    (frozenset({"rewrite-never-swapped"}), "liveness"), (frozenset(), "consistent")])
def test_a_liveness_finding_replays_as_that_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], defects: frozenset[str], outcome: str,
) -> None:
    """A rewrite that never replaces the AOF (the defect rewrite-never-swapped), the steps of
    the campaign's rewrite-takes-effect rule: replay judges that rule at the end."""
    path = tmp_path / "r.json"
    path.write_text(_rewrite_repro(defects).to_json(), encoding="utf-8")
    code = main(["replay", "--json", str(path)])
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == outcome and code == (1 if outcome == "liveness" else 0)
    assert "liveness (rewrite-takes-effect)" in out["judged"]


def test_the_pytest_plugin_replays_a_check_aof_finding_with_the_same_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.machine._judge import replay_judged
    from harness.machine._rules import CheckAofDisagreement

    _check_aof_calls_every_file_valid(monkeypatch)
    with pytest.raises(CheckAofDisagreement):
        replay_judged(_torn_tail_repro(recover=False))
