"""Differential check: the reference vs redis-server 6.0 / 6.2 / 7.0 on one scripted workload.

The same workload (every command type of the reference's command set) runs against
``python -m reference`` and against a real redis-server with ``aof-use-rdb-preamble no``. Then:

1. after a crash (SIGKILL, ``appendfsync always``) and a restart, both keyspaces equal the live
   ones and each other;
2. cross-load: the reference (in-process ``Server`` on a copy) loads the AOF Redis wrote, and
   Redis loads the reference's AOF (copied into a fresh dir as ``appendonly.aof``; 7.0 migrates it
   into its multi-part layout); all four keyspaces are equal;
3. the same after BGREWRITEAOF on both sides (the rewritten files cross-load too).

Relative expiries are compared with a tolerance (the runs are not simultaneous); absolute ones
(EXPIREAT/PEXPIREAT) must match exactly up to the same tolerance. Redis 6.0 does not know
``SET ... PXAT``, which the safe profile writes, so against 6.0 the reference runs with the
``set-expiry-split`` record format (SET + PEXPIREAT, what 6.0 writes itself); the last test
pins down what 6.0 does with a PXAT record (it drops the key silently).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from faults import Clock, OSFileSystem
from harness.targets import (
    Keyspace,
    RedisProcess,
    ReferenceProcess,
    ServerBinary,
    ServerNotFound,
    aof_paths,
    dump_keyspace,
    find_server,
)
from reference import Server, ServerConfig, encode_command
from reference.defects import SET_EXPIRY_SPLIT

EXPIRY_TOLERANCE_MS = 10_000
LONG_S = 1_000_000  # long TTLs: nothing expires during a test
REDIS_OPTIONS = {"aof-use-rdb-preamble": "no", "auto-aof-rewrite-percentage": "0"}


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    children = psutil.Process().children(recursive=True)
    assert children == [], f"processes left behind: {children}"


def _binary(version: str) -> ServerBinary:
    try:
        return find_server(version)
    except ServerNotFound as exc:
        pytest.skip(str(exc))


# -- the workload ------------------------------------------------------------------------------


def workload(now_ms: int) -> list[list[bytes]]:
    """Every write command of the reference, over several dbs, with MULTI/EXEC and FLUSHDB."""
    at_s = b"%d" % (now_ms // 1000 + LONG_S)
    at_ms = b"%d" % (now_ms + LONG_S * 1000)
    ex, px = b"%d" % LONG_S, b"%d" % (LONG_S * 1000)
    cmds: list[list[bytes]] = [
        [b"FLUSHALL"],
        [b"SET", b"s1", b"hello"],
        [b"SET", b"s2", b"world", b"EX", ex],
        [b"SET", b"s3", b"x", b"PX", px],
        [b"SET", b"s4", b"first", b"NX"],
        [b"SET", b"s4", b"ignored", b"NX"],
        [b"SET", b"s1", b"replaced", b"XX"],
        [b"SET", b"absent", b"ignored", b"XX"],
        [b"SETEX", b"s5", ex, b"v5"],
        [b"PSETEX", b"s6", px, b"v6"],
        [b"SET", b"bin", b"\x00\r\n\xff binary"],
        [b"INCR", b"c1"],
        [b"INCRBY", b"c1", b"41"],
        [b"DECR", b"c2"],
        [b"DECRBY", b"c2", b"10"],
        [b"INCRBY", b"c3", b"-5"],
        [b"APPEND", b"a1", b"abc"],
        [b"APPEND", b"a1", b"def"],
        [b"SET", b"e1", b"v"],
        [b"EXPIRE", b"e1", ex],
        [b"SET", b"e2", b"v"],
        [b"PEXPIRE", b"e2", px],
        [b"SET", b"e3", b"v"],
        [b"EXPIREAT", b"e3", at_s],
        [b"SET", b"e4", b"v"],
        [b"PEXPIREAT", b"e4", at_ms],
        [b"SET", b"e5", b"v", b"EX", ex],
        [b"PERSIST", b"e5"],
        [b"LPUSH", b"l1", b"a", b"b", b"c"],
        [b"RPUSH", b"l1", b"d", b"e"],
        [b"LPOP", b"l1"],
        [b"RPOP", b"l1"],
        [b"RPUSH", b"l2", *(b"item%d" % i for i in range(150))],  # > 64: batched in rewrites
        [b"SADD", b"set1", b"a", b"b", b"c", b"d"],
        [b"SREM", b"set1", b"b"],
        [b"SADD", b"set2", *(b"m%d" % i for i in range(130))],
        [b"ZADD", b"z1", b"1", b"a", b"2.5", b"b", b"-3", b"c", b"inf", b"d"],
        [b"ZREM", b"z1", b"a"],
        [b"ZADD", b"z1", b"0.1", b"e"],
        [b"ZADD", b"z2", *(x for i in range(100) for x in (b"%d" % i, b"zm%d" % i))],
        [b"HSET", b"h1", b"f1", b"v1", b"f2", b"v2", b"f3", b"v3"],
        [b"HDEL", b"h1", b"f2"],
        [b"HMSET", b"h2", b"a", b"1", b"b", b"2"],
        [b"HSET", b"h3", *(x for i in range(100) for x in (b"f%d" % i, b"v%d" % i))],
        [b"SET", b"gone", b"v"],
        [b"DEL", b"gone", b"s3", b"nothing"],
        [b"SELECT", b"1"],
        [b"SET", b"db1key", b"v"],
        [b"LPUSH", b"db1list", b"x", b"y"],
        [b"EXPIRE", b"db1key", ex],
        [b"SELECT", b"2"],
        [b"SET", b"tmp", b"v"],
        [b"SADD", b"tmpset", b"v"],
        [b"FLUSHDB"],
        [b"SET", b"after-flush", b"v"],
        [b"SELECT", b"15"],
        [b"HSET", b"h", b"f", b"v"],
        [b"SELECT", b"0"],
        [b"MULTI"],
        [b"SET", b"m1", b"v"],
        [b"INCR", b"m2"],
        [b"RPUSH", b"m3", b"x"],
        [b"SELECT", b"3"],
        [b"SADD", b"m4", b"in-db3"],
        [b"EXPIRE", b"m4", ex],
        [b"EXEC"],
        [b"SELECT", b"0"],
        [b"MULTI"],
        [b"SET", b"discarded", b"v"],
        [b"DISCARD"],
    ]
    return cmds


def tail_workload() -> list[list[bytes]]:
    """Writes after a rewrite: they land after the rewritten base."""
    return [
        [b"SELECT", b"4"],
        [b"SET", b"after-rewrite", b"v"],
        [b"SELECT", b"0"],
        [b"RPUSH", b"l1", b"tail"],
        [b"DEL", b"h2"],
        [b"ZADD", b"z1", b"7", b"tail"],
    ]


def run(port: int, commands: list[list[bytes]]) -> list[object]:
    """One connection, so SELECT and MULTI apply to what follows; returns every reply."""
    conn = redis.Connection(host="127.0.0.1", port=port, socket_timeout=30)
    replies: list[object] = []
    try:
        for argv in commands:
            conn.send_command(*argv)
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
    finally:
        conn.disconnect()
    return replies


# -- comparing keyspaces -----------------------------------------------------------------------


def differences(a: Keyspace, b: Keyspace, *, tolerance_ms: int = EXPIRY_TOLERANCE_MS) -> list[str]:
    """Key-level differences (expiries compared within `tolerance_ms`); [] when equal."""
    out: list[str] = []
    for db in sorted(set(a) | set(b)):
        da, db_ = a.get(db, {}), b.get(db, {})
        for key in sorted(set(da) | set(db_)):
            if key not in da or key not in db_:
                out.append(f"db{db} {key!r}: only in {'first' if key in da else 'second'}")
                continue
            (ta, va, xa), (tb, vb, xb) = da[key], db_[key]
            if ta != tb or va != vb:
                out.append(f"db{db} {key!r}: {ta} {va!r} != {tb} {vb!r}")
            elif (xa is None) != (xb is None) or (
                xa is not None and xb is not None and abs(xa - xb) > tolerance_ms
            ):
                out.append(f"db{db} {key!r}: expiry {xa} != {xb}")
    return out


def assert_same(named: dict[str, Keyspace]) -> None:
    (first_name, first), *rest = named.items()
    assert first, f"{first_name}: empty keyspace"
    problems = [
        f"{first_name} vs {name}: {d}" for name, ks in rest for d in differences(first, ks)
    ]
    assert problems == [], "\n".join(problems)


# -- servers -----------------------------------------------------------------------------------


def wait_rewrite_done(client: redis.Redis) -> None:
    deadline = time.monotonic() + 30
    while True:
        info = client.info("persistence")
        if not int(info["aof_rewrite_in_progress"]) and not int(
            info.get("aof_rewrite_scheduled", 0)
        ):
            assert info["aof_last_bgrewrite_status"] == "ok"
            return
        assert time.monotonic() < deadline, "BGREWRITEAOF did not finish in 30 s"
        time.sleep(0.01)


def single_aof(proc: RedisProcess, binary: ServerBinary | None) -> bytes:
    """The AOF bytes a server would load: 7.0's base + incr files concatenated (all RESP here)."""
    multipart = binary is not None and binary.multipart_aof
    paths = aof_paths(proc.dir, multipart=multipart)
    assert paths, f"no AOF in {proc.dir}"
    return b"".join(p.read_bytes() for p in paths)


