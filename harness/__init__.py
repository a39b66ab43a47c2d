"""harness: the oracle, state machines, crash explorer, targets, CLI and reports of aofcrash.

Public modules: ``harness.oracle`` (the contract and its checker; the contract is written once,
in its docstring), ``harness.machine`` (Hypothesis state machines), ``harness.explore`` (the
exhaustive crash-state explorer), ``harness.verify`` and ``harness.targets`` (real server
processes), ``harness.cli`` (the ``aofcrash`` command) and ``harness.pytest_plugin``.

This package re-exports what a user scripting runs needs: the oracle's main names, the step
vocabulary of reproductions, the in-process ``Driver`` and ``replay``.
"""

from __future__ import annotations

from harness._driver import ContractViolation, Driver, ModelDivergence, replay
from harness._steps import (
    ArmCrash,
    BgRewrite,
    ChildStep,
    ClearFaults,
    Crash,
    InjectFaults,
    KillChild,
    Multi,
    Read,
    Recover,
    Reproduction,
    ReproError,
    RunConfig,
    Step,
    Tick,
    Write,
)
from harness.oracle import (
    Checker,
    CrashInfo,
    History,
    Outcome,
    Rule,
    Snapshot,
    Verdict,
    Violation,
    check_recovery,
    check_stability,
    snapshot_from_dump,
)

__all__ = [
    "ArmCrash",
    "BgRewrite",
    "Checker",
    "ChildStep",
    "ClearFaults",
    "ContractViolation",
    "Crash",
    "CrashInfo",
    "Driver",
    "History",
    "InjectFaults",
    "KillChild",
    "ModelDivergence",
    "Multi",
    "Outcome",
    "Read",
    "Recover",
    "ReproError",
    "Reproduction",
    "Rule",
    "RunConfig",
    "Snapshot",
    "Step",
    "Tick",
    "Verdict",
    "Violation",
    "Write",
    "check_recovery",
    "check_stability",
    "replay",
    "snapshot_from_dump",
]
