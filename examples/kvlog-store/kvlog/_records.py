"""The record format of ``data.log``: checksummed, length-prefixed, one per change.

A record is ``crc32 (4 bytes, big-endian) | length (4 bytes) | payload``, the CRC-32 taken over
the length and the payload. A payload is ``b"S" | key length (4 bytes) | key | value`` (set),
``b"D" | key`` (delete), or ``b"B"`` / ``b"E"``: the begin and end of a compacted snapshot (the
live keys in no history order, so a snapshot is loaded whole or not at all). ``parse`` tells a
record cut short (the log ends inside it: a torn tail) from one whose checksum does not match
(damage): both end what the loader keeps.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["SNAPSHOT_BEGIN", "SNAPSHOT_END", "BadRecord", "delete_record", "parse",
           "set_record"]

_HEAD = struct.Struct(">II")
_KEY_LEN = struct.Struct(">I")
_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class BadRecord(Exception):
    """The bytes at this position are not a valid record (checksum or structure)."""


def _frame(payload: bytes) -> bytes:
    length = struct.pack(">I", len(payload))
    return struct.pack(">I", zlib.crc32(length + payload)) + length + payload


def set_record(key: bytes, value: bytes) -> bytes:
    return _frame(b"S" + _KEY_LEN.pack(len(key)) + key + value)


def delete_record(key: bytes) -> bytes:
    return _frame(b"D" + key)


SNAPSHOT_BEGIN, SNAPSHOT_END = _frame(b"B"), _frame(b"E")


def parse(data: bytes, pos: int, *, verify: bool = True
          ) -> tuple[tuple[bytes, bytes, bytes | None], int] | None:
    """The record at `pos` as ``((op, key, value or None), end)``; None when `data` ends inside
    it; BadRecord when it cannot be one. ``verify=False`` skips the checksum (a planted bug)."""
    if len(data) - pos < _HEAD.size:
        return None
    crc, length = _HEAD.unpack_from(data, pos)
    if length > _MAX_PAYLOAD_BYTES:
        raise BadRecord(f"record at byte {pos}: length {length} is out of range")
    end = pos + _HEAD.size + length
    if end > len(data):
        return None
    payload = data[pos + _HEAD.size:end]
    if verify and zlib.crc32(data[pos + 4:end]) != crc:
        raise BadRecord(f"record at byte {pos}: checksum mismatch")
    if payload in (b"B", b"E"):
        return (payload, b"", None), end
    if payload[:1] == b"D" and length >= 1:
        return (b"D", payload[1:], None), end
    if payload[:1] == b"S" and length >= 1 + _KEY_LEN.size:
        (key_len,) = _KEY_LEN.unpack_from(payload, 1)
        if 1 + _KEY_LEN.size + key_len <= length:
            key_end = 1 + _KEY_LEN.size + key_len
            return (b"S", payload[1 + _KEY_LEN.size:key_end], payload[key_end:]), end
    raise BadRecord(f"record at byte {pos}: malformed payload")
