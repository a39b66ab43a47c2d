"""faults.fuse: a FileSystem mounted through FUSE, seen by real processes (marked `real`)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from faults import (
    Clock,
    Crash,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    NoSpace,
    Op,
    OSFileSystem,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SlowSync,
)

fuse = pytest.importorskip("faults.fuse", reason="mfusepy/libfuse3 not importable")
FuseMount = fuse.FuseMount
FuseMountError = fuse.FuseMountError
is_mounted = fuse.is_mounted

_REASON = fuse.fuse_unavailable_reason()
pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(_REASON is not None, reason=f"FUSE unavailable: {_REASON}"),
]

# A real process that runs a list of file operations and prints each result (-errno on failure).
_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    ops = json.loads(sys.argv[1])
    fd, out = None, []
    for op, *args in ops:
        try:
            if op == "open":
                fd = os.open(args[0], args[1], 0o644); out.append(0)
            elif op == "write":
                out.append(os.write(fd, b"x" * args[0]))
            elif op == "fsync":
                os.fsync(fd); out.append(0)
            elif op == "fdatasync":
                os.fdatasync(fd); out.append(0)
            elif op == "timed_fsync":
                t = time.monotonic(); os.fsync(fd); out.append(time.monotonic() - t)
            elif op == "rename":
                os.rename(args[0], args[1]); out.append(0)
            elif op == "fsync_dir":
                d = os.open(args[0], os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(d); out.append(0)
                finally:
                    os.close(d)
        except OSError as exc:
            out.append(-exc.errno)
    print(json.dumps(out), flush=True)
    """
)


def run_worker(ops: list[list[Any]]) -> list[Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, json.dumps(ops)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[Any] = json.loads(proc.stdout)
    return result


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_APPEND


@pytest.fixture(autouse=True)
def nothing_left_behind(tmp_path: Path) -> Iterator[None]:
    yield
    mounts = [m for m in fuse._fuse_mounts() if m.startswith(str(tmp_path))]
    assert mounts == [], f"mounts left behind: {mounts}"
    children = psutil.Process().children(recursive=True)
    assert children == [], f"processes left behind: {children}"


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ops_in(disk: SimDisk, start: int = 0) -> list[tuple[Op, str]]:
    return [(e.op, e.path) for e in list(disk.trace)[start:]]


# -- file operations ------------------------------------------------------------------------


def test_file_operations_through_the_mount_reach_the_simdisk_as_the_same_verbs(mnt: Path) -> None:
    disk = SimDisk()
    with FuseMount(disk, mnt) as mount:
        os.mkdir(mnt / "d")
        fsync_dir(mnt)
        fd = os.open(mnt / "d" / "f", os.O_RDWR | os.O_CREAT, 0o644)
        fsync_dir(mnt / "d")
        assert os.write(fd, b"hello world") == 11
        assert os.pwrite(fd, b"W", 6) == 1
        assert os.pread(fd, 5, 6) == b"World"
        start = len(disk.trace)
        os.fdatasync(fd)
        os.fsync(fd)
        os.ftruncate(fd, 5)
        assert os.fstat(fd).st_size == 5
        os.close(fd)
        # RELEASE (the close) is asynchronous in FUSE: it may land after close(2) returned.
        assert _ops_in(disk, start)[:3] == [
            (Op.FDATASYNC, "d/f"),
            (Op.FSYNC, "d/f"),
            (Op.FTRUNCATE, "d/f"),
        ]
        os.rename(mnt / "d" / "f", mnt / "g")
        fsync_dir(mnt)
        assert sorted(os.listdir(mnt)) == ["d", "g"]
        assert (mnt / "g").read_bytes() == b"hello"
        assert os.stat(mnt / "g").st_size == 5
        assert disk.visible_image().files == {"g": b"hello"}
        # Both directories were synced, the data too; the truncate after the fsync went into
        # the journal, which the directory fsync committed (ext4, the default model).
        assert disk.durable_image().files == {"g": b"hello"}
        (mnt / "g").unlink()
        assert not disk.exists("g")
        assert (Op.CLOSE, "d/f") in _ops_in(disk, start)
        assert mount.internal_errors == []
    assert not is_mounted(mnt)


def test_mounting_prints_nothing_from_the_fuse_library(
    mnt: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # libfuse 3.14 logged "Ignoring invalid max threads value 4294967295 > max (100000)." on
    # every mount (fd 2, below Python): dozens of lines in a real-server run.
    with FuseMount(SimDisk(), mnt):
        (mnt / "f").write_bytes(b"x")
    out, err = capfd.readouterr()
    assert "max threads" not in err
    assert out == "" and err == ""


def test_passthrough_over_a_real_directory_matches_the_directory(tmp_path: Path, mnt: Path) -> None:
    back = tmp_path / "back"
    back.mkdir()
    with FuseMount(OSFileSystem(back), mnt):
        (mnt / "a").write_bytes(b"1" * 5000)
        with open(mnt / "a", "ab") as fh:
            fh.write(b"2" * 10)
        os.mkdir(mnt / "sub")
        os.rename(mnt / "a", mnt / "sub" / "b")
        assert os.listdir(mnt) == os.listdir(back) == ["sub"]
        assert (back / "sub" / "b").read_bytes() == b"1" * 5000 + b"2" * 10
        assert (mnt / "sub" / "b").read_bytes() == (back / "sub" / "b").read_bytes()
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "missing")


def test_an_unlinked_open_file_stays_usable_and_leaves_no_fuse_hidden_file(mnt: Path) -> None:
    disk = SimDisk()
    with FuseMount(disk, mnt):
        fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT)
        os.write(fd, b"abc")
        os.unlink(mnt / "f")
        assert os.listdir(mnt) == []
        assert os.write(fd, b"def") == 3
        # fstat(2) of a hard-removed file is ESTALE in libfuse's path API; lseek reaches us
        # with the handle instead.
        assert os.lseek(fd, 0, os.SEEK_END) == 6
        assert os.pread(fd, 6, 0) == b"abcdef"
        os.close(fd)
        assert disk.listdir("") == []


