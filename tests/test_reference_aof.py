"""Feed, flush/fsync policies, fault handling and rewrite of the reference server's AOF."""

from __future__ import annotations

import errno
import os

from faults import (
    Clock,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    KillChild,
    NoSpace,
    Op,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SlowSync,
)
from reference import (
    AppendFsync,
    ErrorReply,
    Profile,
    Reply,
    Server,
    ServerConfig,
    check_aof,
    encode_command,
)

AOF = "appendonly.aof"


def cmd(*args: str) -> list[bytes]:
    return [a.encode() for a in args]


def rec(*args: str) -> bytes:
    return encode_command(cmd(*args))


def boot(
    fs: object | None = None, clock: Clock | None = None, **kw: object
) -> tuple[Server, Clock, SimDisk | FaultyFileSystem]:
    disk = fs if fs is not None else SimDisk()
    clock = clock or Clock()
    server = Server(disk, clock, ServerConfig(**kw))  # type: ignore[arg-type]
    server.start()
    return server, clock, disk  # type: ignore[return-value]


def visible(disk: SimDisk | FaultyFileSystem, path: str = AOF) -> bytes:
    inner = disk.inner if isinstance(disk, FaultyFileSystem) else disk
    assert isinstance(inner, SimDisk)
    return inner.visible_image().files[path]


def durable(disk: SimDisk | FaultyFileSystem, path: str = AOF) -> bytes | None:
    inner = disk.inner if isinstance(disk, FaultyFileSystem) else disk
    assert isinstance(inner, SimDisk)
    return inner.durable_image().files.get(path)


def run(server: Server, *args: str, client: int = 0) -> Reply:
    return server.execute(cmd(*args), client=client)


# -- feed ----------------------------------------------------------------------------------------


def test_feed_emits_select_only_when_the_db_changes() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS)
    run(s, "SET", "a", "1")
    run(s, "SET", "b", "2")
    run(s, "SELECT", "1", client=1)
    run(s, "SET", "c", "3", client=1)
    run(s, "GET", "a")  # reads are not propagated
    run(s, "DEL", "missing")  # no change: not propagated
    assert visible(disk) == (
        rec("SELECT", "0") + rec("SET", "a", "1") + rec("SET", "b", "2")
        + rec("SELECT", "1") + rec("SET", "c", "3")
    )


def test_relative_expiries_become_absolute_pexpireat() -> None:
    clock = Clock(5_000)
    s, _, disk = boot(clock=clock, appendfsync=AppendFsync.ALWAYS)
    run(s, "SET", "k", "v")
    run(s, "EXPIRE", "k", "10")
    run(s, "PEXPIRE", "k", "250")
    run(s, "EXPIREAT", "k", "100")
    run(s, "SETEX", "s", "3", "v")
    run(s, "PSETEX", "p", "7", "v")
    run(s, "SET", "x", "v", "EX", "2")
    assert visible(disk) == (
        rec("SELECT", "0") + rec("SET", "k", "v")
        + rec("PEXPIREAT", "k", "15000") + rec("PEXPIREAT", "k", "5250")
        + rec("PEXPIREAT", "k", "100000")
        + rec("SET", "s", "v", "PXAT", "8000") + rec("SET", "p", "v", "PXAT", "5007")
        + rec("SET", "x", "v", "PXAT", "7000")
    )


def test_redis_3_0_profile_splits_set_and_pexpireat() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS, profile=Profile.REDIS_3_0)
    run(s, "SETEX", "s", "3", "v")
    assert visible(disk) == rec("SELECT", "0") + rec("SET", "s", "v") + rec(
        "PEXPIREAT", "s", "3000"
    )


def test_multi_exec_is_wrapped_and_read_only_transactions_are_not_fed() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS)
    for c in (("MULTI",), ("GET", "a"), ("EXEC",), ("MULTI",), ("SET", "a", "1"),
              ("INCR", "a"), ("EXEC",)):
        run(s, *c)
    assert visible(disk) == (
        rec("SELECT", "0") + rec("MULTI") + rec("SET", "a", "1") + rec("INCR", "a") + rec("EXEC")
    )


def test_lazily_expired_key_is_propagated_as_del() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS)
    run(s, "PSETEX", "k", "10", "v")
    clock.advance(10)
    assert run(s, "GET", "k") is None
    assert visible(disk).endswith(rec("DEL", "k"))


# -- flush and fsync -----------------------------------------------------------------------------


