"""An independent model of the Redis keyspace, written from the Redis command documentation.

It shares no code with reference/ on purpose: the oracle compares the reference (and real
servers) against this model, and a bug shared by both would hide itself.

Semantics followed (Redis 6.2 documentation and reply conventions):

* 16 databases; a key holds one of string, list, set, zset, hash; a collection that becomes
  empty is deleted.
* Expiry: a key whose ``expire_at_ms <= now_ms`` is absent to every command (lazy expiry). A write
  that touches such a key deletes it first. Relative expiries (EX, PX, EXPIRE, PEXPIRE, SETEX,
  PSETEX) are made absolute at the execution time. EXPIRE-family with a time at or before now
  deletes the key (reply 1). SET without KEEPTTL clears the TTL; INCR/APPEND/list/set/zset/hash
  writes keep it.
* A command error (wrong arity, WRONGTYPE, not an integer, syntax error, ...) leaves the state
  unchanged and is returned as a ``ReplyError`` carrying Redis's message.
* ``Model.apply`` runs one history entry. Several commands are a MULTI/EXEC block: if any of them
  has an unknown name or a wrong number of arguments, Redis rejects the whole block at EXEC
  (EXECABORT) and nothing applies; otherwise every command runs in order and a runtime error in
  one does not undo the others (Redis has no rollback).

Replies: bulk -> ``bytes``, integer -> ``int``, nil -> ``None``, array -> ``list``, status ->
``str`` (e.g. "OK", "string"), error -> ``ReplyError``. Unordered collections (SMEMBERS,
HGETALL) are returned sorted; compare them as sets. DBSIZE counts live keys only (a real server
may still count keys that expired but were not reclaimed yet). Scores are formatted like Redis
6.2 (``%.17g``, "inf", "-inf"). Not modelled: SET's EXAT/PXAT-in-the-past deletion reply details,
hex floats in scores, the 512 MB string limit, ZRANGE's BYSCORE/BYLEX/REV/LIMIT forms (rejected
with ``UnsupportedCommand``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from harness.oracle._history import Entry
from harness.oracle._snapshot import DB_COUNT, DbKey, KeyValue, Snapshot, is_live

__all__ = [
    "Model",
    "ModelState",
    "Reply",
    "ReplyError",
    "UnsupportedCommand",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ReplyError:
    """An error reply, e.g. ``ReplyError("ERR syntax error")``; the first word is the code."""

    message: str

    def __str__(self) -> str:
        return self.message


Reply: TypeAlias = bytes | int | str | list[Any] | ReplyError | None


class UnsupportedCommand(ValueError):
    """The model does not know this command (so it cannot say what it does)."""


class _CommandError(Exception):
    """Raised inside a handler; becomes a ReplyError with the state untouched."""


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INT = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
SYNTAX = "ERR syntax error"
OVERFLOW = "ERR increment or decrement would overflow"

_INT_RE = re.compile(rb"0|-?[1-9][0-9]*")
_FLOAT_RE = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)", re.IGNORECASE
)


def parse_int(raw: bytes) -> int | None:
    """Redis's strict integer parsing (string2ll): no sign '+', no leading zeros, no spaces."""
    if len(raw) > 20 or _INT_RE.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def _int_arg(raw: bytes) -> int:
    value = parse_int(raw)
    if value is None:
        raise _CommandError(NOT_INT)
    return value


def _float_arg(raw: bytes) -> float:
    # strtod accepts what this regex accepts (minus hex floats); Python's float() would also
    # accept spaces, underscores and "nan", which Redis rejects.
    if _FLOAT_RE.fullmatch(raw) is None:
        raise _CommandError(NOT_FLOAT)
    return float(raw)


