"""Command table and executor: Redis 6.2 semantics and reply conventions for the supported commands.

The ``Executor`` runs commands for ``Client`` objects against a ``Keyspace``. The server and the
AOF loader share it: the server gives it ``Hooks`` (MISCONF check, propagation to the AOF,
BGREWRITEAOF, INFO); the loader gives none, which also turns off lazy expiry (as Redis does while
loading). A command that changed the dataset bumps ``dirty``; only those are propagated, like
``call()`` in server.c. A command that must be fed in another form sets ``prop_argv`` (as Redis's
``rewriteClientCommandVector``); the feed defects of ``reference.defects`` act there.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from reference import defects as D
from reference._keyspace import DB_COUNT, Db, Hash, Keyspace, Value, ZSet, type_name
from reference._resp import OK, PONG, QUEUED, ErrorReply, Reply, SimpleString

__all__ = [
    "COMMANDS",
    "Client",
    "Command",
    "Executor",
    "Hooks",
    "Proc",
    "format_score",
]

WRONGTYPE: Final = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INT: Final = ErrorReply("ERR value is not an integer or out of range")
NOT_FLOAT: Final = ErrorReply("ERR value is not a valid float")
SYNTAX: Final = ErrorReply("ERR syntax error")
EXECABORT: Final = ErrorReply("EXECABORT Transaction discarded because of previous errors.")

_INT_RE: Final = re.compile(rb"-?(?:0|[1-9][0-9]{0,19})")
_LLONG_MIN: Final = -(2**63)
_LLONG_MAX: Final = 2**63 - 1
_FLOAT_RE: Final = re.compile(
    rb"[-+]?(?:inf|infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?)", re.IGNORECASE
)


def _parse_int(raw: bytes) -> int | None:
    """Redis string2ll: optional '-', no '+', no leading zeros, no spaces, int64 range."""
    if _INT_RE.fullmatch(raw) is None:
        return None
    value = int(raw)
    if value < _LLONG_MIN or value > _LLONG_MAX or raw == b"-0":
        return None
    return value


def _parse_float(raw: bytes) -> float | None:
    """Redis strtold-based parsing: the whole string, no spaces, NaN rejected."""
    if _FLOAT_RE.fullmatch(raw) is None:
        return None
    value = float(raw)
    return None if math.isnan(value) else value


def format_score(score: float) -> bytes:
    """A score as Redis replies it (``%.17g``; ``inf``/``-inf``)."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score


class Client:
    """A connection's state: selected db and MULTI queue."""

    __slots__ = ("db", "id", "multi", "multi_dirty", "multi_write")

    def __init__(self, client_id: int = 0) -> None:
        self.id = client_id
        self.db = 0
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_dirty = False
        self.multi_write = False

    def discard(self) -> None:
        self.multi = None
        self.multi_dirty = False
        self.multi_write = False


class Hooks(Protocol):
    """What the executor needs from a running server."""

    def write_denied(self) -> str | None:
        """The MISCONF error text if writes are refused, else None."""

    def propagate(self, db: int, argv: list[bytes]) -> None:
        """Feed one command that changed the dataset to the AOF (feedAppendOnlyFile)."""

    def bgrewriteaof(self) -> Reply:
        """Handle BGREWRITEAOF."""

    def info_section(self, section: bytes | None) -> bytes:
        """The INFO text for a section (None: the default sections)."""


Proc = Callable[["Executor", Client, list[bytes]], Reply]


class Command:
    """A command table entry (name, implementation, arity like Redis, flags)."""

    __slots__ = ("arity", "name", "proc", "queueable", "write")

    def __init__(self, name: str, proc: Proc, arity: int, *, write: bool, queueable: bool = True):
        self.name = name
        self.proc = proc
        self.arity = arity
        self.write = write
        self.queueable = queueable

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def __repr__(self) -> str:
        return f"Command({self.name!r})"


