"""Every named defect is wired in and changes behaviour where it says it does."""

from __future__ import annotations

import pytest

from faults import (
    Clock,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    NoSpace,
    ShortWrite,
    SimDisk,
)
from reference import (
    AppendFsync,
    ConfigError,
    LoadError,
    Server,
    ServerConfig,
    check_aof,
    defects,
    encode_command,
)

AOF = "appendonly.aof"


def rec(*args: str) -> bytes:
    return encode_command([a.encode() for a in args])


def cmd(*args: str) -> list[bytes]:
    return [a.encode() for a in args]


def boot(
    defect: str | None, fs: object | None = None, clock: Clock | None = None, **kw: object
) -> tuple[Server, Clock, SimDisk]:
    disk = fs if fs is not None else SimDisk()
    clock = clock or Clock()
    chosen = frozenset({defect}) if defect else frozenset()
    server = Server(disk, clock, ServerConfig(defects=chosen, **kw))  # type: ignore[arg-type]
    server.start()
    inner = disk.inner if isinstance(disk, FaultyFileSystem) else disk
    assert isinstance(inner, SimDisk)
    return server, clock, inner


def files(disk: SimDisk) -> dict[str, bytes]:
    return dict(disk.visible_image().files)


def durable(disk: SimDisk) -> bytes | None:
    return disk.durable_image().files.get(AOF)


def reload(disk: SimDisk, clock: Clock, **kw: object) -> Server:
    server = Server(SimDisk.from_image(disk.visible_image()), Clock(clock.now_ms),
                    ServerConfig(**kw))  # type: ignore[arg-type]
    server.start()
    return server


def rewrite(server: Server, clock: Clock) -> None:
    server.execute(cmd("BGREWRITEAOF"))
    assert server.rewrite_child is not None
    server.rewrite_child.run_to_completion()
    clock.advance(100)
    server.run_iteration()
    assert server.rewrite_child is None


def test_catalogue_has_at_least_ten_described_defects() -> None:
    assert len(defects.DEFECTS) >= 10
    for name, defect in defects.DEFECTS.items():
        assert defect.name == name and defect.description and "\n" not in defect.description


def test_unknown_defect_names_are_rejected_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown defect.*'nope'.*known: .*reply-before-fsync"):
        defects.check_defects(["nope"])
    with pytest.raises(ConfigError, match="defects: unknown defect"):
        ServerConfig(defects=frozenset({"nope"}))


@pytest.mark.parametrize("defect", [None, defects.REPLY_BEFORE_FSYNC])
def test_reply_before_fsync(defect: str | None) -> None:
    s, _, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    assert s.execute(cmd("SET", "a", "1")) == "OK"
    assert (durable(disk) == files(disk)[AOF]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.SHORT_WRITE_KEPT])
def test_short_write_kept(defect: str | None) -> None:
    plan = FaultPlan((ShortWrite(written_bytes=7, nth=2, path_glob=AOF),))
    fs = FaultyFileSystem(SimDisk(), plan)
    s, clock, disk = boot(defect, fs)
    s.execute(cmd("SET", "a", "1"))
    s.submit(cmd("SET", "b", "2"))
    s.run_iteration()
    clock.advance(1_000)
    s.run_iteration()
    assert check_aof(files(disk)[AOF]).valid is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.REWRITE_BUFFER_DROPPED])
def test_rewrite_buffer_dropped(defect: str | None) -> None:
    s, clock, disk = boot(defect)
    s.execute(cmd("SET", "a", "1"))
    s.execute(cmd("BGREWRITEAOF"))
    s.execute(cmd("SET", "during", "1"))
    assert s.rewrite_child is not None
    s.rewrite_child.run_to_completion()
    clock.advance(100)
    s.run_iteration()
    assert (b"during" in reload(disk, clock).dump()[0]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.SELECT_NOT_REEMITTED_AFTER_REWRITE])
def test_select_not_reemitted_after_rewrite(defect: str | None) -> None:
    s, clock, disk = boot(defect)
    s.execute(cmd("SELECT", "3"), client=1)
    s.execute(cmd("SET", "b", "1"), client=1)
    s.execute(cmd("SET", "a", "1"))  # the last SELECT fed is db 0
    rewrite(s, clock)  # the rewritten file ends in db 3
    s.execute(cmd("SET", "c", "1"))  # client 0 is in db 0
    assert (reload(disk, clock).dump() == s.dump()) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.TEMP_NOT_FSYNCED_BEFORE_RENAME])
