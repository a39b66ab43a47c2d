"""Round trip: whatever the server acknowledges, a restart from its AOF reproduces exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from faults import Clock, SimDisk
from reference import AppendFsync, Profile, Server, ServerConfig

KEYS = [b"a", b"b", b"c"]
key = st.sampled_from(KEYS)
small = st.integers(-3, 40).map(lambda n: b"%d" % n)
member = st.sampled_from([b"x", b"y", b"z"])

command = st.one_of(
    st.tuples(st.just(b"SET"), key, small).map(list),
    st.tuples(st.just(b"SET"), key, small, st.sampled_from([b"EX", b"PX"]), small).map(list),
    st.tuples(st.just(b"SET"), key, small, st.sampled_from([b"NX", b"XX", b"KEEPTTL"])).map(list),
    st.tuples(st.sampled_from([b"SETEX", b"PSETEX"]), key, small, small).map(list),
    st.tuples(st.sampled_from([b"INCR", b"DECR", b"PERSIST", b"LPOP", b"RPOP", b"GET"]), key)
    .map(list),
    st.tuples(st.sampled_from([b"INCRBY", b"APPEND", b"EXPIRE", b"PEXPIRE", b"PEXPIREAT"]),
              key, small).map(list),
    st.tuples(st.sampled_from([b"LPUSH", b"RPUSH", b"SADD", b"SREM"]), key, member).map(list),
    st.tuples(st.sampled_from([b"HSET"]), key, member, small).map(list),
    st.tuples(st.just(b"HDEL"), key, member).map(list),
    st.tuples(st.just(b"ZADD"), key, small, member).map(list),
    st.tuples(st.just(b"ZREM"), key, member).map(list),
    st.tuples(st.just(b"DEL"), key).map(list),
    st.tuples(st.just(b"SELECT"), st.sampled_from([b"0", b"1", b"15"])).map(list),
    st.sampled_from([[b"MULTI"], [b"EXEC"], [b"DISCARD"], [b"FLUSHDB"], [b"BGREWRITEAOF"]]),
)
step = st.one_of(
    command.map(lambda c: ("cmd", c)),
    st.integers(1, 1500).map(lambda ms: ("tick", ms)),
    st.just(("child", 0)),
)


def _play(steps: list[tuple[str, object]], config: ServerConfig) -> None:
    disk, clock = SimDisk(), Clock(1_000)
    server = Server(disk, clock, config)
    server.start()
    for kind, arg in steps:
        if kind == "cmd":
            assert isinstance(arg, list)
            server.submit(arg, client=0)
            server.submit([b"GET", b"a"], client=1)  # a second client in db 0
        elif kind == "tick":
            assert isinstance(arg, int)
            clock.advance(arg)
        elif server.rewrite_child is not None and server.rewrite_child.alive:
            server.rewrite_child.step()
        server.run_iteration()
    if server.rewrite_child is not None and server.rewrite_child.alive:
        server.rewrite_child.run_to_completion()
    clock.advance(100)
    server.run_iteration()
    assert not server.stopped
    image = disk.visible_image()
    restarted = Server(SimDisk.from_image(image), Clock(clock.now_ms), config)
    restarted.start()
    expected = server.dump()
    assert restarted.dump() == expected
    again = Server(SimDisk.from_image(image), Clock(clock.now_ms + 5_000), config)
    again.start()
    clock.advance(5_000)
    assert again.dump() == server.dump()


@given(st.lists(step, max_size=40), st.sampled_from(list(AppendFsync)),
       st.sampled_from(list(Profile)), st.integers(1, 3))
def test_restart_reproduces_the_keyspace(
    steps: list[tuple[str, object]], policy: AppendFsync, profile: Profile, per_step: int
) -> None:
    _play(steps, ServerConfig(appendfsync=policy, profile=profile, rewrite_keys_per_step=per_step))


def test_restart_reproduces_the_keyspace_example_with_rewrite_multi_and_expiry() -> None:
    steps: list[tuple[str, object]] = [
        ("cmd", [b"SET", b"a", b"1", b"PX", b"500"]),
        ("cmd", [b"SELECT", b"15"]),
        ("cmd", [b"RPUSH", b"b", b"x"]),
        ("cmd", [b"BGREWRITEAOF"]),
        ("cmd", [b"MULTI"]),
        ("cmd", [b"ZADD", b"c", b"-3", b"y"]),
        ("cmd", [b"SELECT", b"0"]),
        ("cmd", [b"INCR", b"c"]),
        ("child", 0),
        ("cmd", [b"EXEC"]),
        ("tick", 600),  # a expires: the active cycle propagates DEL during the rewrite
        ("child", 0),
        ("cmd", [b"SETEX", b"b", b"3", b"v"]),
    ]
    for profile in Profile:
        _play(steps, ServerConfig(profile=profile, rewrite_keys_per_step=1))
