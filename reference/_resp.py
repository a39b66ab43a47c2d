"""RESP encoding and decoding: the AOF's on-disk format and the wire format of the front end.

The AOF is a sequence of RESP arrays of bulk strings (``*<n>\\r\\n$<len>\\r\\n<bytes>\\r\\n...``).
``parse_command`` is the pure-Python incremental parser used by the loader's slow path and by
``check_aof``; it reports byte offsets, which ``hiredis`` cannot.
"""

from __future__ import annotations

from typing import Final, TypeAlias

__all__ = [
    "OK",
    "PONG",
    "QUEUED",
    "ErrorReply",
    "Reply",
    "RespFormatError",
    "SimpleString",
    "encode_command",
    "encode_reply",
    "parse_command",
]


class SimpleString(str):
    """A RESP simple string reply (``+OK``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SimpleString({str.__repr__(self)})"


class ErrorReply(str):
    """A RESP error reply; the text has no leading ``-`` (``ERR syntax error``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ErrorReply({str.__repr__(self)})"


Reply: TypeAlias = "bytes | int | list[Reply] | SimpleString | ErrorReply | None"

OK: Final = SimpleString("OK")
PONG: Final = SimpleString("PONG")
QUEUED: Final = SimpleString("QUEUED")


class RespFormatError(ValueError):
    """Bytes that are not a RESP array of bulk strings, at ``offset_bytes``."""

    def __init__(self, offset_bytes: int, reason: str) -> None:
        super().__init__(f"{reason} at offset {offset_bytes}")
        self.offset_bytes = offset_bytes
        self.reason = reason


def encode_command(argv: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Encode one command as a RESP array of bulk strings (the AOF record format)."""
    parts = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def encode_reply(reply: Reply) -> bytes:
    """Encode a reply value for the wire (RESP2)."""
    if isinstance(reply, ErrorReply):
        return b"-%s\r\n" % reply.encode()
    if isinstance(reply, SimpleString):
        return b"+%s\r\n" % reply.encode()
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if isinstance(reply, bool):
        raise TypeError("bool is not a RESP reply")
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode_reply(r) for r in reply)
    raise TypeError(f"not a reply value: {type(reply).__name__}")


_MAX_LINE_BYTES: Final = 32  # a '*' or '$' line is never longer; a longer one is garbage


def _read_number(
    data: bytes | bytearray, pos: int, end: int, prefix: int
) -> tuple[int, int] | None:
    """Read ``<prefix><digits>\\r\\n`` at pos; None if the line is incomplete."""
    if pos >= end:
        return None
    if data[pos] != prefix:
        raise RespFormatError(pos, f"expected '{chr(prefix)}', got {bytes(data[pos:pos + 1])!r}")
    nl = data.find(b"\r\n", pos, min(end, pos + _MAX_LINE_BYTES))
    if nl < 0:
        if end - pos >= _MAX_LINE_BYTES:
            raise RespFormatError(pos, f"invalid '{chr(prefix)}' line")
        return None
    digits = data[pos + 1 : nl]
    if not digits.isdigit() and not (digits[:1] == b"-" and digits[1:].isdigit()):
        raise RespFormatError(pos, f"invalid '{chr(prefix)}' length {bytes(digits)!r}")
    return int(digits), nl + 2


def parse_command(
    data: bytes | bytearray, pos: int, end: int | None = None, *, strict: bool = False
) -> tuple[list[bytes], int] | None:
    """Parse one command at ``pos``; return (argv, next_pos), or None if ``data`` ends inside it.

    ``strict`` also requires the CRLF after each bulk (redis-check-aof does; the Redis loader
    just skips two bytes, and so does the non-strict mode). Raises RespFormatError on garbage.
    """
    if end is None:
        end = len(data)
    head = _read_number(data, pos, end, 42)  # '*'
    if head is None:
        return None
    argc, p = head
    if argc < 1:
        raise RespFormatError(pos, f"invalid array length {argc}")
    argv: list[bytes] = []
    append = argv.append
    as_bytes = type(data) is bytes
    for _ in range(argc):
        bulk = _read_number(data, p, end, 36)  # '$'
        if bulk is None:
            return None
        size, p = bulk
        if size < 0:
            raise RespFormatError(p, f"invalid bulk length {size}")
        stop = p + size
        if stop + 2 > end:
            return None
        if strict and data[stop : stop + 2] != b"\r\n":
            raise RespFormatError(stop, f"expected \\r\\n, got {bytes(data[stop:stop + 2])!r}")
        append(data[p:stop] if as_bytes else bytes(data[p:stop]))  # type: ignore[arg-type]
        p = stop + 2
    return argv, p