def test_leaving_the_with_block_by_an_exception_unmounts(mnt: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), FuseMount(SimDisk(), mnt):
        assert is_mounted(mnt)
        raise RuntimeError("boom")
    assert not is_mounted(mnt)


def test_mounting_on_a_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(FuseMountError, match="not an existing directory"):
        FuseMount(SimDisk(), tmp_path / "nope").start()


# -- faults reach a real process as errno values --------------------------------------------


def test_short_write_in_the_plan_is_a_genuine_short_write_for_a_process(mnt: Path) -> None:
    disk = SimDisk()
    plan = FaultPlan((ShortWrite(written_bytes=100, nth=2, path_glob="f"),))
    with FuseMount(FaultyFileSystem(disk, plan), mnt):
        results = run_worker([["open", str(mnt / "f"), _CREATE], ["write", 1000], ["write", 1000]])
    assert results == [0, 1000, 100]
    assert len(disk.visible_image().files["f"]) == 1100


def test_no_space_in_the_plan_reaches_a_process_as_enospc(mnt: Path) -> None:
    disk = SimDisk()
    plan = FaultPlan((NoSpace(nth=2, path_glob="f"),))
    with FuseMount(FaultyFileSystem(disk, plan), mnt):
        results = run_worker([["open", str(mnt / "f"), _CREATE]] + [["write", 10]] * 3)
    assert results == [0, 10, -errno.ENOSPC, -errno.ENOSPC]
    assert disk.visible_image().files["f"] == b"x" * 10


