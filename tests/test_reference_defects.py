"""Every named defect is wired in and changes behaviour where it says it does."""

from __future__ import annotations

import pytest

from faults import (
    Clock,
    Crash,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SimulatedCrash,
    SlowSync,
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


def test_every_defect_name_is_accepted_alone_and_all_together() -> None:
    names = set(defects.DEFECTS)
    assert len(names) >= 14 + 12
    assert defects.check_defects(names) == names
    for name in names:
        assert ServerConfig(defects=frozenset({name})).defects == {name}
    assert ServerConfig.from_dict({"defects": sorted(names)}).defects == names


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


# -- feed of multi-key commands --------------------------------------------------------------------


def fed_then_reloaded(defect: str | None, *commands: tuple[str, ...]) -> bool:
    """Run the commands under `always`; whether a reload gives the server's keyspace."""
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    for command in commands:
        s.execute(cmd(*command))
    return reload(disk, clock).dump() == s.dump()


@pytest.mark.parametrize("defect", [None, defects.DEL_FEEDS_FIRST_KEY])
def test_del_feeds_first_key(defect: str | None) -> None:
    setup = (("SET", "a", "1"), ("SET", "b", "2"), ("SET", "c", "3"))
    assert fed_then_reloaded(defect, *setup, ("DEL", "a", "b")) is (defect is None)
    assert fed_then_reloaded(defect, *setup, ("DEL", "b"))  # one key: no difference


@pytest.mark.parametrize("defect", [None, defects.SADD_FEEDS_FIRST_MEMBER])
def test_sadd_feeds_first_member(defect: str | None) -> None:
    assert fed_then_reloaded(defect, ("SADD", "s", "x", "y", "z")) is (defect is None)
    assert fed_then_reloaded(defect, ("SADD", "s", "x"), ("SADD", "s", "y"))


@pytest.mark.parametrize("defect", [None, defects.PUSH_FEEDS_LAST_ELEMENT])
@pytest.mark.parametrize("push", ["LPUSH", "RPUSH"])
def test_push_feeds_last_element(defect: str | None, push: str) -> None:
    assert fed_then_reloaded(defect, (push, "l", "a", "b", "c")) is (defect is None)
    assert fed_then_reloaded(defect, (push, "l", "a"), (push, "l", "b"))


@pytest.mark.parametrize("defect", [None, defects.HSET_FEEDS_FIRST_FIELD])
@pytest.mark.parametrize("hset", ["HSET", "HMSET"])
def test_hset_feeds_first_field(defect: str | None, hset: str) -> None:
    assert fed_then_reloaded(defect, (hset, "h", "f", "1", "g", "2")) is (defect is None)
    assert fed_then_reloaded(defect, (hset, "h", "f", "1"))


@pytest.mark.parametrize("defect", [None, defects.ZADD_FEEDS_FIRST_PAIR])
def test_zadd_feeds_first_pair(defect: str | None) -> None:
    assert fed_then_reloaded(defect, ("ZADD", "z", "CH", "1", "a", "2", "b")) is (defect is None)
    assert fed_then_reloaded(defect, ("ZADD", "z", "1", "a"), ("ZADD", "z", "XX", "5", "a"))


@pytest.mark.parametrize("defect", [None, defects.REMOVE_FEEDS_FIRST_MEMBER])
@pytest.mark.parametrize(
    ("fill", "remove"),
    [
        (("SADD", "k", "a", "b", "c"), ("SREM", "k", "a", "b")),
        (("ZADD", "k", "1", "a", "2", "b", "3", "c"), ("ZREM", "k", "a", "b")),
        (("HSET", "k", "a", "1", "b", "2", "c", "3"), ("HDEL", "k", "a", "b")),
    ],
)
def test_remove_feeds_first_member(
    defect: str | None, fill: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    assert fed_then_reloaded(defect, fill, remove) is (defect is None)
    assert fed_then_reloaded(defect, fill, remove[:3])  # one member: no difference


# -- rewrite batches (64 items per record) -----------------------------------------------------


def big(kind: str, items: int) -> tuple[str, ...]:
    """One command that makes a collection of `items` items."""
    if kind in ("RPUSH", "SADD"):
        return (kind, "k", *(f"m{i:03}" for i in range(items)))
    pairs = [(str(i), f"m{i:03}") if kind == "ZADD" else (f"m{i:03}", str(i)) for i in range(items)]
    return (kind, "k", *(x for pair in pairs for x in pair))


def rewritten(defect: str | None, command: tuple[str, ...]) -> tuple[Server, Server, SimDisk]:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd(*command))
    rewrite(s, clock)
    return s, reload(disk, clock), disk


@pytest.mark.parametrize("defect", [None, defects.REWRITE_DROPS_AFTER_FIRST_BATCH])
@pytest.mark.parametrize("kind", ["RPUSH", "SADD", "ZADD", "HSET"])
def test_rewrite_drops_after_first_batch(defect: str | None, kind: str) -> None:
    s, reloaded, _ = rewritten(defect, big(kind, 70))
    assert (reloaded.dump() == s.dump()) is (defect is None)
    s, reloaded, _ = rewritten(defect, big(kind, 64))  # one batch: no difference
    assert reloaded.dump() == s.dump()


@pytest.mark.parametrize("defect", [None, defects.REWRITE_BATCH_SKIPS_BOUNDARY_ITEM])
@pytest.mark.parametrize("kind", ["RPUSH", "SADD", "ZADD", "HSET"])
def test_rewrite_batch_skips_boundary_item(defect: str | None, kind: str) -> None:
    s, reloaded, _ = rewritten(defect, big(kind, 65))
    assert (reloaded.dump() == s.dump()) is (defect is None)
    if defect is not None:  # exactly the 65th item is missing
        value = reloaded.dump()[0][b"k"][1]
        assert len(value) == 64 and b"m064" not in value
    s, reloaded, _ = rewritten(defect, big(kind, 64))
    assert reloaded.dump() == s.dump()


@pytest.mark.parametrize("defect", [None, defects.REWRITE_BATCH_COUNT_WRONG])
def test_rewrite_batch_count_wrong(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd(*big("SADD", 70)))
    rewrite(s, clock)
    header = b"*%d\r\n$4\r\nSADD" % (2 + (64 if defect else 6))
    assert header in files(disk)[AOF]
    s.execute(cmd("SET", "after", "1"))
    if defect is None:
        assert reload(disk, clock).dump() == s.dump()
    else:
        with pytest.raises(LoadError, match="Bad file format"):
            reload(disk, clock)


@pytest.mark.parametrize("defect", [None, defects.REWRITE_SELECT_EMITTED_ONCE])
def test_rewrite_select_emitted_once(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd("SELECT", "1"), client=1)
    s.execute(cmd("SET", "one", "1"), client=1)
    s.execute(cmd("SELECT", "2"), client=2)
    s.execute(cmd("SET", "two", "2"), client=2)
    rewrite(s, clock)
    assert files(disk)[AOF].count(b"SELECT") == (1 if defect else 2)
    assert (reload(disk, clock).dump() == s.dump()) is (defect is None)


# -- the rewrite done handler --------------------------------------------------------------------


def rewrite_with_a_write_meanwhile(
    defect: str | None, fs: object | None = None, **kw: object
) -> tuple[Server, Clock, SimDisk]:
    """SET a, BGREWRITEAOF, SET during (in the rewrite buffer), the child finishes."""
    s, clock, disk = boot(defect, fs, None, **kw)
    s.execute(cmd("SET", "a", "1"))
    s.execute(cmd("BGREWRITEAOF"))
    s.execute(cmd("SET", "during", "1"))
    assert s.rewrite_child is not None
    s.rewrite_child.run_to_completion()
    clock.advance(100)
    return s, clock, disk


@pytest.mark.parametrize("defect", [None, defects.REWRITE_DIFF_NOT_FSYNCED])
@pytest.mark.parametrize("policy", [AppendFsync.ALWAYS, AppendFsync.EVERYSEC])
def test_rewrite_diff_not_fsynced(defect: str | None, policy: AppendFsync) -> None:
    s, clock, disk = rewrite_with_a_write_meanwhile(defect, appendfsync=policy)
    s.run_iteration()  # the done handler
    for _ in range(5):  # everysec: time enough for any background fsync
        clock.advance(1_000)
        s.run_iteration()
    assert s.rewrite_child is None
    after_power_loss = Server(SimDisk.from_image(disk.crash(PersistenceModel.POWER)),
                              Clock(clock.now_ms))
    after_power_loss.start()
    assert (after_power_loss.dump() == s.dump()) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.REWRITE_DIFF_APPENDED_AFTER_RENAME])
