"""Command semantics and Redis 6.2 reply conventions of the reference server."""

from __future__ import annotations

import pytest

from faults import Clock, SimDisk
from reference import AppendFsync, ErrorReply, Reply, Server, ServerConfig, SimpleString


def _server(**kw: object) -> tuple[Server, Clock, SimDisk]:
    disk, clock = SimDisk(), Clock()
    server = Server(disk, clock, ServerConfig(appendfsync=AppendFsync.ALWAYS, **kw))  # type: ignore[arg-type]
    server.start()
    return server, clock, disk


def run(server: Server, *args: str | bytes, client: int = 0) -> Reply:
    argv = [a if isinstance(a, bytes) else a.encode() for a in args]
    return server.execute(argv, client=client)


def test_set_get_and_options_follow_redis() -> None:
    s, clock, _ = _server()
    assert run(s, "SET", "k", "v") == SimpleString("OK")
    assert run(s, "GET", "k") == b"v"
    assert run(s, "SET", "k", "w", "NX") is None
    assert run(s, "SET", "x", "w", "XX") is None
    assert run(s, "SET", "k", "w", "XX", "PX", "100") == "OK"
    assert run(s, "PTTL", "k") == 100
    clock.advance(100)
    assert run(s, "GET", "k") is None
    assert run(s, "SET", "k", "v", "NX", "XX") == ErrorReply("ERR syntax error")
    assert run(s, "SET", "k", "v", "EX", "0") == ErrorReply(
        "ERR invalid expire time in 'set' command"
    )
    assert run(s, "SET", "k", "v", "EX", "x") == ErrorReply(
        "ERR value is not an integer or out of range"
    )
    assert run(s, "SETEX", "k", "-1", "v") == ErrorReply(
        "ERR invalid expire time in 'setex' command"
    )


def test_exact_error_strings_match_redis_6_2() -> None:
    s, _, _ = _server()
    assert run(s, "SET", "k") == ErrorReply("ERR wrong number of arguments for 'set' command")
    assert run(s, "NOPE", "a", "b") == ErrorReply(
        "ERR unknown command `NOPE`, with args beginning with: `a`, `b`, "
    )
    run(s, "RPUSH", "l", "a")
    assert run(s, "GET", "l") == ErrorReply(
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )
    run(s, "SET", "s", "abc")
    assert run(s, "INCR", "s") == ErrorReply("ERR value is not an integer or out of range")
    assert run(s, "SELECT", "16") == ErrorReply("ERR DB index is out of range")
    run(s, "SET", "big", str(2**63 - 1))
    assert run(s, "INCR", "big") == ErrorReply("ERR increment or decrement would overflow")
    assert run(s, "ZADD", "z", "nan", "m") == ErrorReply("ERR value is not a valid float")
    assert run(s, "ZADD", "z", "1", "a", "2") == ErrorReply("ERR syntax error")
    assert run(s, "HSET", "h", "f") == ErrorReply(
        "ERR wrong number of arguments for 'hset' command"
    )


def test_integer_parsing_is_as_strict_as_string2ll() -> None:
    s, _, _ = _server()
    for bad in ("01", "+1", " 1", "1 ", "1.0", "-0", str(2**63)):
        assert run(s, "INCRBY", "n", bad) == ErrorReply(
            "ERR value is not an integer or out of range"
        ), bad
    assert run(s, "INCRBY", "n", "-5") == -5
    assert run(s, "DECRBY", "n", "5") == -10
    assert run(s, "DECR", "n") == -11
    assert run(s, "APPEND", "n", "0") == 4
    assert run(s, "GET", "n") == b"-110"


def test_lists_sets_zsets_hashes() -> None:
    s, _, _ = _server()
    assert run(s, "RPUSH", "l", "a", "b") == 2
    assert run(s, "LPUSH", "l", "x", "y") == 4
    assert run(s, "LRANGE", "l", "0", "-1") == [b"y", b"x", b"a", b"b"]
    assert run(s, "LPOP", "l") == b"y"
    assert run(s, "RPOP", "l", "2") == [b"b", b"a"]
    assert run(s, "LLEN", "l") == 1
    assert run(s, "RPOP", "l") == b"x"
    assert run(s, "EXISTS", "l") == 0
    assert run(s, "SADD", "s", "a", "b", "a") == 2
    assert run(s, "SREM", "s", "a", "z") == 1
    assert run(s, "SMEMBERS", "s") == [b"b"]
    assert run(s, "SCARD", "s") == 1
    assert run(s, "ZADD", "z", "2", "b", "1", "a") == 2
    assert run(s, "ZADD", "z", "CH", "5", "a") == 1
    assert run(s, "ZADD", "z", "INCR", "0.5", "a") == b"5.5"
    assert run(s, "ZRANGE", "z", "0", "-1", "WITHSCORES") == [b"b", b"2", b"a", b"5.5"]
    assert run(s, "ZSCORE", "z", "b") == b"2"
    assert run(s, "ZADD", "z", "XX", "1", "new") == 0
    assert run(s, "ZREM", "z", "a", "b") == 2
    assert run(s, "TYPE", "z") == SimpleString("none")
    assert run(s, "HSET", "h", "f", "1", "g", "2") == 2
    assert run(s, "HSET", "h", "f", "3") == 0
    assert run(s, "HGET", "h", "f") == b"3"
    assert run(s, "HGETALL", "h") == [b"f", b"3", b"g", b"2"]
    assert run(s, "HDEL", "h", "f", "g") == 2
    assert run(s, "TYPE", "h") == SimpleString("none")


