"""The reference's command surface: every write command with every option and arity form it
implements, in one table (``WRITE_SURFACE``), and which forms one command line exercises
(``command_forms``).

A form is a distinct way the command reaches the AOF: an option (SET's EX, ZADD's INCR), an
arity (DEL of one key or several, LPOP with a count), or a value class the server propagates
differently (an EXPIRE whose time is already past is propagated as a DEL). Generators (fuzz's
state machines, explore's workloads) draw from this table, and ``benchmarks/coverage.py``
reports which (command, form) pairs they generated. A form added to the commands must be added
here (``tests/test_reference_surface.py`` checks the table against ``COMMANDS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["WRITE_SURFACE", "command_forms", "surface_pairs"]

ONE, SEVERAL = "one", "several"

WRITE_SURFACE: Final[dict[str, tuple[str, ...]]] = {
    "SET": ("plain", "EX", "PX", "EXAT", "PXAT", "NX", "XX", "KEEPTTL"),
    "SETEX": ("plain",),
    "PSETEX": ("plain",),
    "DEL": (ONE, SEVERAL),
    "FLUSHDB": ("plain", "ASYNC|SYNC"),
    "FLUSHALL": ("plain", "ASYNC|SYNC"),
    "INCR": ("plain",),
    "DECR": ("plain",),
    "INCRBY": ("plain",),
    "DECRBY": ("plain",),
    "APPEND": ("plain",),
    "EXPIRE": ("future", "past"),
    "PEXPIRE": ("future", "past"),
    "EXPIREAT": ("future", "past"),
    "PEXPIREAT": ("future", "past"),
    "PERSIST": ("plain",),
    "LPUSH": (ONE, SEVERAL),
    "RPUSH": (ONE, SEVERAL),
    "LPOP": ("plain", "count"),
    "RPOP": ("plain", "count"),
    "SADD": (ONE, SEVERAL),
    "SREM": (ONE, SEVERAL),
    "ZADD": (ONE, SEVERAL, "NX", "XX", "GT", "LT", "CH", "INCR"),
    "ZREM": (ONE, SEVERAL),
    "HSET": (ONE, SEVERAL),
    "HMSET": (ONE, SEVERAL),
    "HDEL": (ONE, SEVERAL),
    "SELECT": ("plain",),
    "MULTI": ("EXEC",),
}

# Absolute expiry times at or below this (in the command's unit) are in the past for any run
# (the virtual clock starts at 0 and a run lasts seconds): a generator's way to say "past".
_PAST_ABSOLUTE = 1


def _count(n: int) -> str:
    return ONE if n == 1 else SEVERAL


def command_forms(argv: Sequence[bytes]) -> tuple[tuple[str, str], ...]:
    """The (command, form) pairs of ``WRITE_SURFACE`` one command line exercises (none for a
    read, an unknown command or a malformed one)."""
    if not argv:
        return ()
    name = argv[0].decode("latin-1").upper()
    args = [a.upper() for a in argv[1:]]
    n = len(args)
    forms: list[str] = []
    if name == "SET" and n >= 2:
        options = [a.decode("latin-1") for a in args[2:]
                   if a in (b"EX", b"PX", b"EXAT", b"PXAT", b"NX", b"XX", b"KEEPTTL")]
        forms = options or ["plain"]
    elif name in ("SETEX", "PSETEX", "INCR", "DECR", "INCRBY", "DECRBY", "APPEND", "PERSIST",
                  "SELECT") and n >= 1:
        forms = ["plain"]
    elif name in ("DEL",) and n >= 1:
        forms = [_count(n)]
    elif name in ("FLUSHDB", "FLUSHALL"):
        forms = ["plain" if n == 0 else "ASYNC|SYNC"]
    elif name in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT") and n == 2:
        try:
            amount = int(argv[2])
        except ValueError:
            return ()
        absolute = name.endswith("AT")
        past = amount <= _PAST_ABSOLUTE if absolute else amount <= 0
        forms = ["past" if past else "future"]
    elif name in ("LPUSH", "RPUSH", "SADD", "SREM", "ZREM", "HDEL") and n >= 2:
        forms = [_count(n - 1)]
    elif name in ("LPOP", "RPOP") and n >= 1:
        forms = ["plain" if n == 1 else "count"]
    elif name == "ZADD" and n >= 3:
        j = 1
        options = []
        while j < n and args[j] in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
            options.append(args[j].decode("latin-1"))
            j += 1
        pairs = (n - j) // 2
        forms = [*options, _count(pairs)] if pairs else options
    elif name in ("HSET", "HMSET") and n >= 3:
        forms = [_count((n - 1) // 2)]
    elif name == "EXEC":
        forms = ["EXEC"]
        name = "MULTI"
    return tuple((name, form) for form in forms if form in WRITE_SURFACE.get(name, ()))


def surface_pairs() -> frozenset[tuple[str, str]]:
    """Every (command, form) pair of the table."""
    return frozenset((name, form) for name, forms in WRITE_SURFACE.items() for form in forms)