def test_rewrite_diff_appended_after_rename(defect: str | None) -> None:
    # The third write whose fd names the AOF: in the defect, the diff written after the rename.
    plan = FaultPlan((Crash(nth=3, op=FaultOp.WRITE, path_glob=AOF),))
    s, clock, disk = rewrite_with_a_write_meanwhile(
        defect, FaultyFileSystem(SimDisk(), plan), appendfsync=AppendFsync.ALWAYS
    )
    if defect is None:
        s.run_iteration()
    else:
        with pytest.raises(SimulatedCrash):
            s.run_iteration()
    after_crash = reload(disk, clock)  # a process crash: the visible state survives
    assert (b"during" in after_crash.dump()[0]) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.REWRITE_DIFF_SHORT_WRITE_IGNORED])
def test_rewrite_diff_short_write_ignored(defect: str | None) -> None:
    plan = FaultPlan((ShortWrite(written_bytes=5, nth=1, path_glob="temp-rewriteaof-bg-*"),))
    s, clock, disk = rewrite_with_a_write_meanwhile(
        defect, FaultyFileSystem(SimDisk(), plan), appendfsync=AppendFsync.ALWAYS
    )
    s.run_iteration()  # the done handler: `safe` abandons the rewrite, the defect installs it
    assert (s.info()["aof_last_bgrewrite_status"] == "ok") is (defect is not None)
    s.execute(cmd("SET", "after", "1"))
    if defect is None:
        assert reload(disk, clock).dump() == s.dump()
    else:
        with pytest.raises(LoadError, match="Bad file format"):
            reload(disk, clock)


