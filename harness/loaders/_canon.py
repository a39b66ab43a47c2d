"""The canonical keyspace of a load, comparable across tools, and a lean RESP client to read it.

A keyspace is compared as a sorted tuple of ``KeyEntry`` rows (JSON-able lists in reports).
Values longer than ``_INLINE_BYTES`` are shown as their length and a SHA-1 prefix, so a file
with a 1 MB value does not put 1 MB in the report.

Expiry: a real server only tells the remaining time (PTTL), measured at a slightly different
wall-clock instant for every tool. Two forms keep that comparable: a key that expires within
``_RELATIVE_HORIZON_MS`` is written ``ttl=<seconds, rounded>`` (what a relative EXPIRE gives:
load time + seconds); one further away is written ``at=<unix seconds, floored>`` (what an
absolute PEXPIREAT gives). Both are rounded to the nearest second, and the generators pick
relative expiries in whole seconds (>= 1000 s, so nothing expires during a run) and absolute
ones in whole seconds too, so a few milliseconds of measurement skew never change either form.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import hiredis

__all__ = [
    "CanonKeyspace",
    "KeyEntry",
    "RespClient",
    "RespError",
    "canon_expiry",
    "canon_from_dump",
    "dump_server",
    "keyspace_digest",
    "show_bytes",
]

_INLINE_BYTES: Final = 48
_RELATIVE_HORIZON_MS: Final = 5 * 365 * 86_400_000  # five years

# (db, key, type, value, expiry); value is a str, or a tuple of str / (str, str) pairs.
KeyEntry: TypeAlias = tuple[int, str, str, Any, str | None]
CanonKeyspace: TypeAlias = tuple[KeyEntry, ...]


def show_bytes(data: bytes) -> str:
    """Bytes as readable text: printable ASCII kept, the rest escaped; long ones summarised."""
    if len(data) > _INLINE_BYTES:
        digest = hashlib.sha1(data).hexdigest()[:12]
        return f"<{len(data)} bytes sha1:{digest}>"
    return data.decode("latin-1").encode("unicode_escape").decode("ascii")


def canon_expiry(pttl_ms: int | None, now_ms: int) -> str | None:
    """``ttl=<s>`` for a near expiry, ``at=<unix s>`` for a far one, None for no expiry."""
    if pttl_ms is None or pttl_ms < 0:
        return None
    if pttl_ms < _RELATIVE_HORIZON_MS:
        return f"ttl={round(pttl_ms / 1000)}"
    return f"at={round((now_ms + pttl_ms) / 1000)}"


def _score(value: float) -> str:
    return repr(float(value))


def _canon_value(kind: str, value: Any) -> Any:
    if kind == "string":
        return show_bytes(bytes(value))
    if kind == "list":
        return tuple(show_bytes(bytes(item)) for item in value)
    if kind == "set":
        return tuple(sorted(show_bytes(bytes(item)) for item in value))
    if kind == "zset":
        pairs = value.items() if isinstance(value, Mapping) else value
        return tuple(sorted((show_bytes(bytes(m)), _score(float(s))) for m, s in pairs))
    if kind == "hash":
        return tuple(sorted((show_bytes(bytes(f)), show_bytes(bytes(v))) for f, v in value.items()))
    return f"<type {kind}>"


def canon_from_dump(dump: Mapping[int, Mapping[bytes, tuple[str, Any, int | None]]],
                    now_ms: int) -> CanonKeyspace:
    """From the harness's dump form ``{db: {key: (type, value, expire_at_ms | None)}}``."""
    rows: list[KeyEntry] = []
    for db, entries in dump.items():
        for key, (kind, value, expire_at) in entries.items():
            pttl = None if expire_at is None else expire_at - now_ms
            rows.append((db, show_bytes(key), kind, _canon_value(kind, value),
                         canon_expiry(pttl, now_ms)))
    return tuple(sorted(rows, key=repr))


def keyspace_digest(keyspace: CanonKeyspace | None) -> str:
    """A short stable digest (``-`` for no keyspace, ``empty`` for an empty one)."""
    if keyspace is None:
        return "-"
    if not keyspace:
        return "empty"
    return hashlib.sha1(repr(keyspace).encode()).hexdigest()[:10]


class RespError(Exception):
    """An error reply where a value was needed."""


class RespClient:
    """A minimal blocking RESP client over one TCP connection (pipelines, hiredis parsing).

    redis-py costs milliseconds per connection and command; a loader run makes a dozen calls.
    """

    def __init__(self, port: int, *, timeout_s: float = 10.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RespClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pipeline(self, commands: Sequence[Sequence[bytes | str | int]]) -> list[Any]:
        """Send every command, return every reply (error replies as ``hiredis.ReplyError``)."""
        out = bytearray()
        for argv in commands:
            out += b"*%d\r\n" % len(argv)
            for arg in argv:
                raw = arg if isinstance(arg, bytes) else str(arg).encode()
                out += b"$%d\r\n%s\r\n" % (len(raw), raw)
        self._sock.sendall(out)
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self._reader.feed(chunk)
                continue
            replies.append(reply)
        return replies


def _pairs(flat: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


def dump_server(client: RespClient, *, now_ms: int) -> CanonKeyspace:
    """Every key of every database of a live server, in canonical form."""
    (info,) = client.pipeline([["INFO", "keyspace"]])
    if isinstance(info, Exception):
        raise RespError(str(info))
    dbs = sorted(
        int(line.split(b":", 1)[0][2:])
        for line in bytes(info).splitlines()
        if line.startswith(b"db") and b":" in line and line.split(b":", 1)[0][2:].isdigit()
    )
    rows: list[KeyEntry] = []
    for db in dbs:
        _, keys = client.pipeline([["SELECT", db], ["KEYS", "*"]])
        if isinstance(keys, Exception):
            raise RespError(str(keys))
        if not keys:
            continue
        kinds = client.pipeline([["TYPE", key] for key in keys])
        reads: list[list[bytes | str | int]] = []
        for key, kind in zip(keys, kinds, strict=True):
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            reader: list[bytes | str | int] = {
                "string": ["GET", key], "list": ["LRANGE", key, 0, -1],
                "set": ["SMEMBERS", key], "zset": ["ZRANGE", key, 0, -1, "WITHSCORES"],
                "hash": ["HGETALL", key],
            }.get(name, ["TYPE", key])
            reads += [reader, ["PTTL", key]]
        replies = client.pipeline(reads)
        for index, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            raw, pttl = replies[2 * index], replies[2 * index + 1]
            if name == "none" or raw is None or pttl == -2:
                continue  # expired between KEYS and the read
            if name == "zset":
                value: Any = {m: float(s) for m, s in _pairs(raw)}
            elif name == "hash":
                value = dict(_pairs(raw))
            else:
                value = raw
            rows.append((db, show_bytes(bytes(key)), name, _canon_value(name, value),
                         canon_expiry(int(pttl), now_ms)))
    return tuple(sorted(rows, key=repr))
