"""harness: the oracle, state machines, crash explorer, targets, CLI and reports of aofcrash.

Subpackages, bottom to top (each imports only those before it; no cycles):

``harness.oracle``
    The contract (written once, in its docstring) and its checker: history, the independent
    model, snapshots, verdicts. Imports nothing else of harness.
``harness.targets``
    What the harness drives: real server processes (find, launch, crash, dump, AOF files).
``harness.machine``
    The in-process run: steps as data, the driver, the Hypothesis state machines, campaigns.
``harness.explore``
    The exhaustive crash-state explorer: record a workload once, enumerate crash states.
``harness.verify``
    Real server processes under the same workload, faults and oracle.
``harness.cli`` and ``harness.pytest_plugin``
    The surface: the ``aofcrash`` command and its reports, and the pytest plugin.

This package re-exports what a user scripting runs needs: the oracle's main names, the step
vocabulary of reproductions, the in-process ``Driver`` and ``replay``.
"""

from __future__ import annotations

from harness.machine._driver import ContractViolation, Driver, ModelDivergence, replay
from harness.machine._steps import (
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
