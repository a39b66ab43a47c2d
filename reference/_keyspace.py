"""The keyspace: 16 databases of typed values with millisecond expiries.

Values are stored as plain Python objects chosen so that the type is the Python class:
``bytes`` (string), ``collections.deque`` (list), ``set`` (set), ``ZSet`` (sorted set: member ->
score) and ``Hash`` (field -> value). Expiry times are absolute virtual milliseconds; a key whose
expire time is <= now is logically absent.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TypeAlias

__all__ = [
    "DB_COUNT",
    "Db",
    "DumpValue",
    "Hash",
    "Keyspace",
    "KeyspaceDump",
    "Value",
    "ZSet",
    "dump_value",
    "type_name",
]

DB_COUNT = 16


class ZSet(dict[bytes, float]):
    """Sorted set: member -> score (order is computed when read)."""

    __slots__ = ()


class Hash(dict[bytes, bytes]):
    """Hash: field -> value."""

    __slots__ = ()


Value: TypeAlias = "bytes | deque[bytes] | set[bytes] | ZSet | Hash"
DumpValue: TypeAlias = "bytes | list[bytes] | set[bytes] | dict[bytes, float] | dict[bytes, bytes]"
KeyspaceDump: TypeAlias = "dict[int, dict[bytes, tuple[str, DumpValue, int | None]]]"

_TYPE_NAMES: dict[type, str] = {
    bytes: "string",
    deque: "list",
    set: "set",
    ZSet: "zset",
    Hash: "hash",
}


def type_name(value: Value) -> str:
    return _TYPE_NAMES[type(value)]


def dump_value(value: Value) -> DumpValue:
    """The canonical dump form of one value, as ``Keyspace.dump`` gives it per key: bytes for a
    string, a list for a list, a set for a set, a plain dict for a sorted set (member -> score)
    or a hash (field -> value). A copy: changing it does not change the keyspace."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, deque):
        return list(value)
    if isinstance(value, ZSet):
        return dict(value)
    if isinstance(value, Hash):
        return dict(value)
    return set(value)


class Db:
    """One database: ``data`` (key -> value), ``expires`` (key -> ms) and a heap of expiries."""

    __slots__ = ("data", "expires", "heap", "id")

    def __init__(self, db_id: int) -> None:
        self.id = db_id
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        # (expire_at_ms, key); entries go stale when the expiry changes and are skipped lazily.
        self.heap: list[tuple[int, bytes]] = []

    def set_expire(self, key: bytes, when_ms: int) -> None:
        self.expires[key] = when_ms
        heapq.heappush(self.heap, (when_ms, key))

    def delete(self, key: bytes) -> bool:
        if self.data.pop(key, None) is None:
            return False
        self.expires.pop(key, None)
        return True

    def clear(self) -> int:
        removed = len(self.data)
        self.data.clear()
        self.expires.clear()
        self.heap.clear()
        return removed

    def pop_expired(self, now_ms: int) -> list[bytes]:
        """Remove and return every key whose expiry is <= now (the active expire cycle)."""
        heap = self.heap
        expires = self.expires
        gone: list[bytes] = []
        while heap and heap[0][0] <= now_ms:
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                del expires[key]
                del self.data[key]
                gone.append(key)
        return gone


class Keyspace:
    """16 databases."""

    __slots__ = ("dbs",)

    def __init__(self) -> None:
        self.dbs = [Db(i) for i in range(DB_COUNT)]

    def dump_key(self, db: int, key: bytes) -> tuple[str, DumpValue, int | None] | None:
        """One key as ``dump`` gives it (type, value, expire_at_ms), expired or not; None if
        absent."""
        store = self.dbs[db]
        value = store.data.get(key)
        if value is None:
            return None
        return type_name(value), dump_value(value), store.expires.get(key)

    def restore_key(self, db: int, key: bytes, type_: str, value: DumpValue,
                    expire_at_ms: int | None) -> None:
        """Put one key back from its dump form (the inverse of ``dump_key``)."""
        raw: Value
        if type_ == "string":
            assert isinstance(value, bytes)
            raw = value
        elif type_ == "list":
            raw = deque(value)  # type: ignore[arg-type]
        elif type_ == "set":
            raw = set(value)  # type: ignore[arg-type]
        elif type_ == "zset":
            raw = ZSet(value)  # type: ignore[arg-type]
        elif type_ == "hash":
            raw = Hash(value)  # type: ignore[arg-type]
        else:
            raise ValueError(f"restore_key: unknown type {type_!r}")
        store = self.dbs[db]
        store.delete(key)
        store.data[key] = raw
        if expire_at_ms is not None:
            store.set_expire(key, expire_at_ms)

    def dump(self, now_ms: int) -> KeyspaceDump:
        """Canonical dump: only keys not expired at ``now_ms``; empty dbs omitted."""
        out: KeyspaceDump = {}
        for db in self.dbs:
            expires = db.expires
            entries: dict[bytes, tuple[str, DumpValue, int | None]] = {}
            for key, value in db.data.items():
                when = expires.get(key)
                if when is not None and when <= now_ms:
                    continue
                entries[key] = (type_name(value), dump_value(value), when)
            if entries:
                out[db.id] = entries
        return out
