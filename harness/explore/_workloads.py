"""Named workloads for the explorer: seeded generators of driver steps, sized by ``ops``.

Each generator returns a tuple of steps for ``harness.machine._driver.Driver``; ``ops`` is the
number of write commands (a MULTI block counts as one), the other steps (ticks, rewrite steps,
faults) come on top. Same (name, ops, seed): same steps. Keys come from a bounded pool so the
keyspace stays small while the AOF grows, which is what a crash-state search wants: many crash
points, cheap recoveries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from faults import FaultOp, FaultPlan, IOFault, NoSpace, ShortWrite
from harness.machine._steps import (
    BgRewrite,
    ChildStep,
    ClearFaults,
    InjectFaults,
    KillChild,
    Multi,
    Step,
    Tick,
    Write,
)

__all__ = ["WORKLOADS", "Workload", "make_workload"]

_AOF = "appendonly.aof"


@dataclass(frozen=True)
class Workload:
    """A named generator and what it exercises (shown by ``aofcrash explore --help``)."""

    name: str
    description: str
    build: Callable[[int, random.Random], list[Step]]


class _Gen:
    """Shared vocabulary: random writes over a bounded key pool, with ticks of virtual time."""

    def __init__(self, rng: random.Random, *, keys: int = 200, dbs: int = 3,
                 select_rate: float = 0.02) -> None:
        self.rng = rng
        self.keys = keys
        self.dbs = dbs
        self.select_rate = select_rate
        self.n = 0
        self.steps: list[Step] = []

    def key(self, prefix: bytes) -> bytes:
        return prefix + b"%d" % self.rng.randrange(self.keys)

    def value(self) -> bytes:
        # Mostly short values, sometimes one long enough to straddle a sector boundary.
        r = self.rng.random()
        size = self.rng.randrange(1, 12) if r < 0.9 else self.rng.randrange(200, 700)
        return (b"v%d-" % self.n + b"x" * size)[: max(size, 3)]

    def command(self) -> tuple[bytes, ...]:
        rng = self.rng
        r = rng.random()
        if r < 0.40:
            return (b"SET", self.key(b"s"), self.value())
        if r < 0.50:
            return (b"INCRBY", self.key(b"n"), b"%d" % rng.randrange(-5, 50))
        if r < 0.55:
            return (b"DEL", self.key(b"s"), self.key(b"h"))
        if r < 0.65:
            return (b"HSET", self.key(b"h"), b"f%d" % rng.randrange(8), self.value())
        if r < 0.75:
            return (b"SADD", self.key(b"t"), b"m%d" % rng.randrange(16))
        if r < 0.80:
            return (b"SREM", self.key(b"t"), b"m%d" % rng.randrange(16))
        if r < 0.87:
            return (b"ZADD", self.key(b"z"), b"%d" % rng.randrange(100), b"m%d" % rng.randrange(8))
        if r < 0.94:
            return (b"RPUSH", self.key(b"l"), self.value())
        return (b"LPOP", self.key(b"l"))

    def write(self, argv: tuple[bytes, ...] | None = None, *, client: int = 0) -> None:
        self.steps.append(Write(argv if argv is not None else self.command(), client=client))
        self.n += 1
        self.maybe_tick()

    def maybe_tick(self) -> None:
        rng = self.rng
        if rng.random() < self.select_rate:
            self.select(rng.randrange(self.dbs))
        if rng.random() < 0.1:
            self.steps.append(Tick(delta_ms=rng.choice((20, 50, 120, 300))))

    def select(self, db: int) -> None:
        self.steps.append(Write((b"SELECT", b"%d" % db)))

    def writes(self, count: int) -> None:
        for _ in range(count):
            self.write()

    def idle(self, total_ms: int) -> None:
        """Let time pass with no writes (cron runs: fsyncs, rewrite completion, retries)."""
        left = total_ms
        while left > 0:
            step = min(left, 100)
            self.steps.append(Tick(delta_ms=step))
            left -= step


def _mixed(ops: int, rng: random.Random) -> list[Step]:
    g = _Gen(rng)
    g.writes(ops)
    g.idle(2500)
    return g.steps


def _rewrite(ops: int, rng: random.Random) -> list[Step]:
    """Writes in dbs 0 and 2, then in db 1 around BGREWRITEAOF (so the rewritten file's last
    SELECT is not the db the parent keeps writing to), the child stepping while writes go on,
    more writes after the swap."""
    g = _Gen(rng, select_rate=0.0)
    g.writes(ops // 4)
    g.select(2)
    g.writes(max(1, ops // 8))
    g.select(1)
    g.writes(max(0, ops // 2 - g.n))
    g.steps.append(BgRewrite())
    during = max(1, ops // 10)
    for i in range(during):
        g.write()
        if i % 4 == 0:
            g.steps.append(ChildStep(count=2))
    g.steps.append(ChildStep(count=1_000_000))  # the child finishes; cron swaps the file in
    g.idle(300)
    g.writes(ops - ops // 2 - during)
    g.idle(2500)
    return g.steps


def _killed_child(ops: int, rng: random.Random) -> list[Step]:
    """A rewrite whose child is killed half-way, then a second rewrite that completes."""
    g = _Gen(rng)
    third = max(1, ops // 3)
    g.writes(third)
    g.steps.append(BgRewrite())
    g.steps.append(ChildStep(count=3))
    g.writes(max(1, third // 4))
    g.steps.append(KillChild())
    g.idle(300)
    g.writes(third)
    g.steps.append(BgRewrite())
    g.steps.append(ChildStep(count=1_000_000))
    g.idle(300)
    g.writes(max(0, ops - g.n))
    g.idle(2500)
    return g.steps


def _short_write(ops: int, rng: random.Random) -> list[Step]:
    """A genuine short write to the AOF in the middle of the run (the server truncates it away
    and retries)."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((ShortWrite(nth=1, written_bytes=7, path_glob=_AOF),))
    g.steps.append(InjectFaults(plan))
    g.writes(max(1, ops // 20))
    g.steps.append(ClearFaults())
    g.idle(1200)
    g.writes(max(0, ops - g.n))
    g.idle(2500)
    return g.steps


def _no_space(ops: int, rng: random.Random) -> list[Step]:
    """ENOSPC for a while (a partial write first): writes are refused, then space returns."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((NoSpace(nth=1, times=None, partial_bytes=5, path_glob=_AOF),))
    g.steps.append(InjectFaults(plan))
    g.writes(max(2, ops // 20))
    g.steps.append(ClearFaults())
    g.idle(1500)
    g.writes(max(0, ops - g.n))
    g.idle(2500)
    return g.steps


def _fsync_error(ops: int, rng: random.Random) -> list[Step]:
    """One failed fsync (EIO) of the AOF in the middle of the run."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((
        IOFault(op=FaultOp.FDATASYNC, nth=1, path_glob=_AOF),
        IOFault(op=FaultOp.FSYNC, nth=1, path_glob=_AOF),
    ))
    g.steps.append(InjectFaults(plan))
    g.writes(max(1, ops // 20))
    g.idle(1500)
    g.steps.append(ClearFaults())
    g.writes(max(0, ops - g.n))
    g.idle(2500)
    return g.steps


def _expiry(ops: int, rng: random.Random) -> list[Step]:
    """Relative and absolute expiries, some expiring during the run and some long after it,
    with a rewrite in the middle (expiries must survive it)."""
    g = _Gen(rng, keys=max(8, min(200, ops // 4)))

    def expiring() -> tuple[bytes, ...]:
        key = g.key(b"e")
        r = rng.random()
        # TTLs from 100 ms to far beyond the run, so some keys are gone at recovery and some
        # are not, and expiry times are checked exactly on the survivors.
        secs = rng.choice((1, 2, 5, 3600, 86400))
        if r < 0.25:
            return (b"SET", key, g.value(), b"EX", b"%d" % secs)
        if r < 0.45:
            return (b"SET", key, g.value(), b"PX", b"%d" % (secs * 1000 + 7))
        if r < 0.6:
            return (b"SETEX", key, b"%d" % secs, g.value())
        if r < 0.75:
            return (b"EXPIRE", key, b"%d" % secs)
        if r < 0.85:
            return (b"PEXPIRE", key, b"%d" % (secs * 1000 + 3))
        if r < 0.93:
            return (b"PERSIST", key)
        return (b"SET", key, g.value())

    half = ops // 2
    for i in range(ops):
        if i == half:
            g.steps.append(BgRewrite())
        if half <= i < half + max(1, ops // 10) and i % 3 == 0:
            g.steps.append(ChildStep(count=2))
        if i == half + max(1, ops // 10):
            g.steps.append(ChildStep(count=1_000_000))
        g.write(expiring() if rng.random() < 0.7 else None)
    g.idle(2500)
    return g.steps


def _multi(ops: int, rng: random.Random) -> list[Step]:
    """MULTI/EXEC blocks (some with values long enough to cross sectors) among plain writes."""
    g = _Gen(rng)
    while g.n < ops:
        if rng.random() < 0.4:
            size = rng.randrange(2, 6)
            block = tuple(g.command() for _ in range(size))
            g.steps.append(Multi(block))
            g.n += 1
            g.maybe_tick()
        else:
            g.write()
    g.idle(2500)
    return g.steps


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("mixed", "random writes of every type, several dbs, ticks", _mixed),
        Workload("rewrite", "writes, BGREWRITEAOF, child steps during writes, more writes",
                 _rewrite),
        Workload("killed-child", "a rewrite whose child is killed, then one that completes",
                 _killed_child),
        Workload("short-write", "a short write to the AOF mid-run", _short_write),
        Workload("no-space", "ENOSPC (partial write first) for a while, then space returns",
                 _no_space),
        Workload("fsync-error", "one failed fsync (EIO) of the AOF mid-run", _fsync_error),
        Workload("expiry", "relative/absolute expiries, some outliving the run, a rewrite",
                 _expiry),
        Workload("multi", "MULTI/EXEC blocks among plain writes", _multi),
    )
}


def make_workload(name: str, *, ops: int, seed: int = 0) -> tuple[Step, ...]:
    """The steps of workload `name` with `ops` write commands, drawn from `seed`."""
    workload = WORKLOADS.get(name)
    if workload is None:
        raise ValueError(f"workload: unknown name {name!r} (known: {', '.join(WORKLOADS)})")
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 1:
        raise ValueError(f"ops: must be an integer >= 1, got {ops!r}")
    return tuple(workload.build(ops, random.Random(f"{name}:{seed}")))