def load_in_reference(tmp: Path, aof: bytes) -> Keyspace:
    """The in-process reference (OSFileSystem on a copy) loads an AOF; its keyspace."""
    tmp.mkdir()
    (tmp / "appendonly.aof").write_bytes(aof)
    server = Server(OSFileSystem(tmp), Clock(start_ms=int(time.time() * 1000)), ServerConfig())
    server.start()
    assert not any("Truncating" in line for line in server.log), server.log
    return server.dump()


def load_in_redis(tmp: Path, binary: ServerBinary, aof: bytes) -> Keyspace:
    """A fresh redis-server loads `aof` as a legacy ``appendonly.aof``; its keyspace."""
    tmp.mkdir()
    (tmp / "appendonly.aof").write_bytes(aof)
    with RedisProcess(binary, tmp, extra_config=REDIS_OPTIONS) as proc:
        dump = dump_keyspace(proc.client)
        log = "\n".join(proc.log_lines())
    assert "Bad file format" not in log and "Truncating" not in log, log
    if binary.multipart_aof:
        assert (tmp / "appendonlydir").is_dir()  # 7.0 migrated the legacy file
    return dump


# -- the tests ---------------------------------------------------------------------------------


def _reference(tmp: Path, version: str) -> ReferenceProcess:
    defects = (SET_EXPIRY_SPLIT,) if version == "6.0" else ()
    return ReferenceProcess(tmp, appendfsync="always", defects=defects)


