"""harness.targets: real server processes (redis-server 6.0, 6.2, 7.0, 8.2, Valkey 9.1, any
binary or command line) on temp dirs, and the hygiene that ends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from harness.targets import (
    FORK_CHILD_TITLES,
    SERVER_VERSIONS,
    AofManifestEntry,
    AofManifestError,
    CommandProcess,
    RedisProcess,
    ServerBinary,
    ServerNotFound,
    ServerNotUsable,
    ServerRefusedToStart,
    ServerSpecError,
    _presets,
    _rundirs,
    aof_paths,
    dump_keyspace,
    dump_keyspace_at,
    find_aof_files,
    find_server,
    make_run_dir,
    parse_manifest,
    probe_server,
    remove_stale_run_dirs,
    resolve_server,
)


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    children = psutil.Process().children(recursive=True)
    assert children == [], f"processes left behind: {children}"


# -- fast: no server needed -----------------------------------------------------------------


def test_find_server_rejects_an_unknown_version_naming_the_field() -> None:
    with pytest.raises(
        ValueError, match=r"version must be one of 6\.0, 6\.2, 7\.0, 8\.2, valkey, got '5\.0'"
    ):
        find_server("5.0")


def test_a_missing_binary_is_one_line_naming_the_path_and_bootstrap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_presets, "_REPO_ROOT", tmp_path)
    with pytest.raises(ServerNotFound) as err:
        find_server("6.0")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / ".vendor") in message and "scripts/bootstrap.sh" in message


def test_a_binary_of_the_wrong_version_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=5.0.7 sha=0'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(_presets, "_candidate_path", lambda version: str(fake))
    with pytest.raises(ServerNotFound, match=r"is not redis-server 7\.0 .*v=5\.0\.7"):
        find_server("7.0")


def test_parse_manifest_reads_base_history_and_incr_lines() -> None:
    text = (
        "file appendonly.aof.2.base.rdb seq 2 type b\n"
        "file appendonly.aof.1.incr.aof seq 1 type h\n"
        'file "name with space.aof" seq 3 type i\n'
    )
    assert parse_manifest(text) == [
        AofManifestEntry("appendonly.aof.2.base.rdb", 2, "b"),
        AofManifestEntry("appendonly.aof.1.incr.aof", 1, "h"),
        AofManifestEntry("name with space.aof", 3, "i"),
    ]


def test_parse_manifest_reads_redis_8_lines_with_replication_offsets() -> None:
    text = (
        "file appendonly.aof.2.base.rdb seq 2 type b\n"
        "file appendonly.aof.2.incr.aof seq 2 type i startoffset 5 endoffset 6\n"
        "file appendonly.aof.3.incr.aof seq 3 type i startoffset 6\n"
    )
    assert [e.name for e in parse_manifest(text)] == [
        "appendonly.aof.2.base.rdb", "appendonly.aof.2.incr.aof", "appendonly.aof.3.incr.aof"]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("file a seq 1 type x", "type must be b, h or i"),
        ("file a seq one type i", "seq must be an integer"),
        ("file a seq 1", "expected 'file <name> seq <n> type <b|h|i>'"),
    ],
)
def test_parse_manifest_names_the_bad_line(line: str, complaint: str) -> None:
    with pytest.raises(AofManifestError, match="manifest line 2: " + complaint.replace("|", r"\|")):
        parse_manifest("file ok seq 1 type b\n" + line + "\n")


def test_redis_process_rejects_a_bad_policy_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appendfsync must be one of always, everysec, no"):
        RedisProcess("/usr/bin/redis-server", tmp_path, appendfsync="sometimes")


# -- real servers ---------------------------------------------------------------------------


def _binary(version: str) -> ServerBinary:
    try:
        return find_server(version)
    except ServerNotFound as exc:  # pragma: no cover - machines without bootstrap
        pytest.skip(str(exc))


def _write_all_types(client: Any) -> dict[int, dict[bytes, tuple[str, Any, int | None]]]:
    expected: dict[bytes, tuple[str, Any, int | None]] = {}
    for i in range(50):
        assert client.set(b"s%d" % i, b"%d" % (i * i))
        expected[b"s%d" % i] = ("string", b"%d" % (i * i), None)
    assert client.rpush(b"l", b"1", b"2", b"3") == 3
    assert client.lpop(b"l") == b"1"
    assert client.sadd(b"st", b"a", b"b", b"c") == 3
    assert client.srem(b"st", b"b") == 1
    assert client.zadd(b"z", {b"a": 1.0, b"b": 2.5}) == 2
    assert client.hset(b"h", mapping={b"f": b"v", b"g": b"w"}) == 2
    assert client.hdel(b"h", b"g") == 1
    assert client.incrby(b"n", 7) == 7
    expire_at_ms = int(time.time() * 1000) + 3_600_000
    assert client.pexpireat(b"n", expire_at_ms)
    expected.update(
        {
            b"l": ("list", [b"2", b"3"], None),
            b"st": ("set", {b"a", b"c"}, None),
            b"z": ("zset", {b"a": 1.0, b"b": 2.5}, None),
            b"h": ("hash", {b"f": b"v"}, None),
            b"n": ("string", b"7", expire_at_ms),
        }
    )
    where = client.connection_pool.connection_kwargs
    db3 = redis.Redis(host=where["host"], port=where["port"], db=3)
    assert db3.set(b"in-db-3", b"x")
    db3.close()
    return {0: expected, 3: {b"in-db-3": ("string", b"x", None)}}


def _same_dump(actual: dict[int, Any], expected: dict[int, Any]) -> None:
    """Equal, except absolute expire times, which may differ by the clock skew of a PTTL."""
    assert actual.keys() == expected.keys()
    for db, keys in expected.items():
        assert actual[db].keys() == keys.keys()
        for key, (kind, value, expire_at) in keys.items():
            got_kind, got_value, got_expire = actual[db][key]
            assert (got_kind, got_value) == (kind, value), key
            if expire_at is None:
                assert got_expire is None, key
            else:
                assert got_expire is not None and abs(got_expire - expire_at) < 2000, key


@pytest.mark.real
@pytest.mark.parametrize("version", SERVER_VERSIONS)
def test_sigkill_then_restart_keeps_every_acknowledged_write_under_always(
    tmp_path: Path, version: str
) -> None:
    binary = _binary(version)
    assert binary.full_version.startswith(("9.1" if version == "valkey" else version) + ".")
    server = RedisProcess(binary, tmp_path, appendfsync="always").start()
    try:
        expected = _write_all_types(server.client)
        _same_dump(dump_keyspace(server.client), expected)
    finally:
        server.kill()
    assert server.exit_code == -signal.SIGKILL
    files = aof_paths(tmp_path, multipart=binary.multipart_aof)
    assert files and all(f.stat().st_size > 0 for f in files)
    with RedisProcess(binary, tmp_path, appendfsync="always") as again:
        _same_dump(dump_keyspace(again.client), expected)
    assert again.exit_code == 0  # SHUTDOWN NOSAVE


@pytest.mark.real
@pytest.mark.parametrize("version", SERVER_VERSIONS)
def test_killing_during_bgrewriteaof_leaves_no_rewrite_child_alive(
    tmp_path: Path, version: str
) -> None:
    binary = _binary(version)
    server = RedisProcess(binary, tmp_path, extra_config={"rdb-key-save-delay": "2000"}).start()
    try:
        pipe = server.client.pipeline(transaction=False)
        for i in range(500):
            pipe.set(b"k%d" % i, b"v")
        pipe.execute()
        server.client.bgrewriteaof()
        children: list[psutil.Process] = []
        for _ in range(1000):
            children = server.fork_children()
            if children:
                break
            time.sleep(0.001)
        assert len(children) == 1
        assert children[0].cmdline()[0].startswith(FORK_CHILD_TITLES)
        child_pid = children[0].pid
    finally:
        server.kill()
    assert not psutil.pid_exists(child_pid) or (
        psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.real
@pytest.mark.parametrize("version", SERVER_VERSIONS)
def test_a_garbage_aof_is_refused_with_the_log_line_not_a_timeout(
    tmp_path: Path, version: str
) -> None:
    binary = _binary(version)
    (tmp_path / "appendonly.aof").write_bytes(
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" + b"this is not RESP\r\n" * 3
    )
    # A refusal, not a start-up timeout (that raises another error): the exit code and the log.
    with pytest.raises(ServerRefusedToStart) as err:
        RedisProcess(binary, tmp_path, start_timeout_s=30).start()
    assert err.value.exit_code == 1
    assert any("Bad file format" in line for line in err.value.log_tail), err.value.log_tail
    assert "Bad file format" in str(err.value)


@pytest.mark.real
def test_dump_keyspace_omits_empty_dbs_and_reads_expiry_from_a_supplied_now(
    tmp_path: Path,
) -> None:
    with RedisProcess(_binary("7.0"), tmp_path) as server:
        assert dump_keyspace(server.client) == {}
        server.client.set(b"k", b"v", px=60_000)
        dump = dump_keyspace(server.client, now_ms=1_000)
        kind, value, expire_at = dump[0][b"k"]
        assert (kind, value) == ("string", b"v")
        assert expire_at is not None and 1_000 + 59_000 < expire_at <= 1_000 + 60_000


_STARTER = """
import sys, time
from harness.targets import RedisProcess, find_server
server = RedisProcess(find_server("7.0"), sys.argv[1],
                      extra_config={"rdb-key-save-delay": "100000"}).start()
