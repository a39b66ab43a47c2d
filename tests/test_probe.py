"""The refusal probe (issue 22): before a run, a scratch copy of the target is asked every
form of the reference's command surface it accepts; the forms it refuses where the model
predicts no error may have been refused whenever a crash loses their reply. Without the probe a
store that refuses a form it does not declare gave a false alarm the first time a crash lost
that refusal's reply (the run took the refused write for one that ran)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyaof.aofcrash_target import TinyTarget

from faults import Crash, FaultPlan, PersistenceModel
from harness.cli import main
from harness.machine._driver import Driver, could_refuse
from harness.machine._probe import probe_refusals
from harness.machine._steps import ArmCrash, Recover, RunConfig, Write
from harness.targets import CommandShapes, TargetEnv

REFUSED = {("SET", "EXAT"), ("SET", "PXAT"), ("SET", "KEEPTTL")}  # what tinyaof refuses


class UndeclaredTarget(TinyTarget):
    """tinyaof without its declaration of the SET options it refuses."""

    shapes = CommandShapes()


def make_undeclared(env: TargetEnv) -> UndeclaredTarget:
    return UndeclaredTarget(env)


UNDECLARED = f"{__name__}:make_undeclared"


def test_the_probe_finds_the_forms_a_store_refuses_without_declaring_them() -> None:
    refused = probe_refusals(RunConfig(target=UNDECLARED))
    assert refused >= REFUSED
    assert not refused & {("SET", "plain"), ("SET", "EX"), ("SET", "PX"), ("DEL", "one")}


def test_the_probe_asks_nothing_of_the_reference_or_of_forms_already_declared() -> None:
    assert probe_refusals(RunConfig()) == frozenset()
    assert not probe_refusals(RunConfig(target="tinyaof:make_target")) & REFUSED


def test_a_probed_refusal_makes_a_lost_reply_of_that_form_possibly_refused() -> None:
    target = UndeclaredTarget.__new__(UndeclaredTarget)
    refused = probe_refusals(RunConfig(target=UNDECLARED))
    assert not could_refuse(((b"SET", b"k", b"v", b"PXAT", b"5"),), target, set())
    assert could_refuse(((b"SET", b"k", b"v", b"PXAT", b"5"),), target, set(), refused)
    assert not could_refuse(((b"SET", b"k", b"v", b"PX", b"5"),), target, set(), refused)


def test_a_refusal_whose_reply_a_crash_lost_is_no_false_alarm_on_an_undeclared_store() -> None:
    # One iteration runs a refused SET ... PXAT and then a SET that is logged; the crash at
    # the fsync after that log write loses both replies. Without the probe the run took the
    # refused write for one that ran: prefix-consistency on a correct store.
    driver = Driver(RunConfig(policy="always", target=UNDECLARED))
    driver.run(ArmCrash(FaultPlan((Crash(nth=2),))))  # op 1: the log write, op 2: its fsync
    driver.run(Write((b"SET", b"a", b"1", b"PXAT", b"99999999"), iterate=False))
    driver.run(Write((b"SET", b"b", b"2")))
    assert driver.crashed
    driver.run(Recover(model=PersistenceModel.PROCESS))  # raises ContractViolation without it
    assert driver.alive


def test_fuzz_names_the_probed_refusals_once(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fuzz", "--target", UNDECLARED, "--policy", "always", "--max-examples", "2",
                 "--workers", "1", "--progress", "never", "--reports", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "a probe before the run" in line]
    assert len(lines) == 1
    assert "SET EXAT, SET KEEPTTL, SET PXAT" in lines[0]


def test_nothing_is_said_about_a_probe_for_a_store_that_declares_what_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", "--target", "tinyaof:make_target", "--workload", "mixed", "--ops",
                 "3", "--policy", "always", "--model", "process", "--workers", "1",
                 "--progress", "never", "--reports", str(tmp_path)])
    assert code == 0
    assert "probe" not in capsys.readouterr().err
