"""harness.targets: real redis-server processes (6.0, 6.2, 7.0) on temp dirs."""

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
    SERVER_VERSIONS,
    AofManifestEntry,
    AofManifestError,
    RedisProcess,
    ServerBinary,
    ServerNotFound,
    ServerRefusedToStart,
    _servers,
    aof_paths,
    dump_keyspace,
    find_server,
    parse_manifest,
)


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    children = psutil.Process().children(recursive=True)
    assert children == [], f"processes left behind: {children}"


# -- fast: no server needed -----------------------------------------------------------------


def test_find_server_rejects_an_unknown_version_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"version must be one of 6\.0, 6\.2, 7\.0, got '5\.0'"):
        find_server("5.0")


def test_a_missing_binary_is_one_line_naming_the_path_and_bootstrap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_servers, "_REPO_ROOT", tmp_path)
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
    monkeypatch.setattr(_servers, "_candidate_path", lambda version: str(fake))
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
    assert binary.full_version.startswith(version + ".")
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
        assert children[0].cmdline()[0].startswith("redis-aof-rewrite")
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
    started = time.monotonic()
    with pytest.raises(ServerRefusedToStart) as err:
        RedisProcess(binary, tmp_path, start_timeout_s=30).start()
    assert time.monotonic() - started < 10
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
import os, signal, sys, time
from harness.targets import RedisProcess, find_server
server = RedisProcess(find_server("7.0"), sys.argv[1]).start()
print(server.pid, flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)
time.sleep(60)
"""


@pytest.mark.real
@pytest.mark.parametrize("how", ["exit", "SIGTERM"])
def test_a_server_does_not_outlive_the_process_that_started_it(tmp_path: Path, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(tmp_path), how],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        server_pid = int(proc.stdout.readline())
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (0 if how == "exit" else -signal.SIGTERM)
    for _ in range(200):
        if not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == "zombie":
            break
        time.sleep(0.01)
    else:
        os.kill(server_pid, signal.SIGKILL)  # ours (started by our child): do not leak it
        pytest.fail(f"redis-server {server_pid} outlived its parent")
