"""What the state machines' rules send: the keys, values and members they draw from, and
the command lines of each kind of write (drawn among the forms a target accepts), with the
multi-command programs of the boundary features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from faults import FaultOp

__all__ = [
    "ALL_KEYS",
    "KEYS",
    "MEMBERS",
    "Program",
    "values",
]


KEYS = [b"k0", b"k1", b"k2", b"k3"]
LIST_KEYS = [b"l0", b"l1"]
SET_KEYS = [b"s0", b"s1"]
ZSET_KEYS = [b"z0", b"z1"]
HASH_KEYS = [b"h0", b"h1"]
ALL_KEYS = KEYS + LIST_KEYS + SET_KEYS + ZSET_KEYS + HASH_KEYS

keys = st.sampled_from(KEYS)
values = st.sampled_from([b"a", b"bb", b"ccc", b"v" * 40, b"x" * 300, b"\x00\r\n", b"7", b"-3"])
MEMBERS = [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]
members = st.sampled_from(MEMBERS[:5])
scores = st.sampled_from([b"0", b"1.5", b"-2", b"1e3", b"3"])
small_ms = st.integers(min_value=1, max_value=5000)
# Crash offsets from the end of a stall that sit on a cron period's edge (hz 10), where a
# server's postponed write or owed fsync happens or has not happened yet.
_NEAR_ZERO_MS = (-101, -100, -99, -1, 0, 1, 99, 100, 101)
# Anywhere from two seconds before the end of a stall (a 2 s postponement ending inside it)
# to one second after, evenly: a plain integer strategy favours values near zero, which the
# edges above already cover.
_OFFSETS_MS = st.builds(lambda coarse, fine: coarse + fine,
                        st.sampled_from(range(-2000, 1000, 100)), st.integers(0, 99))

_WRITE_OPS = (FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC, FaultOp.RENAME, FaultOp.FSYNC_DIR)


Accept = Callable[[tuple[bytes, ...]], bool]
_Argv = st.SearchStrategy[tuple[bytes, ...]]


def _fit(accept: Accept | None,
         alternatives: list[tuple[tuple[bytes, ...], _Argv]]) -> _Argv:
    """One of the `alternatives` (a probe command line of each, its strategy) that `accept`
    takes, filtered by it (None: all of them; none accepted: nothing)."""
    if accept is None:
        return st.one_of(*(strategy for _, strategy in alternatives))
    kept = [strategy for probe, strategy in alternatives if accept(probe)]
    return st.one_of(*kept).filter(accept) if kept else st.nothing()


def _string_write(accept: Accept | None = None) -> _Argv:
    return _fit(accept, [
        ((b"SET", b"k0", b"a"), st.tuples(st.just(b"SET"), keys, values)),
        ((b"SET", b"k0", b"a", b"NX"),
         st.tuples(st.just(b"SET"), keys, values, st.sampled_from([b"NX", b"XX"]))),
        ((b"APPEND", b"k0", b"a"), st.tuples(st.just(b"APPEND"), keys, values)),
        ((b"DEL", b"k0"), st.tuples(st.just(b"DEL"), st.sampled_from(ALL_KEYS))),
        ((b"DEL", b"k0", b"k1"), st.lists(st.sampled_from(ALL_KEYS), min_size=2, max_size=4).map(
            lambda ks: (b"DEL", *ks)
        )),
        # Wrong arity on purpose: refused (in a MULTI: the whole EXEC), no effect anywhere.
        ((b"SET", b"k0"), st.tuples(st.sampled_from([b"SET", b"APPEND"]), keys)),
    ])


def _counter_write(accept: Accept | None = None) -> _Argv:
    return _fit(accept, [
        ((b"INCR", b"k0"), st.tuples(st.sampled_from([b"INCR", b"DECR"]), keys)),
        ((b"INCRBY", b"k0", b"2"), st.tuples(
            st.sampled_from([b"INCRBY", b"DECRBY"]),
            keys,
            st.integers(-1000, 1000).map(lambda n: str(n).encode()),
        )),
    ])


def _expiry_write(now_ms: int, accept: Accept | None = None) -> _Argv:
    ms = small_ms.map(lambda n: str(n).encode())
    secs = st.integers(1, 5).map(lambda n: str(n).encode())
    return _fit(accept, [
        ((b"SET", b"k0", b"a", b"PX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.just(b"PX"), ms)),
        # An option before the expiry: the feed must still find it.
        ((b"SET", b"k0", b"a", b"NX", b"PX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.sampled_from([b"NX", b"XX"]),
                   st.just(b"PX"), ms)),
        ((b"SET", b"k0", b"a", b"EX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.just(b"EX"), secs)),
        ((b"SETEX", b"k0", b"5", b"a"), st.tuples(st.just(b"SETEX"), keys, secs, values)),
        ((b"PSETEX", b"k0", b"5", b"a"), st.tuples(st.just(b"PSETEX"), keys, ms, values)),
        ((b"EXPIRE", b"k0", b"5"),
         st.tuples(st.just(b"EXPIRE"), st.sampled_from(ALL_KEYS), secs)),
        ((b"PEXPIRE", b"k0", b"5"),
         st.tuples(st.just(b"PEXPIRE"), st.sampled_from(ALL_KEYS), ms)),
        ((b"PEXPIREAT", b"k0", str(now_ms + 5).encode()), st.tuples(
            st.just(b"PEXPIREAT"),
            st.sampled_from(ALL_KEYS),
            small_ms.map(lambda n: str(now_ms + n).encode()),
        )),
        ((b"EXPIREAT", b"k0", str(now_ms // 1000 + 5).encode()), st.tuples(
            st.just(b"EXPIREAT"),
            st.sampled_from(ALL_KEYS),
            st.integers(1, 5).map(lambda n: str(now_ms // 1000 + n).encode()),
        )),
        ((b"PERSIST", b"k0"), st.tuples(st.just(b"PERSIST"), st.sampled_from(ALL_KEYS))),
    ])


def _key_command(name: st.SearchStrategy[bytes], keys: Sequence[bytes],
                 args: _Argv) -> _Argv:
    """A command line: `name`, one of `keys`, then the drawn `args`."""
    return st.tuples(name, st.sampled_from(keys), args).map(lambda t: (t[0], t[1], *t[2]))


def _collection_write(accept: Accept | None = None) -> _Argv:
    many = st.lists(members, min_size=1, max_size=4).map(tuple)
    pairs = st.lists(st.tuples(scores, members), min_size=1, max_size=3).map(
        lambda ps: tuple(x for p in ps for x in p)
    )
    fields = st.lists(st.tuples(members, values), min_size=1, max_size=3).map(
        lambda ps: tuple(x for p in ps for x in p)
    )
    return _fit(accept, [
        ((b"LPUSH", b"l0", b"m0"),
         _key_command(st.sampled_from([b"LPUSH", b"RPUSH"]), LIST_KEYS, many)),
        ((b"LPOP", b"l0"),
         st.tuples(st.sampled_from([b"LPOP", b"RPOP"]), st.sampled_from(LIST_KEYS))),
        ((b"SADD", b"s0", b"m0"),
         _key_command(st.sampled_from([b"SADD", b"SREM"]), SET_KEYS, many)),
        ((b"ZADD", b"z0", b"1", b"m0"), _key_command(st.just(b"ZADD"), ZSET_KEYS, pairs)),
        ((b"ZREM", b"z0", b"m0"), _key_command(st.just(b"ZREM"), ZSET_KEYS, many)),
        ((b"HSET", b"h0", b"m0", b"a"), _key_command(st.just(b"HSET"), HASH_KEYS, fields)),
        ((b"HDEL", b"h0", b"m0"), _key_command(st.just(b"HDEL"), HASH_KEYS, many)),
        # Wrong types on purpose: the error must have no effect anywhere.
        ((b"LPUSH", b"k0", b"m0"), st.tuples(st.just(b"LPUSH"), keys, members)),
    ])


def _read(commands: frozenset[bytes] | None = None,
          accept: Accept | None = None) -> _Argv:
    """Reads checked against the model (only those of `commands` and `accept` when given;
    none: nothing)."""
    every = {
        b"GET": st.tuples(st.just(b"GET"), keys),
        b"EXISTS": st.tuples(st.just(b"EXISTS"), st.sampled_from(ALL_KEYS)),
        b"PTTL": st.tuples(st.just(b"PTTL"), st.sampled_from(ALL_KEYS)),
        b"LRANGE": st.tuples(st.just(b"LRANGE"), st.sampled_from(LIST_KEYS), st.just(b"0"),
                             st.just(b"-1")),
        b"SMEMBERS": st.tuples(st.just(b"SMEMBERS"), st.sampled_from(SET_KEYS)),
        b"ZRANGE": st.tuples(
            st.just(b"ZRANGE"), st.sampled_from(ZSET_KEYS), st.just(b"0"), st.just(b"-1"),
            st.just(b"WITHSCORES"),
        ),
        b"HGETALL": st.tuples(st.just(b"HGETALL"), st.sampled_from(HASH_KEYS)),
    }
    chosen = [s for name, s in every.items() if commands is None or name in commands]
    if accept is None:
        return st.one_of(*chosen)
    probe = {b"LRANGE": (b"0", b"-1"), b"ZRANGE": (b"0", b"-1", b"WITHSCORES")}
    return _fit(accept, [((name, b"k0", *probe.get(name, ())), s) for name, s in every.items()
                         if commands is None or name in commands])


# -- boundary programs: several commands that set up a case, then the command that hits it ------

Program = tuple[tuple[bytes, ...], ...]


def _flat(pairs: list[tuple[bytes, bytes]]) -> tuple[bytes, ...]:
    return tuple(x for pair in pairs for x in pair)


def _create(key: bytes, value: bytes) -> tuple[bytes, ...]:
    """A write that makes `key` exist with the type its pool gives it."""
    kind = key[:1]
    if kind == b"l":
        return (b"RPUSH", key, value, b"m0")
    if kind == b"s":
        return (b"SADD", key, b"m0", b"m1")
    if kind == b"z":
        return (b"ZADD", key, b"1", b"m0", b"2", b"m1")
    if kind == b"h":
        return (b"HSET", key, b"m0", value, b"m1", b"v")
    return (b"SET", key, value)


@st.composite
def _del_program(draw: st.DrawFn) -> Program:
    """DEL of 2-4 keys that all exist (each is created first), sometimes one missing key more."""
    chosen = draw(st.lists(st.sampled_from(ALL_KEYS), min_size=2, max_size=4, unique=True),
                  label="keys")
    created = tuple(_create(k, draw(values, label="value")) for k in chosen)
    missing = draw(st.lists(st.sampled_from(ALL_KEYS), max_size=1), label="missing")
    return (*created, (b"DEL", *chosen, *missing))


@st.composite
def _members_program(draw: st.DrawFn) -> Program:
    """A collection is filled, then one variadic command changes several of its members: some
    already there (overwritten, re-scored, removed), some new."""
    kind = draw(st.sampled_from([b"SADD", b"SREM", b"HSET", b"HDEL", b"ZADD", b"ZREM",
                                 b"LPUSH", b"RPUSH"]), label="command")
    before = draw(st.lists(st.sampled_from(MEMBERS), min_size=2, max_size=5, unique=True),
                  label="existing")
    kept = draw(st.lists(st.sampled_from(before), min_size=1, max_size=len(before), unique=True),
                label="changed")
    new = draw(st.lists(st.sampled_from(MEMBERS), max_size=2, unique=True), label="new")
    after = kept + [m for m in new if m not in kept]
    if len(after) < 2:
        after.append(next(m for m in MEMBERS if m not in after))
    if kind in (b"SADD", b"SREM"):
        key = draw(st.sampled_from(SET_KEYS), label="key")
        return ((b"SADD", key, *before), (kind, key, *after))
    if kind in (b"HSET", b"HDEL"):
        key = draw(st.sampled_from(HASH_KEYS), label="key")
        fill = _flat([(m, b"old") for m in before])
        if kind == b"HDEL":
            return ((b"HSET", key, *fill), (b"HDEL", key, *after))
        pairs = [(m, draw(values, label="value")) for m in after]
        return ((b"HSET", key, *fill), (b"HSET", key, *_flat(pairs)))
    if kind in (b"ZADD", b"ZREM"):
        key = draw(st.sampled_from(ZSET_KEYS), label="key")
        fill = _flat([(b"%d" % i, m) for i, m in enumerate(before)])
        if kind == b"ZREM":
            return ((b"ZADD", key, *fill), (b"ZREM", key, *after))
        options = draw(st.sampled_from([(), (), (b"CH",), (b"XX",), (b"NX",), (b"GT", b"CH"),
                                        (b"LT",)]), label="options")
        pairs = [(draw(scores, label="score"), m) for m in after]
        return ((b"ZADD", key, *fill), (b"ZADD", key, *options, *_flat(pairs)))
    key = draw(st.sampled_from(LIST_KEYS), label="key")
    return ((b"RPUSH", key, *before), (kind, key, *after))


def _multi_key_program(accept: Accept | None = None) -> st.SearchStrategy[Program]:
    """Commands that really change several existing keys, fields or members at once (the
    last command of the program; the ones before it create what it changes)."""
    if accept is None:
        return st.one_of(_del_program(), _members_program())
    parts = [_members_program()]
    if accept((b"DEL", b"k0", b"k1")):
        parts.insert(0, _del_program())
    return _programs(accept, st.one_of(*parts))


def _programs(accept: Accept | None,
              strategy: st.SearchStrategy[Program]) -> st.SearchStrategy[Program]:
    """`strategy` with the programs `accept` takes whole (None: all of them)."""
    if accept is None:
        return strategy
    return strategy.filter(lambda program: all(accept(argv) for argv in program))


@st.composite
def _big_collection_program(draw: st.DrawFn) -> Program:
    """A list, set, sorted set or hash pushed past the rewrite's 64-item batch (64 to 200 new
    items, the batch edges often) in one to three commands."""
    kind = draw(st.sampled_from([b"RPUSH", b"SADD", b"ZADD", b"HSET"]), label="command")
    size = draw(st.one_of(st.sampled_from([64, 65, 127, 128, 129]), st.integers(65, 200)),
                label="items")
    parts = draw(st.integers(1, 3), label="commands")
    pool = {b"RPUSH": LIST_KEYS, b"SADD": SET_KEYS, b"ZADD": ZSET_KEYS, b"HSET": HASH_KEYS}
    key = draw(st.sampled_from(pool[kind]), label="key")
    items: list[tuple[bytes, ...]] = []
    for i in range(size):
        if kind == b"ZADD":
            items.append((b"%d" % i, b"b%d" % i))
        elif kind == b"HSET":
            items.append((b"b%d" % i, b"v%d" % i))
        else:
            items.append((b"b%d" % i,))
    per = -(-size // parts)
    return tuple((kind, key, *(x for item in items[j:j + per] for x in item))
                 for j in range(0, size, per))
