"""The independent model: Redis command semantics, including examples from the Redis docs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.oracle import KeyValue, Model, ReplyError, UnsupportedCommand

WRONGTYPE = ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INT = ReplyError("ERR value is not an integer or out of range")


def run(model: Model, *argv: bytes | str, db: int = 0, now: int = 0) -> object:
    args = [a.encode() if isinstance(a, str) else a for a in argv]
    return model.execute(args, db=db, now_ms=now)


def cmds(*lines: str) -> Sequence[Sequence[bytes]]:
    return [[w.encode() for w in line.split()] for line in lines]


# ---------------------------------------------------------------- docs examples


def test_incr_docs_example_increments_a_decimal_string() -> None:
    m = Model()
    assert run(m, "SET", "mykey", "10") == "OK"
    assert run(m, "INCR", "mykey") == 11
    assert run(m, "GET", "mykey") == b"11"


def test_append_docs_example_creates_then_extends() -> None:
    m = Model()
    assert run(m, "EXISTS", "mykey") == 0
    assert run(m, "APPEND", "mykey", "Hello") == 5
    assert run(m, "APPEND", "mykey", " World") == 11
    assert run(m, "GET", "mykey") == b"Hello World"


def test_lpush_docs_example_pushes_each_element_at_the_head() -> None:
    m = Model()
    assert run(m, "LPUSH", "mylist", "world") == 1
    assert run(m, "LPUSH", "mylist", "hello") == 2
    assert run(m, "LRANGE", "mylist", "0", "-1") == [b"hello", b"world"]
    assert run(m, "LPUSH", "l2", "a", "b", "c") == 3
    assert run(m, "LRANGE", "l2", "0", "-1") == [b"c", b"b", b"a"]


def test_lpop_docs_example_with_count() -> None:
    m = Model()
    run(m, "RPUSH", "mylist", "one", "two", "three", "four", "five")
    assert run(m, "LPOP", "mylist") == b"one"
    assert run(m, "LPOP", "mylist", "2") == [b"two", b"three"]
    assert run(m, "RPOP", "mylist", "5") == [b"five", b"four"]
    assert run(m, "EXISTS", "mylist") == 0  # an emptied list is deleted
    assert run(m, "LPOP", "mylist") is None


def test_lrange_docs_example_out_of_range_indexes() -> None:
    m = Model()
    run(m, "RPUSH", "mylist", "one", "two", "three")
    assert run(m, "LRANGE", "mylist", "0", "0") == [b"one"]
    assert run(m, "LRANGE", "mylist", "-3", "2") == [b"one", b"two", b"three"]
    assert run(m, "LRANGE", "mylist", "-100", "100") == [b"one", b"two", b"three"]
    assert run(m, "LRANGE", "mylist", "5", "10") == []


def test_expire_docs_example_ttl_and_persist() -> None:
    m = Model()
    run(m, "SET", "mykey", "Hello", now=0)
    assert run(m, "EXPIRE", "mykey", "10", now=0) == 1
    assert run(m, "TTL", "mykey", now=0) == 10
    assert run(m, "SET", "mykey", "Hello World", now=0) == "OK"
    assert run(m, "TTL", "mykey", now=0) == -1  # SET clears the TTL


def test_ttl_rounds_to_the_nearest_second_and_pttl_is_exact() -> None:
    m = Model()
    run(m, "SET", "k", "v", "PX", "2600", now=0)
    assert run(m, "PTTL", "k", now=100) == 2500
    assert run(m, "TTL", "k", now=100) == 3  # (2500 + 500) // 1000
    assert run(m, "TTL", "k", now=1200) == 1  # 1400 ms rounds down
    assert run(m, "TTL", "missing") == -2
    run(m, "SET", "p", "v")
    assert run(m, "PTTL", "p") == -1


def test_sadd_srem_docs_examples() -> None:
    m = Model()
    assert run(m, "SADD", "myset", "Hello") == 1
    assert run(m, "SADD", "myset", "World") == 1
    assert run(m, "SADD", "myset", "World") == 0
    assert run(m, "SMEMBERS", "myset") == [b"Hello", b"World"]
    assert run(m, "SREM", "myset", "Hello", "nope") == 1
    assert run(m, "SREM", "myset", "World") == 1
    assert run(m, "EXISTS", "myset") == 0


def test_zadd_docs_example_orders_by_score_then_member() -> None:
    m = Model()
    assert run(m, "ZADD", "myzset", "1", "one") == 1
    assert run(m, "ZADD", "myzset", "1", "uno") == 1
    assert run(m, "ZADD", "myzset", "2", "two", "3", "two") == 1
    assert run(m, "ZRANGE", "myzset", "0", "-1", "WITHSCORES") == [
        b"one", b"1", b"uno", b"1", b"two", b"3",
    ]


def test_zadd_flags_nx_xx_ch_incr_gt_lt() -> None:
    m = Model()
    run(m, "ZADD", "z", "1", "a")
    assert run(m, "ZADD", "z", "NX", "5", "a", "2", "b") == 1
    assert run(m, "ZSCORE", "z", "a") == b"1"
    assert run(m, "ZADD", "z", "XX", "CH", "7", "a", "9", "c") == 1
    assert run(m, "ZSCORE", "z", "c") is None
    assert run(m, "ZADD", "z", "INCR", "0.5", "a") == b"7.5"
    assert run(m, "ZADD", "z", "GT", "CH", "1", "a") == 0
    assert run(m, "ZADD", "z", "LT", "CH", "1", "a") == 1
    assert run(m, "ZADD", "z", "NX", "XX", "1", "a") == ReplyError(
        "ERR XX and NX options at the same time are not compatible"
    )
    assert run(m, "ZADD", "z", "nan", "a") == ReplyError("ERR value is not a valid float")
    assert run(m, "ZADD", "z", "1", "a", "2") == ReplyError("ERR syntax error")


def test_zadd_accepts_infinities_and_formats_scores_like_redis_62() -> None:
    m = Model()
    run(m, "ZADD", "z", "-inf", "lo", "+inf", "hi", "0.1", "mid")
    assert run(m, "ZRANGE", "z", "0", "-1", "WITHSCORES") == [
        b"lo", b"-inf", b"mid", b"0.10000000000000001", b"hi", b"inf",
    ]


def test_hset_docs_example_counts_only_new_fields() -> None:
    m = Model()
    assert run(m, "HSET", "myhash", "field1", "Hello") == 1
    assert run(m, "HGET", "myhash", "field1") == b"Hello"
    assert run(m, "HSET", "myhash", "field1", "Hi", "field2", "World") == 1
    assert run(m, "HGETALL", "myhash") == [b"field1", b"Hi", b"field2", b"World"]
    assert run(m, "HSET", "myhash", "f") == ReplyError(
        "ERR wrong number of arguments for 'hset' command"
    )
    assert run(m, "HDEL", "myhash", "field1", "field2", "x") == 2
    assert run(m, "EXISTS", "myhash") == 0


def test_set_nx_and_xx_docs_examples() -> None:
    m = Model()
    assert run(m, "SET", "k", "a", "NX") == "OK"
    assert run(m, "SET", "k", "b", "NX") is None
    assert run(m, "SET", "other", "b", "XX") is None
    assert run(m, "GET", "k") == b"a"
    assert run(m, "SET", "k", "c", "XX", "GET") == b"a"
    assert run(m, "EXISTS", "other") == 0


def test_set_keepttl_keeps_the_expiry_and_plain_set_clears_it() -> None:
    m = Model()
    run(m, "SET", "k", "a", "EX", "10", now=0)
    run(m, "SET", "k", "b", "KEEPTTL", now=5)
    assert m.snapshot(5)[(0, b"k")] == KeyValue("string", b"b", 10_000)
    run(m, "SET", "k", "c", now=6)
    assert m.snapshot(6)[(0, b"k")] == KeyValue("string", b"c", None)


def test_set_option_errors_match_redis() -> None:
    m = Model()
    assert run(m, "SET", "k", "v", "EX", "0") == ReplyError(
        "ERR invalid expire time in 'set' command"
    )
    assert run(m, "SET", "k", "v", "EX", "x") == NOT_INT
    assert run(m, "SET", "k", "v", "NX", "XX") == ReplyError("ERR syntax error")
    assert run(m, "SET", "k", "v", "EX", "1", "PX", "5") == ReplyError("ERR syntax error")
    assert run(m, "SET", "k", "v", "EX", "1", "KEEPTTL") == ReplyError("ERR syntax error")
    assert run(m, "SET", "k", "v", "EX") == ReplyError("ERR syntax error")
    assert run(m, "SET", "k") == ReplyError("ERR wrong number of arguments for 'set' command")
    assert m.snapshot(0) == {}


def test_setex_and_psetex_make_relative_expiry_absolute() -> None:
    m = Model()
    assert run(m, "SETEX", "a", "10", "v", now=500) == "OK"
    assert run(m, "PSETEX", "b", "250", "w", now=500) == "OK"
    snap = m.snapshot(500)
    assert snap[(0, b"a")] == KeyValue("string", b"v", 10_500)
    assert snap[(0, b"b")] == KeyValue("string", b"w", 750)
    assert run(m, "SETEX", "c", "0", "v") == ReplyError(
        "ERR invalid expire time in 'setex' command"
    )
    assert run(m, "PSETEX", "c", "-5", "v") == ReplyError(
        "ERR invalid expire time in 'psetex' command"
    )


# ---------------------------------------------------------------- integers


def test_incr_rejects_non_canonical_integers_like_redis() -> None:
    m = Model()
    for bad in ("+1", "01", " 1", "1 ", "-0", "", "1.5", "9223372036854775808"):
        run(m, "SET", "k", bad)
        assert run(m, "INCR", "k") == NOT_INT, bad
    run(m, "SET", "k", "-12")
    assert run(m, "INCRBY", "k", "2") == -10
    assert run(m, "DECRBY", "k", "-5") == -5
    assert run(m, "DECR", "k") == -6
    assert run(m, "INCRBY", "k", "1.0") == NOT_INT


def test_incr_overflow_is_an_error_and_leaves_the_value() -> None:
    m = Model()
    run(m, "SET", "k", "9223372036854775807")
    assert run(m, "INCR", "k") == ReplyError("ERR increment or decrement would overflow")
    assert run(m, "GET", "k") == b"9223372036854775807"
    run(m, "SET", "n", "-9223372036854775808")
    assert run(m, "DECR", "n") == ReplyError("ERR increment or decrement would overflow")
    assert run(m, "DECRBY", "n", "-9223372036854775808") == ReplyError(
        "ERR decrement would overflow"
    )


def test_incr_keeps_the_ttl() -> None:
    m = Model()
    run(m, "SET", "k", "1", "PX", "100", now=0)
    run(m, "INCR", "k", now=10)
    assert m.snapshot(10)[(0, b"k")] == KeyValue("string", b"2", 100)


# ---------------------------------------------------------------- types and errors


def test_wrongtype_errors_leave_the_state_unchanged() -> None:
    m = Model()
    run(m, "RPUSH", "l", "x")
    before = m.snapshot(0)
    for argv in (
        ("GET", "l"), ("INCR", "l"), ("APPEND", "l", "z"), ("SADD", "l", "m"),
        ("ZADD", "l", "1", "m"), ("HSET", "l", "f", "v"), ("SET", "l", "v", "GET"),
    ):
        assert run(m, *argv) == WRONGTYPE, argv
    assert m.snapshot(0) == before
    run(m, "SET", "s", "x")
    assert run(m, "LPUSH", "s", "y") == WRONGTYPE
    assert run(m, "TYPE", "s") == "string"
    assert run(m, "TYPE", "l") == "list"
    assert run(m, "TYPE", "nope") == "none"


def test_unknown_command_is_unsupported_not_silently_ignored() -> None:
    m = Model()
    with pytest.raises(UnsupportedCommand, match="RENAME"):
        run(m, "RENAME", "a", "b")
    with pytest.raises(UnsupportedCommand, match="BYSCORE"):
        run(m, "ZRANGE", "z", "0", "1", "BYSCORE")


def test_read_refuses_a_write_and_never_changes_the_state() -> None:
    m = Model()
    run(m, "SET", "k", "v", "PX", "10", now=0)
    with pytest.raises(ValueError, match="SET is a write"):
        m.read([b"SET", b"k", b"v"], 0, 0)
    assert m.read([b"GET", b"k"], 0, 20) is None  # expired at read time
    assert m.state.data[(0, b"k")].value == b"v"  # reads do not reclaim expired keys
    assert m.read([b"DBSIZE"], 0, 5) == 1
    assert m.read([b"DBSIZE"], 0, 10) == 0


# ---------------------------------------------------------------- expiry


def test_key_is_absent_exactly_at_its_expire_time() -> None:
    m = Model()
    run(m, "SET", "k", "v", "PX", "100", now=0)
    assert run(m, "GET", "k", now=99) == b"v"
    assert run(m, "GET", "k", now=100) is None
    assert run(m, "EXISTS", "k", now=100) == 0


def test_write_after_expiry_sees_an_absent_key() -> None:
    m = Model()
    run(m, "SET", "c", "41", "PX", "100", now=0)
    assert run(m, "INCR", "c", now=150) == 1  # lazy expiry: the old 41 is gone
    assert m.snapshot(150)[(0, b"c")] == KeyValue("string", b"1", None)
    run(m, "RPUSH", "l", "a", now=0)
    run(m, "PEXPIRE", "l", "10", now=0)
    assert run(m, "RPUSH", "l", "b", now=10) == 1


def test_zero_or_negative_relative_expiry_deletes_the_key() -> None:
    m = Model()
    for argv in (("EXPIRE", "k", "0"), ("PEXPIRE", "k", "-5"), ("EXPIREAT", "k", "1")):
        run(m, "SET", "k", "v", now=5000)
        assert run(m, *argv, now=5000) == 1, argv
        assert run(m, "EXISTS", "k", now=5000) == 0, argv
        assert (0, b"k") not in m.state.data
    assert run(m, "EXPIRE", "missing", "10") == 0


def test_expireat_and_pexpireat_are_absolute() -> None:
    m = Model()
    run(m, "SET", "a", "v", now=1000)
    run(m, "SET", "b", "v", now=1000)
    assert run(m, "EXPIREAT", "a", "5", now=1000) == 1
    assert run(m, "PEXPIREAT", "b", "5001", now=1000) == 1
    snap = m.snapshot(1000)
    assert snap[(0, b"a")].expire_at_ms == 5000
    assert snap[(0, b"b")].expire_at_ms == 5001
    assert run(m, "PERSIST", "a", now=1000) == 1
    assert run(m, "PERSIST", "a", now=1000) == 0
    assert m.snapshot(10_000).keys() == {(0, b"a")}


# ---------------------------------------------------------------- databases


def test_databases_are_separate_and_flushdb_clears_one() -> None:
    m = Model()
    run(m, "SET", "k", "0", db=0)
    run(m, "SET", "k", "3", db=3)
    assert run(m, "GET", "k", db=3) == b"3"
    assert run(m, "FLUSHDB", db=3) == "OK"
    assert set(m.snapshot(0)) == {(0, b"k")}


def test_flushall_clears_all_sixteen_databases() -> None:
    m = Model()
    for db in range(16):
        run(m, "SET", "k", str(db), db=db)
    assert run(m, "FLUSHALL", "ASYNC", db=7) == "OK"
    assert m.snapshot(0) == {}
    assert run(m, "FLUSHALL", "bogus") == ReplyError("ERR syntax error")
    with pytest.raises(ValueError, match="db must be"):
        run(m, "GET", "k", db=16)


# ---------------------------------------------------------------- transactions


def test_multi_block_applies_the_other_commands_when_one_fails() -> None:
    m = Model()
    replies = m.apply(cmds("SET a 1", "LPUSH a x", "INCR a"), db=0, now_ms=0)
    assert replies == ["OK", WRONGTYPE, 2]
    assert m.snapshot(0)[(0, b"a")] == KeyValue("string", b"2", None)


def test_multi_block_with_an_arity_error_is_discarded_whole() -> None:
    m = Model()
    replies = m.apply(cmds("SET a 1", "INCR"), db=0, now_ms=0)
    assert all(isinstance(r, ReplyError) and r.message.startswith("EXECABORT") for r in replies)
    assert m.snapshot(0) == {}


def test_failed_command_inside_a_block_does_not_undo_earlier_ones() -> None:
    m = Model()
    m.state.journal = {}
    m.apply(cmds("SET a 1", "SET b x", "INCR b", "SET c 3"), db=0, now_ms=0)
    journal = m.state.journal
    m.state.journal = None
    assert set(journal) == {(0, b"a"), (0, b"b"), (0, b"c")}
    assert m.snapshot(0)[(0, b"b")].value == b"x"