pipe = server.client.pipeline(transaction=False)
for i in range(200):
    pipe.set(b"k%d" % i, b"v")
pipe.execute()
server.client.bgrewriteaof()
children = []
while not children:
    children = server.fork_children()
    time.sleep(0.002)
print(server.pid, children[0].pid, flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)
time.sleep(60)
"""


def _dead_or_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_dead(pids: list[int], timeout_s: float) -> list[int]:
    """The PIDs of `pids` still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _dead_or_zombie(pid)]
        if not alive:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if not _dead_or_zombie(pid)]


@pytest.mark.real
@pytest.mark.parametrize("how", ["exit", "SIGTERM", "SIGKILL"])
def test_a_server_and_its_rewrite_child_do_not_outlive_the_process_that_started_them(
    tmp_path: Path, how: str
) -> None:
    _binary("7.0")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(tmp_path), how],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        pids = [int(word) for word in proc.stdout.readline().split()]
        assert len(pids) == 2, "the starter printed no server and rewrite child PIDs"
        if how != "exit":
            proc.send_signal(getattr(signal, how))
        proc.wait(timeout=30)
        expected = {"exit": 0, "SIGTERM": -signal.SIGTERM, "SIGKILL": -signal.SIGKILL}[how]
        assert proc.returncode == expected
        # SIGKILL: no handler ran in the starter; its reaper ended both.
        left = _wait_dead(pids, timeout_s=5.0)
        assert left == [], f"{left} outlived the process that started them ({how})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:  # ours (started by our child): never leak them, even on failure
            if not _dead_or_zombie(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_reaper_is_not_a_child_of_the_harness_and_ends_with_it(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from harness.targets import _reaper\n"
        "_reaper._REAPER.watch(999999)\n"  # a group that does not exist: killing it is a no-op
        "import psutil\n"
        "kids = psutil.Process().children(recursive=True)\n"
        "print(len(kids), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60, check=True)
    assert out.stdout.split() == ["0"]


# -- resolving what the user asked for -----------------------------------------------------


def test_a_preset_resolves_to_its_binary_and_version() -> None:
    _binary("7.0")
    spec = resolve_server("7.0")
    assert (spec.kind, spec.label, spec.name) == ("preset", "7.0", "redis")
    assert spec.version.startswith("7.0.") and spec.multipart_aof is True


@pytest.mark.parametrize(
    ("server", "complaint"),
    [
        ("9.9", "server must be one of 6.0, 6.2, 7.0, 8.2, valkey, reference or a path"),
        ("/nonexistent/redis-server", "no such file"),
        ("/", "is a directory"),
    ],
)
def test_a_server_that_is_not_a_preset_or_an_executable_is_one_line(
    server: str, complaint: str
) -> None:
    with pytest.raises((ServerSpecError, ServerNotFound)) as err:
        resolve_server(server)
    assert complaint in str(err.value) and "\n" not in str(err.value)


def test_a_non_executable_path_says_so(tmp_path: Path) -> None:
    script = tmp_path / "my-server"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ServerNotFound, match=r"my-server: not executable"):
        resolve_server(str(script))


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("/usr/bin/redis-server --dir {dir}", "no {port} placeholder"),
        ("/usr/bin/redis-server --port {port} --x {nope}", "unknown placeholder {nope}"),
        ("/usr/bin/redis-server --port {port} --x {extra}y", "{extra} must be a word of its own"),
        ("/usr/bin/redis-server --port {port:>5}", "without a format"),
        ("/usr/bin/redis-server --port {port", "expected '}'"),
        ("'/usr/bin/redis-server --port {port}", "cannot split it into words"),
        ("", "empty"),
        ("{dir}/server --port {port}", "the first word must be the program"),
        ("no-such-program-anywhere --port {port}", "is not on PATH"),
    ],
)
def test_a_bad_server_template_is_one_line_naming_what_is_wrong(
    template: str, complaint: str
) -> None:
    with pytest.raises((ServerSpecError, ServerNotFound)) as err:
        resolve_server(server_cmd=template)
    assert complaint in str(err.value) and "\n" not in str(err.value)


