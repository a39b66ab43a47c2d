"""Canonical keyspace snapshots: ``KeyValue``, ``Snapshot``, ``snapshot_from_dump`` and JSON forms.

A snapshot is what a target returns after recovery and what the model computes for a prefix of
the history. Values are immutable and canonical, so equality and hashing mean "same keyspace":

========  ======================================
type      value
========  ======================================
string    ``bytes``
list      ``tuple[bytes, ...]`` (head first)
set       ``frozenset[bytes]``
zset      ``frozenset[tuple[bytes, float]]``
hash      ``frozenset[tuple[bytes, bytes]]``
========  ======================================

JSON encoding (reports, reproductions): every ``bytes`` is written as a ``str`` holding the same
byte values as code points U+0000..U+00FF (latin-1). It is lossless, and ASCII keys stay readable.
Sorted-set scores are written with ``repr(float)`` as strings ("1.5", "inf", "-inf") because JSON
has no infinity.
"""

from __future__ import annotations

import math
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, NamedTuple, TypeAlias

__all__ = [
    "DB_COUNT",
    "TYPES",
    "DbKey",
    "KeyValue",
    "Snapshot",
    "Value",
    "b2s",
    "is_live",
    "key_value_from_json",
    "key_value_to_json",
    "s2b",
    "snapshot_from_dump",
]

DB_COUNT = 16  # Redis's default number of databases; FLUSHALL clears all of them
TYPES = ("string", "list", "set", "zset", "hash")

Value: TypeAlias = (
    bytes
    | tuple[bytes, ...]
    | frozenset[bytes]
    | frozenset[tuple[bytes, float]]
    | frozenset[tuple[bytes, bytes]]
)
DbKey: TypeAlias = tuple[int, bytes]


class KeyValue(NamedTuple):
    """One key's value: its Redis type name, canonical value and absolute expiry (ms) or None."""

    type: str
    value: Value
    expire_at_ms: int | None = None


def is_live(kv: KeyValue | None, now_ms: int) -> bool:
    """True when `kv` exists at `now_ms` (a key whose expiry is <= now is expired, as in Redis)."""
    return kv is not None and (kv.expire_at_ms is None or kv.expire_at_ms > now_ms)


def b2s(data: bytes) -> str:
    """bytes -> JSON string (latin-1: one code point per byte, lossless)."""
    return data.decode("latin-1")


