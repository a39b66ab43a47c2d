"""The Damage fault: a media error in synced bytes of a crash image, as data."""

from __future__ import annotations

import os

import pytest

from faults import (
    Damage,
    DamageKind,
    DiskImage,
    FaultPlan,
    FaultPlanError,
    FaultyFileSystem,
    PersistenceModel,
    SimDisk,
    damage_image,
    synced_bytes,
)

POWER, PROCESS = PersistenceModel.POWER, PersistenceModel.PROCESS


def _disk(synced: bytes, unsynced: bytes = b"") -> SimDisk:
    disk = SimDisk()
    fd = disk.open("data.log", os.O_CREAT | os.O_WRONLY)
    disk.write(fd, synced)
    disk.fsync(fd)
    disk.fsync_dir("")
    if unsynced:
        disk.write(fd, unsynced)
    return disk


def test_a_damage_plan_round_trips_through_json() -> None:
    plan = FaultPlan((Damage(kind=DamageKind.ZERO, at_permille=250, length_bytes=4,
                             path_glob="*.log"), Damage()))
    assert FaultPlan.from_json(plan.to_json()) == plan


def test_a_damage_fault_reports_every_bad_field_at_once() -> None:
    with pytest.raises(FaultPlanError) as info:
        FaultPlan.from_json('{"faults": [{"type": "Damage", "kind": "burn", "at_permille": 1000,'
                            ' "length_bytes": 0, "path_glob": "/abs"}]}')
    assert info.value.errors == [
        "faults[0].kind: unknown damage kind 'burn' (known: flip, zero)",
        "faults[0].length_bytes: must be >= 1, got 0",
        "faults[0].path_glob: must be relative to the filesystem root, got '/abs'",
        "faults[0].at_permille: must be <= 999, got 1000",
    ]


def test_only_synced_bytes_count_as_synced() -> None:
    disk = _disk(b"A" * 100, b"B" * 50)
    assert synced_bytes(disk, POWER) == {"data.log": 100}
    # The process model keeps the unsynced tail, but only the synced part is synced.
    assert synced_bytes(disk, PROCESS) == {"data.log": 100}


def test_a_flip_inverts_the_lowest_bit_of_synced_bytes_at_the_chosen_position() -> None:
    disk = _disk(b"A" * 100, b"B" * 50)
    image = disk.crash(PROCESS)
    got = damage_image(image, Damage(at_permille=500, length_bytes=2),
                       synced_bytes(disk, PROCESS))
    assert got is not None
    damaged, site = got
    assert (site.path, site.offset_bytes, site.length_bytes) == ("data.log", 50, 2)
    assert damaged["data.log"] == b"A" * 50 + b"@@" + b"A" * 48 + b"B" * 50
    assert "flipped" in site.describe()


def test_a_zero_damage_never_reaches_past_the_synced_bytes() -> None:
    disk = _disk(b"A" * 10, b"B" * 10)
    got = damage_image(disk.crash(PROCESS), Damage(kind=DamageKind.ZERO, at_permille=900,
                                                   length_bytes=8), synced_bytes(disk, PROCESS))
    assert got is not None
    assert got[0]["data.log"] == b"A" * 9 + b"\0" + b"B" * 10


def test_no_matching_file_with_synced_bytes_means_no_damage() -> None:
    disk = SimDisk()
    fd = disk.open("data.log", os.O_CREAT | os.O_WRONLY)
    disk.write(fd, b"never synced")
    image = disk.crash(PROCESS)
    assert damage_image(image, Damage(), synced_bytes(disk, PROCESS)) is None
    assert damage_image(DiskImage({"x": b"abc"}), Damage(path_glob="*.log"), {"x": 3}) is None
    assert damage_image(DiskImage({"a.log": b"abc"}), Damage(nth=2), {"a.log": 3}) is None


def test_the_fault_layer_ignores_a_damage_fault() -> None:
    disk = SimDisk()
    fs = FaultyFileSystem(disk, FaultPlan((Damage(),)))
    fd = fs.open("f", os.O_CREAT | os.O_WRONLY)
    assert fs.write(fd, b"abc") == 3
    fs.fsync(fd)
    assert fs.fired == []
