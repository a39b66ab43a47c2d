"""harness: the oracle, state machines, crash explorer, targets, CLI and reports of aofcrash."""

from __future__ import annotations

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
    "Checker",
    "CrashInfo",
    "History",
    "Outcome",
    "Rule",
    "Snapshot",
    "Verdict",
    "Violation",
    "check_recovery",
    "check_stability",
    "snapshot_from_dump",
]