def s2b(text: str) -> bytes:
    """JSON string -> bytes (inverse of b2s); a code point above U+00FF is an error."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{text!r} is not a latin-1 encoded byte string") from exc


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}")


def _check_bytes(obj: object, where: str) -> bytes:
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    raise _fail(where, f"expected bytes, got {type(obj).__name__}")


def _check_score(obj: object, where: str) -> float:
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        raise _fail(where, f"score must be a number, got {type(obj).__name__}")
    score = float(obj)
    if math.isnan(score):
        raise _fail(where, "score is NaN (Redis never stores NaN scores)")
    return score


def _check_expire(obj: object, where: str) -> int | None:
    if obj is None:
        return None
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise _fail(where, f"expire_at_ms must be an int or None, got {type(obj).__name__}")
    return obj


def _check_db_key(db: object, key: object, where: str) -> DbKey:
    if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db < DB_COUNT:
        raise _fail(where, f"db must be an int in 0..{DB_COUNT - 1}, got {db!r}")
    return db, _check_bytes(key, where + " key")


def _unique_pairs(
    raw: object, where: str, type_name: str, first: str, second: str
) -> list[tuple[bytes, object]]:
    """A zset's or hash's entries, given as a dict or as 2-tuples: (name, value) with each
    name bytes and given once (the values are checked by the caller)."""
    entries: Iterable[tuple[object, object]]
    if isinstance(raw, dict):
        entries = raw.items()
    elif isinstance(raw, set | frozenset | list | tuple):
        entries = raw
    else:
        raise _fail(where, f"{type_name} value must be a dict {first}->{second}, "
                    f"got {type(raw).__name__}")
    out: dict[bytes, object] = {}
    for entry in entries:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise _fail(where, f"{type_name} entry must be ({first}, {second}), got {entry!r}")
        name = _check_bytes(entry[0], f"{where} {first}")
        if name in out:
            raise _fail(where, f"{type_name} {first} {name!r} appears twice")
        out[name] = entry[1]
    return list(out.items())


def _canonical(type_name: object, raw: object, where: str) -> Value:
    """Convert a dump value (list/set/dict forms, or already canonical) to its canonical form."""
    if type_name == "string":
        return _check_bytes(raw, where)
    if type_name == "list":
        if not isinstance(raw, list | tuple):
            raise _fail(where, f"list value must be a list of bytes, got {type(raw).__name__}")
        return tuple(_check_bytes(x, f"{where}[{i}]") for i, x in enumerate(raw))
    if type_name == "set":
        if not isinstance(raw, set | frozenset | list | tuple):
            raise _fail(where, f"set value must be a set of bytes, got {type(raw).__name__}")
        return frozenset(_check_bytes(x, where + " member") for x in raw)
    if type_name == "zset":
        scores: dict[bytes, float] = {}
        for member, score in _unique_pairs(raw, where, "zset", "member", "score"):
            scores[member] = _check_score(score, f"{where}[{member!r}]")
        return frozenset(scores.items())
    if type_name == "hash":
        fields: dict[bytes, bytes] = {}
        for field, value in _unique_pairs(raw, where, "hash", "field", "value"):
            fields[field] = _check_bytes(value, f"{where}[{field!r}]")
        return frozenset(fields.items())
    raise _fail(where, f"type {type_name!r} is not one of {', '.join(TYPES)}")


def _checked_key_value(obj: object, where: str) -> KeyValue:
    if not isinstance(obj, tuple) or len(obj) != 3:
        raise _fail(where, "expected KeyValue(type, value, expire_at_ms)")
    type_name, raw, expire = obj
    return KeyValue(
        str(type_name), _canonical(type_name, raw, where), _check_expire(expire, where)
    )


class Snapshot(Mapping[DbKey, KeyValue]):
    """An immutable keyspace: ``{(db, key): KeyValue}``. Equal snapshots are the same keyspace."""

    __slots__ = ("_data", "_hash")

    def __init__(
        self, items: Mapping[DbKey, KeyValue] | Iterable[tuple[DbKey, KeyValue]] = ()
    ) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        data: dict[DbKey, KeyValue] = {}
        for dbkey, kv in pairs:
            if not isinstance(dbkey, tuple) or len(dbkey) != 2:
                raise _fail("snapshot key", f"expected (db, key), got {dbkey!r}")
            db, key = _check_db_key(dbkey[0], dbkey[1], f"snapshot[{dbkey!r}]")
            data[(db, key)] = _checked_key_value(kv, f"snapshot[{dbkey!r}]")
        self._data = data
        self._hash: int | None = None

    @classmethod
    def _trusted(cls, data: dict[DbKey, KeyValue]) -> Snapshot:
        """Wrap a dict built by this package (already canonical) without re-validating it."""
        snap = cls.__new__(cls)
        snap._data = data
        snap._hash = None
        return snap

    def __getitem__(self, dbkey: DbKey) -> KeyValue:
        return self._data[dbkey]

    def __iter__(self) -> Iterator[DbKey]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, dbkey: object) -> bool:
        return dbkey in self._data

    # Delegated to the dict: the Mapping mixins go through __getitem__ per key, which the
    # checker's per-key loops would pay on every check.
    def items(self) -> ItemsView[DbKey, KeyValue]:
        return self._data.items()

    def keys(self) -> KeysView[DbKey]:
        return self._data.keys()

    def values(self) -> ValuesView[KeyValue]:
        return self._data.values()

    def get(self, dbkey: DbKey, default: Any = None) -> Any:
        return self._data.get(dbkey, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Snapshot):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"Snapshot({self._data!r})"

    def at(self, now_ms: int) -> Snapshot:
        """The keyspace as seen at `now_ms`: keys expired by then are absent."""
        data = self._data
        if all(kv.expire_at_ms is None or kv.expire_at_ms > now_ms for kv in data.values()):
            return self
        return Snapshot._trusted({k: v for k, v in data.items() if is_live(v, now_ms)})

    def to_dump(self) -> dict[int, dict[bytes, tuple[str, Any, int | None]]]:
        """Inverse of ``snapshot_from_dump`` (list/set/dict value forms; empty dbs omitted)."""
        out: dict[int, dict[bytes, tuple[str, Any, int | None]]] = {}
        for (db, key), kv in sorted(self._data.items()):
            raw: Any
            if kv.type == "list":
                raw = list(kv.value)
            elif kv.type == "set":
                raw = set(kv.value)
            elif kv.type in ("zset", "hash"):
                raw = dict(kv.value)  # type: ignore[arg-type]
            else:
                raw = kv.value
            out.setdefault(db, {})[key] = (kv.type, raw, kv.expire_at_ms)
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-able form: a list of ``{"db", "key", "type", "value", "expire_at_ms"}`` sorted."""
        return [
            {"db": db, "key": b2s(key), **key_value_to_json(kv)}
            for (db, key), kv in sorted(self._data.items())
        ]

    @classmethod
    def from_dict(cls, rows: Iterable[Mapping[str, Any]]) -> Snapshot:
        """Inverse of ``to_dict``."""
        data: dict[DbKey, KeyValue] = {}
        for i, row in enumerate(rows):
            db, key = _check_db_key(row.get("db"), s2b(str(row.get("key"))), f"snapshot row {i}")
            data[(db, key)] = key_value_from_json(row, f"snapshot row {i}")
        return cls(data)


