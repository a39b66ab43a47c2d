"""The public names of harness and its public modules are exactly the intended ones."""

from __future__ import annotations

import importlib

import pytest

import harness

EXPECTED = {
    "ArmCrash", "BgRewrite", "Checker", "ChildStep", "ClearFaults", "ContractViolation", "Crash",
    "CrashInfo", "Driver", "History", "InjectFaults", "KillChild", "ModelDivergence", "Multi",
    "Outcome", "Read", "Recover", "ReproError", "Reproduction", "Rule", "RunConfig", "Snapshot",
    "Step", "Tick", "Verdict", "Violation", "Write", "check_recovery", "check_stability",
    "replay", "snapshot_from_dump",
}


def test_harness_exports_exactly_the_intended_names() -> None:
    assert set(harness.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(harness, name) is not None


@pytest.mark.parametrize(
    "module",
    ["harness.oracle", "harness.machine", "harness.explore", "harness.verify", "harness.targets",
     "harness.cli", "harness.pytest_plugin"],
)
def test_public_modules_declare_all_and_every_name_in_it_exists(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert names, f"{module} has an empty __all__"
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r} but it is missing"
        assert not name.startswith("_") or name.isupper()