def test_no_space_with_a_partial_write_reaches_a_process_as_short_then_enospc(mnt: Path) -> None:
    plan = FaultPlan((NoSpace(nth=1, partial_bytes=7, path_glob="f"),))
    with FuseMount(FaultyFileSystem(SimDisk(), plan), mnt):
        results = run_worker([["open", str(mnt / "f"), _CREATE], ["write", 10], ["write", 10]])
    assert results == [0, 7, -errno.ENOSPC]


@pytest.mark.parametrize(
    ("fault_op", "worker_op"),
    [(FaultOp.FSYNC, "fsync"), (FaultOp.FDATASYNC, "fdatasync"), (FaultOp.WRITE, "write")],
)
def test_io_fault_in_the_plan_reaches_a_process_as_eio(
    mnt: Path, fault_op: FaultOp, worker_op: str
) -> None:
    plan = FaultPlan((IOFault(op=fault_op, nth=1, path_glob="f"),))
    with FuseMount(FaultyFileSystem(SimDisk(), plan), mnt):
        args = [10] if worker_op == "write" else []
        results = run_worker([["open", str(mnt / "f"), _CREATE], [worker_op, *args]])
    assert results == [0, -errno.EIO]


def test_io_fault_on_rename_and_directory_fsync_reach_a_process_as_eio(mnt: Path) -> None:
    plan = FaultPlan((IOFault(op=FaultOp.RENAME, nth=1), IOFault(op=FaultOp.FSYNC_DIR, nth=1)))
    disk = SimDisk()
    with FuseMount(FaultyFileSystem(disk, plan), mnt):
        results = run_worker(
            [
                ["open", str(mnt / "a"), _CREATE],
                ["rename", str(mnt / "a"), str(mnt / "b")],
                ["rename", str(mnt / "a"), str(mnt / "b")],
                ["fsync_dir", str(mnt)],
                ["fsync_dir", str(mnt)],
            ]
        )
    assert results == [0, -errno.EIO, 0, -errno.EIO, 0]
    assert disk.listdir("") == ["b"]


def test_slow_sync_in_the_plan_makes_the_process_really_wait(mnt: Path) -> None:
    clock = Clock()
    plan = FaultPlan((SlowSync(delay_ms=300, nth=2, path_glob="f"),))
    with FuseMount(FaultyFileSystem(SimDisk(), plan, clock=clock), mnt):
        results = run_worker(
            [["open", str(mnt / "f"), _CREATE], ["timed_fsync"], ["timed_fsync"], ["timed_fsync"]]
        )
    _fast1, slow, _fast2 = results[1:]
    # A sleep is never shorter than asked; how long the others took is the scheduler's business
    # (no upper bound: the suite runs on busy machines). The clock shows one stall, the second.
    assert slow >= 0.28, results
    assert clock.now_ms == 300


def test_a_hold_keeps_a_process_at_its_fsync_until_released(mnt: Path) -> None:
    disk = SimDisk()
    with FuseMount(disk, mnt) as mount:
        hold = mount.hold("fsync", "f")
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER,
             json.dumps([["open", str(mnt / "f"), _CREATE], ["write", 3], ["fsync"]])],
            stdout=subprocess.PIPE, text=True)
        assert hold.wait_reached(60), "the worker never reached its fsync"
        assert hold.pid == proc.pid and hold.path == "f"
        # Held, not timed: the process is still waiting, and the fsync has not reached the disk.
        assert proc.poll() is None
        assert Op.FSYNC not in [op for op, _ in _ops_in(disk)]
        hold.release()
        out, _ = proc.communicate(timeout=60)
        assert json.loads(out) == [0, 3, 0]
        assert Op.FSYNC in [op for op, _ in _ops_in(disk)]


