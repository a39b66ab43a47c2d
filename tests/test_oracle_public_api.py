"""The public surface of harness.oracle: __all__ is exact and every name is importable."""

from __future__ import annotations

import harness
import harness.oracle as oracle

EXPECTED = {
    "ERROR_STALL_MS", "Checker", "CrashInfo", "CrashModel", "Entry", "History", "KeyDiff",
    "KeyValue", "Model",
    "ModelState", "Outcome", "Policy", "Reply", "ReplyError", "Rule", "Snapshot",
    "UnsupportedCommand", "Verdict", "Violation", "check_recovery", "check_stability",
    "describe_choice", "effective_window_ms", "frontier", "snapshot_from_dump", "window_stalls",
}


def test_oracle_all_lists_exactly_the_public_names() -> None:
    assert set(oracle.__all__) == EXPECTED
    assert len(oracle.__all__) == len(set(oracle.__all__))
    for name in oracle.__all__:
        assert getattr(oracle, name) is not None, name


def test_harness_package_reexports_the_oracle_names_it_lists() -> None:
    for name in ("Checker", "History", "Snapshot", "check_recovery", "check_stability"):
        assert getattr(harness, name) is getattr(oracle, name)


def test_the_contract_is_written_in_the_oracle_docstring() -> None:
    doc = oracle.__doc__ or ""
    for needle in ("Prefix consistency", "Durability frontier", "Stability", "Availability",
                   "Damage", "checksummed",
                   "ack_ms <= crash_ms - W", "no-appendfsync-on-rewrite", "fixed point"):
        assert needle in doc, needle


def test_rules_and_enums_have_their_documented_values() -> None:
    assert [r.value for r in oracle.Rule] == [
        "prefix-consistency", "phantom", "durability", "stability", "availability", "damage",
    ]
    assert [p.value for p in oracle.Policy] == ["always", "everysec", "no"]
    assert [m.value for m in oracle.CrashModel] == [
        "process", "power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata",
        "power-posix-metadata", "ext4", "xfs", "btrfs"]
    assert oracle.CrashModel("power") is oracle.CrashModel.POWER  # old reproductions
    assert [o.value for o in oracle.Outcome] == ["ok", "error", "unknown"]