@pytest.mark.real
@pytest.mark.parametrize("version", ["6.0", "6.2", "7.0"])
def test_same_workload_same_keyspace_after_restart_and_cross_loading(
    tmp_path: Path, version: str
) -> None:
    binary = _binary(version)
    now_ms = int(time.time() * 1000)
    commands = workload(now_ms)
    ref_dir, redis_dir = tmp_path / "ref", tmp_path / "redis"
    ref_dir.mkdir()
    redis_dir.mkdir()
    ref = _reference(ref_dir, version)
    real = RedisProcess(binary, redis_dir, appendfsync="always", extra_config=REDIS_OPTIONS)
    try:
        ref.start()
        real.start()
        ref_replies = run(ref.port, commands)
        real_replies = run(real.port, commands)
        # Same replies, error texts included (only the class and message are compared).
        assert [repr(r) for r in ref_replies] == [repr(r) for r in real_replies]
        live_ref, live_real = dump_keyspace(ref.client), dump_keyspace(real.client)
        ref.kill()
        real.kill()
        ref.start()
        real.start()
        keyspaces = {
            "reference live": live_ref,
            f"redis {version} live": live_real,
            "reference after SIGKILL + restart": dump_keyspace(ref.client),
            f"redis {version} after SIGKILL + restart": dump_keyspace(real.client),
        }
        ref_aof = (ref_dir / "appendonly.aof").read_bytes()
        real_aof = single_aof(real, binary)
    finally:
        ref.kill()
        real.kill()
    keyspaces["reference loading redis's AOF"] = load_in_reference(tmp_path / "x1", real_aof)
    keyspaces[f"redis {version} loading the reference's AOF"] = load_in_redis(
        tmp_path / "x2", binary, ref_aof
    )
    assert_same(keyspaces)
    # And it is the keyspace the workload means (the in-process reference on its own).
    server = Server(OSFileSystem(_fresh(tmp_path / "x3")), Clock(start_ms=now_ms))
    server.start()
    for argv in commands:
        server.execute(argv)
    assert_same({"in-process reference": server.dump(), **keyspaces})


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.real
@pytest.mark.parametrize("version", ["6.0", "6.2", "7.0"])
def test_rewritten_aofs_cross_load(tmp_path: Path, version: str) -> None:
    binary = _binary(version)
    now_ms = int(time.time() * 1000)
    ref_dir, redis_dir = _fresh(tmp_path / "ref"), _fresh(tmp_path / "redis")
    ref = _reference(ref_dir, version)
    real = RedisProcess(binary, redis_dir, appendfsync="always", extra_config=REDIS_OPTIONS)
    try:
        ref.start()
        real.start()
        for proc in (ref, real):
            run(proc.port, workload(now_ms))
            assert proc.client.bgrewriteaof()
            wait_rewrite_done(proc.client)
            run(proc.port, tail_workload())
        ref_aof = (ref_dir / "appendonly.aof").read_bytes()
        real_aof = single_aof(real, binary)
        # The rewrite really happened: SELECT 0 + variadic records, not the original commands.
        assert b"LPOP" not in ref_aof and b"LPOP" not in real_aof
        live_ref, live_real = dump_keyspace(ref.client), dump_keyspace(real.client)
        ref.kill()
        real.kill()
        ref.start()
        real.start()
        keyspaces = {
            "reference live": live_ref,
            f"redis {version} live": live_real,
            "reference restarted": dump_keyspace(ref.client),
            f"redis {version} restarted": dump_keyspace(real.client),
        }
    finally:
        ref.kill()
        real.kill()
    keyspaces["reference loading redis's rewritten AOF"] = load_in_reference(
        tmp_path / "x1", real_aof
    )
    keyspaces[f"redis {version} loading the reference's rewritten AOF"] = load_in_redis(
        tmp_path / "x2", binary, ref_aof
    )
    assert keyspaces["reference live"][4] == {b"after-rewrite": ("string", b"v", None)}
    assert_same(keyspaces)


