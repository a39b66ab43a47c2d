"""The on-disk record format: a fixed header (payload length, CRC32, op) and a payload.

Every record is ``<IIB`` (payload length in bytes, CRC32 of the op byte and the payload, op)
followed by the payload. Keys and values are UTF-8 strings; the key is length-prefixed (u32),
the value takes the rest of the payload.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "MAX_PAYLOAD_BYTES",
    "BadRecord",
    "Op",
    "Record",
    "decode_payload",
    "encode",
    "scan",
]

HEADER = struct.Struct("<IIB")
_KEY_LENGTH = struct.Struct("<I")
_EXPIRY = struct.Struct("<q")
_COUNT = struct.Struct("<I")
# A length field above this is damage, not a record (keeps a torn header from looking like a
# record that merely runs past the end of the file).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class Op(enum.IntEnum):
    SET = 1
    SET_EXPIRING = 2
    DEL = 3
    # First record of a segment written by compaction: the number of SETs that follow.
    SNAPSHOT = 4


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record; `expiry_ms` is the absolute expiry time (or a TTL, see the store)."""

    op: Op
    key: str = ""
    value: str = ""
    expiry_ms: int = 0
    count: int = 0


class BadRecord(Exception):
    """A record that is cut short, fails its CRC or does not decode."""


def _crc(op: int, payload: bytes) -> int:
    return zlib.crc32(bytes([op]) + payload) & 0xFFFFFFFF


def _key_value(key: str, value: str) -> bytes:
    raw_key = key.encode()
    return _KEY_LENGTH.pack(len(raw_key)) + raw_key + value.encode()


def encode(record: Record) -> bytes:
    """The bytes of `record`, header included."""
    if record.op is Op.SET:
        payload = _key_value(record.key, record.value)
    elif record.op is Op.SET_EXPIRING:
        payload = _EXPIRY.pack(record.expiry_ms) + _key_value(record.key, record.value)
    elif record.op is Op.DEL:
        payload = record.key.encode()
    else:
        payload = _COUNT.pack(record.count)
    return HEADER.pack(len(payload), _crc(record.op, payload), record.op) + payload


def _split_key_value(payload: bytes) -> tuple[str, str]:
    if len(payload) < _KEY_LENGTH.size:
        raise BadRecord("payload shorter than its key length")
    (key_length,) = _KEY_LENGTH.unpack_from(payload)
    end = _KEY_LENGTH.size + key_length
    if end > len(payload):
        raise BadRecord("key runs past the payload")
    try:
        return payload[_KEY_LENGTH.size : end].decode(), payload[end:].decode()
    except UnicodeDecodeError as error:
        raise BadRecord(f"not UTF-8: {error}") from None


def decode_payload(op_byte: int, payload: bytes) -> Record:
    """Decode a payload whose CRC has been checked (or not: see the store's BUGS)."""
    try:
        op = Op(op_byte)
    except ValueError:
        raise BadRecord(f"unknown op {op_byte}") from None
    if op is Op.SET:
        key, value = _split_key_value(payload)
        return Record(op, key, value)
    if op is Op.SET_EXPIRING:
        if len(payload) < _EXPIRY.size:
            raise BadRecord("payload shorter than its expiry")
        (expiry_ms,) = _EXPIRY.unpack_from(payload)
        key, value = _split_key_value(payload[_EXPIRY.size :])
        return Record(op, key, value, expiry_ms=expiry_ms)
    if op is Op.DEL:
        try:
            return Record(op, payload.decode())
        except UnicodeDecodeError as error:
            raise BadRecord(f"not UTF-8: {error}") from None
    if len(payload) != _COUNT.size:
        raise BadRecord("snapshot marker of the wrong size")
    return Record(op, count=_COUNT.unpack(payload)[0])


def scan(data: bytes, *, check_crc: bool = True) -> tuple[list[Record], int, str | None]:
    """Decode records from the start of `data`.

    Returns the records, the length of the good prefix, and why decoding stopped early (None
    when the whole of `data` is good records).
    """
    records: list[Record] = []
    position = 0
    while position < len(data):
        if len(data) - position < HEADER.size:
            return records, position, "header cut short"
        length, crc, op_byte = HEADER.unpack_from(data, position)
        if length > MAX_PAYLOAD_BYTES:
            return records, position, f"implausible length {length}"
        start = position + HEADER.size
        if start + length > len(data):
            return records, position, "payload cut short"
        payload = data[start : start + length]
        if check_crc and _crc(op_byte, payload) != crc:
            return records, position, "CRC mismatch"
        try:
            records.append(decode_payload(op_byte, payload))
        except BadRecord as error:
            return records, position, str(error)
        position = start + length
    return records, position, None
