"""The workload of a verify trial, drawn from the trial's seed: ``ops`` write entries (strings,
counters, lists, sets, zsets, hashes, MULTI/EXEC blocks, long-TTL expiries) with SELECTs
between them and optionally one BGREWRITEAOF, cut into pipelined batches of 1..``batch_max``
writes. Drawn lazily: a trial stops drawing at its kill.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["Item", "ItemKind", "batch_stream", "workload", "workload_stream"]

class ItemKind(enum.Enum):
    WRITE = "write"
    SELECT = "select"
    REWRITE = "rewrite"


@dataclass(frozen=True, slots=True)
class Item:
    kind: ItemKind
    commands: tuple[tuple[bytes, ...], ...] = ()
    db: int = 0


_STRING_KEYS: Final = [b"s:%d" % i for i in range(6)]
_COUNTER_KEYS: Final = [b"c:%d" % i for i in range(3)]
_LIST_KEYS: Final = [b"l:%d" % i for i in range(3)]
_SET_KEYS: Final = [b"t:%d" % i for i in range(3)]
_ZSET_KEYS: Final = [b"z:%d" % i for i in range(3)]
_HASH_KEYS: Final = [b"h:%d" % i for i in range(3)]
_ALL_KEYS: Final = (_STRING_KEYS + _COUNTER_KEYS + _LIST_KEYS + _SET_KEYS + _ZSET_KEYS
                    + _HASH_KEYS)
_MEMBERS: Final = [b"m%d" % i for i in range(8)]
_SCORES: Final = [b"0", b"1", b"-2", b"2.5", b"100", b"-0.5", b"1e3"]
_HOUR_S: Final = 3600


def _value(rng: random.Random) -> bytes:
    pick = rng.randrange(5)
    if pick == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))  # binary, \r\n
    if pick == 1:
        return b"x" * rng.choice([100, 700, 3000])  # spans 512-byte sectors
    return b"v%d" % rng.randrange(1000)


def _long_ttl_s(rng: random.Random) -> bytes:
    return str(rng.randrange(2 * _HOUR_S, 48 * _HOUR_S)).encode()


def _command(rng: random.Random) -> tuple[bytes, ...]:
    """One write command (long TTLs only: a real server expires on its wall clock)."""
    roll = rng.randrange(100)
    if roll < 20:
        key = rng.choice(_STRING_KEYS)
        flag = rng.choice([(), (), (b"NX",), (b"XX",)])
        return (b"SET", key, _value(rng), *flag)
    if roll < 25:
        return (b"APPEND", rng.choice(_STRING_KEYS), _value(rng))
    if roll < 35:
        key = rng.choice(_COUNTER_KEYS)
        op = rng.choice([b"INCR", b"DECR", b"INCRBY", b"DECRBY"])
        return (op, key) if op in (b"INCR", b"DECR") else (op, key, b"%d" % rng.randrange(-50, 50))
    if roll < 45:
        key = rng.choice(_LIST_KEYS)
        op = rng.choice([b"LPUSH", b"RPUSH", b"RPUSH", b"LPOP", b"RPOP"])
        if op in (b"LPOP", b"RPOP"):
            return (op, key)
        return (op, key, *(_value(rng) for _ in range(rng.randrange(1, 4))))
    if roll < 53:
        op = rng.choice([b"SADD", b"SADD", b"SREM"])
        return (op, rng.choice(_SET_KEYS), *rng.sample(_MEMBERS, rng.randrange(1, 4)))
    if roll < 61:
        key = rng.choice(_ZSET_KEYS)
        if rng.randrange(3) == 0:
            return (b"ZREM", key, rng.choice(_MEMBERS))
        return (b"ZADD", key, rng.choice(_SCORES), rng.choice(_MEMBERS))
    if roll < 69:
        key = rng.choice(_HASH_KEYS)
        if rng.randrange(3) == 0:
            return (b"HDEL", key, rng.choice(_MEMBERS))
        return (b"HSET", key, rng.choice(_MEMBERS), _value(rng))
    if roll < 81:
        key = rng.choice(_ALL_KEYS)
        which = rng.randrange(6)
        if which == 0:
            return (b"SET", rng.choice(_STRING_KEYS), _value(rng), b"EX", _long_ttl_s(rng))
        if which == 1:
            return (b"SETEX", rng.choice(_STRING_KEYS), _long_ttl_s(rng), _value(rng))
        if which == 2:
            ms = str(rng.randrange(2 * _HOUR_S * 1000, 48 * _HOUR_S * 1000)).encode()
            return (b"PSETEX", rng.choice(_STRING_KEYS), ms, _value(rng))
        if which == 3:
            return (b"EXPIRE", key, _long_ttl_s(rng))
        if which == 4:
            ms = str(rng.randrange(2 * _HOUR_S * 1000, 48 * _HOUR_S * 1000)).encode()
            return (b"PEXPIRE", key, ms)
        return (b"PERSIST", key)
    if roll < 99:
        return (b"DEL", rng.choice(_ALL_KEYS))
    return (b"FLUSHDB",)


def workload_stream(rng: random.Random, ops: int, *, rewrite_at: int | None) -> Iterator[Item]:
    """`ops` write entries, with SELECTs between them and BGREWRITEAOF before entry
    rewrite_at; lazily (a trial stops drawing at its kill)."""
    db = 0
    for n in range(ops):
        if n == rewrite_at:
            yield Item(ItemKind.REWRITE)
        if rng.randrange(12) == 0:
            db = rng.randrange(3)
            yield Item(ItemKind.SELECT, db=db)
        if rng.randrange(8) == 0:
            block = tuple(_command(rng) for _ in range(rng.randrange(2, 5)))
            yield Item(ItemKind.WRITE, block, db)
        else:
            yield Item(ItemKind.WRITE, (_command(rng),), db)


def workload(rng: random.Random, ops: int, *, rewrite_at: int | None) -> list[Item]:
    """The whole workload of `workload_stream`, as a list."""
    return list(workload_stream(rng, ops, rewrite_at=rewrite_at))


def batch_stream(rng: random.Random, items: Iterator[Item], batch_max: int
                  ) -> Iterator[tuple[list[Item], int]]:
    """Pipelined batches of 1..batch_max writes (with the SELECT/BGREWRITEAOF before them) and
    their write counts. Only the last batch can hold fewer writes than drawn."""
    current: list[Item] = []
    writes = 0
    size = rng.randrange(1, batch_max + 1)
    for item in items:
        current.append(item)
        if item.kind is ItemKind.WRITE:
            writes += 1
            if writes >= size:
                yield current, writes
                current, writes, size = [], 0, rng.randrange(1, batch_max + 1)
    if current:
        yield current, writes