def _arity_error(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


def _unknown_command(argv: list[bytes]) -> ErrorReply:
    args = "".join(f"`{a[:128].decode('latin-1')}`, " for a in argv[1:])
    name = argv[0][:128].decode("latin-1")
    return ErrorReply(f"ERR unknown command `{name}`, with args beginning with: {args}")


class Executor:
    """Runs commands; counts dataset changes in ``dirty``; propagates through ``hooks``."""

    __slots__ = ("dbs", "defects", "dirty", "exec_multi_emitted", "hooks", "in_exec", "keyspace",
                 "now_ms", "prop_argv")

    def __init__(
        self,
        keyspace: Keyspace,
        hooks: Hooks | None = None,
        *,
        defects: frozenset[str] = frozenset(),
    ) -> None:
        self.keyspace = keyspace
        self.dbs = keyspace.dbs
        self.hooks = hooks
        self.defects = defects  # the named defects that act on what commands feed to the AOF
        self.now_ms = 0
        self.dirty = 0
        # Set by a command that must be propagated in a different form (EXPIRE in the past -> DEL).
        self.prop_argv: list[bytes] | None = None
        self.in_exec = False
        self.exec_multi_emitted = False

    # -- key lookup with lazy expiry (expireIfNeeded) ------------------------------------------

    def lookup(self, db: Db, key: bytes) -> Value | None:
        value = db.data.get(key)
        if value is None or not db.expires:
            return value
        when = db.expires.get(key)
        if when is None or when > self.now_ms or self.hooks is None:
            # No expiry while loading (hooks is None): Redis's expireIfNeeded returns 0 then.
            return value
        db.delete(key)
        self.propagate(db.id, [b"DEL", key])
        return None

    def propagate(self, db_id: int, argv: list[bytes]) -> None:
        hooks = self.hooks
        if hooks is None:
            return
        if self.in_exec and not self.exec_multi_emitted:
            # execCommandPropagateMulti: MULTI is emitted lazily, before the first write.
            self.exec_multi_emitted = True
            hooks.propagate(db_id, [b"MULTI"])
        hooks.propagate(db_id, argv)

    # -- dispatch ------------------------------------------------------------------------------

    def call(self, client: Client, argv: list[bytes]) -> Reply:
        """processCommand: lookup, arity, MISCONF, MULTI queueing, then run."""
        cmd = COMMANDS.get(argv[0].lower())
        if cmd is None:
            if client.multi is not None:
                client.multi_dirty = True
            return _unknown_command(argv)
        if not cmd.arity_ok(len(argv)):
            if client.multi is not None:
                client.multi_dirty = True
            return _arity_error(cmd.name)
        hooks = self.hooks
        if hooks is not None and (
            cmd.write or cmd.proc is _ping or (cmd.proc is _exec and client.multi_write)
        ):
            denied = hooks.write_denied()
            if denied is not None:
                if cmd.proc is _exec:
                    client.discard()
                    return ErrorReply(f"EXECABORT Transaction discarded because of: {denied}")
                if client.multi is not None:
                    client.multi_dirty = True
                return ErrorReply(denied)
        if client.multi is not None and cmd.queueable:
            client.multi.append((cmd, argv))
            if cmd.write:
                client.multi_write = True
            return QUEUED
        return self.run(cmd, client, argv)

    def run(self, cmd: Command, client: Client, argv: list[bytes]) -> Reply:
        """call(): execute and propagate if the dataset changed."""
        dirty = self.dirty
        self.prop_argv = None
        reply = cmd.proc(self, client, argv)
        if cmd.write and self.dirty != dirty and self.hooks is not None:
            prop = self.prop_argv
            self.propagate(client.db, argv if prop is None else prop)
        return reply


# -- generic / keyspace commands ---------------------------------------------------------------


def _ping(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if len(argv) > 2:
        return _arity_error("ping")
    return argv[1] if len(argv) == 2 else PONG


def _select(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    index = _parse_int(argv[1])
    if index is None:
        return NOT_INT
    if not 0 <= index < DB_COUNT:
        return ErrorReply("ERR DB index is out of range")
    c.db = index
    return OK


def _del(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    deleted = 0
    for key in argv[1:]:
        if ex.lookup(db, key) is not None and db.delete(key):
            deleted += 1
    ex.dirty += deleted
    if len(argv) > 2 and D.DEL_FEEDS_FIRST_KEY in ex.defects:
        ex.prop_argv = argv[:2]  # the defect: the other deleted keys are not fed
    return deleted


def _exists(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    return sum(1 for key in argv[1:] if ex.lookup(db, key) is not None)


def _type(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    return SimpleString("none" if value is None else type_name(value))


def _glob_to_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Redis stringmatchlen: * ? [abc] [^a-z] and backslash escapes."""
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i : i + 1]
        if ch == b"*":
            out += b".*"
        elif ch == b"?":
            out += b"."
        elif ch == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif ch == b"[":
            j = pattern.find(b"]", i + 1)
            if j < 0:
                out += re.escape(pattern[i:])
                break
            body = pattern[i + 1 : j]
            negate = body.startswith(b"^")
            if negate:
                body = body[1:]
            cls = bytearray()
            k = 0
            while k < len(body):
                if body[k : k + 1] == b"\\" and k + 1 < len(body):
                    k += 1
                if k + 2 < len(body) and body[k + 1 : k + 2] == b"-":
                    lo, hi = sorted((body[k], body[k + 2]))
                    cls += re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi]))
                    k += 3
                    continue
                cls += re.escape(body[k : k + 1])
                k += 1
            out += b"[" + (b"^" if negate else b"") + bytes(cls) + b"]" if cls else b"(?!)"
            i = j
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(bytes(out), re.DOTALL)


def _keys(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    now = ex.now_ms
    match = None if argv[1] == b"*" else _glob_to_regex(argv[1]).fullmatch
    out: list[Reply] = []
    for key in db.data:
        when = db.expires.get(key)
        if when is not None and when <= now:
            continue  # keyIsExpired: skipped, not deleted
        if match is None or match(key):
            out.append(key)
    return out


def _scan(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    """SCAN cursor [MATCH pattern] [COUNT n] [TYPE type].

    The whole database is returned in one reply with cursor 0: COUNT is only a hint in Redis,
    and one pass trivially keeps SCAN's guarantee (every key present throughout is returned).
    """
    cursor = _parse_int(argv[1])
    if cursor is None or cursor < 0:
        return ErrorReply("ERR invalid cursor")
    match = None
    kind: str | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        if i + 1 >= len(argv):
            return SYNTAX
        if opt == b"count":
            count = _parse_int(argv[i + 1])
            if count is None:
                return NOT_INT
            if count < 1:
                return SYNTAX
        elif opt == b"match":
            match = None if argv[i + 1] == b"*" else _glob_to_regex(argv[i + 1]).fullmatch
        elif opt == b"type":
            kind = argv[i + 1].decode("latin-1").lower()
        else:
            return SYNTAX
        i += 2
    db = ex.dbs[c.db]
    now = ex.now_ms
    keys: list[Reply] = []
    if cursor == 0:  # any other cursor is past the end: one pass returns everything
        for key, value in db.data.items():
            when = db.expires.get(key)
            if when is not None and when <= now:
                continue
            if match is not None and not match(key):
                continue
            if kind is not None and type_name(value) != kind:
                continue
            keys.append(key)
    return [b"0", keys]


def _dbsize(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    # Like Redis, logically expired keys not yet reclaimed are counted.
    return len(ex.dbs[c.db].data)


def _flush_flags(argv: list[bytes]) -> bool:
    return len(argv) == 1 or (len(argv) == 2 and argv[1].lower() in (b"async", b"sync"))


def _flushdb(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if not _flush_flags(argv):
        return SYNTAX
    ex.dbs[c.db].clear()
    ex.dirty += 1  # forceCommandPropagation: propagated even when the db was empty
    return OK


def _flushall(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if not _flush_flags(argv):
        return SYNTAX
    for db in ex.dbs:
        db.clear()
    ex.dirty += 1
    return OK


# -- strings -----------------------------------------------------------------------------------


def _set_generic(
    ex: Executor, c: Client, key: bytes, value: bytes, expire_at: int | None, keepttl: bool,
    nx: bool, xx: bool,
) -> Reply:
    db = ex.dbs[c.db]
    if nx or xx:
        exists = ex.lookup(db, key) is not None
        if (nx and exists) or (xx and not exists):
            return None
    elif db.expires:
        ex.lookup(db, key)  # lazily expire first, so the DEL is propagated before the SET
    db.data[key] = value
    if expire_at is not None:
        db.set_expire(key, expire_at)
    elif not keepttl and db.expires:
        db.expires.pop(key, None)
    ex.dirty += 1
    return OK


def _set(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    argc = len(argv)
    if argc == 3:  # the hot path of both serving and loading
        db = ex.dbs[c.db]
        key = argv[1]
        if db.expires:
            if ex.hooks is not None:
                ex.lookup(db, key)  # lazily expire first: the DEL is propagated before the SET
            db.expires.pop(key, None)
        db.data[key] = argv[2]
        ex.dirty += 1
        return OK
    nx = xx = keepttl = False
    unit: bytes | None = None
    expire_raw = b""
    j = 3
    while j < argc:
        opt = argv[j].upper()
        has_next = j + 1 < argc
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"KEEPTTL" and unit is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not keepttl and unit is None and has_next:
            unit = opt
            j += 1
            expire_raw = argv[j]
        else:
            return SYNTAX
        j += 1
    expire_at: int | None = None
    if unit is not None:
        amount = _parse_int(expire_raw)
        if amount is None:
            return NOT_INT
        if amount <= 0:
            return ErrorReply("ERR invalid expire time in 'set' command")
        if unit == b"EX":
            expire_at = ex.now_ms + amount * 1000
        elif unit == b"PX":
            expire_at = ex.now_ms + amount
        elif unit == b"EXAT":
            expire_at = amount * 1000
        else:
            expire_at = amount
    return _set_generic(ex, c, argv[1], argv[2], expire_at, keepttl, nx, xx)


def _setex_generic(ex: Executor, c: Client, argv: list[bytes], scale: int, name: str) -> Reply:
    amount = _parse_int(argv[2])
    if amount is None:
        return NOT_INT
    if amount <= 0:
        return ErrorReply(f"ERR invalid expire time in '{name}' command")
    return _set_generic(ex, c, argv[1], argv[3], ex.now_ms + amount * scale, False, False, False)


def _setex(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _setex_generic(ex, c, argv, 1000, "setex")


def _psetex(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _setex_generic(ex, c, argv, 1, "psetex")


def _get(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None or type(value) is bytes:
        return value
    return WRONGTYPE


def _incr_generic(ex: Executor, c: Client, key: bytes, delta: int) -> Reply:
    db = ex.dbs[c.db]
    value = ex.lookup(db, key)
    if value is None:
        current = 0
    elif type(value) is not bytes:
        return WRONGTYPE
    else:
        parsed = _parse_int(value)
        if parsed is None:
            return NOT_INT
        current = parsed
    result = current + delta
    if result < _LLONG_MIN or result > _LLONG_MAX:
        return ErrorReply("ERR increment or decrement would overflow")
    db.data[key] = b"%d" % result  # overwrite keeps the TTL
    ex.dirty += 1
    return result


def _incr(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _incr_generic(ex, c, argv[1], 1)


def _decr(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _incr_generic(ex, c, argv[1], -1)


def _incrby(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    delta = _parse_int(argv[2])
    return NOT_INT if delta is None else _incr_generic(ex, c, argv[1], delta)


def _decrby(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    delta = _parse_int(argv[2])
    if delta is None:
        return NOT_INT
    if delta == _LLONG_MIN:
        return ErrorReply("ERR decrement would overflow")
    return _incr_generic(ex, c, argv[1], -delta)


def _append(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        new = argv[2]
    elif type(value) is not bytes:
        return WRONGTYPE
    else:
        new = value + argv[2]
    db.data[argv[1]] = new
    ex.dirty += 1
    return len(new)


# -- expiry ------------------------------------------------------------------------------------


def _expire_generic(ex: Executor, c: Client, argv: list[bytes], base_ms: int, scale: int) -> Reply:
    amount = _parse_int(argv[2])
    if amount is None:
        return NOT_INT
    when = amount * scale + base_ms
    db = ex.dbs[c.db]
    key = argv[1]
    if ex.lookup(db, key) is None:
        return 0
    if when <= ex.now_ms and ex.hooks is not None:
        # checkAlreadyExpired: delete now and propagate DEL instead of the EXPIRE.
        db.delete(key)
        ex.dirty += 1
        ex.prop_argv = [b"DEL", key]
        return 1
    db.set_expire(key, when)
    ex.dirty += 1
    return 1


def _expire(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _expire_generic(ex, c, argv, ex.now_ms, 1000)


def _pexpire(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _expire_generic(ex, c, argv, ex.now_ms, 1)


def _expireat(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _expire_generic(ex, c, argv, 0, 1000)


def _pexpireat(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _expire_generic(ex, c, argv, 0, 1)


def _persist(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    if ex.lookup(db, argv[1]) is None or db.expires.pop(argv[1], None) is None:
        return 0
    ex.dirty += 1
    return 1


def _ttl_generic(ex: Executor, c: Client, argv: list[bytes], ms: bool) -> Reply:
    db = ex.dbs[c.db]
    if ex.lookup(db, argv[1]) is None:
        return -2
    when = db.expires.get(argv[1])
    if when is None:
        return -1
    left = max(when - ex.now_ms, 0)
    return left if ms else (left + 500) // 1000


def _ttl(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _ttl_generic(ex, c, argv, False)


def _pttl(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _ttl_generic(ex, c, argv, True)


# -- lists -------------------------------------------------------------------------------------


def _push(ex: Executor, c: Client, argv: list[bytes], left: bool) -> Reply:
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        value = deque()
        db.data[argv[1]] = value
    elif not isinstance(value, deque):
        return WRONGTYPE
    if left:
        value.extendleft(argv[2:])
    else:
        value.extend(argv[2:])
    ex.dirty += len(argv) - 2
    if len(argv) > 3 and D.PUSH_FEEDS_LAST_ELEMENT in ex.defects:
        ex.prop_argv = [argv[0], argv[1], argv[-1]]  # the defect: only the last element is fed
    return len(value)


def _lpush(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _push(ex, c, argv, True)


def _rpush(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _push(ex, c, argv, False)


def _pop(ex: Executor, c: Client, argv: list[bytes], left: bool) -> Reply:
    if len(argv) > 3:
        return SYNTAX
    count: int | None = None
    if len(argv) == 3:
        count = _parse_int(argv[2])
        if count is None or count < 0:
            return ErrorReply("ERR value is out of range, must be positive")
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        return None
    if not isinstance(value, deque):
        return WRONGTYPE
    if count is None:
        item = value.popleft() if left else value.pop()
        popped: list[Reply] = [item]
    else:
        if count == 0:
            return []
        popped = [value.popleft() if left else value.pop() for _ in range(min(count, len(value)))]
    if not value:
        db.delete(argv[1])
    ex.dirty += 1
    return popped[0] if count is None else popped


def _lpop(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _pop(ex, c, argv, True)


def _rpop(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _pop(ex, c, argv, False)


def _range(start: int, stop: int, size: int) -> tuple[int, int] | None:
    if start < 0:
        start += size
    if stop < 0:
        stop += size
    start = max(start, 0)
    if start > stop or start >= size:
        return None
    return start, min(stop, size - 1)


def _lrange(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    start, stop = _parse_int(argv[2]), _parse_int(argv[3])
    if start is None or stop is None:
        return NOT_INT
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return []
    if not isinstance(value, deque):
        return WRONGTYPE
    bounds = _range(start, stop, len(value))
    if bounds is None:
        return []
    items = list(value)
    return list(items[bounds[0] : bounds[1] + 1])


def _llen(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return 0
    return len(value) if isinstance(value, deque) else WRONGTYPE


# -- sets --------------------------------------------------------------------------------------


def _sadd(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        value = set()
        db.data[argv[1]] = value
    elif type(value) is not set:
        return WRONGTYPE
    before = len(value)
    value.update(argv[2:])
    added = len(value) - before
    ex.dirty += added
    if len(argv) > 3 and D.SADD_FEEDS_FIRST_MEMBER in ex.defects:
        ex.prop_argv = argv[:3]  # the defect: only the first member is fed
    return added


def _srem(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        return 0
    if type(value) is not set:
        return WRONGTYPE
    before = len(value)
    value.difference_update(argv[2:])
    removed = before - len(value)
    if not value:
        db.delete(argv[1])
    ex.dirty += removed
    if len(argv) > 3 and D.REMOVE_FEEDS_FIRST_MEMBER in ex.defects:
        ex.prop_argv = argv[:3]  # the defect: only the first member is fed
    return removed


def _smembers(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return []
    if type(value) is not set:
        return WRONGTYPE
    return list(sorted(value))  # sorted: deterministic (Redis order is the hash table's)


def _scard(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return 0
    return len(value) if type(value) is set else WRONGTYPE


def _sismember(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return 0
    return int(argv[2] in value) if type(value) is set else WRONGTYPE


# -- sorted sets -------------------------------------------------------------------------------


def _zadd(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    nx = xx = gt = lt = ch = incr = False
    j = 2
    while j < len(argv):
        opt = argv[j].upper()
        if opt == b"NX":
            nx = True
        elif opt == b"XX":
            xx = True
        elif opt == b"GT":
            gt = True
        elif opt == b"LT":
            lt = True
        elif opt == b"CH":
            ch = True
        elif opt == b"INCR":
            incr = True
        else:
            break
        j += 1
    elements = len(argv) - j
    if elements % 2 or not elements:
        return SYNTAX
    if nx and xx:
        return ErrorReply("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        return ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and elements > 2:
        return ErrorReply("ERR INCR option supports a single increment-element pair")
    pairs: list[tuple[float, bytes]] = []
    for k in range(j, len(argv), 2):
        score = _parse_float(argv[k])
        if score is None:
            return NOT_FLOAT
        pairs.append((score, argv[k + 1]))
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        if xx:
            return None if incr else 0
        value = ZSet()
        db.data[argv[1]] = value
    elif not isinstance(value, ZSet):
        return WRONGTYPE
    added = updated = 0
    result: float | None = None
    for score, member in pairs:
        current = value.get(member)
        if current is not None:
            if nx:
                continue
            new = current + score if incr else score
            if math.isnan(new):
                if not value:
                    db.delete(argv[1])
                return ErrorReply("ERR resulting score is not a number (NaN)")
            if (gt and new <= current) or (lt and new >= current):
                continue
            result = new
            if new != current:
                value[member] = new
                updated += 1
        else:
            if xx:
                continue
            value[member] = score
            result = score
            added += 1
    if not value:
        db.delete(argv[1])
    ex.dirty += added + updated
    if elements > 2 and D.ZADD_FEEDS_FIRST_PAIR in ex.defects:
        ex.prop_argv = argv[: j + 2]  # the defect: the options and the first pair only
    if incr:
        return None if result is None else format_score(result)
    return added + updated if ch else added


def _zrem(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _remove_fields(ex, c, argv, ZSet)


def _zrange(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    withscores = rev = False
    for opt in argv[4:]:
        upper = opt.upper()
        if upper == b"WITHSCORES":
            withscores = True
        elif upper == b"REV":
            rev = True
        else:
            return SYNTAX
    start, stop = _parse_int(argv[2]), _parse_int(argv[3])
    if start is None or stop is None:
        return NOT_INT
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return []
    if not isinstance(value, ZSet):
        return WRONGTYPE
    ordered = sorted(value.items(), key=lambda item: (item[1], item[0]), reverse=rev)
    bounds = _range(start, stop, len(ordered))
    if bounds is None:
        return []
    out: list[Reply] = []
    for member, score in ordered[bounds[0] : bounds[1] + 1]:
        out.append(member)
        if withscores:
            out.append(format_score(score))
    return out


def _zscore(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return None
    if not isinstance(value, ZSet):
        return WRONGTYPE
    score = value.get(argv[2])
    return None if score is None else format_score(score)


def _zcard(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return 0
    return len(value) if isinstance(value, ZSet) else WRONGTYPE


# -- hashes ------------------------------------------------------------------------------------


def _hset_generic(ex: Executor, c: Client, argv: list[bytes], name: str) -> Reply:
    if len(argv) % 2 == 1:
        return _arity_error(name)
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        value = Hash()
        db.data[argv[1]] = value
    elif not isinstance(value, Hash):
        return WRONGTYPE
    created = 0
    for k in range(2, len(argv), 2):
        if argv[k] not in value:
            created += 1
        value[argv[k]] = argv[k + 1]
    ex.dirty += (len(argv) - 2) // 2
    if len(argv) > 4 and D.HSET_FEEDS_FIRST_FIELD in ex.defects:
        ex.prop_argv = argv[:4]  # the defect: only the first field-value pair is fed
    return created if name == "hset" else OK


def _hset(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _hset_generic(ex, c, argv, "hset")


def _hmset(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _hset_generic(ex, c, argv, "hmset")


def _hdel(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    return _remove_fields(ex, c, argv, Hash)


def _remove_fields(
    ex: Executor, c: Client, argv: list[bytes], kind: type[ZSet] | type[Hash]
) -> Reply:
    """ZREM / HDEL: drop members (fields) of a dict-backed value; an emptied key is deleted."""
    db = ex.dbs[c.db]
    value = ex.lookup(db, argv[1])
    if value is None:
        return 0
    if not isinstance(value, kind):
        return WRONGTYPE
    fields: dict[bytes, Any] = value
    removed = 0
    for member in argv[2:]:
        if fields.pop(member, None) is not None:
            removed += 1
    if not value:
        db.delete(argv[1])
    ex.dirty += removed
    if len(argv) > 3 and D.REMOVE_FEEDS_FIRST_MEMBER in ex.defects:
        ex.prop_argv = argv[:3]  # the defect: only the first member (field) is fed
    return removed


def _hget(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return None
    if not isinstance(value, Hash):
        return WRONGTYPE
    return value.get(argv[2])


def _hgetall(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return []
    if not isinstance(value, Hash):
        return WRONGTYPE
    out: list[Reply] = []
    for field in sorted(value):
        out.append(field)
        out.append(value[field])
    return out


def _hlen(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    value = ex.lookup(ex.dbs[c.db], argv[1])
    if value is None:
        return 0
    return len(value) if isinstance(value, Hash) else WRONGTYPE


# -- transactions and server commands ----------------------------------------------------------


def _multi(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if c.multi is not None:
        return ErrorReply("ERR MULTI calls can not be nested")
    c.multi = []
    return OK


def _discard(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if c.multi is None:
        return ErrorReply("ERR DISCARD without MULTI")
    c.discard()
    return OK


def _exec(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    queue = c.multi
    if queue is None:
        return ErrorReply("ERR EXEC without MULTI")
    if c.multi_dirty:
        c.discard()
        return EXECABORT
    c.discard()
    ex.in_exec = True
    ex.exec_multi_emitted = False
    try:
        replies: list[Reply] = [ex.run(cmd, c, cmd_argv) for cmd, cmd_argv in queue]
    finally:
        ex.in_exec = False
    if ex.exec_multi_emitted and ex.hooks is not None:
        ex.hooks.propagate(c.db, [b"EXEC"])
    ex.exec_multi_emitted = False
    return replies


def _bgrewriteaof(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if ex.hooks is None:
        return ErrorReply("ERR BGREWRITEAOF is not available while loading")
    return ex.hooks.bgrewriteaof()


def _info(ex: Executor, c: Client, argv: list[bytes]) -> Reply:
    if len(argv) > 2:
        return SYNTAX
    if ex.hooks is None:
        return b""
    return ex.hooks.info_section(argv[1].lower() if len(argv) == 2 else None)


def _entry(name: str, proc: Proc, arity: int, *, write: bool = False,
           queueable: bool = True) -> tuple[bytes, Command]:
    return name.encode(), Command(name, proc, arity, write=write, queueable=queueable)


COMMANDS: dict[bytes, Command] = dict(
    [
        _entry("ping", _ping, -1),
        _entry("select", _select, 2),
        _entry("set", _set, -3, write=True),
        _entry("setex", _setex, 4, write=True),
        _entry("psetex", _psetex, 4, write=True),
        _entry("get", _get, 2),
        _entry("del", _del, -2, write=True),
        _entry("exists", _exists, -2),
        _entry("type", _type, 2),
        _entry("keys", _keys, 2),
        _entry("dbsize", _dbsize, 1),
        _entry("scan", _scan, -2),
        _entry("flushdb", _flushdb, -1, write=True),
        _entry("flushall", _flushall, -1, write=True),
        _entry("incr", _incr, 2, write=True),
        _entry("decr", _decr, 2, write=True),
        _entry("incrby", _incrby, 3, write=True),
        _entry("decrby", _decrby, 3, write=True),
        _entry("append", _append, 3, write=True),
        _entry("expire", _expire, 3, write=True),
        _entry("pexpire", _pexpire, 3, write=True),
        _entry("expireat", _expireat, 3, write=True),
        _entry("pexpireat", _pexpireat, 3, write=True),
        _entry("persist", _persist, 2, write=True),
        _entry("ttl", _ttl, 2),
        _entry("pttl", _pttl, 2),
        _entry("lpush", _lpush, -3, write=True),
        _entry("rpush", _rpush, -3, write=True),
        _entry("lpop", _lpop, -2, write=True),
        _entry("rpop", _rpop, -2, write=True),
        _entry("lrange", _lrange, 4),
        _entry("llen", _llen, 2),
        _entry("sadd", _sadd, -3, write=True),
        _entry("srem", _srem, -3, write=True),
        _entry("smembers", _smembers, 2),
        _entry("scard", _scard, 2),
        _entry("sismember", _sismember, 3),
        _entry("zadd", _zadd, -4, write=True),
        _entry("zrem", _zrem, -3, write=True),
        _entry("zrange", _zrange, -4),
        _entry("zscore", _zscore, 3),
        _entry("zcard", _zcard, 2),
        _entry("hset", _hset, -4, write=True),
        _entry("hmset", _hmset, -4, write=True),
        _entry("hdel", _hdel, -3, write=True),
        _entry("hget", _hget, 3),
        _entry("hgetall", _hgetall, 2),
        _entry("hlen", _hlen, 2),
        _entry("multi", _multi, 1, queueable=False),
        _entry("exec", _exec, 1, queueable=False),
        _entry("discard", _discard, 1, queueable=False),
        _entry("bgrewriteaof", _bgrewriteaof, 1),
        _entry("info", _info, -1),
    ]
)

EXEC_COMMAND: Final = COMMANDS[b"exec"]
MULTI_COMMAND: Final = COMMANDS[b"multi"]
