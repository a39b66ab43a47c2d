"""Command lines drawn from the reference's command surface table.

``reference._surface.WRITE_SURFACE`` lists every write command with every option and arity form
the reference implements; ``surface_argv`` builds one command line for a (command, form) pair
from a few drawn values, so that a generator that walks the table sends every pair (fuzz's
``surface_write`` rule, explore's ``surface`` workload). ``KEY_KIND`` says which key pool a
command's key comes from (its type), so that most draws hit a key of the right type.
"""

from __future__ import annotations

from reference._surface import WRITE_SURFACE

__all__ = ["KEY_KIND", "SURFACE_PAIRS", "surface_argv"]

# Every (command, form) pair of the table, in a fixed order (generators index into it).
SURFACE_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (name, form) for name, forms in WRITE_SURFACE.items() for form in forms
    if name not in ("SELECT", "MULTI"))  # (their own steps: a db switch, a block)

KEY_KIND: dict[str, str] = {
    **{name: "string" for name in ("SET", "SETEX", "PSETEX", "INCR", "DECR", "INCRBY",
                                   "DECRBY", "APPEND")},
    **{name: "any" for name in ("DEL", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT",
                                "PERSIST", "FLUSHDB", "FLUSHALL")},
    **{name: "list" for name in ("LPUSH", "RPUSH", "LPOP", "RPOP")},
    **{name: "set" for name in ("SADD", "SREM")},
    **{name: "zset" for name in ("ZADD", "ZREM")},
    **{name: "hash" for name in ("HSET", "HMSET", "HDEL")},
}


def surface_argv(name: str, form: str, *, key: bytes, other: bytes, value: bytes,
                 members: tuple[bytes, ...], amount: int, now_ms: int) -> tuple[bytes, ...]:
    """One command line of the pair (`name`, `form`). `other` is a second key (for DEL of
    several), `members` two or more members (fields, elements), `amount` a small positive
    number (a count, an increment, seconds or ms ahead), `now_ms` the virtual time (absolute
    expiry times in the future are after it)."""
    several = form == "several"
    n = str(amount).encode()
    cmd = name.encode()
    if name == "SET":
        tail: tuple[bytes, ...] = {
            "plain": (), "NX": (b"NX",), "XX": (b"XX",), "KEEPTTL": (b"KEEPTTL",),
            "EX": (b"EX", n), "PX": (b"PX", n),
            "EXAT": (b"EXAT", str(now_ms // 1000 + amount).encode()),
            "PXAT": (b"PXAT", str(now_ms + amount).encode()),
        }[form]
        return (b"SET", key, value, *tail)
    if name in ("SETEX", "PSETEX"):
        return (cmd, key, n, value)
    if name in ("INCR", "DECR", "PERSIST"):
        return (cmd, key)
    if name in ("INCRBY", "DECRBY"):
        return (cmd, key, n)
    if name == "APPEND":
        return (cmd, key, value)
    if name == "DEL":
        return (cmd, key, other) if several else (cmd, key)
    if name in ("FLUSHDB", "FLUSHALL"):
        return (cmd,) if form == "plain" else (cmd, b"ASYNC" if amount % 2 else b"SYNC")
    if name in ("EXPIRE", "PEXPIRE"):
        return (cmd, key, n if form == "future" else str(-amount).encode())
    if name == "EXPIREAT":
        when = now_ms // 1000 + amount if form == "future" else 0
        return (cmd, key, str(when).encode())
    if name == "PEXPIREAT":
        when = now_ms + amount if form == "future" else 1
        return (cmd, key, str(when).encode())
    if name in ("LPOP", "RPOP"):
        return (cmd, key) if form == "plain" else (cmd, key, n)
    if name in ("LPUSH", "RPUSH", "SADD", "SREM", "ZREM", "HDEL"):
        return (cmd, key, *(members if several else members[:1]))
    if name in ("HSET", "HMSET"):
        chosen = members if several else members[:1]
        return (cmd, key, *(x for m in chosen for x in (m, value)))
    if name == "ZADD":
        if form == "INCR":
            return (cmd, key, b"INCR", n, members[0])
        options = () if form in ("one", "several") else (form.encode(),)
        chosen = members if several or form not in ("one",) else members[:1]
        if options:
            chosen = members[: 1 + amount % len(members)]
        return (cmd, key, *options,
                *(x for i, m in enumerate(chosen) for x in (str(amount + i).encode(), m)))
    raise ValueError(f"no command line for {name} {form}")  # pragma: no cover - table drift
