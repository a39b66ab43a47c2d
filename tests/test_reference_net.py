"""``python -m reference``: RESP over TCP, a real forked rewrite child, crash and restart.

The process is launched through ``harness.targets.ReferenceProcess`` (the RedisProcess
interface), so these tests also cover the harness's way of driving it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from faults import Clock, OSFileSystem
from harness.targets import (
    ReferenceProcess,
    ServerRefusedToStart,
    dump_keyspace,
)
from reference import Server, ServerConfig, encode_command
from reference._net import ForkedRewriteChild
from reference._net import main as net_main

REDIS_CLI = "/usr/bin/redis-cli"


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    children = psutil.Process().children(recursive=True)
    assert children == [], f"processes left behind: {children}"


@pytest.fixture
def ref(tmp_path: Path) -> Iterator[ReferenceProcess]:
    proc = ReferenceProcess(tmp_path, appendfsync="always", start_timeout_s=30)
    try:
        proc.start()
        yield proc
    finally:
        proc.kill()


def _raw(port: int, payload: bytes, *, expect_bytes: int, timeout_s: float = 10.0) -> bytes:
    """Send raw bytes, read until `expect_bytes` arrived (or EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        data = b""
        while len(data) < expect_bytes:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _wait_for(predicate: object, *, timeout_s: float = 10.0, what: str = "condition") -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _fill(client: redis.Redis, keys: int, *, prefix: bytes = b"k") -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(prefix + b"%d" % i, b"value-%d" % i)
    pipe.execute()


def _stopped_rewrite_child(proc: ReferenceProcess, *, keys: int) -> psutil.Process:
    """BGREWRITEAOF and freeze the child with SIGSTOP (retrying if one finished too fast)."""
    _fill(proc.client, keys, prefix=b"bulk:")
    for _ in range(5):
        assert proc.client.bgrewriteaof()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            children = proc.fork_children()
            if children:
                child = children[0]
                try:
                    child.send_signal(signal.SIGSTOP)
                    for _ in range(1000):  # the signal is delivered asynchronously
                        status = child.status()
                        if status == psutil.STATUS_STOPPED:
                            return child
                        if status == psutil.STATUS_ZOMBIE:
                            break
                        time.sleep(0.001)
                except psutil.NoSuchProcess:
                    pass
                break
            time.sleep(0.0005)
        _wait_for(lambda: _rewrite_in_progress(proc) == 0, what="the rewrite to finish")
    pytest.fail("the rewrite child always finished before it could be stopped")


def _rewrite_in_progress(proc: ReferenceProcess) -> int:
    return int(proc.client.info("persistence")["aof_rewrite_in_progress"])


# -- RESP front end ---------------------------------------------------------------------------


def test_redis_py_can_set_get_and_read_types(ref: ReferenceProcess) -> None:
    c = ref.client
    assert c.ping() is True
    assert c.set(b"a", b"1") is True
    assert c.get(b"a") == b"1"
    assert c.incrby(b"n", 5) == 5
    assert c.rpush(b"l", b"x", b"y") == 2
    assert c.lrange(b"l", 0, -1) == [b"x", b"y"]
    assert c.hset(b"h", mapping={b"f": b"v"}) == 1
    assert c.zadd(b"z", {b"m": 2.5}) == 1
    assert c.zrange(b"z", 0, -1, withscores=True) == [(b"m", 2.5)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        c.get(b"l")


def test_pipelined_commands_are_answered_in_order_on_one_connection(
    ref: ReferenceProcess,
) -> None:
    commands = []
    expected = []
    for i in range(200):
        commands.append(encode_command([b"INCR", b"counter"]))
        expected.append(b":%d\r\n" % (i + 1))
        commands.append(encode_command([b"SET", b"key%d" % i, b"v%d" % i]))
        expected.append(b"+OK\r\n")
        commands.append(encode_command([b"GET", b"key%d" % i]))
        expected.append(b"$%d\r\nv%d\r\n" % (len(b"v%d" % i), i))
    want = b"".join(expected)
    assert _raw(ref.port, b"".join(commands), expect_bytes=len(want)) == want


def test_inline_commands_and_connection_commands_work(ref: ReferenceProcess) -> None:
    payload = (
        b"PING\r\nSET a hello\r\nGET a\r\nECHO hi\r\nCLIENT SETNAME me\r\nCLIENT GETNAME\r\n"
        b"QUIT\r\n"
    )
    want = b"+PONG\r\n+OK\r\n$5\r\nhello\r\n$2\r\nhi\r\n+OK\r\n$2\r\nme\r\n+OK\r\n"
    # QUIT closes the connection after its reply: reading to EOF returns exactly the replies.
    assert _raw(ref.port, payload, expect_bytes=len(want) + 1) == want


def test_large_values_and_large_replies_cross_partial_reads_and_writes(
    ref: ReferenceProcess,
) -> None:
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB: many recv() calls, many partial send()s
    assert ref.client.set(b"big", big) is True
    assert ref.client.get(b"big") == big
    items = [b"item-%d" % i for i in range(100_000)]
    pipe = ref.client.pipeline(transaction=False)
    for start in range(0, len(items), 1000):
        pipe.rpush(b"list", *items[start : start + 1000])
    pipe.execute()
    assert ref.client.lrange(b"list", 0, -1) == items


def test_commands_of_a_client_that_hangs_up_without_reading_still_run(
    ref: ReferenceProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", ref.port)) as sock:
        sock.sendall(encode_command([b"INCR", b"counter"]) * 500)
    _wait_for(lambda: ref.client.get(b"counter") == b"500", what="500 INCRs")
    assert ref.client.ping() is True


def test_a_protocol_error_is_answered_then_the_connection_is_closed(
    ref: ReferenceProcess,
) -> None:
    reply = _raw(ref.port, b"*1\r\n$x\r\n", expect_bytes=1 << 16)
    assert reply.startswith(b"-ERR Protocol error") and reply.endswith(b"\r\n")
    assert ref.client.ping() is True  # the server itself carries on


def test_info_keyspace_and_scan_let_dump_keyspace_read_every_db(ref: ReferenceProcess) -> None:
    c = ref.client
    c.set(b"s", b"v", ex=10_000)
    c.sadd(b"set", b"a", b"b")
    db5 = ref.new_client(db=5)
    db5.hset(b"h", b"f", b"v")
    db5.close()
    before_ms = int(time.time() * 1000)
    dump = dump_keyspace(c)
    assert set(dump) == {0, 5}
    kind, value, expire_at = dump[0][b"s"]
    assert (kind, value) == ("string", b"v")
    assert expire_at is not None and abs(expire_at - (before_ms + 10_000_000)) < 5_000
    assert dump[0][b"set"] == ("set", {b"a", b"b"}, None)
    assert dump[5] == {b"h": ("hash", {b"f": b"v"}, None)}


# -- the forked rewrite child ----------------------------------------------------------------


def test_bgrewriteaof_forks_a_titled_child_that_exits_and_swaps_the_file(
    ref: ReferenceProcess,
) -> None:
    c = ref.client
    child = _stopped_rewrite_child(ref, keys=30_000)
    try:
        assert child.cmdline()[0] == f"redis-aof-rewrite 127.0.0.1:{ref.port}"
        assert child.ppid() == ref.pid
        assert _rewrite_in_progress(ref) == 1
        # Writes while the child runs go to the rewrite buffer too.
        assert c.set(b"during", b"rewrite") is True
        assert c.delete(b"bulk:0") == 1
    finally:
        child.send_signal(signal.SIGCONT)
    _wait_for(lambda: _rewrite_in_progress(ref) == 0, what="the rewrite to finish")
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    log = "\n".join(ref.log_lines())
    assert "Background AOF rewrite finished successfully" in log
    assert f"{child.pid}:C" in log  # the child logs under its own pid
    leftovers = [p.name for p in Path(ref.dir).iterdir() if p.name.startswith("temp-")]
    assert leftovers == []
    aof = (Path(ref.dir) / "appendonly.aof").read_bytes()
    assert aof.startswith(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n")
    ref.kill()
    ref.start()
    assert ref.client.get(b"during") == b"rewrite"
    assert ref.client.exists(b"bulk:0") == 0
    assert ref.client.dbsize() == 30_000


def test_a_killed_rewrite_child_is_reaped_and_its_temp_file_removed(
    ref: ReferenceProcess,
) -> None:
    child = _stopped_rewrite_child(ref, keys=20_000)
    child.send_signal(signal.SIGKILL)
    _wait_for(lambda: _rewrite_in_progress(ref) == 0, what="the parent to reap the child")
    assert "Background AOF rewrite terminated by signal 9" in "\n".join(ref.log_lines())
    assert [p.name for p in Path(ref.dir).iterdir() if p.name.startswith("temp-")] == []
    assert ref.client.info("persistence")["aof_last_bgrewrite_status"] == "err"
    assert ref.client.set(b"after", b"1") is True
    ref.kill()
    ref.start()
    assert ref.client.get(b"after") == b"1" and ref.client.dbsize() == 20_001


def test_a_sigkilled_parent_takes_its_rewrite_child_along(ref: ReferenceProcess) -> None:
    child = _stopped_rewrite_child(ref, keys=20_000)
    assert ref.pid is not None
    os.kill(ref.pid, signal.SIGKILL)  # not ref.kill(): that would kill the child itself
    gone, alive = psutil.wait_procs([child], timeout=5)
    assert alive == [] and gone == [child]
    ref.kill()  # reaps the parent's Popen


def test_sigkill_and_restart_recover_every_acknowledged_write(ref: ReferenceProcess) -> None:
    c = ref.client
    expected: dict[bytes, bytes] = {}
    for i in range(300):
        key, value = b"k%d" % (i % 50), b"v%d" % i
        assert c.set(key, value) is True
        expected[key] = value
        if i == 150:
            assert c.bgrewriteaof()
    ref.kill()
    ref.start()
    dump = dump_keyspace(ref.client)
    assert {k: v[1] for k, v in dump[0].items()} == expected


# -- lifecycle -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["no", "everysec"])
def test_shutdown_exits_zero_and_keeps_the_writes(tmp_path: Path, policy: str) -> None:
    proc = ReferenceProcess(tmp_path, appendfsync=policy)
    try:
        proc.start()
        assert proc.client.rpush(b"l", b"a", b"b") == 2
        proc.stop()
        assert proc.exit_code == 0
        assert "Redis is now ready to exit, bye bye..." in proc.log_lines()[-1]
        proc.start()
        assert proc.client.lrange(b"l", 0, -1) == [b"a", b"b"]
    finally:
        proc.kill()


def test_sigterm_shuts_down_cleanly(ref: ReferenceProcess) -> None:
    assert ref.client.set(b"a", b"b") is True
    assert ref.pid is not None and ref._popen is not None
    os.kill(ref.pid, signal.SIGTERM)
    assert ref._popen.wait(timeout=10) == 0
    log = "\n".join(ref.log_lines())
    assert "Received SIGTERM scheduling shutdown..." in log
    assert "ready to exit" in log


def test_garbage_in_the_aof_refuses_to_start_naming_the_offset(tmp_path: Path) -> None:
    good = encode_command([b"SET", b"a", b"1"])
    (tmp_path / "appendonly.aof").write_bytes(good + b"GARBAGE!\r\n" + good)
    proc = ReferenceProcess(tmp_path)
    with pytest.raises(ServerRefusedToStart) as err:
        proc.start()
    assert err.value.exit_code == 1
    assert any(f"offset {len(good)}" in line for line in err.value.log_tail)


def test_a_torn_tail_with_aof_load_truncated_no_refuses_to_start(tmp_path: Path) -> None:
    good = encode_command([b"SET", b"a", b"1"])
    (tmp_path / "appendonly.aof").write_bytes(good + good[:7])
    proc = ReferenceProcess(tmp_path, aof_load_truncated=False)
    with pytest.raises(ServerRefusedToStart) as err:
        proc.start()
    assert err.value.exit_code == 1
    assert any("Unexpected end of file" in line for line in err.value.log_tail)
    # With the default (yes) the tail is cut and the server starts.
    proc = ReferenceProcess(tmp_path)
    try:
        proc.start()
        assert proc.client.get(b"a") == b"1"
        assert (tmp_path / "appendonly.aof").stat().st_size == len(good)
    finally:
        proc.kill()


def test_unknown_option_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reference", "--dir", str(tmp_path), "--maxmemory", "1gb"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "--maxmemory" in lines[0], lines


def test_bad_option_values_are_usage_errors_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv, name in (
        (["--appendfsync", "sometimes"], "--appendfsync"),
        (["--aof-load-truncated", "maybe"], "--aof-load-truncated"),
        (["--bind", "0.0.0.0"], "--bind"),
        (["--defect", "no-such-defect"], "--defect"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            net_main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err, err


def test_a_missing_dir_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert net_main(["--dir", str(tmp_path / "nope"), "--port", "0"]) == 1
    assert "Can't chdir" in capsys.readouterr().out


def test_a_port_in_use_exits_1_with_redis_wording(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the start-up probe is refused
        port = taken.getsockname()[1]
        proc = ReferenceProcess(tmp_path, port=port)
        with pytest.raises(ServerRefusedToStart) as err:
            proc.start()
    assert err.value.exit_code == 1
    assert any("Address already in use" in line for line in err.value.log_tail)


# -- redis-cli (the Debian binary) -----------------------------------------------------------

needs_cli = pytest.mark.skipif(
    shutil.which(REDIS_CLI) is None, reason=f"{REDIS_CLI} is not installed"
)


def _cli(port: int, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], input=stdin, capture_output=True, timeout=30,
        check=True,
    )  # fmt: skip
    return done.stdout.decode()


@pytest.mark.real
@needs_cli
def test_redis_cli_can_ping_set_and_get(ref: ReferenceProcess) -> None:
    assert _cli(ref.port, "PING") == "PONG\n"
    assert _cli(ref.port, "SET", "greeting", "hello world") == "OK\n"
    assert _cli(ref.port, "GET", "greeting") == "hello world\n"
    assert "aof_enabled:1" in _cli(ref.port, "INFO", "persistence")


@pytest.mark.real
@needs_cli
def test_redis_cli_pipe_mode_gets_every_reply(ref: ReferenceProcess) -> None:
    commands = b"".join(encode_command([b"RPUSH", b"list", b"%d" % i]) for i in range(1000))
    out = _cli(ref.port, "--pipe", stdin=commands)
    assert "errors: 0, replies: 1000" in out
    assert ref.client.llen(b"list") == 1000


# -- in-process: the forked child and the clock mapping, without a socket ---------------------


def _forking_server(tmp_path: Path) -> Server:
    server = Server(OSFileSystem(tmp_path), Clock(start_ms=1_000_000), ServerConfig())
    server.rewrite_child_factory = ForkedRewriteChild
    server.start()
    return server


def _finish_rewrite(server: Server) -> None:
    """Let serverCron run the done handler (cron runs every 1000/hz virtual ms)."""
    server.clock.advance(1000 // server.config.hz)
    server.run_iteration()


def test_a_forked_child_writes_the_snapshot_of_fork_time_and_the_parent_swaps_it_in(
    tmp_path: Path,
) -> None:
    server = _forking_server(tmp_path)
    server.execute([b"RPUSH", b"l", *(b"%d" % i for i in range(100))])
    assert server.execute([b"BGREWRITEAOF"]) == "Background append only file rewriting started"
    child = server.rewrite_child
    assert isinstance(child, ForkedRewriteChild) and child.pid != os.getpid()
    assert server.info()["aof_rewrite_in_progress"] == 1
    server.execute([b"SET", b"after-fork", b"v"])  # only in the rewrite buffer
    assert child.run_to_completion() == "ok"
    assert child.bg_path == f"temp-rewriteaof-bg-{child.pid}.aof"
    _finish_rewrite(server)
    assert server.rewrite_child is None and server.info()["aof_rewrite_in_progress"] == 0
    aof = (tmp_path / "appendonly.aof").read_bytes()
    # The child's variadic RPUSH batches (64 items), then the parent's buffer.
    assert aof.count(b"RPUSH") == 2 and aof.endswith(encode_command([b"SET", b"after-fork", b"v"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonly.aof"]


def test_a_killed_forked_child_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    server = _forking_server(tmp_path)
    server.execute([b"SET", b"k", b"v"])
    server.execute([b"BGREWRITEAOF"])
    child = server.rewrite_child
    assert isinstance(child, ForkedRewriteChild)
    child.kill()
    assert child.exit_status == "killed" and not psutil.pid_exists(child.pid)
    with pytest.raises(RuntimeError, match="runs by itself"):
        child.step()
    _finish_rewrite(server)
    assert server.info()["aof_last_bgrewrite_status"] == "err"
    assert any("terminated by signal 9" in line for line in server.log)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonly.aof"]


def test_expiry_follows_real_time_and_cron_reclaims_keys(ref: ReferenceProcess) -> None:
    c = ref.client
    assert c.set(b"short", b"v", px=200) is True
    assert c.set(b"touched", b"v", px=200) is True
    assert c.set(b"long", b"v", ex=1000) is True
    time.sleep(0.45)  # past the expiry, and at least one serverCron (hz 10) later
    assert c.get(b"touched") is None
    assert c.dbsize() == 1  # the active expire cycle removed "short" without a read
    aof = (Path(ref.dir) / "appendonly.aof").read_bytes()
    assert encode_command([b"DEL", b"short"]) in aof and encode_command([b"DEL", b"touched"]) in aof


def test_server_shutdown_kills_the_child_flushes_and_stops(tmp_path: Path) -> None:
    server = Server(OSFileSystem(tmp_path), Clock(), ServerConfig())  # the in-process child
    server.start()
    server.execute([b"SET", b"k", b"v"])
    server.execute([b"BGREWRITEAOF"])
    child = server.rewrite_child
    assert child is not None
    child.step()  # the temp file exists now
    assert any(p.name.startswith("temp-") for p in tmp_path.iterdir())
    server.shutdown()
    assert server.stopped and server.stop_reason == "shutdown"
    assert child.exit_status == "killed" and server.rewrite_child is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonly.aof"]
    assert (tmp_path / "appendonly.aof").read_bytes().endswith(
        encode_command([b"SET", b"k", b"v"])
    )
    assert "Redis is now ready to exit, bye bye..." in server.log[-1]
    server.shutdown()  # idempotent


def test_a_failed_fork_ends_the_rewrite_with_an_error_and_the_server_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _forking_server(tmp_path)
    server.execute([b"SET", b"k", b"v"])

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(os, "fork", no_fork)
    server.execute([b"BGREWRITEAOF"])
    child = server.rewrite_child
    assert isinstance(child, ForkedRewriteChild)
    assert not child.alive and child.exit_status == "error" and not child.poll()
    _finish_rewrite(server)
    assert server.rewrite_child is None
    assert server.info()["aof_last_bgrewrite_status"] == "err"
    assert server.execute([b"GET", b"k"]) == b"v"
