"""Minimizing a shrunk reproduction: the steps and faults a finding does not need are dropped,
the finding stays the same (kind and rules), and a campaign reports the minimized program."""

from __future__ import annotations

import pytest

from faults import FaultOp, FaultPlan, IOFault, PersistenceModel, SlowSync
from harness.machine import _campaign
from harness.machine._campaign import Campaign, Finding, run_campaign
from harness.machine._driver import ContractViolation, Driver, replay
from harness.machine._minimize import minimize
from harness.machine._steps import (
    ClearFaults,
    Crash,
    InjectFaults,
    Read,
    Recover,
    Reproduction,
    RunConfig,
    Tick,
    Write,
)

POWER = PersistenceModel.POWER
BUGGY = RunConfig(policy="always", defects=frozenset(["reply-before-fsync"]))
SET = Write((b"SET", b"k", b"v"))
NEVER_FIRES = IOFault(op=FaultOp.RENAME, nth=3)  # nothing is renamed in these programs


def _durable_only_recovery(steps: tuple[object, ...]) -> Recover:
    """The recovery on the image that keeps only durable bytes after `steps` and a crash."""
    driver = Driver(BUGGY)
    driver.run_all(steps)  # type: ignore[arg-type]
    driver.run(Crash())
    return Recover(model=POWER, choice=next(iter(driver.disk.crash_choices(POWER))))


def _violation(repro: Reproduction) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        replay(repro)
    return caught.value


def _rules(exc: ContractViolation) -> set[str]:
    return {v.rule.value for v in exc.verdict.violations}


def test_steps_and_faults_the_finding_does_not_need_are_dropped() -> None:
    noise = (InjectFaults(FaultPlan((NEVER_FIRES,))), Read((b"GET", b"k")), Tick(20))
    before = (*noise, SET, ClearFaults())
    repro = Reproduction(BUGGY, (*before, Crash(), _durable_only_recovery(before)),
                         expected={"outcome": "violation"})
    found = _violation(repro)

    smaller = minimize(repro, found)

    assert [s.kind for s in smaller.reproduction.steps] == ["write", "crash", "recover"]
    assert smaller.removed_steps == 4
    assert _rules(_violation(smaller.reproduction)) == _rules(found) == {"durability"}
    assert smaller.reproduction.expected == {"outcome": "violation"}


def test_one_fault_of_a_plan_of_two_is_dropped_when_the_finding_does_not_need_it() -> None:
    # The stall is needed to keep the plan step (dropping the step loses nothing here, so the
    # step goes): what matters is that a plan is shortened fault by fault before it goes.
    plan = FaultPlan((NEVER_FIRES, SlowSync(delay_ms=200, nth=5)))
    before = (SET, InjectFaults(plan))
    repro = Reproduction(BUGGY, (*before, Crash(), _durable_only_recovery(before)))
    found = _violation(repro)

    smaller = minimize(repro, found)

    assert not any(isinstance(s, InjectFaults) for s in smaller.reproduction.steps)
    assert _rules(_violation(smaller.reproduction)) == {"durability"}


def test_a_reproduction_that_replays_clean_is_returned_unchanged() -> None:
    # The edge case: the recorded finding does not recur (a timing-dependent target), so
    # there is nothing to keep equal and nothing is dropped.
    steps = (SET, Read((b"GET", b"k")))
    repro = Reproduction(RunConfig(policy="always"), steps)
    smaller = minimize(repro, AssertionError("recorded elsewhere"))
    assert smaller.reproduction == repro
    assert (smaller.removed_steps, smaller.removed_faults) == (0, 0)


def test_a_step_whose_removal_changes_the_finding_is_kept() -> None:
    # Without the crash there is no recovery to judge, so the crash and the write stay.
    before = (SET,)
    repro = Reproduction(BUGGY, (*before, Crash(), _durable_only_recovery(before)))
    smaller = minimize(repro, _violation(repro))
    assert [s.kind for s in smaller.reproduction.steps] == ["write", "crash", "recover"]
    assert smaller.removed_steps == 0


def _campaign_finding() -> Finding:
    result = run_campaign(Campaign(configs=(BUGGY,), models=(POWER,), budget_s=30.0, seed=0,
                                   shrink_budget_s=0.0, shrink_floor_s=0.0))
    assert result.findings, "the defect went unnoticed: the test proves nothing"
    return result.findings[0]


def test_a_campaign_reports_a_minimized_program_that_replays_to_its_finding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Unshrunk by Hypothesis (no shrink budget), so the difference is minimization's alone.
    minimized = _campaign_finding()
    monkeypatch.setattr(_campaign, "minimized", lambda exc: exc)
    unminimized = _campaign_finding()
    assert minimized.reproduction is not None and unminimized.reproduction is not None
    assert len(minimized.reproduction.steps) < len(unminimized.reproduction.steps)
    assert set(minimized.rules) == set(unminimized.rules)
    assert set(minimized.rules) == _rules(_violation(minimized.reproduction))