def test_an_abandoned_hold_fails_the_operation_without_reaching_the_disk(mnt: Path) -> None:
    disk = SimDisk()
    with FuseMount(disk, mnt) as mount:
        hold = mount.hold("fsync", "f")
        other = mount.hold("fsync", "never-used")
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER,
             json.dumps([["open", str(mnt / "f"), _CREATE], ["write", 3], ["fsync"], ["fsync"]])],
            stdout=subprocess.PIPE, text=True)
        assert hold.wait_reached(60)
        hold.abandon()
        out, _ = proc.communicate(timeout=60)
        # One hold gates one operation: the second fsync goes through.
        assert json.loads(out) == [0, 3, -errno.EIO, 0]
        assert [op for op, _ in _ops_in(disk)].count(Op.FSYNC) == 1
    # Stopping the mount abandons the holds nobody reached.
    assert not other.reached.is_set()


def test_a_crash_fault_freezes_the_disk_and_kills_the_writer(mnt: Path) -> None:
    disk = SimDisk()
    plan = FaultPlan((Crash(nth=3, op=FaultOp.WRITE, path_glob="f"),))
    with FuseMount(FaultyFileSystem(disk, plan), mnt) as mount:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _WORKER,
                json.dumps([["open", str(mnt / "f"), _CREATE]] + [["write", 5]] * 5),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL
        assert mount.simulated_crash is not None
        assert mount.simulated_crash.killed and mount.simulated_crash.pid > 0
        assert mount.simulated_crash.op == "write"
        with pytest.raises(OSError) as err:
            (mnt / "other").write_bytes(b"late")  # nothing reaches the disk after the crash
        assert err.value.errno == errno.EIO
    assert disk.visible_image().files == {"f": b"x" * 10}


# -- crash and remount ----------------------------------------------------------------------


def test_crash_keeps_only_durable_data_and_remounts(mnt: Path) -> None:
    disk = SimDisk()
    mount = FuseMount(FaultyFileSystem(disk), mnt)
    with mount:
        with open(mnt / "synced", "wb") as fh:
            fh.write(b"kept")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(mnt)
        with open(mnt / "synced", "ab") as fh:
            fh.write(b"-lost")
        (mnt / "unsynced").write_bytes(b"lost")
        image = mount.crash(PersistenceModel.POWER)
        assert image.files == {"synced": b"kept"}
        assert mount.disk is not disk and isinstance(mount.fs, FaultyFileSystem)
        assert os.listdir(mnt) == ["synced"]
        assert (mnt / "synced").read_bytes() == b"kept"
    assert mount.mount_count == 2