def test_server_and_server_cmd_exclude_each_other() -> None:
    with pytest.raises(ServerSpecError, match="exactly one of"):
        resolve_server("7.0", server_cmd="x --port {port}")
    with pytest.raises(ServerSpecError, match="exactly one of"):
        resolve_server()


def test_a_template_fills_every_placeholder_and_expands_extra(tmp_path: Path) -> None:
    process = CommandProcess(
        "/bin/echo --port {port} --dir {dir} --x {appendfsync} {bind} {logfile} "
        "{aof_load_truncated} {extra} '{{literal}}'",
        tmp_path, appendfsync="everysec", aof_load_truncated=False,
        extra_config={"a-b": "1", "c": "two words"}, log_path=tmp_path / "log",
    )
    process.port = 1234
    assert process._command() == [
        "/bin/echo", "--port", "1234", "--dir", str(tmp_path), "--x", "everysec", "127.0.0.1",
        str(tmp_path / "log"), "no", "--a-b", "1", "--c", "two words", "{literal}",
    ]


@pytest.mark.real
@pytest.mark.parametrize("binary", ["/bin/true", "/bin/sleep"])
def test_a_binary_that_is_not_a_server_is_refused_in_one_line(binary: str) -> None:
    with pytest.raises(ServerNotUsable) as err:
        probe_server(resolve_server(binary), timeout_s=5)
    message = str(err.value)
    assert "\n" not in message and binary in message and "during start-up" in message
    assert "--server-cmd" in message