def format_score(score: float) -> bytes:
    """A score as Redis 6.2 replies it."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score


class ModelState:
    """The raw keyspace ``{(db, key): KeyValue}``; expired keys may linger (absent to commands).

    When ``journal`` is a dict, the first old value of every key changed is recorded in it,
    which is how the oracle learns which keys an entry touched.
    """

    __slots__ = ("data", "journal")

    def __init__(self, data: dict[DbKey, KeyValue] | None = None) -> None:
        self.data: dict[DbKey, KeyValue] = dict(data) if data else {}
        self.journal: dict[DbKey, KeyValue | None] | None = None

    def copy(self) -> ModelState:
        return ModelState(self.data)

    def live(self, dbkey: DbKey, now_ms: int) -> KeyValue | None:
        kv = self.data.get(dbkey)
        if kv is None or (kv.expire_at_ms is not None and kv.expire_at_ms <= now_ms):
            return None
        return kv

    def put(self, dbkey: DbKey, kv: KeyValue | None) -> None:
        journal = self.journal
        if journal is not None and dbkey not in journal:
            journal[dbkey] = self.data.get(dbkey)
        if kv is None:
            self.data.pop(dbkey, None)
        else:
            self.data[dbkey] = kv

    def lookup_write(self, dbkey: DbKey, now_ms: int) -> KeyValue | None:
        """Live value for a write; an expired key is deleted first, as Redis's lazy expiry does."""
        kv = self.data.get(dbkey)
        if kv is not None and kv.expire_at_ms is not None and kv.expire_at_ms <= now_ms:
            self.put(dbkey, None)
            return None
        return kv

    def snapshot(self, now_ms: int) -> Snapshot:
        return Snapshot._trusted({k: v for k, v in self.data.items() if is_live(v, now_ms)})


Handler = Callable[[ModelState, int, Sequence[bytes], int], Reply]


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    arity: int  # Redis convention: n = exactly n args incl. the name; -n = at least n
    handler: Handler
    write: bool

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity >= 0 else argc >= -self.arity


def _bytes_of(kv: KeyValue) -> bytes:
    return cast(bytes, kv.value)


def _items_of(kv: KeyValue) -> tuple[bytes, ...]:
    return cast(tuple[bytes, ...], kv.value)


def _members_of(kv: KeyValue) -> frozenset[bytes]:
    return cast(frozenset[bytes], kv.value)


def _scores_of(kv: KeyValue) -> dict[bytes, float]:
    return dict(cast(frozenset[tuple[bytes, float]], kv.value))


def _fields_of(kv: KeyValue) -> dict[bytes, bytes]:
    return dict(cast(frozenset[tuple[bytes, bytes]], kv.value))


def _ttl_of(old: KeyValue | None) -> int | None:
    return None if old is None else old.expire_at_ms


def _typed(kv: KeyValue | None, type_name: str) -> KeyValue | None:
    if kv is not None and kv.type != type_name:
        raise _CommandError(WRONGTYPE)
    return kv


# ---------------------------------------------------------------- strings


_EXPIRE_OPTS = (b"ex", b"px", b"exat", b"pxat")


