"""The log format: RESP arrays of bulk strings, one record per state change.

``encode(argv)`` frames one record; ``parse(data, pos)`` reads the record starting at `pos` and
returns ``(argv, end)``, None when the data ends inside the record (a torn tail), or raises
``CorruptLog`` for bytes that cannot be a record (garbage).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CorruptLog", "encode", "parse"]

_MAX_ITEMS = 1 << 20
_MAX_BULK_BYTES = 512 * 1024 * 1024


class CorruptLog(Exception):
    """The log holds something that is not a record; the store refuses to start on it."""


def encode(argv: Sequence[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


def _number(data: bytes, pos: int, marker: int, limit: int) -> tuple[int, int] | None:
    """The decimal after `marker` at `pos` and the position after its CRLF."""
    if pos >= len(data):
        return None
    if data[pos] != marker:
        raise CorruptLog(f"expected {chr(marker)!r} at byte {pos}, found {data[pos:pos + 1]!r}")
    end = data.find(b"\r\n", pos + 1)
    if end < 0:
        # The data ends inside the length: torn if what is there could still become one.
        digits = data[pos + 1:].removesuffix(b"\r")
        if len(digits) > 12 or (digits and not digits.isdigit()):
            raise CorruptLog(f"bad length at byte {pos}")
        return None
    digits = data[pos + 1:end]
    if not digits.isdigit() or int(digits) > limit:
        raise CorruptLog(f"bad length {digits!r} at byte {pos}")
    return int(digits), end + 2


def parse(data: bytes, pos: int) -> tuple[list[bytes], int] | None:
    head = _number(data, pos, ord("*"), _MAX_ITEMS)
    if head is None:
        return None
    count, pos = head
    if count == 0:
        raise CorruptLog(f"empty record at byte {pos}")
    argv: list[bytes] = []
    for _ in range(count):
        bulk = _number(data, pos, ord("$"), _MAX_BULK_BYTES)
        if bulk is None:
            return None
        size, pos = bulk
        if pos + size + 2 > len(data):
            return None
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise CorruptLog(f"bulk of {size} bytes at byte {pos} is not followed by CRLF")
        argv.append(data[pos:pos + size])
        pos += size + 2
    return argv, pos
