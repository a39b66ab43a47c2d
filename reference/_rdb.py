"""check_rdb: verify an RDB image (a 7.x ``.base.rdb`` or the RDB preamble of an AOF).

What is checked, as redis-check-rdb does for an AOF preamble:

- the header: ``REDIS`` + 4 decimal digits (Redis, Valkey up to 8.x) or ``VALKEY`` + 3 digits
  (Valkey 9+), and a version this walker knows the layout of;
- the body, walked record by record to find the EOF opcode (0xFF). Values are *skipped*, not
  decoded: a listpack, ziplist or intset is one string blob, an LZF string is skipped by its
  compressed length. Nothing is decompressed and blobs are not sanitized, so a corrupt blob of
  the right length passes the walk (the checksum catches it);
- the CRC-64 (Jones polynomial, reflected, as Redis's ``crc64.c``) over every byte from the
  magic up to and including the EOF opcode, stored as 8 little-endian bytes after it (RDB
  version >= 5). A stored checksum of 0 means the writer ran with ``rdbchecksum no``.

``end_offset_bytes`` is where the RDB ends: in an AOF with an RDB preamble the RESP commands
start there. A type or opcode the walker does not know is reported as such (with its offset)
rather than guessed at: after an unknown record there is no way to find the next one.

Layouts followed (from the RDB loaders of Redis 6.0-7.4 and Valkey 9): strings (raw, int
encoded, LZF), lists (linked, ziplist, quicklist, quicklist 2 with plain/packed nodes), sets
(linked, intset, listpack), zsets (linked with string or binary doubles, ziplist, listpack),
hashes (linked, zipmap, ziplist, listpack, Redis 7.4 field-expiry variants, Valkey 9
``HASH_2``), streams (listpacks v1-v3 with consumer groups), module values with the v2
annotations; opcodes AUX, RESIZEDB, EXPIRETIME(_MS), SELECTDB, IDLE, FREQ, MODULE_AUX,
FUNCTION (7.0 rc) and FUNCTION2, SLOT_INFO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["RdbCheckResult", "check_rdb", "crc64_jones", "is_rdb_image"]

# -- CRC-64 (Jones) ------------------------------------------------------------------------

# Redis: "Jones" coefficients, polynomial 0xad93d23594c935a9, reflected in and out, initial
# value 0, no final xor. Reflected, the table is built from the bit-reversed polynomial.
_CRC64_REVERSED_POLY: Final = 0x95AC9329AC4BC9B5


def _crc64_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64_REVERSED_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC64_TABLE: Final = _crc64_table()


def crc64_jones(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Redis's CRC-64 of ``data``, continuing from ``crc`` (``crc64_jones(b"123456789")`` is
    0xe9c6d914c4b8d9ca, the check value of Redis's own self-test)."""
    table = _CRC64_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


# -- format constants ----------------------------------------------------------------------

_REDIS_MAGIC: Final = b"REDIS"
_VALKEY_MAGIC: Final = b"VALKEY"
_HEADER_BYTES: Final = 9
# Versions whose layout the walker knows: Redis 1..12 (12 = 7.4 / 8.x), Valkey 80 (9.0),
# 81 (9.2; its PATH_HASH type is reported as unknown if met).
_MAX_REDIS_VERSION: Final = 12
_VALKEY_VERSIONS: Final = frozenset({80, 81})
_FIRST_VERSION_WITH_CHECKSUM: Final = 5

_OP_SLOT_INFO: Final = 0xF4
_OP_FUNCTION2: Final = 0xF5
_OP_FUNCTION_PRE_GA: Final = 0xF6
_OP_MODULE_AUX: Final = 0xF7
_OP_IDLE: Final = 0xF8
_OP_FREQ: Final = 0xF9
_OP_AUX: Final = 0xFA
_OP_RESIZEDB: Final = 0xFB
_OP_EXPIRETIME_MS: Final = 0xFC
_OP_EXPIRETIME: Final = 0xFD
_OP_SELECTDB: Final = 0xFE
_OP_EOF: Final = 0xFF

