"""Hypothesis strategies for AOF files, valid and damaged, for differential loading.

``aof_cases()`` draws an ``AofCase``: a *family* (what kind of file it is, for coverage
counts and reports) and the bytes. A file is a valid prefix, one *feature* (the thing under
test), and optionally a valid suffix after it (damage in the middle of a file is judged
differently from damage at its end). Families:

``valid``        workloads of every command type the reference knows, every db
``torn``         a valid file cut inside its last command, at every kind of boundary
``zero-tail`` / ``garbage-tail`` / ``zero-hole`` / ``garbage-hole``
                 zeros or garbage appended, or written over a range of a valid file
``header``       a malformed ``*``/``$`` line: LF only, CR missing, ``+``/``-`` signs, leading
                 zeros, spaces, huge and negative lengths, no digits
``arity``        a known command with too few or too many arguments
``unknown``      unknown names, real commands the reference lacks, read-only commands
``case``         command names in mixed case
``multi``        MULTI/EXEC shapes: nested, unterminated, EXEC/DISCARD alone, torn inside,
                 an error inside
``annotation``   ``#TS:`` lines (7.0+): between commands, at the start, inside MULTI, torn,
                 LF-only, longer than Redis's 1024-byte line buffer
``large-value``  values of 64 KiB to 1 MiB, whole or torn
``select``       SELECT out of range (16, -1, huge, not a number)
``rdb-preamble`` ``REDIS`` magic then junk, a truncated magic, a minimal valid RDB then commands

Keys and values come from small alphabets so that tools' keyspaces overlap and differences
show. Expiries are chosen so that ``harness.loaders._canon`` can compare them across tools (see
there): relative ones are whole seconds >= 1000 s, absolute ones whole seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hypothesis import strategies as st

__all__ = ["FAMILIES", "AofCase", "aof_cases", "encode", "family_cases", "workload"]

FAMILIES: Final = (
    "valid", "torn", "zero-tail", "garbage-tail", "zero-hole", "garbage-hole", "header",
    "arity", "unknown", "case", "multi", "annotation", "large-value", "select", "rdb-preamble",
)

_KEYS: Final = (b"a", b"b", b"k:1", b"list", b"set", b"zs", b"h", b"n")
_VALUES: Final = (b"1", b"v", b"", b"10", b"-3", b"x y", b"\r\n", b"\x00\xff", b"3.5")
_FAR_FUTURE_S: Final = 4_102_444_800  # 2100-01-01, far beyond the relative horizon
_PAST_S: Final = 1_000_000_000  # 2001


@dataclass(frozen=True, slots=True)
class AofCase:
    family: str
    data: bytes

    def __repr__(self) -> str:
        return f"AofCase({self.family!r}, {self.data!r})"


def encode(*argv: bytes | str) -> bytes:
    """One RESP array of bulk strings, as an AOF stores a command."""
    parts = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        raw = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


_key = st.sampled_from(_KEYS)
_value = st.one_of(st.sampled_from(_VALUES), st.binary(max_size=6))
_int = st.sampled_from([b"1", b"2", b"-1", b"100", b"0"])
_rel_s = st.integers(1_000, 100_000).map(lambda s: b"%d" % s)
_abs_s = st.one_of(st.just(_PAST_S), st.integers(0, 10_000).map(lambda d: _FAR_FUTURE_S + d))


def _set_options() -> st.SearchStrategy[list[bytes]]:
    return st.one_of(
        st.just([]),
        st.tuples(st.sampled_from([b"EX", b"ex"]), _rel_s).map(list),
        st.tuples(st.just(b"PX"), _rel_s.map(lambda s: s + b"000")).map(list),
        st.sampled_from([[b"NX"], [b"XX"]]),
    )


@st.composite
def _command(draw: st.DrawFn) -> list[bytes]:
    """One write command of any type the reference implements (or a SELECT)."""
    k = draw(_key)
    kind = draw(st.sampled_from([
        "set", "setex", "psetex", "del", "incr", "incrby", "decr", "decrby", "append",
        "expire", "pexpire", "expireat", "pexpireat", "persist", "lpush", "rpush", "lpop",
        "rpop", "sadd", "srem", "zadd", "zrem", "hset", "hmset", "hdel", "flushdb",
        "flushall", "select",
    ]))
    values = st.lists(_value, min_size=1, max_size=3)
    if kind == "set":
        return [b"SET", k, draw(_value), *draw(_set_options())]
    if kind == "setex":
        return [b"SETEX", k, draw(_rel_s), draw(_value)]
    if kind == "psetex":
        return [b"PSETEX", k, draw(_rel_s) + b"000", draw(_value)]
    if kind in ("del", "persist", "incr", "decr"):
        return [kind.upper().encode(), k]
    if kind in ("incrby", "decrby"):
        return [kind.upper().encode(), k, draw(_int)]
    if kind == "append":
        return [b"APPEND", k, draw(_value)]
    if kind == "expire":
        return [b"EXPIRE", k, draw(_rel_s)]
    if kind == "pexpire":
        return [b"PEXPIRE", k, draw(_rel_s) + b"000"]
    if kind == "expireat":
        return [b"EXPIREAT", k, b"%d" % draw(_abs_s)]
    if kind == "pexpireat":
        return [b"PEXPIREAT", k, b"%d000" % draw(_abs_s)]
    if kind in ("lpush", "rpush", "sadd", "srem", "hdel", "zrem"):
        return [kind.upper().encode(), k, *draw(values)]
    if kind in ("lpop", "rpop"):
        return [kind.upper().encode(), k]
    if kind == "zadd":
        pairs = draw(st.lists(st.tuples(st.sampled_from([b"1", b"2.5", b"-1", b"inf"]), _value),
                              min_size=1, max_size=2))
        return [b"ZADD", k, *[x for pair in pairs for x in pair]]
    if kind in ("hset", "hmset"):
        pairs = draw(st.lists(st.tuples(_value, _value), min_size=1, max_size=2))
        return [kind.upper().encode(), k, *[x for pair in pairs for x in pair]]
    if kind in ("flushdb", "flushall"):
        return [kind.upper().encode()]
    return [b"SELECT", b"%d" % draw(st.integers(0, 15))]


@st.composite
def workload(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 6) -> bytes:
    """A valid AOF: commands, SELECTs and well-formed MULTI/EXEC blocks."""
    out = [encode(b"SELECT", b"0")] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_size, max_size))):
        if draw(st.integers(0, 9)) == 0:
            body = draw(st.lists(_command(), max_size=3))
            out += [encode(b"MULTI"), *(encode(*c) for c in body), encode(b"EXEC")]
        else:
            out.append(encode(*draw(_command())))
    return b"".join(out)


def _last_command_start(data: bytes) -> int:
    """Offset of the last ``*`` that starts a line (0 if none)."""
    pos = data.rfind(b"\r\n*")
    return 0 if pos < 0 else pos + 2


@st.composite
def _torn(draw: st.DrawFn) -> bytes:
    body = draw(workload(min_size=1))
    last = draw(st.one_of(_command(), st.just([b"SET", b"big", b"v" * 40])))
    record = encode(*last)
    # Every boundary kind: inside '*N', before/after its CR or LF, inside '$', in the data,
    # between data and CR, between CR and LF.
    cuts = sorted({1, 2, 3, *[i for i in range(len(record)) if record[i:i + 1] in b"$\r\n"],
                   *[i + 1 for i in range(len(record)) if record[i:i + 1] in b"\r\n"]})
    cut = draw(st.one_of(st.sampled_from([c for c in cuts if 0 < c < len(record)]),
                         st.integers(1, len(record) - 1)))
    return body + record[:cut]


def _header_mutations(record: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, replacement) for each way to damage a '*' or '$' line of ``record``."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(record):
        nl = record.find(b"\r\n", pos)
        if nl < 0:
            break
        line = record[pos:nl]
        if line[:1] in (b"*", b"$"):
            head, digits = line[:1], line[1:]
            for new in (head + digits + b"\n", head + digits,  # LF only / no CRLF at all
                        head + b"+" + digits + b"\r\n", head + b"-" + digits + b"\r\n",
                        head + b"0" + digits + b"\r\n", head + b"00" + digits + b"\r\n",
                        head + b" " + digits + b"\r\n", head + digits + b" \r\n",
                        head + b"-1\r\n", head + b"-2\r\n", head + b"0\r\n",
                        head + b"4294967297\r\n", head + b"9223372036854775807\r\n",
                        head + b"99999999999999999999\r\n", head + b"\r\n", head + b"x\r\n",
                        head + b"1x\r\n", digits + b"\r\n", b"+" + digits + b"\r\n"):
                out.append((pos, nl + 2, new))
            out.append((nl, nl + 2, b"\n"))
            out.append((nl, nl + 1, b""))
        pos = nl + 2
    return out


@st.composite
def _header(draw: st.DrawFn) -> bytes:
    record = encode(*draw(_command()))
    start, end, new = draw(st.sampled_from(_header_mutations(record)))
    return record[:start] + new + record[end:]


_ARITY_CASES: Final[tuple[tuple[bytes, ...], ...]] = (
    (b"SET", b"a"), (b"SET",), (b"GET", b"a", b"b"), (b"SELECT",), (b"SELECT", b"0", b"1"),
    (b"INCR",), (b"INCR", b"a", b"b"), (b"EXPIRE", b"a"), (b"HSET", b"h", b"f"),
    (b"ZADD", b"zs", b"1"), (b"MULTI", b"x"), (b"EXEC", b"x"), (b"DEL",), (b"LPUSH", b"list"),
    (b"PEXPIREAT", b"a", b"1", b"2"), (b"FLUSHALL", b"ASYNC", b"x"), (b"SETEX", b"a", b"1000"),
    (b"HMSET", b"h", b"f"), (b"HMSET", b"h", b"f", b"v", b"g"), (b"ZADD", b"zs", b"1", b"m", b"2"),
)
_UNKNOWN_CASES: Final[tuple[tuple[bytes, ...], ...]] = (
    (b"FOO",), (b"FOO", b"a"), (b"",), (b"\x00",), (b"SET\x00", b"a", b"1"), (b"S E T", b"a"),
    # real commands (some deprecated) that the reference does not implement
    (b"SETNX", b"a", b"1"), (b"GETSET", b"a", b"2"), (b"SUBSTR", b"a", b"0", b"1"),
    (b"RPOPLPUSH", b"list", b"l2"), (b"SETRANGE", b"a", b"1", b"z"), (b"INCRBYFLOAT", b"n", b"1.5"),
    (b"HINCRBY", b"h", b"f", b"1"), (b"RENAME", b"a", b"b2"), (b"LTRIM", b"list", b"0", b"0"),
    (b"SWAPDB", b"0", b"1"), (b"GETDEL", b"a"), (b"LMOVE", b"list", b"l2", b"LEFT", b"RIGHT"),
    (b"COPY", b"a", b"c2"), (b"SET", b"a", b"1", b"KEEPTTL"), (b"SET", b"a", b"1", b"GET"),
    (b"SET", b"a", b"1", b"EX", b"1000", b"PX", b"1000"), (b"SET", b"a", b"1", b"FOO"),
    # read-only and server commands in an AOF
    (b"PING",), (b"GET", b"a"), (b"DBSIZE",), (b"INFO",), (b"KEYS", b"*"), (b"ECHO", b"x"),
    (b"SHUTDOWN",), (b"DEBUG", b"SLEEP", b"0"), (b"CONFIG", b"SET", b"appendonly", b"no"),
    (b"AUTH", b"x"), (b"CLIENT", b"SETNAME", b"x"), (b"WATCH", b"a"), (b"PUBLISH", b"c", b"m"),
)


def _mixed_case(draw: st.DrawFn, name: bytes) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes((c ^ 0x20) if f and chr(c).isalpha() else c for c, f in zip(name, flips,
                                                                             strict=True))


@st.composite
def _case(draw: st.DrawFn) -> bytes:
    cmds = draw(st.lists(_command(), min_size=1, max_size=3))
    cmds += draw(st.sampled_from([[], [[b"MULTI"], [b"SET", b"a", b"m"], [b"EXEC"]]]))
    return b"".join(encode(_mixed_case(draw, c[0]), *c[1:]) for c in cmds)


@st.composite
def _multi(draw: st.DrawFn) -> bytes:
    m, e, d = encode(b"MULTI"), encode(b"EXEC"), encode(b"DISCARD")
    body = b"".join(encode(*c) for c in draw(st.lists(_command(), min_size=0, max_size=2)))
    bad = encode(*draw(st.sampled_from([(b"SET", b"a"), (b"FOO",), (b"INCR", b"list"),
                                        (b"SELECT", b"99")])))
    shape = draw(st.sampled_from([
        "unterminated", "nested", "exec-alone", "discard", "discard-alone", "torn-inside",
        "torn-exec", "error-inside", "empty", "multi-exec-multi", "double-exec",
    ]))
    if shape == "unterminated":
        return m + body
    if shape == "nested":
        return m + body + m + body + e + draw(st.sampled_from([b"", e]))
    if shape == "exec-alone":
        return body + e
    if shape == "discard":
        return m + body + d
    if shape == "discard-alone":
        return body + d
    if shape == "torn-inside":
        tail = encode(b"SET", b"t", b"torn")
        return m + body + tail[: draw(st.integers(1, len(tail) - 1))]
    if shape == "torn-exec":
        return m + body + e[: draw(st.integers(1, len(e) - 1))]
    if shape == "error-inside":
        return m + body + bad + e
    if shape == "empty":
        return m + e
    if shape == "multi-exec-multi":
        return m + body + e + m + body
    return m + body + e + e


@st.composite
def _annotation(draw: st.DrawFn) -> bytes:
    ts = b"#TS:%d" % draw(st.sampled_from([1_700_000_000, 0, 1]))
    line = draw(st.sampled_from([
        ts + b"\r\n", ts + b"\n", ts, b"#\r\n", b"#x\r\n", b"#" + b"x" * 1100 + b"\r\n",
        b"# TS:1\r\n", ts + b"\r\n" + ts + b"\r\n",
    ]))
    cmds = [encode(*c) for c in draw(st.lists(_command(), min_size=1, max_size=3))]
    where = draw(st.sampled_from(["before", "between", "after", "inside-multi", "inside-cmd"]))
    if where == "before":
        return line + b"".join(cmds)
    if where == "between":
        return cmds[0] + line + b"".join(cmds[1:])
    if where == "after":
        return b"".join(cmds) + line
    if where == "inside-multi":
        return encode(b"MULTI") + cmds[0] + line + b"".join(cmds[1:]) + encode(b"EXEC")
    first = cmds[0]
    cut = first.index(b"\r\n") + 2  # after the '*N' line: a '#' where a '$' must be
    return first[:cut] + line + first[cut:] + b"".join(cmds[1:])


@st.composite
def _large_value(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([65_536, 65_537, 65_536, 65_537, 262_144, 1 << 20]))
    record = encode(b"SET", draw(_key), b"x" * size)
    if draw(st.booleans()):
        return record
    return record[: draw(st.sampled_from([size // 2, len(record) - 2, len(record) - 1]))]


@st.composite
def _select(draw: st.DrawFn) -> bytes:
    db = draw(st.sampled_from([b"16", b"-1", b"15", b"99999999999", b"abc", b"", b"1.5", b" 1"]))
    return encode(b"SELECT", db) + encode(b"SET", draw(_key), b"in-db")


_EMPTY_RDB: Final = b"REDIS0009\xff" + b"\x00" * 8  # checksum 0: "saved without checksum"


@st.composite
def _rdb_preamble(draw: st.DrawFn) -> bytes:
    junk = draw(st.sampled_from([b"", b"junk", b"\x00" * 8, b"0009", b"0009\xfe\x00", b"0009\xff",
                                 b"0011\xff\x00\x00\x00\x00\x00\x00\x00\x00"]))
    return draw(st.sampled_from([
        b"REDIS" + junk, b"RED", b"REDIS0009", _EMPTY_RDB, _EMPTY_RDB[:-3],
        _EMPTY_RDB + junk,
    ]))


@st.composite
def _tail(draw: st.DrawFn, kind: str) -> bytes:
    n = draw(st.integers(1, 600))
    if kind == "zero":
        return b"\x00" * n
    return draw(st.binary(min_size=1, max_size=40))


@st.composite
def _hole(draw: st.DrawFn, kind: str) -> bytes:
    body = draw(workload(min_size=2))
    start = draw(st.integers(0, max(0, len(body) - 1)))
    length = draw(st.integers(1, 64))
    end = min(len(body), start + length)
    fill = b"\x00" * (end - start) if kind == "zero" else draw(
        st.binary(min_size=end - start, max_size=end - start))
    return body[:start] + fill + body[end:]


_FEATURES: Final = {
    "header": _header(), "arity": st.sampled_from(_ARITY_CASES).map(lambda c: encode(*c)),
    "unknown": st.sampled_from(_UNKNOWN_CASES).map(lambda c: encode(*c)),
    "case": _case(), "multi": _multi(), "annotation": _annotation(),
    "large-value": _large_value(), "select": _select(),
}


def family_cases(family: str) -> st.SearchStrategy[AofCase]:
    """Cases of one family (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if family == "valid":
        inner: st.SearchStrategy[bytes] = workload(min_size=1)
    elif family == "torn":
        inner = _torn()
    elif family in ("zero-tail", "garbage-tail"):
        inner = st.tuples(workload(), _tail(family.split("-")[0])).map(b"".join)
    elif family in ("zero-hole", "garbage-hole"):
        inner = _hole(family.split("-")[0])
    elif family == "rdb-preamble":
        inner = st.tuples(_rdb_preamble(), workload(max_size=2)).map(b"".join)
    else:
        # prefix + feature + optional suffix: damage mid-file is judged unlike damage at the end
        inner = st.tuples(workload(max_size=2), _FEATURES[family],
                          st.one_of(st.just(b""), workload(min_size=1, max_size=2))
                          ).map(b"".join)
    return inner.map(lambda data: AofCase(family, data))


def aof_cases(families: Sequence[str] = FAMILIES) -> st.SearchStrategy[AofCase]:
    """A case of any of ``families`` (every family by default)."""
    # Family first, uniformly: one_of over unequal sub-strategies would skew the mix.
    return st.sampled_from(tuple(families)).flatmap(family_cases)