def test_always_makes_the_write_durable_before_the_reply_is_released() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS)
    ticket = s.submit(cmd("SET", "k", "v"))
    assert not s.released(ticket)
    s.run_iteration()
    assert s.reply(ticket) == "OK"
    assert durable(disk) == visible(disk)
    assert visible(disk).endswith(rec("SET", "k", "v"))


def test_everysec_fsyncs_in_the_background_once_the_second_changes() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.EVERYSEC)
    run(s, "SET", "k", "v")
    assert durable(disk) == b""  # written, not yet fsynced (same second as the start)
    clock.advance(1_000)
    s.run_iteration()  # idle loop: the empty-buffer path still schedules the fsync
    assert durable(disk) == visible(disk) != b""


def test_everysec_postpones_the_write_while_a_slow_fsync_runs_then_writes_after_2s() -> None:
    clock = Clock()
    fs = FaultyFileSystem(SimDisk(), FaultPlan((SlowSync(delay_ms=5_000, path_glob=AOF),)),
                          clock=clock)
    s, _, _ = boot(fs, clock, appendfsync=AppendFsync.EVERYSEC)
    run(s, "SET", "a", "1")
    clock.advance(1_000)
    run(s, "SET", "b", "1")  # this flush starts the slow background fsync (done at 6 s)
    assert s.info()["aof_pending_bio_fsync"] == 1
    size = len(visible(fs))
    clock.advance(500)
    assert run(s, "SET", "c", "1") == "OK"  # acknowledged, but its write is postponed
    assert len(visible(fs)) == size
    clock.advance(1_000)
    run(s, "SET", "d", "1")
    assert len(visible(fs)) == size  # still < 2 s since the postponement started
    clock.advance(1_000)
    run(s, "SET", "e", "1")  # 2 s passed: the cron flush writes c and d anyway; e waits again
    assert visible(fs).endswith(rec("SET", "c", "1") + rec("SET", "d", "1"))
    assert s.info()["aof_delayed_fsync"] == 1
    assert any("Asynchronous AOF fsync is taking too long" in line for line in s.log)


def test_short_write_is_truncated_back_and_retried() -> None:
    plan = FaultPlan((ShortWrite(written_bytes=5, nth=2, path_glob=AOF),))
    fs = FaultyFileSystem(SimDisk(), plan)
    s, clock, _ = boot(fs, appendfsync=AppendFsync.EVERYSEC)
    run(s, "SET", "a", "1")
    good = visible(fs)
    ticket = s.submit(cmd("SET", "b", "2"))
    s.run_iteration()
    assert visible(fs) == good  # the 5 partial bytes were removed with ftruncate
    assert s.info()["aof_last_write_status"] == "err"
    assert not s.released(ticket)  # safe profile: held until the data is written
    assert run(s, "SET", "c", "3") == ErrorReply(
        "MISCONF Errors writing to the AOF file: No space left on device"
    )
    clock.advance(1_000)
    s.run_iteration()  # cron retries the flush every second
    assert s.reply(ticket) == "OK"
    assert s.info()["aof_last_write_status"] == "ok"
    assert visible(fs) == good + rec("SET", "b", "2")
    assert check_aof(visible(fs)).valid


def test_enospc_refuses_writes_with_misconf_until_space_returns() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((NoSpace(nth=2, times=3, path_glob=AOF),)))
    s, clock, _ = boot(fs, appendfsync=AppendFsync.EVERYSEC)
    run(s, "SET", "a", "1")
    failed = s.submit(cmd("SET", "b", "2"))
    s.run_iteration()
    assert any("Error writing to the AOF file: No space left on device" in x for x in s.log)
    refused = s.submit(cmd("SET", "c", "3"))
    s.run_iteration()
    # safe profile: nothing is acknowledged while acknowledged data could still be lost
    assert not s.released(failed) and not s.released(refused)
    for _ in range(3):
        clock.advance(1_000)
        s.run_iteration()
    assert s.reply(failed) == "OK"
    assert s.reply(refused) == ErrorReply(
        "MISCONF Errors writing to the AOF file: No space left on device"
    )
    assert s.dump()[0].keys() == {b"a", b"b"}
    assert any("AOF write error looks solved" in x for x in s.log)
    assert run(s, "SET", "c", "3") == "OK"