def test_temp_not_fsynced_before_rename(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.NO)
    for i in range(5):
        s.execute(cmd("SET", "a", str(i)))
    rewrite(s, clock)
    assert (durable(disk) == files(disk)[AOF]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.RELATIVE_EXPIRY_VERBATIM])
def test_relative_expiry_verbatim(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd("SET", "k", "v"))
    s.execute(cmd("EXPIRE", "k", "10"))
    assert (rec("EXPIRE", "k", "10") in files(disk)[AOF]) is (defect is not None)
    clock.advance(5_000)
    reloaded = reload(disk, clock, defects=frozenset({defect} if defect else ()))
    assert (reloaded.dump() == s.dump()) is (defect is None)  # the TTL restarted


@pytest.mark.parametrize("defect", [None, defects.EVERYSEC_FSYNC_SKIPPED])
def test_everysec_fsync_skipped(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.EVERYSEC)
    s.execute(cmd("SET", "a", "1"))
    for _ in range(5):
        clock.advance(1_000)
        s.run_iteration()
    assert (durable(disk) == files(disk)[AOF]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.MULTI_APPLIED_ON_LOAD])
def test_multi_applied_on_load(defect: str | None) -> None:
    disk = SimDisk()
    fd = disk.open(AOF, 0o1 | 0o100)
    disk.write(fd, rec("SET", "a", "1") + rec("MULTI") + rec("SET", "a", "2"))
    disk.close(fd)
    s, _, _ = boot(defect, disk)
    assert s.dump()[0][b"a"][1] == (b"1" if defect is None else b"2")


@pytest.mark.parametrize("defect", [None, defects.FSYNC_ERROR_CLEARED])
def test_fsync_error_cleared(defect: str | None) -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((IOFault(op=FaultOp.FDATASYNC, path_glob=AOF),)))
    s, clock, _disk = boot(defect, fs, appendfsync=AppendFsync.EVERYSEC)
    s.execute(cmd("SET", "a", "1", "PX", "1500"))
    clock.advance(1_000)
    s.execute(cmd("SET", "b", "1"))  # fsync fails (data lost on power failure under Linux rules)
    s.run_iteration()
    repaired = any("Rewriting the AOF from memory" in line for line in s.log)
    assert repaired is (defect is None)
    assert (s.info()["aof_last_write_status"] == "ok") is (defect is None)
    clock.advance(1_000)
    s.run_iteration()  # cron expires a: the DEL is written and fsynced successfully
    s.run_iteration()
    assert s.info()["aof_last_write_status"] == "ok"


@pytest.mark.parametrize("defect", [None, defects.WRITE_ERROR_IGNORED])
def test_write_error_ignored(defect: str | None) -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((NoSpace(nth=2, times=1, path_glob=AOF),)))
    s, _, _ = boot(defect, fs)
    s.execute(cmd("SET", "a", "1"))
    ticket = s.submit(cmd("SET", "b", "1"))
    s.run_iteration()
    assert s.released(ticket) is (defect is not None)
    assert (s.info()["aof_last_write_status"] == "ok") is (defect is not None)


@pytest.mark.parametrize("defect", [None, defects.NO_DIR_FSYNC_AFTER_RENAME])
def test_no_dir_fsync_after_rename(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    for i in range(5):
        s.execute(cmd("SET", "a", str(i)))
    rewrite(s, clock)
    assert (durable(disk) == files(disk)[AOF]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.REWRITE_DROPS_EXPIRY])
def test_rewrite_drops_expiry(defect: str | None) -> None:
    s, clock, disk = boot(defect)
    s.execute(cmd("SET", "k", "v", "EX", "100"))
    rewrite(s, clock)
    assert (b"PEXPIREAT" in files(disk)[AOF]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK])
def test_truncated_tail_not_truncated_on_disk(defect: str | None) -> None:
    disk = SimDisk()
    fd = disk.open(AOF, 0o1 | 0o100)
    disk.write(fd, rec("SET", "a", "1") + b"*3\r\n$3\r\nSE")
    disk.close(fd)
    clock = Clock()
    s, _, _ = boot(defect, disk, clock, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd("SET", "b", "1"))
    if defect is None:
        assert reload(disk, clock).dump() == s.dump()
    else:
        with pytest.raises(LoadError, match="Bad file format"):
            reload(disk, clock)


@pytest.mark.parametrize("defect", [None, defects.SET_EXPIRY_SPLIT])
def test_set_expiry_split(defect: str | None) -> None:
    s, _, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd("SET", "k", "v", "PX", "500"))
    assert (rec("PEXPIREAT", "k", "500") in files(disk)[AOF]) is (defect is not None)