_T_STRING, _T_LIST, _T_SET, _T_ZSET, _T_HASH, _T_ZSET_2 = 0, 1, 2, 3, 4, 5
_T_MODULE_PRE_GA, _T_MODULE_2 = 6, 7
_T_LIST_QUICKLIST, _T_LIST_QUICKLIST_2 = 14, 18
_T_STREAM_1, _T_STREAM_2, _T_STREAM_3 = 15, 19, 21
# One string blob each: zipmap, ziplist, intset, ziplist, ziplist, listpack, listpack, listpack.
_BLOB_TYPES: Final = frozenset({9, 10, 11, 12, 13, 16, 17, 20})
# Types 22-25 mean different things to Redis 7.4+ and to Valkey 9 (the magic tells them apart).
_T_REDIS_HASH_METADATA_PRE_GA, _T_REDIS_HASH_LISTPACK_EX_PRE_GA = 22, 23
_T_REDIS_HASH_METADATA, _T_REDIS_HASH_LISTPACK_EX = 24, 25
_T_VALKEY_HASH_2 = 22

_MODULE_OP_EOF, _MODULE_OP_SINT, _MODULE_OP_UINT = 0, 1, 2
_MODULE_OP_FLOAT, _MODULE_OP_DOUBLE, _MODULE_OP_STRING = 3, 4, 5

_QUICKLIST_PLAIN, _QUICKLIST_PACKED = 1, 2
_STREAM_ID_BYTES: Final = 16

_TYPE_NAMES: Final = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset (binary scores)",
    6: "module (4.0 rc)", 7: "module", 9: "hash (zipmap)", 10: "list (ziplist)",
    11: "set (intset)", 12: "zset (ziplist)", 13: "hash (ziplist)", 14: "list (quicklist)",
    15: "stream", 16: "hash (listpack)", 17: "zset (listpack)", 18: "list (quicklist 2)",
    19: "stream (v2)", 20: "set (listpack)", 21: "stream (v3)",
}


# -- the verdict ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RdbCheckResult:
    """The verdict on an RDB image.

    ``end_offset_bytes``: the offset just past the RDB (after the checksum), None when the
    end was not found; ``checksum``: ``"ok"``, ``"mismatch"``, ``"disabled"`` (stored as 0),
    ``"absent"`` (RDB version < 5) or ``"unchecked"`` (the walk failed first);
    ``error_offset_bytes``: where the problem is; ``truncated``: the image ends inside the RDB
    (a torn write) rather than containing bytes that make no sense; ``aux``: the AUX fields
    (``redis-ver``, ``aof-base``, ...), values decoded as text where they are plain.
    """

    valid: bool
    magic: str | None
    version: int | None
    end_offset_bytes: int | None
    keys: int
    expires: int
    checksum: str
    reason: str | None
    error_offset_bytes: int | None
    truncated: bool
    aux: tuple[tuple[str, str], ...] = ()

    @property
    def header(self) -> str:
        """``REDIS0010`` / ``VALKEY080``, or ``?`` when the header is unreadable."""
        if self.magic is None or self.version is None:
            return "?"
        width = 4 if self.magic == "REDIS" else 3
        return f"{self.magic}{self.version:0{width}d}"

    def to_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "header": self.header,
            "magic": self.magic,
            "version": self.version,
            "end_offset_bytes": self.end_offset_bytes,
            "keys": self.keys,
            "expires": self.expires,
            "checksum": self.checksum,
            "reason": self.reason,
            "error_offset_bytes": self.error_offset_bytes,
            "truncated": self.truncated,
            "aux": dict(self.aux),
        }


def is_rdb_image(data: bytes | bytearray) -> bool:
    """True when ``data`` starts like an RDB (``REDIS`` or ``VALKEY``), even a torn one."""
    return data[:5] == _REDIS_MAGIC or data[:6] == _VALKEY_MAGIC


# -- the walker ----------------------------------------------------------------------------


class _Truncated(Exception):
    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset = offset
        self.what = what