def test_redis_3_0_acknowledges_the_failed_write_and_replies_misconf_at_once() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((NoSpace(nth=2, times=2, path_glob=AOF),)))
    s, clock, _ = boot(fs, appendfsync=AppendFsync.EVERYSEC, profile=Profile.REDIS_3_0)
    run(s, "SET", "a", "1")
    assert run(s, "SET", "b", "2") == "OK"
    assert run(s, "PING") == ErrorReply(
        "MISCONF Errors writing to the AOF file: No space left on device"
    )
    clock.advance(1_000)
    s.run_iteration()
    assert run(s, "PING") == "PONG"
    assert visible(fs).endswith(rec("SET", "b", "2"))


def test_write_error_under_always_stops_the_server_without_replying() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((NoSpace(nth=2, path_glob=AOF),)))
    s, _, _ = boot(fs, appendfsync=AppendFsync.ALWAYS)
    run(s, "SET", "a", "1")
    ticket = s.submit(cmd("SET", "b", "2"))
    s.run_iteration()
    assert s.stopped and not s.released(ticket)
    assert s.stop_reason == (
        "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..."
    )


def test_fsync_error_under_always_stops_the_server() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((IOFault(op=FaultOp.FDATASYNC, path_glob=AOF),)))
    s, _, _ = boot(fs, appendfsync=AppendFsync.ALWAYS)
    ticket = s.submit(cmd("SET", "a", "1"))
    s.run_iteration()
    assert s.stopped and not s.released(ticket)
    assert s.stop_reason is not None and "fsync error" in s.stop_reason


def test_everysec_fsync_error_rewrites_the_aof_from_memory_in_safe_profile() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((IOFault(op=FaultOp.FDATASYNC, path_glob=AOF),)))
    s, clock, _ = boot(fs, appendfsync=AppendFsync.EVERYSEC)
    run(s, "SET", "a", "1")
    clock.advance(1_000)
    run(s, "SET", "b", "1")  # the background fsync fails
    s.run_iteration()  # its completion is noticed: repair
    assert any("Fail to fsync the AOF file" in x for x in s.log)
    assert s.info()["aof_last_write_status"] == "ok"
    assert durable(fs) == visible(fs)
    assert check_aof(visible(fs)).valid


def test_redis_3_0_ignores_fsync_errors() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((IOFault(op=FaultOp.FDATASYNC, path_glob=AOF),)))
    s, _, _ = boot(fs, appendfsync=AppendFsync.ALWAYS, profile=Profile.REDIS_3_0)
    assert run(s, "SET", "a", "1") == "OK"
    assert not s.stopped and s.info()["aof_last_write_status"] == "ok"


def test_no_appendfsync_on_rewrite_skips_fsync_while_a_child_exists() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS, no_appendfsync_on_rewrite=True)
    run(s, "SET", "a", "1")
    run(s, "BGREWRITEAOF")
    run(s, "SET", "b", "1")
    assert durable(disk) != visible(disk)


# -- rewrite -------------------------------------------------------------------------------------


def test_rewrite_compacts_uses_variadic_commands_and_keeps_writes_made_meanwhile() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS, rewrite_keys_per_step=2)
    for i in range(100):
        run(s, "RPUSH", "l", str(i))
    run(s, "SET", "e", "v", "PX", "5000")
    run(s, "SELECT", "2")
    run(s, "HSET", "h", "f", "v")
    run(s, "BGREWRITEAOF")
    child = s.rewrite_child
    assert child is not None and child.total_steps == 2 + 2
    run(s, "SADD", "during", "x")  # db 2, into the rewrite buffer
    assert child.run_to_completion() == "ok"
    clock.advance(100)
    s.run_iteration()
    assert s.rewrite_child is None
    data = visible(disk)
    assert rec("RPUSH", "l", *map(str, range(64))) in data
    assert rec("RPUSH", "l", *map(str, range(64, 100))) in data
    assert rec("PEXPIREAT", "e", "5000") in data
    run(s, "SET", "after", "1")  # SELECT is re-emitted after the swap
    assert data.endswith(rec("SELECT", "2") + rec("SADD", "during", "x"))
    assert visible(disk).endswith(rec("SELECT", "2") + rec("SET", "after", "1"))
    assert isinstance(disk, SimDisk)
    assert set(disk.visible_image().files) == {AOF}
    info = s.info()
    assert int(info["aof_base_size"]) == int(info["aof_current_size"]) - len(
        rec("SELECT", "2") + rec("SET", "after", "1")
    )
    restarted = Server(SimDisk.from_image(disk.visible_image()), Clock(clock.now_ms))
    restarted.start()
    assert restarted.dump() == s.dump()