@pytest.mark.parametrize("defect", [None, defects.OLD_FD_KEPT_AFTER_REWRITE])
def test_old_fd_kept_after_rewrite(defect: str | None) -> None:
    s, clock, disk = boot(defect, appendfsync=AppendFsync.ALWAYS)
    s.execute(cmd("SET", "a", "1"))
    rewrite(s, clock)
    s.execute(cmd("SET", "b", "2"))
    assert (rec("SET", "b", "2") in files(disk)[AOF]) is (defect is None)
    assert (reload(disk, clock).dump() == s.dump()) is (defect is None)


# -- everysec and slow fsync ---------------------------------------------------------------------


def slow_first_fsync(defect: str | None, delay_ms: int) -> tuple[Server, Clock, SimDisk]:
    """everysec; the first fdatasync of the AOF takes `delay_ms`; SET a at 0 s, b at 1 s (its
    write starts the slow fsync), c at 2 s (postponed while that fsync runs)."""
    plan = FaultPlan((SlowSync(delay_ms=delay_ms, nth=1, path_glob=AOF),))
    clock = Clock()
    s, clock, disk = boot(defect, FaultyFileSystem(SimDisk(), plan, clock=clock), clock,
                          appendfsync=AppendFsync.EVERYSEC)
    for i, key in enumerate("abc"):
        clock.advance(1_000 if i else 0)
        s.execute(cmd("SET", key, "1"))  # everysec: released even while the write is postponed
    return s, clock, disk


@pytest.mark.parametrize("defect", [None, defects.EVERYSEC_POSTPONED_WITHOUT_LIMIT])
def test_everysec_postponed_without_limit(defect: str | None) -> None:
    s, clock, disk = slow_first_fsync(defect, 10_000)
    for _ in range(4):  # 6 s: c was acknowledged 4 s ago; the fsync still runs until 11 s
        clock.advance(1_000)
        s.run_iteration()
    assert (rec("SET", "c", "1") in files(disk)[AOF]) is (defect is None)
    assert (s.info()["aof_delayed_fsync"] == 1) is (defect is None)


@pytest.mark.parametrize("defect", [None, defects.EVERYSEC_OFFSET_ADVANCED_WHILE_BUSY])
def test_everysec_offset_advanced_while_busy(defect: str | None) -> None:
    s, clock, disk = slow_first_fsync(defect, 5_000)
    for _ in range(10):  # c is written at 4 s while the fsync runs (until 6 s), then idle
        clock.advance(1_000)
        s.run_iteration()
    assert rec("SET", "c", "1") in files(disk)[AOF]
    assert (durable(disk) == files(disk)[AOF]) is (defect is None)


# -- load ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("defect", [None, defects.ZERO_TAIL_REFUSED])
def test_zero_tail_refused(defect: str | None) -> None:
    disk = SimDisk()
    fd = disk.open(AOF, 0o1 | 0o100)
    disk.write(fd, rec("SET", "a", "1") + b"\x00" * 40)
    disk.close(fd)
    if defect is None:
        s, _, _ = boot(defect, disk)
        assert s.dump() == {0: {b"a": ("string", b"1", None)}}
        assert files(disk)[AOF] == rec("SET", "a", "1")
    else:
        with pytest.raises(LoadError, match="Bad file format"):
            boot(defect, disk)


@pytest.mark.parametrize("defect", [None, defects.LOAD_TRUNCATES_ONE_BYTE_SHORT])
def test_load_truncates_one_byte_short(defect: str | None) -> None:
    disk = SimDisk()
    fd = disk.open(AOF, 0o1 | 0o100)
    disk.write(fd, rec("SET", "a", "1") + b"*3\r\n$3\r\nSE")
    disk.close(fd)
    clock = Clock()
    s, _, _ = boot(defect, disk, clock)
    assert s.dump() == {0: {b"a": ("string", b"1", None)}}
    assert len(files(disk)[AOF]) == len(rec("SET", "a", "1")) - (1 if defect else 0)
    # Recovering the recovered state again (no new writes) loses `a` with the defect.
    assert (reload(disk, clock).dump() == s.dump()) is (defect is None)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("defect", [None, defects.MISCONF_CLEARED_BY_SHORT_WRITE])
def test_misconf_cleared_by_short_write(defect: str | None) -> None:
    plan = FaultPlan((NoSpace(nth=2, partial_bytes=3, path_glob=AOF),))
    s, clock, disk = boot(defect, FaultyFileSystem(SimDisk(), plan), appendfsync=AppendFsync.NO)
    s.execute(cmd("SET", "a", "1"))
    ticket = s.submit(cmd("SET", "b", "1"))
    s.run_iteration()  # a short write, truncated back: nothing of SET b is in the file
    assert rec("SET", "b", "1") not in files(disk)[AOF]
    assert s.released(ticket) is (defect is not None)  # acknowledged, only in memory
    assert (s.info()["aof_last_write_status"] == "ok") is (defect is not None)
    assert b"b" not in reload(disk, clock).dump()[0]