class _Corrupt(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


class _Walker:
    """A cursor over the image; every read either advances or raises."""

    __slots__ = ("data", "pos", "size", "valkey")

    def __init__(self, data: bytes | bytearray, pos: int, *, valkey: bool) -> None:
        self.data = data
        self.pos = pos
        self.size = len(data)
        self.valkey = valkey

    def skip(self, count: int, what: str) -> None:
        if self.pos + count > self.size:
            raise _Truncated(self.pos, what)
        self.pos += count

    def u8(self, what: str) -> int:
        if self.pos >= self.size:
            raise _Truncated(self.pos, what)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def length(self, what: str) -> tuple[int, bool]:
        """An RDB length: (value, is_encoded); an encoded one carries the encoding kind."""
        start = self.pos
        first = self.u8(what)
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.u8(what), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            self.skip(4, what)
            return int.from_bytes(self.data[self.pos - 4 : self.pos], "big"), False
        if first == 0x81:
            self.skip(8, what)
            return int.from_bytes(self.data[self.pos - 8 : self.pos], "big"), False
        raise _Corrupt(start, f"unknown length encoding 0x{first:02x} in {what}")

    def plain_length(self, what: str) -> int:
        start = self.pos
        value, encoded = self.length(what)
        if encoded:
            raise _Corrupt(start, f"an encoded value where a length was expected in {what}")
        return value

    def string(self, what: str) -> bytes | None:
        """Skip one RDB string; return its bytes when cheap (raw or an integer), else None."""
        start = self.pos
        value, encoded = self.length(what)
        if not encoded:
            self.skip(value, what)
            return bytes(self.data[self.pos - value : self.pos])
        if value in (0, 1, 2):  # 8, 16, 32 bit signed integer
            width = 1 << value
            self.skip(width, what)
            number = int.from_bytes(self.data[self.pos - width : self.pos], "little", signed=True)
            return str(number).encode()
        if value == 3:  # LZF: compressed length, uncompressed length, compressed bytes
            compressed = self.plain_length(what)
            self.plain_length(what)
            self.skip(compressed, what)
            return None
        raise _Corrupt(start, f"unknown string encoding {value} in {what}")

    def old_double(self, what: str) -> None:
        """A score of RDB type 3: a length byte (253-255 are NaN/+inf/-inf) and ASCII."""
        size = self.u8(what)
        if size < 253:
            self.skip(size, what)

    def module_value(self, what: str) -> None:
        """A module value with v2 annotations: typed opcodes up to the EOF opcode."""
        while True:
            start = self.pos
            opcode = self.plain_length(what)
            if opcode == _MODULE_OP_EOF:
                return
            if opcode in (_MODULE_OP_SINT, _MODULE_OP_UINT):
                self.plain_length(what)
            elif opcode == _MODULE_OP_FLOAT:
                self.skip(4, what)
            elif opcode == _MODULE_OP_DOUBLE:
                self.skip(8, what)
            elif opcode == _MODULE_OP_STRING:
                self.string(what)
            else:
                raise _Corrupt(start, f"unknown module opcode {opcode} in {what}")

    def value(self, rdb_type: int, type_offset: int) -> None:
        """Skip one value of ``rdb_type``."""
        what = f"a value of type {rdb_type} ({_type_name(rdb_type, valkey=self.valkey)})"
        if rdb_type == _T_STRING or rdb_type in _BLOB_TYPES:
            self.string(what)
        elif rdb_type in (_T_LIST, _T_SET, _T_LIST_QUICKLIST):
            for _ in range(self.plain_length(what)):
                self.string(what)
        elif rdb_type == _T_LIST_QUICKLIST_2:
            for _ in range(self.plain_length(what)):
                container_at = self.pos
                container = self.plain_length(what)
                if container not in (_QUICKLIST_PLAIN, _QUICKLIST_PACKED):
                    raise _Corrupt(container_at, f"unknown quicklist container {container}")
                self.string(what)
        elif rdb_type == _T_ZSET:
            for _ in range(self.plain_length(what)):
                self.string(what)
                self.old_double(what)
        elif rdb_type == _T_ZSET_2:
            for _ in range(self.plain_length(what)):
                self.string(what)
                self.skip(8, what)
        elif rdb_type == _T_HASH:
            for _ in range(self.plain_length(what)):
                self.string(what)
                self.string(what)
        elif rdb_type in (_T_STREAM_1, _T_STREAM_2, _T_STREAM_3):
            self.stream(rdb_type, what)
        elif rdb_type == _T_MODULE_2:
            self.plain_length(what)  # module id
            self.module_value(what)
        elif self.valkey and rdb_type == _T_VALKEY_HASH_2:
            for _ in range(self.plain_length(what)):  # field, value, expiry (ms, -1 = none)
                self.string(what)
                self.string(what)
                self.skip(8, what)
        elif not self.valkey and rdb_type in (
            _T_REDIS_HASH_METADATA, _T_REDIS_HASH_METADATA_PRE_GA
        ):
            if rdb_type == _T_REDIS_HASH_METADATA:
                self.skip(8, what)  # the minimum expiry; later TTLs are relative to it
            for _ in range(self.plain_length(what)):  # ttl, field, value
                self.plain_length(what)
                self.string(what)
                self.string(what)
        elif not self.valkey and rdb_type in (
            _T_REDIS_HASH_LISTPACK_EX, _T_REDIS_HASH_LISTPACK_EX_PRE_GA
        ):
            if rdb_type == _T_REDIS_HASH_LISTPACK_EX:
                self.skip(8, what)
            self.string(what)
        else:
            raise _Corrupt(
                type_offset,
                f"unknown RDB value type {rdb_type} "
                f"({_type_name(rdb_type, valkey=self.valkey)}): "
                "this checker cannot find the end of such a value",
            )

    def stream(self, rdb_type: int, what: str) -> None:
        for _ in range(self.plain_length(what)):  # listpacks: master ID, then the listpack
            self.string(what)
            self.string(what)
        self.plain_length(what)  # number of entries
        self.plain_length(what)  # last ID: ms, seq
        self.plain_length(what)
        if rdb_type != _T_STREAM_1:
            for _ in range(4):  # first ID, max deleted ID
                self.plain_length(what)
            self.plain_length(what)  # entries added
        for _ in range(self.plain_length(what)):  # consumer groups
            self.string(what)  # name
            self.plain_length(what)  # last delivered ID
            self.plain_length(what)
            if rdb_type != _T_STREAM_1:
                self.plain_length(what)  # entries read
            for _ in range(self.plain_length(what)):  # group PEL: ID, delivery time, count
                self.skip(_STREAM_ID_BYTES + 8, what)
                self.plain_length(what)
            for _ in range(self.plain_length(what)):  # consumers
                self.string(what)  # name
                self.skip(8, what)  # seen time
                if rdb_type == _T_STREAM_3:
                    self.skip(8, what)  # active time
                for _ in range(self.plain_length(what)):  # consumer PEL: IDs only
                    self.skip(_STREAM_ID_BYTES, what)


def _type_name(rdb_type: int, *, valkey: bool) -> str:
    if rdb_type in _TYPE_NAMES:
        return _TYPE_NAMES[rdb_type]
    if valkey:
        return {22: "hash with field expiry (Valkey 9)", 23: "path hash (Valkey 9.2)"}.get(
            rdb_type, "unknown"
        )
    return {
        22: "hash with field expiry (7.4 rc)",
        23: "hash listpack with field expiry (7.4 rc)",
        24: "hash with field expiry",
        25: "hash listpack with field expiry",
    }.get(rdb_type, "unknown")


def _text(raw: bytes | None) -> str:
    if raw is None:
        return "<compressed>"
    return raw.decode("utf-8", errors="backslashreplace")


def _header(data: bytes | bytearray, start: int) -> tuple[str, int, int]:
    """(magic, version, body offset); raises _Truncated/_Corrupt for a bad header."""
    head = bytes(data[start : start + _HEADER_BYTES])
    if head[:5] == _REDIS_MAGIC:
        magic, digits = "REDIS", head[5:9]
    elif head[:6] == _VALKEY_MAGIC:
        magic, digits = "VALKEY", head[6:9]
    elif _REDIS_MAGIC.startswith(head[:5]) or _VALKEY_MAGIC.startswith(head[:6]):
        raise _Truncated(start, "the RDB header")
    else:
        raise _Corrupt(start, f"not an RDB: the magic is {head[:6]!r}, not REDIS or VALKEY")
    if len(head) < _HEADER_BYTES:
        raise _Truncated(start, "the RDB header")
    if not digits.isdigit() or not digits.isascii():
        raise _Corrupt(start, f"bad RDB version {digits!r} after the {magic} magic")
    version = int(digits)
    if magic == "REDIS" and not 1 <= version <= _MAX_REDIS_VERSION:
        raise _Corrupt(
            start, f"unsupported RDB version {version} (this checker knows 1 to "
            f"{_MAX_REDIS_VERSION} after REDIS)"
        )
    if magic == "VALKEY" and version not in _VALKEY_VERSIONS:
        raise _Corrupt(
            start, f"unsupported RDB version {version} (this checker knows "
            f"{', '.join(str(v) for v in sorted(_VALKEY_VERSIONS))} after VALKEY)"
        )
    return magic, version, start + _HEADER_BYTES


def check_rdb(data: bytes | bytearray, *, start_offset_bytes: int = 0) -> RdbCheckResult:
    """Check the RDB that starts at ``start_offset_bytes`` of ``data`` (bytes after its end,
    e.g. the AOF tail of a preamble, are not looked at). Never raises on bad input."""
    magic: str | None = None
    version: int | None = None
    keys = expires = 0
    aux: list[tuple[str, str]] = []
    try:
        magic, version, body = _header(data, start_offset_bytes)
        walker = _Walker(data, body, valkey=magic == "VALKEY")
        pending_expire = False
        while True:
            record_at = walker.pos
            opcode = walker.u8("the next record (the RDB has no EOF opcode)")
            if opcode == _OP_EOF:
                break
            if opcode == _OP_AUX:
                key = walker.string("an AUX field")
                value = walker.string("an AUX field")
                aux.append((_text(key), _text(value)))
            elif opcode == _OP_SELECTDB:
                walker.plain_length("SELECTDB")
            elif opcode == _OP_RESIZEDB:
                walker.plain_length("RESIZEDB")
                walker.plain_length("RESIZEDB")
            elif opcode == _OP_EXPIRETIME_MS:
                walker.skip(8, "EXPIRETIME_MS")
                pending_expire = True
            elif opcode == _OP_EXPIRETIME:
                walker.skip(4, "EXPIRETIME")
                pending_expire = True
            elif opcode == _OP_IDLE:
                walker.plain_length("IDLE")
            elif opcode == _OP_FREQ:
                walker.skip(1, "FREQ")
            elif opcode == _OP_SLOT_INFO:
                for _ in range(3):  # slot id, keys in it, expiring keys in it
                    walker.plain_length("SLOT_INFO")
            elif opcode == _OP_FUNCTION2:
                walker.string("a FUNCTION2 library")
            elif opcode == _OP_FUNCTION_PRE_GA:
                walker.string("a FUNCTION library name")
                walker.string("a FUNCTION engine name")
                if walker.plain_length("a FUNCTION description flag"):
                    walker.string("a FUNCTION description")
                walker.string("a FUNCTION library")
            elif opcode == _OP_MODULE_AUX:
                walker.plain_length("MODULE_AUX")  # module id
                when_at = walker.pos
                if walker.plain_length("MODULE_AUX") != _MODULE_OP_UINT:
                    raise _Corrupt(when_at, "bad 'when' opcode in MODULE_AUX")
                walker.plain_length("MODULE_AUX")
                walker.module_value("MODULE_AUX")
            elif opcode == _T_MODULE_PRE_GA:
                raise _Corrupt(
                    record_at, "a module value in the 4.0 release-candidate format "
                    "(type 6), which cannot be skipped without the module"
                )
            elif opcode < _OP_SLOT_INFO:
                walker.string("a key")
                walker.value(opcode, record_at)
                keys += 1
                expires += pending_expire
                pending_expire = False
            else:
                raise _Corrupt(record_at, f"unknown RDB opcode 0x{opcode:02x}")
        eof_at = walker.pos - 1
        checksum = "absent"
        if version >= _FIRST_VERSION_WITH_CHECKSUM:
            walker.skip(8, "the checksum after the EOF opcode")
            stored = int.from_bytes(data[walker.pos - 8 : walker.pos], "little")
            if stored == 0:
                checksum = "disabled"
            else:
                computed = crc64_jones(memoryview(data)[start_offset_bytes : eof_at + 1])
                if computed != stored:
                    return RdbCheckResult(
                        valid=False, magic=magic, version=version,
                        end_offset_bytes=walker.pos, keys=keys, expires=expires,
                        checksum="mismatch",
                        reason=f"RDB checksum mismatch: stored 0x{stored:016x}, "
                        f"computed 0x{computed:016x} over bytes {start_offset_bytes}.."
                        f"{eof_at}",
                        error_offset_bytes=eof_at + 1, truncated=False, aux=tuple(aux),
                    )
                checksum = "ok"
        return RdbCheckResult(
            valid=True, magic=magic, version=version, end_offset_bytes=walker.pos, keys=keys,
            expires=expires, checksum=checksum, reason=None, error_offset_bytes=None,
            truncated=False, aux=tuple(aux),
        )
    except _Truncated as exc:
        return RdbCheckResult(
            valid=False, magic=magic, version=version, end_offset_bytes=None, keys=keys,
            expires=expires, checksum="unchecked",
            reason=f"RDB truncated: the data ends inside {exc.what} at offset {exc.offset}",
            error_offset_bytes=exc.offset, truncated=True, aux=tuple(aux),
        )
    except _Corrupt as exc:
        return RdbCheckResult(
            valid=False, magic=magic, version=version, end_offset_bytes=None, keys=keys,
            expires=expires, checksum="unchecked",
            reason=f"RDB not valid: {exc.reason} at offset {exc.offset}",
            error_offset_bytes=exc.offset, truncated=False, aux=tuple(aux),
        )