def test_killed_rewrite_child_leaves_no_temp_file_and_the_server_carries_on() -> None:
    kills: list[tuple[int, int]] = []

    def killer(number: int, step: int) -> bool:
        kills.append((number, step))
        return number == 1 and step == 2

    disk, clock = SimDisk(), Clock()
    s = Server(disk, clock, ServerConfig(rewrite_keys_per_step=1), child_killer=killer)
    s.start()
    run(s, "SET", "a", "1")
    run(s, "SET", "b", "1")
    run(s, "BGREWRITEAOF")
    child = s.rewrite_child
    assert child is not None
    assert child.step() is True
    assert "temp-rewriteaof-1.aof" in disk.visible_image().files
    assert child.step() is False and child.exit_status == "killed"
    clock.advance(100)
    s.run_iteration()
    assert s.info()["aof_rewrite_in_progress"] == 0  # (not `is None`: mypy would keep it None)
    assert s.info()["aof_last_bgrewrite_status"] == "err"
    assert set(disk.visible_image().files) == {AOF}
    assert any("terminated by signal 9" in line for line in s.log)
    assert run(s, "SET", "c", "1") == "OK"
    run(s, "BGREWRITEAOF")
    assert s.rewrite_child is not None and s.rewrite_child.run_to_completion() == "ok"
    assert kills[-1] == (2, 5)  # three keys, one per step, then fsync, then rename


def test_kill_rewrite_child_method() -> None:
    s, clock, _disk = boot()
    run(s, "SET", "a", "1")
    run(s, "BGREWRITEAOF")
    assert s.kill_rewrite_child() is True
    assert s.kill_rewrite_child() is False
    clock.advance(100)
    s.run_iteration()
    assert s.rewrite_child is None and s.info()["aof_rewrite_in_progress"] == 0


def test_safe_profile_fsyncs_the_directory_after_the_rename_and_redis_3_0_does_not() -> None:
    for profile, expect_durable_rename in ((Profile.SAFE, True), (Profile.REDIS_3_0, False)):
        s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS, profile=profile)
        assert isinstance(disk, SimDisk)
        for i in range(5):
            run(s, "SET", "a", str(i))
        run(s, "BGREWRITEAOF")
        assert s.rewrite_child is not None
        s.rewrite_child.run_to_completion()
        clock.advance(100)
        s.run_iteration()
        run(s, "SET", "b", "1")
        compact = visible(disk)
        # Under the POSIX minimum only the directory fsync makes the rename durable; on ext4
        # the fsync of "SET b 1" commits the journal, the rename with it, for both profiles.
        posix = disk.crash(PersistenceModel.POWER_POSIX_METADATA).files.get(AOF)
        assert (posix == compact) is expect_durable_rename, profile
        assert durable(disk) == compact, profile


def test_auto_rewrite_starts_when_the_aof_doubles_past_the_minimum() -> None:
    s, clock, _ = boot(auto_aof_rewrite_min_size_bytes=200, auto_aof_rewrite_percentage=100)
    for i in range(20):
        run(s, "SET", "k", str(i))
    clock.advance(100)
    s.run_iteration()
    assert s.rewrite_child is not None
    assert any("Starting automatic rewriting of AOF on" in line for line in s.log)


def test_actively_expired_key_is_propagated_as_del() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS)
    run(s, "SELECT", "4")
    run(s, "SET", "k", "v", "PX", "150")
    clock.advance(200)
    s.run_iteration()  # no command touches k: the cron's expire cycle removes it
    assert visible(disk).endswith(rec("DEL", "k"))
    assert s.dump() == {}