_NOT_RESP = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept(); c.recv(100)\n"
    "    c.sendall(b'HTTP/1.0 400 Bad Request\\r\\n\\r\\n'); c.close()\n"
)


@pytest.mark.real
def test_a_server_that_does_not_speak_resp_is_refused_in_one_line(tmp_path: Path) -> None:
    script = tmp_path / "http.py"
    script.write_text(_NOT_RESP)
    spec = resolve_server(server_cmd=f"{sys.executable} {script} {{port}}")
    with pytest.raises(ServerNotUsable) as err:
        probe_server(spec, timeout_s=10)
    message = str(err.value)
    assert "\n" not in message and "does not speak RESP" in message


@pytest.mark.real
def test_a_server_that_never_listens_times_out_in_one_line() -> None:
    spec = resolve_server(server_cmd="/bin/sh -c 'sleep 30' {port}")
    with pytest.raises(ServerNotUsable) as err:
        probe_server(spec, timeout_s=0.5)
    assert "did not answer PING" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.real
@pytest.mark.parametrize("version", ["7.0", "valkey"])
def test_probe_reads_name_and_version_from_version_or_info(version: str) -> None:
    binary = _binary(version)
    by_preset = probe_server(resolve_server(version))
    template = f"{binary.path} --port {{port}} --dir {{dir}} --appendonly yes --save ''"
    by_info = probe_server(resolve_server(server_cmd=template))  # INFO only: no --version
    name = "valkey" if version == "valkey" else "redis"
    assert (by_preset.name, by_preset.version) == (name, binary.full_version)
    assert (by_info.name, by_info.version) == (name, binary.full_version)


