"""The public surface of `faults` is exactly the intended names, each importable."""

from __future__ import annotations

import importlib

import faults

INTENDED = {
    # filesystem protocol and implementations
    "FileSystem", "FileStat", "OSFileSystem", "SimDisk", "FaultyFileSystem",
    # read-only views of a SimDisk's state
    "InodeView", "OpenFile",
    # virtual time
    "Clock", "BackgroundJob",
    # traces and replay
    "Trace", "TraceEntry", "Op", "ReplayCursor",
    # crash images
    "DiskImage", "PersistenceModel", "FsyncFailure", "ImageKind", "FileChoice", "CrashChoice",
    "CrashChoiceError", "ImageLimits", "ChoiceEnumeration", "garbage_sector",
    # fault plans
    "FaultOp", "Fault", "ShortWrite", "NoSpace", "IOFault", "SlowSync", "Crash", "KillChild",
    "FaultPlan", "FaultPlanError", "FiredFault", "SimulatedCrash", "OperationBudgetExceeded",
    # damage to synced bytes (applied to crash images)
    "Damage", "DamageKind", "DamageSite", "damage_image", "synced_bytes",
}


def test_all_is_exactly_the_intended_public_names() -> None:
    assert set(faults.__all__) == INTENDED
    assert len(faults.__all__) == len(INTENDED)


def test_every_public_name_is_importable_from_the_package() -> None:
    module = importlib.import_module("faults")
    for name in faults.__all__:
        assert getattr(module, name) is not None, name
        assert getattr(module, name).__module__.startswith("faults"), name


def test_simulated_crash_is_a_base_exception_and_plan_errors_are_value_errors() -> None:
    assert issubclass(faults.SimulatedCrash, BaseException)
    assert not issubclass(faults.SimulatedCrash, Exception)
    assert issubclass(faults.FaultPlanError, ValueError)
    assert issubclass(faults.CrashChoiceError, ValueError)


def test_enum_values_are_the_documented_names() -> None:
    assert {m.value for m in faults.PersistenceModel} == {
        "process", "power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata",
        "power-posix-metadata"}
    # Reproductions written before the models were calibrated say "power": the ext4 model.
    assert faults.PersistenceModel("power") is faults.PersistenceModel.POWER
    assert {m.value for m in faults.FsyncFailure} == {"linux", "retry"}
    assert {m.name for m in faults.ImageKind} == {
        "DURABLE", "PREFIX", "TORN_ZERO", "TORN_GARBAGE", "REORDERED", "VISIBLE",
        "SIZE_BEFORE_DATA", "IN_PLACE"}