@pytest.mark.real
def test_redis_6_0_silently_drops_the_safe_profiles_set_pxat_records(tmp_path: Path) -> None:
    """A known incompatibility: SET k v PXAT t (Redis >= 6.2) is a syntax error for 6.0's
    loader, which ignores the error reply: the key is missing and 6.0 starts anyway."""
    binary = _binary("6.0")
    at = b"%d" % (int(time.time() * 1000) + LONG_S * 1000)
    aof = encode_command([b"SELECT", b"0"]) + encode_command(
        [b"SET", b"with-pxat", b"v", b"PXAT", at]
    ) + encode_command([b"SET", b"plain", b"v"])
    assert load_in_reference(tmp_path / "ref", aof)[0] == {
        b"with-pxat": ("string", b"v", int(at)),
        b"plain": ("string", b"v", None),
    }
    assert load_in_redis(tmp_path / "redis", binary, aof) == {
        0: {b"plain": ("string", b"v", None)}
    }


def test_differences_reports_values_and_expiries_beyond_the_tolerance() -> None:
    a: Keyspace = {0: {b"k": ("string", b"v", 1_000_000), b"x": ("list", [b"1"], None)}}
    assert differences(a, a) == []
    close: Keyspace = {0: {b"k": ("string", b"v", 1_000_500), b"x": ("list", [b"1"], None)}}
    assert differences(a, close) == []
    far: Keyspace = {0: {b"k": ("string", b"v", 1_000_000 + EXPIRY_TOLERANCE_MS + 1)}}
    assert differences(a, far) == [
        f"db0 b'k': expiry 1000000 != {1_000_000 + EXPIRY_TOLERANCE_MS + 1}",
        "db0 b'x': only in first",
    ]
    assert differences(a, {0: {**a[0], b"k": ("string", b"w", 1_000_000)}}) == [
        "db0 b'k': string b'v' != string b'w'"
    ]