@pytest.mark.real
def test_a_template_server_logs_to_the_log_path_and_runs_in_its_directory(
    tmp_path: Path,
) -> None:
    binary = _binary("valkey")
    data = tmp_path / "data"
    data.mkdir()
    process = resolve_server(
        server_cmd=f"{binary.path} --port {{port}} --appendonly yes --save '' {{extra}}"
    ).process(data, log_path=tmp_path / "log", extra_config={"appendfsync": "always"})
    process.start()
    try:
        assert process.client.set(b"k", b"v")
        assert process.client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        process.kill()
    assert any("Ready to accept connections" in line for line in process.log_lines())
    files = find_aof_files(data)  # no --dir given: its working directory, the data dir
    assert [f.name for f in files] == ["appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof"]
    assert [f.name for f in find_aof_files(data, glob="*.incr.aof")] == [
        "appendonly.aof.1.incr.aof"
    ]


@pytest.mark.real
@pytest.mark.parametrize("raw", [True, False])
def test_a_slow_dump_reads_each_expiry_at_the_time_its_ttl_was_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: bool
) -> None:
    # A busy machine: 3 s pass between the call and the TTL's answer. The expiry must not come
    # out 3 s early (the key's absolute expiry does not move while we read it).
    from harness.targets import _dump

    with RedisProcess(_binary("7.0"), tmp_path) as server:
        server.client.set(b"k", b"v", px=60_000)
        ticks = iter([100.0])
        monkeypatch.setattr(_dump.time, "monotonic", lambda: next(ticks, 103.0))
        dump = (dump_keyspace_at(server.port, now_ms=1_000) if raw
                else dump_keyspace(server.client, now_ms=1_000))
        monkeypatch.undo()
    _, _, expire_at = dump[0][b"k"]
    assert expire_at is not None and 1_000 + 3_000 + 59_000 < expire_at <= 1_000 + 3_000 + 60_000


@pytest.mark.real
@pytest.mark.parametrize("version", ["7.0", "valkey"])
def test_the_raw_dump_equals_the_client_dump(tmp_path: Path, version: str) -> None:
    with RedisProcess(_binary(version), tmp_path) as server:
        expected = _write_all_types(server.client)
        _same_dump(dump_keyspace_at(server.port), expected)
        _same_dump(dump_keyspace(server.client), expected)


# -- scratch directories --------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_run_dirs_of_dead_owners_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    mine = make_run_dir("verify", base=tmp_path)
    assert Path(mine).name.startswith(f"aofcrash-verify-{os.getpid()}-")
    dead = make_run_dir("verify", base=tmp_path)
    (Path(dead) / "data").mkdir()
    (Path(dead) / ".aofcrash-owner").write_text(f"{_dead_pid()} 1.00\n")
    reused = make_run_dir("probe", base=tmp_path)  # a live PID, but not the same process
    (Path(reused) / ".aofcrash-owner").write_text(f"{os.getppid()} 1.00\n")
    unmarked = tmp_path / "aofcrash-verify-1-abc"  # not made by make_run_dir: never touched
    unmarked.mkdir()
    other = tmp_path / "something-else"
    other.mkdir()
    removed = remove_stale_run_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert os.path.isdir(mine) and unmarked.is_dir() and other.is_dir()
    assert not os.path.exists(dead) and not os.path.exists(reused)


def test_run_dirs_go_where_aofcrash_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOFCRASH_TMPDIR", str(tmp_path))
    assert _rundirs.run_dir_base() == str(tmp_path)
    assert Path(make_run_dir("probe")).parent == tmp_path


def test_a_bad_run_dir_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        make_run_dir("../x", base=tmp_path)


@pytest.mark.real
def test_a_fuse_mount_left_in_a_dead_runs_dir_is_unmounted_and_the_dir_removed(
    tmp_path: Path,
) -> None:
    from faults import SimDisk
    from faults.fuse import FuseMount, fuse_unavailable_reason, is_mounted

    reason = fuse_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    dead = Path(make_run_dir("verify", base=tmp_path))
    (dead / ".aofcrash-owner").write_text(f"{_dead_pid()} 1.00\n")
    (dead / "data").mkdir()
    mount = FuseMount(SimDisk(), dead / "data").start()  # stands in for a dead run's mount
    try:
        assert is_mounted(dead / "data")
        assert remove_stale_run_dirs(tmp_path) == [str(dead)]
        assert not is_mounted(dead / "data") and not dead.exists()
    finally:
        mount.stop()  # ends the loop thread and the watchdog; the mount is already gone