def test_expire_family_ttl_and_persist() -> None:
    s, clock, _ = _server()
    clock.advance(10_000)
    run(s, "SET", "k", "v")
    assert run(s, "TTL", "k") == -1
    assert run(s, "TTL", "missing") == -2
    assert run(s, "EXPIRE", "k", "10") == 1
    assert run(s, "PTTL", "k") == 10_000
    assert run(s, "PEXPIREAT", "k", "30000") == 1
    assert run(s, "TTL", "k") == 20
    assert run(s, "EXPIREAT", "k", "25") == 1
    assert run(s, "PTTL", "k") == 15_000
    assert run(s, "PERSIST", "k") == 1
    assert run(s, "PERSIST", "k") == 0
    assert run(s, "EXPIRE", "missing", "10") == 0
    assert run(s, "EXPIRE", "k", "-1") == 1  # in the past: deleted at once
    assert run(s, "EXISTS", "k") == 0


def test_expired_key_is_absent_on_access_and_reclaimed_by_cron() -> None:
    s, clock, _ = _server()
    run(s, "PSETEX", "a", "50", "1")
    run(s, "PSETEX", "b", "50", "1")
    clock.advance(50)
    assert run(s, "DBSIZE") == 2  # like Redis: not yet reclaimed keys still count
    assert run(s, "GET", "a") is None
    assert run(s, "KEYS", "*") == []
    clock.advance(100)
    s.run_iteration()  # cron is due: the active expire cycle reclaims b
    assert run(s, "DBSIZE") == 0
    assert s.dump() == {}


def test_keys_glob_and_dbs_are_separate() -> None:
    s, _, _ = _server()
    for key in ("hello", "hallo", "hxllo", "world"):
        run(s, "SET", key, "1")
    assert sorted(run(s, "KEYS", "h[ae]llo")) == [b"hallo", b"hello"]  # type: ignore[type-var]
    assert sorted(run(s, "KEYS", "h[^e]llo")) == [b"hallo", b"hxllo"]  # type: ignore[type-var]
    assert run(s, "KEYS", "w?rld") == [b"world"]
    run(s, "SELECT", "3", client=1)
    assert run(s, "DBSIZE", client=1) == 0
    run(s, "SET", "k", "v", client=1)
    assert run(s, "DBSIZE") == 4
    run(s, "FLUSHDB", client=1)
    assert run(s, "DBSIZE") == 4
    assert run(s, "FLUSHALL") == "OK"
    assert s.dump() == {}


def test_multi_exec_discard_and_their_errors() -> None:
    s, _, _ = _server()
    assert run(s, "EXEC") == ErrorReply("ERR EXEC without MULTI")
    assert run(s, "DISCARD") == ErrorReply("ERR DISCARD without MULTI")
    assert run(s, "MULTI") == "OK"
    assert run(s, "MULTI") == ErrorReply("ERR MULTI calls can not be nested")
    assert run(s, "SET", "a", "1") == SimpleString("QUEUED")
    assert run(s, "GET", "a", client=1) is None  # not applied before EXEC
    assert run(s, "INCR", "a") == "QUEUED"
    assert run(s, "EXEC") == ["OK", 2]
    run(s, "MULTI")
    run(s, "SET", "b", "1")
    assert run(s, "DISCARD") == "OK"
    assert run(s, "EXISTS", "b") == 0
    run(s, "MULTI")
    run(s, "SET", "c")  # arity error while queueing: the transaction is doomed
    run(s, "SET", "d", "1")
    assert run(s, "EXEC") == ErrorReply(
        "EXECABORT Transaction discarded because of previous errors."
    )
    assert run(s, "EXISTS", "d") == 0
    run(s, "MULTI")
    run(s, "SET", "e", "x")
    run(s, "INCR", "e")  # runtime error inside EXEC: no rollback
    assert run(s, "EXEC") == ["OK", ErrorReply("ERR value is not an integer or out of range")]
    assert run(s, "GET", "e") == b"x"


def test_ping_info_and_bgrewriteaof_replies() -> None:
    s, _, _ = _server()
    assert run(s, "PING") == SimpleString("PONG")
    assert run(s, "PING", "hi") == b"hi"
    text = run(s, "INFO", "persistence")
    assert isinstance(text, bytes) and b"aof_enabled:1\r\n" in text
    assert run(s, "BGREWRITEAOF") == SimpleString("Background append only file rewriting started")
    assert run(s, "BGREWRITEAOF") == ErrorReply(
        "ERR Background append only file rewriting already in progress"
    )
    assert s.info()["aof_rewrite_in_progress"] == 1


@pytest.mark.parametrize("bad", [[], [b"SET", "k"], "SET"])
def test_submit_rejects_malformed_argv(bad: object) -> None:
    s, _, _ = _server()
    with pytest.raises((TypeError, ValueError), match="argv"):
        s.submit(bad)  # type: ignore[arg-type]
