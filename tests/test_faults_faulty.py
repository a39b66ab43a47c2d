"""FaultyFileSystem: every fault fires exactly where its plan says, and nowhere else."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import (
    Clock,
    Crash,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    KillChild,
    NoSpace,
    Op,
    OperationBudgetExceeded,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SimulatedCrash,
    SlowSync,
)

APPEND = os.O_CREAT | os.O_WRONLY | os.O_APPEND


def _fs(*faults: object, clock: Clock | None = None) -> tuple[FaultyFileSystem, SimDisk]:
    disk = SimDisk()
    return FaultyFileSystem(disk, FaultPlan(tuple(faults)), clock=clock), disk  # type: ignore[arg-type]


def _write_records(fs: FaultyFileSystem, fd: int, count: int) -> list[int | str]:
    """Write `count` 10-byte records; return each write's result or errno name."""
    results: list[int | str] = []
    for i in range(count):
        try:
            results.append(fs.write(fd, b"record-%03d" % i))
        except OSError as exc:
            results.append(errno.errorcode[exc.errno or 0])
    return results


@given(nth=st.integers(1, 12), k=st.integers(0, 9))
def test_a_short_write_leaves_exactly_k_bytes_at_the_nth_write(nth: int, k: int) -> None:
    fs, disk = _fs(ShortWrite(written_bytes=k, nth=nth))
    fd = fs.open("aof", APPEND)
    results = _write_records(fs, fd, 12)
    assert results == [k if i == nth - 1 else 10 for i in range(12)]
    data = disk.visible_image()["aof"]
    assert len(data) == 11 * 10 + k
    assert data[(nth - 1) * 10 : (nth - 1) * 10 + k] == (b"record-%03d" % (nth - 1))[:k]
    assert [(f.fault_index, f.occurrence) for f in fs.fired] == [(0, nth)]


def test_a_short_write_at_the_edge_writes_zero_bytes_of_the_first_write() -> None:
    fs, disk = _fs(ShortWrite(written_bytes=0, nth=1))
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 2) == [0, 10]
    assert disk.visible_image()["aof"] == b"record-001"
    assert fs.fired[0].effect == "short write of 0 of 10 bytes"
    assert fs.fired[0].trace_index == 1  # the open is trace entry 0


def test_faults_only_count_operations_on_matching_paths() -> None:
    fs, _ = _fs(ShortWrite(written_bytes=2, nth=2, path_glob="temp-*.aof"))
    aof = fs.open("appendonly.aof", APPEND)
    tmp = fs.open("temp-rewrite.aof", APPEND)
    assert _write_records(fs, aof, 3) == [10, 10, 10]
    assert _write_records(fs, tmp, 3) == [10, 2, 10]
    fs.rename("temp-rewrite.aof", "appendonly.aof")
    assert _write_records(fs, tmp, 1) == [10]  # the fd now names appendonly.aof


def test_no_space_fails_n_times_from_the_nth_write_after_a_partial_write() -> None:
    fs, disk = _fs(NoSpace(nth=3, times=3, partial_bytes=4))
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 7) == [10, 10, 4, "ENOSPC", "ENOSPC", 10, 10]
    assert len(disk.visible_image()["aof"]) == 44
    assert [f.occurrence for f in fs.fired] == [3, 4, 5]


def test_no_space_without_times_lasts_until_the_plan_changes() -> None:
    fs, _ = _fs(NoSpace(nth=2))
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 5) == [10, "ENOSPC", "ENOSPC", "ENOSPC", "ENOSPC"]
    fs.plan = FaultPlan()
    assert _write_records(fs, fd, 1) == [10]


@pytest.mark.parametrize("op", [FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC, FaultOp.RENAME,
                                FaultOp.FSYNC_DIR])
def test_io_fault_fails_only_the_nth_operation_of_its_kind(op: FaultOp) -> None:
    fs, disk = _fs(IOFault(op=op, nth=2, times=2))
    outcomes = []
    for i in range(5):
        fd = fs.open(f"f{i}", os.O_CREAT | os.O_WRONLY)
        try:
            fs.write(fd, b"x")
            fs.fsync(fd)
            fs.fdatasync(fd)
            fs.rename(f"f{i}", f"g{i}")
            fs.fsync_dir("")
            outcomes.append("ok")
        except OSError as exc:
            assert exc.errno == errno.EIO
            outcomes.append("EIO")
    assert outcomes == ["ok", "EIO", "EIO", "ok", "ok"]
    assert [(f.op, f.occurrence, f.effect) for f in fs.fired] == [(op, 2, "EIO"), (op, 3, "EIO")]
    failed = [e for e in disk.trace if e.op is Op.FSYNC_FAILED]
    assert len(failed) == (2 if op in (FaultOp.FSYNC, FaultOp.FDATASYNC) else 0)