def key_value_to_json(kv: KeyValue) -> dict[str, Any]:
    """A KeyValue as JSON (bytes as latin-1 strings, collections sorted, scores as repr)."""
    value: Any
    if kv.type == "string":
        assert isinstance(kv.value, bytes)
        value = b2s(kv.value)
    elif kv.type == "list":
        value = [b2s(x) for x in kv.value]  # type: ignore[arg-type]
    elif kv.type == "set":
        value = sorted(b2s(x) for x in kv.value)  # type: ignore[arg-type]
    elif kv.type == "zset":
        value = [[b2s(m), repr(s)] for m, s in sorted(kv.value)]  # type: ignore[misc]
    else:
        value = [[b2s(f), b2s(v)] for f, v in sorted(kv.value)]  # type: ignore[misc]
    return {"type": kv.type, "value": value, "expire_at_ms": kv.expire_at_ms}


def key_value_from_json(row: Mapping[str, Any], where: str = "value") -> KeyValue:
    """Inverse of ``key_value_to_json``."""
    type_name = row.get("type")
    value = row.get("value")
    raw: Any
    try:
        if type_name == "string":
            raw = s2b(value)  # type: ignore[arg-type]
        elif type_name in ("list", "set"):
            raw = [s2b(x) for x in value]  # type: ignore[union-attr]
        elif type_name == "zset":
            raw = {s2b(m): float(s) for m, s in value}  # type: ignore[union-attr]
        elif type_name == "hash":
            raw = {s2b(f): s2b(v) for f, v in value}  # type: ignore[union-attr]
        else:
            raise _fail(where, f"type {type_name!r} is not one of {', '.join(TYPES)}")
    except (TypeError, AttributeError) as exc:
        raise _fail(where, f"malformed {type_name} value {value!r}") from exc
    return KeyValue(
        type_name, _canonical(type_name, raw, where), _check_expire(row.get("expire_at_ms"), where)
    )


def snapshot_from_dump(dump: Mapping[int, Mapping[bytes, tuple[str, Any, int | None]]]) -> Snapshot:
    """Convert a dump ``{db: {key: (type, value, expire_at_ms | None)}}`` into a Snapshot.

    Dump value forms: "string" -> bytes, "list" -> list[bytes], "set" -> set[bytes],
    "zset" -> dict[bytes, float], "hash" -> dict[bytes, bytes] (what the reference's
    ``Server.dump()`` and the real-server dumper return). Bad input raises ValueError naming the
    db, key and field.
    """
    if not isinstance(dump, Mapping):
        raise _fail("dump", f"expected a mapping db -> keys, got {type(dump).__name__}")
    data: dict[DbKey, KeyValue] = {}
    for db, keys_obj in dump.items():
        keys: object = keys_obj  # validated at run time: dumps come from other processes' code
        if not isinstance(keys, Mapping):
            got = type(keys).__name__
            raise _fail(f"dump[{db!r}]", f"expected a mapping key -> value, got {got}")
        for key, entry in keys.items():
            where = f"dump[{db!r}][{key!r}]"
            dbkey = _check_db_key(db, key, where)
            if not isinstance(entry, tuple | list) or len(entry) != 3:
                raise _fail(where, "expected (type, value, expire_at_ms)")
            type_name, raw, expire = entry
            data[dbkey] = KeyValue(
                str(type_name), _canonical(type_name, raw, where), _check_expire(expire, where)
            )
    return Snapshot._trusted(data)