def _set(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    dbkey = (db, a[1])
    nx = xx = get = keepttl = False
    expire_at: int | None = None
    have_expire = False
    i = 3
    while i < len(a):
        opt = a[i].lower()
        has_next = i + 1 < len(a)
        if opt == b"nx" and not xx:
            nx = True
        elif opt == b"xx" and not nx:
            xx = True
        elif opt == b"get":
            get = True
        elif opt == b"keepttl" and not have_expire:
            keepttl = True
        elif opt in _EXPIRE_OPTS and not have_expire and not keepttl and has_next:
            amount = _int_arg(a[i + 1])
            if amount <= 0:
                raise _CommandError("ERR invalid expire time in 'set' command")
            ms = amount * 1000 if opt in (b"ex", b"exat") else amount
            expire_at = ms + now if opt in (b"ex", b"px") else ms
            if expire_at > INT64_MAX:
                raise _CommandError("ERR invalid expire time in 'set' command")
            have_expire = True
            i += 1
        else:
            raise _CommandError(SYNTAX)
        i += 1
    if get and nx:
        raise _CommandError(SYNTAX)  # Redis 6.2 rejects SET ... NX GET
    old = st.lookup_write(dbkey, now)
    if get:
        _typed(old, "string")
    reply: Reply = _bytes_of(old) if get and old is not None else None
    if (nx and old is not None) or (xx and old is None):
        return reply
    if keepttl and old is not None:
        expire_at = old.expire_at_ms
    st.put(dbkey, KeyValue("string", a[2], expire_at))
    return reply if get else "OK"


def _setex_generic(unit_ms: int, name: str) -> Handler:
    def handler(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
        amount = _int_arg(a[2])
        if amount <= 0 or amount * unit_ms + now > INT64_MAX:
            raise _CommandError(f"ERR invalid expire time in '{name}' command")
        st.lookup_write((db, a[1]), now)
        st.put((db, a[1]), KeyValue("string", a[3], now + amount * unit_ms))
        return "OK"

    return handler


def _get(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "string")
    return None if kv is None else _bytes_of(kv)


def _incr_by(st: ModelState, db: int, key: bytes, delta: int, now: int) -> Reply:
    dbkey = (db, key)
    old = _typed(st.lookup_write(dbkey, now), "string")
    current = 0
    if old is not None:
        parsed = parse_int(_bytes_of(old))
        if parsed is None:
            raise _CommandError(NOT_INT)
        current = parsed
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise _CommandError(OVERFLOW)
    st.put(dbkey, KeyValue("string", b"%d" % result, None if old is None else old.expire_at_ms))
    return result


def _incr(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return _incr_by(st, db, a[1], 1, now)


def _decr(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return _incr_by(st, db, a[1], -1, now)


def _incrby(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return _incr_by(st, db, a[1], _int_arg(a[2]), now)


def _decrby(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    delta = _int_arg(a[2])
    if delta == INT64_MIN:
        raise _CommandError("ERR decrement would overflow")
    return _incr_by(st, db, a[1], -delta, now)


def _append(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    dbkey = (db, a[1])
    old = _typed(st.lookup_write(dbkey, now), "string")
    if old is None:
        st.put(dbkey, KeyValue("string", a[2], None))
        return len(a[2])
    value = _bytes_of(old) + a[2]
    st.put(dbkey, KeyValue("string", value, old.expire_at_ms))
    return len(value)


# ---------------------------------------------------------------- keys and expiry


def _del(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    removed = 0
    for key in a[1:]:
        if st.lookup_write((db, key), now) is not None:
            st.put((db, key), None)
            removed += 1
    return removed


def _expire_generic(unit_ms: int, relative: bool, name: str) -> Handler:
    def handler(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
        amount = _int_arg(a[2])
        when = amount * unit_ms + (now if relative else 0)
        if not INT64_MIN <= when <= INT64_MAX:
            raise _CommandError(f"ERR invalid expire time in '{name}' command")
        dbkey = (db, a[1])
        old = st.lookup_write(dbkey, now)
        if old is None:
            return 0
        # A time at or before now deletes the key at once (Redis: checkAlreadyExpired).
        st.put(dbkey, None if when <= now else old._replace(expire_at_ms=when))
        return 1

    return handler


def _persist(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    dbkey = (db, a[1])
    old = st.lookup_write(dbkey, now)
    if old is None or old.expire_at_ms is None:
        return 0
    st.put(dbkey, old._replace(expire_at_ms=None))
    return 1


def _ttl_generic(unit_ms: int) -> Handler:
    def handler(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
        kv = st.live((db, a[1]), now)
        if kv is None:
            return -2
        if kv.expire_at_ms is None:
            return -1
        remaining = kv.expire_at_ms - now
        # Redis rounds TTL to the nearest second: (ttl + 500) / 1000.
        return remaining if unit_ms == 1 else (remaining + 500) // 1000

    return handler


def _exists(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return sum(1 for key in a[1:] if st.live((db, key), now) is not None)


def _type(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = st.live((db, a[1]), now)
    return "none" if kv is None else kv.type


def _dbsize(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return sum(1 for (d, _), kv in st.data.items() if d == db and is_live(kv, now))


def _flush_args(a: Sequence[bytes]) -> None:
    if len(a) > 2 or (len(a) == 2 and a[1].lower() not in (b"async", b"sync")):
        raise _CommandError(SYNTAX)


def _flushdb(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    _flush_args(a)
    for dbkey in [k for k in st.data if k[0] == db]:
        st.put(dbkey, None)
    return "OK"


def _flushall(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    _flush_args(a)
    for dbkey in list(st.data):
        st.put(dbkey, None)
    return "OK"


# ---------------------------------------------------------------- lists


def _push_generic(left: bool) -> Handler:
    def handler(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
        dbkey = (db, a[1])
        old = _typed(st.lookup_write(dbkey, now), "list")
        items = () if old is None else _items_of(old)
        new = tuple(reversed(a[2:])) + items if left else items + tuple(a[2:])
        st.put(dbkey, KeyValue("list", new, _ttl_of(old)))
        return len(new)

    return handler


def _pop_generic(left: bool) -> Handler:
    def handler(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
        if len(a) > 3:
            name = a[0].lower().decode("latin-1")
            raise _CommandError(f"ERR wrong number of arguments for '{name}' command")
        count: int | None = None
        if len(a) == 3:
            count = parse_int(a[2])
            if count is None or count < 0:
                raise _CommandError("ERR value is out of range, must be positive")
            if count == 0:
                return None  # Redis 6.2 answers a null array before looking at the key
        dbkey = (db, a[1])
        old = _typed(st.lookup_write(dbkey, now), "list")
        if old is None:
            return None
        items = _items_of(old)
        n = 1 if count is None else min(count, len(items))
        if left:
            popped, rest = list(items[:n]), items[n:]
        else:
            popped, rest = list(reversed(items[len(items) - n :])), items[: len(items) - n]
        st.put(dbkey, KeyValue("list", rest, old.expire_at_ms) if rest else None)
        return popped[0] if count is None else popped

    return handler


def _index_range(start: int, stop: int, n: int) -> slice:
    """LRANGE/ZRANGE's inclusive `start`..`stop` (negative: from the end) over `n` items, as a
    slice; out of range or crossed bounds select nothing."""
    if start < 0:
        start = max(start + n, 0)
    if stop < 0:
        stop += n
    if start > stop or start >= n:
        return slice(0, 0)
    return slice(start, min(stop, n - 1) + 1)


def _lrange(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    start, stop = _int_arg(a[2]), _int_arg(a[3])
    kv = _typed(st.live((db, a[1]), now), "list")
    if kv is None:
        return []
    items = _items_of(kv)
    return list(items[_index_range(start, stop, len(items))])


def _llen(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "list")
    return 0 if kv is None else len(kv.value)


# ---------------------------------------------------------------- sets


def _sadd(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    dbkey = (db, a[1])
    old = _typed(st.lookup_write(dbkey, now), "set")
    members: frozenset[bytes] = frozenset() if old is None else _members_of(old)
    new = members.union(a[2:])
    added = len(new) - len(members)
    if added:
        st.put(dbkey, KeyValue("set", new, _ttl_of(old)))
    return added


def _srem(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    dbkey = (db, a[1])
    old = _typed(st.lookup_write(dbkey, now), "set")
    if old is None:
        return 0
    members = _members_of(old)
    new = members.difference(a[2:])
    removed = len(members) - len(new)
    if removed:
        st.put(dbkey, KeyValue("set", new, old.expire_at_ms) if new else None)
    return removed


def _smembers(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "set")
    return [] if kv is None else sorted(_members_of(kv))


def _scard(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "set")
    return 0 if kv is None else len(kv.value)


def _sismember(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "set")
    return int(kv is not None and a[2] in _members_of(kv))


# ---------------------------------------------------------------- sorted sets


def _zadd(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    flags: set[bytes] = set()
    i = 2
    while i < len(a) and a[i].lower() in (b"nx", b"xx", b"ch", b"incr", b"gt", b"lt"):
        flags.add(a[i].lower())
        i += 1
    rest = a[i:]
    if not rest or len(rest) % 2:
        raise _CommandError(SYNTAX)
    if {b"nx", b"xx"} <= flags:
        raise _CommandError("ERR XX and NX options at the same time are not compatible")
    gt_or_lt = b"gt" in flags or b"lt" in flags
    if (b"gt" in flags and b"lt" in flags) or (gt_or_lt and b"nx" in flags):
        raise _CommandError("ERR GT, LT, and/or NX options at the same time are not compatible")
    incr = b"incr" in flags
    if incr and len(rest) > 2:
        raise _CommandError("ERR INCR option supports a single increment-element pair")
    pairs = [(_float_arg(rest[j]), rest[j + 1]) for j in range(0, len(rest), 2)]
    dbkey = (db, a[1])
    old = _typed(st.lookup_write(dbkey, now), "zset")
    if old is None and b"xx" in flags:
        return None if incr else 0
    scores = {} if old is None else _scores_of(old)
    added = changed = 0
    result: float | None = None
    for score, member in pairs:
        current = scores.get(member)
        if current is None:
            if b"xx" in flags:
                continue
            if incr and math.isnan(score):
                raise _CommandError("ERR resulting score is not a number (NaN)")
            scores[member] = score
            added += 1
            result = score
            continue
        if b"nx" in flags:
            continue
        new = current + score if incr else score
        if math.isnan(new):
            raise _CommandError("ERR resulting score is not a number (NaN)")
        if (b"gt" in flags and new <= current) or (b"lt" in flags and new >= current):
            continue
        result = new
        if new != current:
            scores[member] = new
            changed += 1
    if added or changed:
        st.put(dbkey, KeyValue("zset", frozenset(scores.items()), _ttl_of(old)))
    if incr:
        return None if result is None else format_score(result)
    return added + changed if b"ch" in flags else added


def _zrem(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return _remove_members(st, (db, a[1]), a[2:], now, "zset", _scores_of)


def _zrange(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    withscores = False
    for opt in a[4:]:
        if opt.lower() == b"withscores":
            withscores = True
        elif opt.lower() in (b"byscore", b"bylex", b"rev", b"limit"):
            option = opt.decode("latin-1")
            raise UnsupportedCommand(f"ZRANGE option {option} is not modelled")
        else:
            raise _CommandError(SYNTAX)
    start, stop = _int_arg(a[2]), _int_arg(a[3])
    kv = _typed(st.live((db, a[1]), now), "zset")
    if kv is None:
        return []
    ordered = sorted(_scores_of(kv).items(), key=lambda ms: (ms[1], ms[0]))
    out: list[Any] = []
    for member, score in ordered[_index_range(start, stop, len(ordered))]:
        out.append(member)
        if withscores:
            out.append(format_score(score))
    return out


def _zscore(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "zset")
    if kv is None:
        return None
    score = _scores_of(kv).get(a[2])
    return None if score is None else format_score(score)


def _zcard(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "zset")
    return 0 if kv is None else len(kv.value)


# ---------------------------------------------------------------- hashes


def _hset(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    if len(a) % 2:
        raise _CommandError("ERR wrong number of arguments for 'hset' command")
    dbkey = (db, a[1])
    old = _typed(st.lookup_write(dbkey, now), "hash")
    fields = {} if old is None else _fields_of(old)
    added = 0
    for j in range(2, len(a), 2):
        if a[j] not in fields:
            added += 1
        fields[a[j]] = a[j + 1]
    st.put(dbkey, KeyValue("hash", frozenset(fields.items()), _ttl_of(old)))
    return added


def _hmset(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    if len(a) % 2:
        raise _CommandError("ERR wrong number of arguments for 'hmset' command")
    _hset(st, db, a, now)
    return "OK"


def _hdel(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    return _remove_members(st, (db, a[1]), a[2:], now, "hash", _fields_of)


def _remove_members(
    st: ModelState,
    dbkey: DbKey,
    names: Sequence[bytes],
    now: int,
    kind: str,
    as_dict: Callable[[KeyValue], dict[bytes, Any]],
) -> Reply:
    """ZREM / HDEL: drop members (fields) of a zset (hash); an emptied key disappears."""
    old = _typed(st.lookup_write(dbkey, now), kind)
    if old is None:
        return 0
    members = as_dict(old)
    removed = sum(1 for m in set(names) if members.pop(m, None) is not None)
    if removed:
        left = KeyValue(kind, frozenset(members.items()), old.expire_at_ms) if members else None
        st.put(dbkey, left)
    return removed


def _hget(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "hash")
    return None if kv is None else _fields_of(kv).get(a[2])


def _hgetall(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "hash")
    out: list[Any] = []
    for field, value in sorted(_fields_of(kv).items() if kv is not None else ()):
        out += [field, value]
    return out


def _hlen(st: ModelState, db: int, a: Sequence[bytes], now: int) -> Reply:
    kv = _typed(st.live((db, a[1]), now), "hash")
    return 0 if kv is None else len(kv.value)


def _specs(rows: Iterable[tuple[str, int, Handler, bool]]) -> dict[bytes, _Spec]:
    return {name.encode(): _Spec(name, arity, fn, write) for name, arity, fn, write in rows}


COMMANDS: dict[bytes, _Spec] = _specs(
    [
        ("set", -3, _set, True),
        ("setex", 4, _setex_generic(1000, "setex"), True),
        ("psetex", 4, _setex_generic(1, "psetex"), True),
        ("get", 2, _get, False),
        ("del", -2, _del, True),
        ("incr", 2, _incr, True),
        ("decr", 2, _decr, True),
        ("incrby", 3, _incrby, True),
        ("decrby", 3, _decrby, True),
        ("append", 3, _append, True),
        ("expire", 3, _expire_generic(1000, True, "expire"), True),
        ("pexpire", 3, _expire_generic(1, True, "pexpire"), True),
        ("expireat", 3, _expire_generic(1000, False, "expireat"), True),
        ("pexpireat", 3, _expire_generic(1, False, "pexpireat"), True),
        ("persist", 2, _persist, True),
        ("ttl", 2, _ttl_generic(1000), False),
        ("pttl", 2, _ttl_generic(1), False),
        ("exists", -2, _exists, False),
        ("type", 2, _type, False),
        ("dbsize", 1, _dbsize, False),
        ("flushdb", -1, _flushdb, True),
        ("flushall", -1, _flushall, True),
        ("lpush", -3, _push_generic(True), True),
        ("rpush", -3, _push_generic(False), True),
        ("lpop", -2, _pop_generic(True), True),
        ("rpop", -2, _pop_generic(False), True),
        ("lrange", 4, _lrange, False),
        ("llen", 2, _llen, False),
        ("sadd", -3, _sadd, True),
        ("srem", -3, _srem, True),
        ("smembers", 2, _smembers, False),
        ("scard", 2, _scard, False),
        ("sismember", 3, _sismember, False),
        ("zadd", -4, _zadd, True),
        ("zrem", -3, _zrem, True),
        ("zrange", -4, _zrange, False),
        ("zscore", 3, _zscore, False),
        ("zcard", 2, _zcard, False),
        ("hset", -4, _hset, True),
        ("hmset", -4, _hmset, True),
        ("hdel", -3, _hdel, True),
        ("hget", 3, _hget, False),
        ("hgetall", 2, _hgetall, False),
        ("hlen", 2, _hlen, False),
    ]
)


def _spec(argv: Sequence[bytes]) -> _Spec:
    if not argv:
        raise UnsupportedCommand("empty command")
    spec = COMMANDS.get(bytes(argv[0]).lower())
    if spec is None:
        raise UnsupportedCommand(f"command {bytes(argv[0])!r} is not modelled")
    return spec


def is_write_command(name: bytes) -> bool:
    """True for a modelled command that can change the keyspace; raises for unknown ones."""
    return _spec([name]).write


def _arity_error(spec: _Spec) -> ReplyError:
    return ReplyError(f"ERR wrong number of arguments for '{spec.name}' command")


def _check_db(db: int) -> None:
    if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db < DB_COUNT:
        raise ValueError(f"db must be an int in 0..{DB_COUNT - 1}, got {db!r}")


class Model:
    """Executes commands on a ``ModelState`` the way Redis would, at a given virtual time."""

    __slots__ = ("state",)

    def __init__(self, state: ModelState | None = None) -> None:
        self.state = state if state is not None else ModelState()

    def __repr__(self) -> str:
        return f"Model({len(self.state.data)} keys)"

    def execute(self, argv: Sequence[bytes], *, db: int, now_ms: int) -> Reply:
        """Run one command (read or write) at `now_ms` in `db`; returns Redis's reply."""
        _check_db(db)
        spec = _spec(argv)
        if not spec.arity_ok(len(argv)):
            return _arity_error(spec)
        return self._run(spec, argv, db, now_ms)

    def _run(self, spec: _Spec, argv: Sequence[bytes], db: int, now_ms: int) -> Reply:
        st = self.state
        outer = st.journal
        # A failing command must leave no trace: journal its changes and undo them on error.
        st.journal = {}
        try:
            return spec.handler(st, db, argv, now_ms)
        except _CommandError as exc:
            for dbkey, old in st.journal.items():
                if old is None:
                    st.data.pop(dbkey, None)
                else:
                    st.data[dbkey] = old
            st.journal = {}
            return ReplyError(str(exc))
        finally:
            local, st.journal = st.journal, outer
            if outer is not None:
                for dbkey, old in local.items():
                    outer.setdefault(dbkey, old)

    def apply(self, commands: Sequence[Sequence[bytes]], *, db: int, now_ms: int) -> list[Reply]:
        """Run one history entry (one command, or the commands of a MULTI/EXEC block).

        Returns one reply per command. A block containing a command with an unknown name or a
        wrong number of arguments is discarded whole (EXECABORT), as Redis does at EXEC.
        """
        _check_db(db)
        specs = [_spec(argv) for argv in commands]
        if len(commands) > 1:
            bad = [s for s, argv in zip(specs, commands, strict=True) if not s.arity_ok(len(argv))]
            if bad:
                abort = ReplyError("EXECABORT Transaction discarded because of previous errors.")
                return [abort] * len(commands)
        replies: list[Reply] = []
        for spec, argv in zip(specs, commands, strict=True):
            if not spec.arity_ok(len(argv)):
                replies.append(_arity_error(spec))
            else:
                replies.append(self._run(spec, argv, db, now_ms))
        return replies

    def apply_entry(self, entry: Entry) -> list[Reply]:
        """``apply`` for a history entry, at its own db and execution time."""
        return self.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)

    def read(self, argv: Sequence[bytes], db: int, now_ms: int) -> Reply:
        """What Redis replies to the read command `argv` at `now_ms`; the state is not changed."""
        _check_db(db)
        spec = _spec(argv)
        if spec.write:
            raise ValueError(f"model.read: {spec.name.upper()} is a write, use execute/apply")
        if not spec.arity_ok(len(argv)):
            return _arity_error(spec)
        return self._run(spec, argv, db, now_ms)

    def snapshot(self, now_ms: int) -> Snapshot:
        """The keyspace at `now_ms` (expired keys absent)."""
        return self.state.snapshot(now_ms)