def test_a_failing_write_writes_nothing() -> None:
    fs, disk = _fs(IOFault(op=FaultOp.WRITE))
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 2) == ["EIO", 10]
    assert disk.visible_image()["aof"] == b"record-001"


def test_slow_sync_takes_virtual_time_only_on_the_matching_fsync() -> None:
    clock = Clock()
    fs, _ = _fs(SlowSync(delay_ms=3000, nth=2), clock=clock)
    fd = fs.open("aof", APPEND)
    times = []
    for _ in range(3):
        fs.fdatasync(fd)
        times.append(clock.now_ms)
    assert times == [0, 3000, 3000]
    with clock.background() as job:
        fs.plan = FaultPlan((SlowSync(delay_ms=500),))
        fs.fsync(fd)
    assert job.elapsed_ms == 500 and clock.now_ms == 3000


@given(nth=st.integers(1, 8))
def test_crash_fires_at_the_nth_operation_before_it_takes_effect(nth: int) -> None:
    fs, disk = _fs(Crash(nth=nth, op=FaultOp.WRITE))
    fd = fs.open("aof", APPEND)
    with pytest.raises(SimulatedCrash) as info:
        _write_records(fs, fd, 10)
    assert info.value.trace_index == nth  # open + nth - 1 writes were traced
    assert disk.visible_image()["aof"] == b"".join(b"record-%03d" % i for i in range(nth - 1))
    with pytest.raises(SimulatedCrash):
        fs.write(fd, b"the dead cannot write")


def test_crash_with_torn_bytes_leaves_part_of_the_write() -> None:
    fs, disk = _fs(Crash(nth=1, op=FaultOp.WRITE, torn_bytes=6))
    fd = fs.open("aof", APPEND)
    with pytest.raises(SimulatedCrash) as info:
        fs.write(fd, b"record-000")
    assert disk.crash(PersistenceModel.PROCESS)["aof"] == b"record"
    assert info.value.torn_bytes == 6 and info.value.trace_index == 2


def test_a_simulated_crash_is_not_swallowed_by_except_exception() -> None:
    fs, _ = _fs(Crash(nth=1, op=FaultOp.RENAME))
    caught = False
    with pytest.raises(SimulatedCrash):
        try:
            fs.rename("a", "b")
        except Exception:
            caught = True
    assert not caught


def test_crash_on_any_operation_counts_every_kind() -> None:
    fs, _ = _fs(Crash(nth=4))
    fd = fs.open("aof", APPEND)  # 1
    fs.write(fd, b"x")  # 2
    fs.fsync(fd)  # 3
    with pytest.raises(SimulatedCrash) as info:
        fs.close(fd)  # 4
    assert info.value.op is FaultOp.CLOSE
    assert fs.op_count == 4


def test_kill_child_fires_only_at_its_rewrite_and_step() -> None:
    fs, _ = _fs(KillChild(nth_rewrite=2, at_step=3))
    asked = [(r, s) for r in (1, 2, 3) for s in range(6) if fs.should_kill_child(r, s)]
    assert asked == [(2, 3)]
    assert [f.effect for f in fs.fired] == ["child killed at step 3"]


def test_replacing_the_plan_keeps_counters_of_kept_faults() -> None:
    first = ShortWrite(written_bytes=1, nth=3)
    fs, _ = _fs(first)
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 2) == [10, 10]
    fs.plan = fs.plan.extended(ShortWrite(written_bytes=2, nth=2))
    assert _write_records(fs, fd, 3) == [1, 2, 10]
    fs.add_faults(FaultPlan((ShortWrite(written_bytes=3, nth=1),)))
    assert _write_records(fs, fd, 2) == [3, 10]
    assert [f.fault_index for f in fs.fired] == [0, 1, 2]


def test_no_fault_fires_with_an_empty_plan() -> None:
    fs, disk = _fs()
    fd = fs.open("aof", APPEND)
    assert _write_records(fs, fd, 50) == [10] * 50
    fs.fsync(fd)
    fs.fsync_dir("")
    assert fs.fired == []
    assert disk.crash(PersistenceModel.POWER)["aof"] == disk.visible_image()["aof"]



def test_an_op_budget_stops_a_loop_that_never_returns() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan())
    fd = fs.open("a.aof", os.O_CREAT | os.O_RDWR)
    fs.set_op_budget(3)
    fs.write(fd, b"x")
    fs.lseek(fd, 0, os.SEEK_SET)
    fs.read(fd, 1)  # the third call: still allowed
    with pytest.raises(OperationBudgetExceeded, match="more than 3 filesystem calls"):
        fs.write(fd, b"y")
    fs.set_op_budget(None)  # off: any number of calls
    for _ in range(10):
        fs.write(fd, b"z")