def test_crash_refuses_while_a_process_holds_a_file_and_names_its_pid(mnt: Path) -> None:
    disk = SimDisk()
    with FuseMount(disk, mnt) as mount:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; f = open(sys.argv[1], 'w'); print(1, flush=True); sys.stdin.read()",
                str(mnt / "held"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"
            with pytest.raises(FuseMountError, match=str(holder.pid)):
                mount.crash(PersistenceModel.PROCESS)
            assert is_mounted(mnt)
        finally:
            holder.kill()
            holder.wait()
        image = mount.crash(PersistenceModel.PROCESS)
        assert image.files == {"held": b""}


# -- no mount outlives its process ----------------------------------------------------------

_MOUNTER = textwrap.dedent(
    """
    import sys, time
    from faults import SimDisk
    from faults.fuse import FuseMount
    mount = FuseMount(SimDisk(), sys.argv[1]).start()
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_mount_does_not_outlive_its_process_killed_by(mnt: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOUNTER, str(mnt)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        assert is_mounted(mnt)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        # SIGKILL: the watchdog child (its own session) unmounts shortly after.
        for _ in range(500):
            if not is_mounted(mnt):
                break
            time.sleep(0.01)
        assert not is_mounted(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_while_this_process_holds_a_file_on_the_mount_unmounts_cleanly(mnt: Path) -> None:
    mount = FuseMount(SimDisk(), mnt).start()
    fh = open(mnt / "f", "wb")  # noqa: SIM115  (kept open on purpose across stop())
    fh.write(b"abc")
    fh.flush()
    mount.stop()
    assert not is_mounted(mnt)
    assert mount.released_fds == 1
    fh.write(b"more")  # the descriptor now points at /dev/null: harmless
    fh.close()


# -- a real server on the mount -------------------------------------------------------------


def _write_acknowledged(client: Any, n: int) -> dict[bytes, tuple[str, Any, None]]:
    """Writes of every type; returns the dump entries they must produce."""
    expected: dict[bytes, tuple[str, Any, None]] = {}
    for i in range(n):
        key, value = b"k%d" % i, b"v%d" % i * 3
        assert client.set(key, value)
        expected[key] = ("string", value, None)
    assert client.rpush(b"list", b"a", b"b", b"c") == 3
    assert client.sadd(b"set", b"x", b"y") == 2
    assert client.hset(b"hash", mapping={b"f": b"1", b"g": b"2"}) == 2
    assert client.zadd(b"zset", {b"m": 1.5, b"n": -2.0}) == 2
    expected[b"list"] = ("list", [b"a", b"b", b"c"], None)
    expected[b"set"] = ("set", {b"x", b"y"}, None)
    expected[b"hash"] = ("hash", {b"f": b"1", b"g": b"2"}, None)
    expected[b"zset"] = ("zset", {b"m": 1.5, b"n": -2.0}, None)
    return expected


@pytest.mark.parametrize("appendfsync", ["always", "no"])
def test_redis_7_on_the_mount_after_power_loss_keeps_acknowledged_writes_only_if_fsynced(
    tmp_path: Path, mnt: Path, appendfsync: str
) -> None:
    targets = pytest.importorskip("harness.targets")
    binary = targets.find_server("7.0")
    log = tmp_path / "redis.log"
    with FuseMount(FaultyFileSystem(SimDisk()), mnt) as mount:
        server = targets.RedisProcess(binary, mnt, appendfsync=appendfsync, log_path=log)
        try:
            server.start()
            expected = _write_acknowledged(server.client, 100)
        finally:
            server.kill()
        assert server.exit_code == -signal.SIGKILL
        image = mount.crash(PersistenceModel.POWER)  # durable-only: nothing unsynced survives
        assert "appendonlydir/appendonly.aof.manifest" in image.files
        with targets.RedisProcess(binary, mnt, appendfsync=appendfsync, log_path=log) as again:
            dump = targets.dump_keyspace(again.client)
        assert mount.internal_errors == []
    if appendfsync == "always":
        assert dump == {0: expected}
    else:
        assert dump == {}  # nothing was ever fsynced: the power loss took every write


def test_redis_7_fsyncing_appendonlydir_also_makes_its_mkdir_durable_under_an_ordered_journal(
    tmp_path: Path, mnt: Path
) -> None:
    targets = pytest.importorskip("harness.targets")
    binary = targets.find_server("7.0")
    disk = SimDisk()
    with (
        FuseMount(disk, mnt),
        targets.RedisProcess(binary, mnt, log_path=tmp_path / "redis.log") as server,
    ):
        assert server.client.set(b"k", b"v")
        server.kill()
    # Redis 7.0 never fsyncs the parent of appendonlydir; only appendonlydir itself.
    assert [e.path for e in disk.trace if e.op is Op.FSYNC_DIR] == ["appendonlydir"]
    crashed = disk.crash(PersistenceModel.POWER)  # durable state only
    # The journal commit of appendonlydir's fsync carries the earlier mkdir with it.
    assert "appendonlydir" in crashed.dirs
    assert "appendonlydir/appendonly.aof.manifest" in crashed.files
    incr = [name for name in crashed.files if name.endswith(".incr.aof")]
    assert len(incr) == 1 and b"$1\r\nk\r\n$1\r\nv\r\n" in crashed.files[incr[0]]

def test_mounting_leaves_the_working_directory_of_this_process_alone(
    tmp_path: Path, mnt: Path
) -> None:
    before = os.getcwd()
    with FuseMount(SimDisk(), mnt):
        assert os.getcwd() == before
    assert os.getcwd() == before