class _ShortWriteNoTruncate(SimDisk):
    """The first write to the AOF is short and ftruncate fails (EIO)."""

    shorted = False

    def write(self, fd: int, data: bytes) -> int:
        if not self.shorted:
            self.shorted = True
            return super().write(fd, data[:4])
        return super().write(fd, data)

    def ftruncate(self, fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_short_write_that_cannot_be_truncated_is_kept_and_completed() -> None:
    disk = _ShortWriteNoTruncate()
    s, clock, _ = boot(disk, appendfsync=AppendFsync.EVERYSEC)
    s.submit(cmd("SET", "a", "1"))
    s.run_iteration()
    assert any("Could not remove short write" in line for line in s.log)
    assert s.aof_current_size == 4  # the partial bytes are accounted for
    clock.advance(1_000)
    s.run_iteration()
    assert visible(disk) == rec("SELECT", "0") + rec("SET", "a", "1")
    assert s.info()["aof_last_write_status"] == "ok"


def test_kill_child_fault_from_a_faulty_filesystem_kills_the_rewrite_child() -> None:
    fs = FaultyFileSystem(SimDisk(), FaultPlan((KillChild(at_step=3, nth_rewrite=1),)))
    clock = Clock()
    s = Server(fs, clock, ServerConfig(rewrite_keys_per_step=1),
               child_killer=fs.should_kill_child)
    s.start()
    for key in ("a", "b", "c"):
        run(s, "SET", key, "1")
    run(s, "BGREWRITEAOF")
    child = s.rewrite_child
    assert child is not None
    assert child.step() and child.step()
    assert child.step() is False and child.exit_status == "killed" and child.steps_done == 2
    assert len(fs.fired) == 1


def test_multi_key_commands_are_fed_whole() -> None:
    s, _, disk = boot(appendfsync=AppendFsync.ALWAYS)
    commands = [
        ("SET", "a", "1"), ("SET", "b", "2"), ("DEL", "a", "b", "missing"),
        ("SADD", "s", "x", "y", "z"), ("SREM", "s", "x", "y"),
        ("RPUSH", "l", "1", "2", "3"), ("LPUSH", "l", "0", "-1"),
        ("HSET", "h", "f", "1", "g", "2"), ("HMSET", "h", "g", "3", "i", "4"),
        ("HDEL", "h", "f", "g"),
        ("ZADD", "z", "NX", "CH", "1", "a", "2", "b"), ("ZREM", "z", "a", "b"),
    ]
    for command in commands:
        run(s, *command)
    assert visible(disk) == rec("SELECT", "0") + b"".join(rec(*c) for c in commands)


def _items(count: int) -> list[str]:
    return [f"m{i:03}" for i in range(count)]


def test_rewrite_writes_collections_in_batches_of_64_items_with_exact_headers() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS)
    run(s, "RPUSH", "l", *_items(129))
    run(s, "SADD", "s", *_items(65))
    run(s, "ZADD", "z", *(x for m in _items(130) for x in ("1", m)))
    run(s, "HSET", "h", *(x for m in _items(64) for x in (m, "v")))
    run(s, "BGREWRITEAOF")
    assert s.rewrite_child is not None and s.rewrite_child.run_to_completion() == "ok"
    clock.advance(100)
    s.run_iteration()
    data = visible(disk)
    items = _items(130)
    assert rec("RPUSH", "l", *items[:64]) + rec("RPUSH", "l", *items[64:128]) + rec(
        "RPUSH", "l", items[128]) in data
    assert rec("SADD", "s", *items[:64]) + rec("SADD", "s", items[64]) in data
    pairs = [x for m in items for x in ("1", m)]
    assert rec("ZADD", "z", *pairs[:128]) + rec("ZADD", "z", *pairs[128:256]) + rec(
        "ZADD", "z", *pairs[256:]) in data
    assert data.count(b"HMSET") == 1  # exactly 64 fields: one batch
    assert isinstance(disk, SimDisk)
    restarted = Server(SimDisk.from_image(disk.visible_image()), Clock(clock.now_ms))
    restarted.start()
    assert restarted.dump() == s.dump()


def test_rewrite_done_handler_appends_fsyncs_renames_then_fsyncs_the_directory() -> None:
    s, clock, disk = boot(appendfsync=AppendFsync.ALWAYS)
    run(s, "SET", "a", "1")
    run(s, "BGREWRITEAOF")
    run(s, "SET", "during", "1")
    assert s.rewrite_child is not None and s.rewrite_child.run_to_completion() == "ok"
    assert isinstance(disk, SimDisk)
    start = len(disk.trace)
    clock.advance(100)
    s.run_iteration()
    ops = [(e.op, e.path) for e in disk.trace[start:] if e.op not in (Op.OPEN, Op.CLOSE, Op.READ)]
    bg = "temp-rewriteaof-bg-1.aof"
    assert ops[:4] == [(Op.WRITE, bg), (Op.FDATASYNC, bg), (Op.RENAME, bg), (Op.FSYNC_DIR, "")]
