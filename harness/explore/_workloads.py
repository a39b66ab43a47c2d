"""Named workloads for the explorer: seeded generators of driver steps, sized by ``ops``.

Each generator returns a tuple of steps for ``harness.machine._driver.Driver``; ``ops`` is the
number of write commands (a MULTI block counts as one), the other steps (ticks, rewrite steps,
faults) come on top. Same (name, ops, seed): same steps. Keys come from a bounded pool so the
keyspace stays small while the AOF grows, which is what a crash-state search wants: many crash
points, cheap recoveries.

A target that declares what it accepts (``harness.targets.CommandShapes``, ``accepts(argv)``)
gets the workload fitted to it (``fit_workload``): every command line it does not accept is
cut down to a shape it does (DEL of several keys to DEL of the first, SET without its
options), else replaced by a SET of a string key with the same value (the same number of
writes, the same sizes crossing sectors), else dropped; SELECT it does not accept is dropped
(one keyspace), a MULTI block without MULTI is sent as the same commands pipelined in one
event-loop iteration, and without BGREWRITEAOF the rewrite steps are dropped. What changed is
counted and said once (``describe_fitting``).

A workload may contain a crash and a ``Recover`` (``second-epoch``): the explorer runs
everything up to the last recovery once and explores every crash point after it. Each workload
names the fsync policy it is meant for (``Workload.policy``); ``DEFAULT_SUITE`` is what the
default explore runs: every workload under its policies, ``always`` and ``everysec`` both,
first small (the quick pass, ``QUICK_PASS_OPS`` writes each) and then at full size
(``FULL_PASS``), so that every workload's mechanisms are met early in a run.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faults import (
    Crash,
    FaultOp,
    FaultPlan,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SlowSync,
)
from harness.machine import _steps
from harness.machine._surface import KEY_KIND, SURFACE_PAIRS, surface_argv
from reference._surface import command_forms

__all__ = ["DEFAULT_SUITE", "FULL_PASS", "QUICK_PASS_OPS", "WORKLOADS", "Workload", "aim_workload",
           "describe_fitting",
           "fit_workload", "make_workload", "suite_config"]

_AOF = "appendonly.aof"
# Faults and crashes of workloads with no rewrite in flight at the time: any file. The reference
# then writes and syncs only its AOF (the same operations as aiming at _AOF), and another
# target's own log, whatever its name, gets them too (aimed at _AOF they never fired there).
_LOG = "*"
# The file the rewrite child leaves and the parent's done handler appends to and renames.
_REWRITTEN = "temp-rewriteaof-bg-*.aof"
_CHILD_TEMP = "temp-rewriteaof-[0-9]*.aof"  # the file the rewrite child writes

Accept = Callable[[tuple[bytes, ...]], bool]  # what a target accepts (None: everything)


@dataclass(frozen=True)
class Workload:
    """A named generator and what it exercises (shown by ``aofcrash explore --help``)."""

    name: str
    description: str
    build: Callable[[int, random.Random], list[_steps.Step]]
    policy: str = "everysec"  # the appendfsync policy the workload is meant for
    # RunConfig fields the workload needs besides the policy (e.g. a small auto-rewrite size).
    options: tuple[tuple[str, Any], ...] = ()
    # Why another target cannot run it (None: any target can).
    reference_only: str | None = None


class _Gen:
    """Shared vocabulary: random writes over a bounded key pool, with ticks of virtual time."""

    def __init__(self, rng: random.Random, *, keys: int = 200, dbs: int = 3,
                 select_rate: float = 0.02) -> None:
        self.rng = rng
        self.keys = keys
        self.dbs = dbs
        self.select_rate = select_rate
        self.n = 0
        self.steps: list[_steps.Step] = []
        self.now_ms = 0  # virtual time at this point of the steps (only ticks advance it)

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

    def write(self, argv: tuple[bytes, ...] | None = None, *, client: int = 0,
              tick: bool = True) -> None:
        self.steps.append(_steps.Write(argv if argv is not None else self.command(), client=client))
        self.n += 1
        if tick:
            self.maybe_tick()

    def maybe_tick(self) -> None:
        rng = self.rng
        if rng.random() < self.select_rate:
            self.select(rng.randrange(self.dbs))
        if rng.random() < 0.1:
            self.tick(rng.choice((20, 50, 120, 300)))

    def tick(self, delta_ms: int) -> None:
        self.steps.append(_steps.Tick(delta_ms=delta_ms))
        self.now_ms += delta_ms

    def select(self, db: int) -> None:
        self.steps.append(_steps.Write((b"SELECT", b"%d" % db)))

    def writes(self, count: int) -> None:
        for _ in range(count):
            self.write()

    def mixed_writes(self, count: int, *, multi_key: float = 0.25) -> None:
        """`count` writes, a share of them multi-key programs (see ``multi_key``)."""
        stop = self.n + count
        while self.n < stop:
            if self.rng.random() < multi_key:
                self.multi_key()
            else:
                self.write()

    def multi_key(self) -> None:
        """One command that changes several existing keys, fields or members, after the writes
        that create them: DEL of 2-4 keys, or SADD/SREM/HSET/HDEL/ZADD/ZREM/LPUSH/RPUSH of
        2-5 members of which some exist."""
        rng = self.rng
        if rng.random() < 0.3:
            keys = list(dict.fromkeys(self.key(b"s") for _ in range(rng.randrange(2, 5))))
            for key in keys:
                self.write((b"SET", key, self.value()))
            self.write((b"DEL", *keys, self.key(b"s")))
            return
        kind = rng.choice((b"SADD", b"SREM", b"HSET", b"HDEL", b"ZADD", b"ZREM", b"LPUSH",
                           b"RPUSH"))
        pool = [b"m%d" % i for i in range(8)]
        before = rng.sample(pool, rng.randrange(2, 6))
        after = rng.sample(before, rng.randrange(1, len(before) + 1))
        after += [m for m in rng.sample(pool, 2) if m not in after][: 1 + (len(after) < 2)]
        if kind in (b"SADD", b"SREM"):
            key = self.key(b"t")
            self.write((b"SADD", key, *before))
            self.write((kind, key, *after))
        elif kind in (b"HSET", b"HDEL"):
            key = self.key(b"h")
            self.write((b"HSET", key, *(x for m in before for x in (m, b"old"))))
            if kind == b"HDEL":
                self.write((b"HDEL", key, *after))
            else:
                self.write((b"HSET", key, *(x for m in after for x in (m, self.value()))))
        elif kind in (b"ZADD", b"ZREM"):
            key = self.key(b"z")
            self.write((b"ZADD", key, *(x for i, m in enumerate(before) for x in (b"%d" % i, m))))
            if kind == b"ZREM":
                self.write((b"ZREM", key, *after))
            else:
                options = rng.choice(((), (b"CH",), (b"XX",), (b"GT", b"CH")))
                pairs = (x for m in after for x in (b"%d" % rng.randrange(-5, 50), m))
                self.write((b"ZADD", key, *options, *pairs))
        else:
            key = self.key(b"l")
            self.write((b"RPUSH", key, *before))
            self.write((kind, key, *after))

    def big(self) -> None:
        """A list, set, sorted set or hash grown by 64 to 200 items (the rewrite's batch edges
        often) in one to three commands."""
        rng = self.rng
        kind = rng.choice((b"RPUSH", b"SADD", b"ZADD", b"HSET"))
        size = rng.choice((64, 65, 128, 129)) if rng.random() < 0.5 else rng.randrange(65, 201)
        parts = rng.randrange(1, 4)
        key = self.key({b"RPUSH": b"l", b"SADD": b"t", b"ZADD": b"z", b"HSET": b"h"}[kind])
        tag = b"%d-" % self.n
        items: list[tuple[bytes, ...]] = []
        for i in range(size):
            if kind == b"ZADD":
                items.append((b"%d" % i, tag + b"%d" % i))
            elif kind == b"HSET":
                items.append((tag + b"%d" % i, b"v%d" % i))
            else:
                items.append((tag + b"%d" % i,))
        per = -(-size // parts)
        for j in range(0, size, per):
            self.write((kind, key, *(x for item in items[j:j + per] for x in item)))

    def rewrite(self, during: int, *, child_steps: int = 2, step_every: int = 3,
                settle_ms: int = 200) -> None:
        """BGREWRITEAOF, `during` writes while the child runs (the rewrite buffer; the child
        takes `child_steps` steps every `step_every` writes), the child finishes and, within
        `settle_ms`, the cron's done handler swaps the file in."""
        self.steps.append(_steps.BgRewrite())
        for i in range(during):
            self.write()
            if i % step_every == 0:
                self.steps.append(_steps.ChildStep(count=child_steps))
        self.steps.append(_steps.ChildStep(count=1_000_000))
        self.idle(settle_ms)

    def settle(self) -> list[_steps.Step]:
        """Let 2.5 s pass with no writes (the everysec window closes, pending fsyncs and retries
        run), then the workload's steps."""
        self.idle(2500)
        return self.steps

    def idle(self, total_ms: int) -> None:
        """Let time pass with no writes (cron runs: fsyncs, rewrite completion, retries)."""
        left = total_ms
        while left > 0:
            step = min(left, 100)
            self.tick(step)
            left -= step


def _mixed(ops: int, rng: random.Random) -> list[_steps.Step]:
    g = _Gen(rng)
    g.writes(ops)
    return g.settle()


def _rewrite(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Writes in dbs 0 and 2, then in db 1 around BGREWRITEAOF (so the rewritten file's last
    SELECT is not the db the parent keeps writing to), the child stepping while writes go on,
    more writes after the swap."""
    g = _Gen(rng, select_rate=0.0)
    g.writes(ops // 4)
    g.select(2)
    g.writes(max(1, ops // 8))
    g.select(1)
    g.writes(max(0, ops // 2 - g.n))
    during = max(1, ops // 10)
    g.rewrite(during, step_every=4, settle_ms=300)
    g.writes(ops - ops // 2 - during)
    return g.settle()


def _killed_child(ops: int, rng: random.Random) -> list[_steps.Step]:
    """A rewrite whose child is killed half-way, then a second rewrite that completes."""
    g = _Gen(rng)
    third = max(1, ops // 3)
    g.writes(third)
    g.steps.append(_steps.BgRewrite())
    g.steps.append(_steps.ChildStep(count=3))
    g.writes(max(1, third // 4))
    g.steps.append(_steps.KillChild())
    g.idle(300)
    g.writes(third)
    g.rewrite(0, settle_ms=300)
    g.writes(max(0, ops - g.n))
    return g.settle()


def _short_write(ops: int, rng: random.Random) -> list[_steps.Step]:
    """A genuine short write to the AOF in the middle of the run (the server truncates it away
    and retries)."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((ShortWrite(nth=1, written_bytes=7, path_glob=_LOG),))
    g.steps.append(_steps.InjectFaults(plan))
    g.writes(max(1, ops // 20))
    g.steps.append(_steps.ClearFaults())
    g.idle(1200)
    g.writes(max(0, ops - g.n))
    return g.settle()


def _no_space(ops: int, rng: random.Random) -> list[_steps.Step]:
    """ENOSPC for a while (a partial write first): writes are refused, then space returns."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((NoSpace(nth=1, times=None, partial_bytes=5, path_glob=_LOG),))
    g.steps.append(_steps.InjectFaults(plan))
    g.writes(max(2, ops // 20))
    g.steps.append(_steps.Multi((g.command(), g.command())))  # refused whole: EXECABORT (MISCONF)
    g.steps.append(_steps.ClearFaults())
    g.idle(1500)
    g.writes(max(0, ops - g.n))
    return g.settle()


def _fsync_error(ops: int, rng: random.Random) -> list[_steps.Step]:
    """One failed fsync (EIO) of the AOF in the middle of the run; later two failed fsyncs in a
    row while the disk is also full (the fsync error found with writes refused)."""
    g = _Gen(rng)
    g.writes(ops // 2)
    plan = FaultPlan((
        IOFault(op=FaultOp.FDATASYNC, nth=1, path_glob=_AOF),
        IOFault(op=FaultOp.FSYNC, nth=1, path_glob=_AOF),
    ))
    g.steps.append(_steps.InjectFaults(plan))
    g.writes(max(1, ops // 20))
    g.idle(1500)
    g.steps.append(_steps.ClearFaults())
    g.writes(max(0, ops * 3 // 4 - g.n))
    g.idle(1100)
    g.write()  # unsynced bytes for the next once-a-second fsync
    plan = FaultPlan((
        IOFault(op=FaultOp.FDATASYNC, nth=1, times=2, path_glob=_AOF),
        NoSpace(nth=1, times=None, path_glob=_AOF),
    ))
    g.steps.append(_steps.InjectFaults(plan))
    for _ in range(3):
        g.write(tick=False)
        g.tick(700)
    g.steps.append(_steps.ClearFaults())
    g.writes(max(0, ops - g.n))
    return g.settle()


def _slow_fsync(ops: int, rng: random.Random) -> list[_steps.Step]:
    """One background fsync of the AOF stalls for 4 s while writes go on: everysec postpones
    the buffer's write for at most 2 s, then writes without waiting for the fsync; the run ends
    with a long idle period, so whatever a server left unwritten or unsynced is older than any
    window. The writes during the stall come half-way through a second: a server that writes a
    postponed buffer at the second boundary two seconds on (Redis's rule, in whole seconds)
    does so 1.5 s after them, inside the window. Then a 3 s stall whose end the writes
    straddle (fixed values, after the random part): crash points from 1.5 s before it returns
    to 0.7 s after, where a postponed buffer and the first fsync after a stall happen."""
    g = _Gen(rng)
    g.writes(max(0, ops - 4))
    g.idle(1500 - g.now_ms % 1000)  # x.5 s, after a boundary: everything so far fsynced
    g.steps.append(_steps.InjectFaults(
        FaultPlan((SlowSync(delay_ms=4000, nth=1, path_glob=_LOG),))))
    # The slow fsync is issued at the next boundary, for the write made now; the writes of the
    # next second are postponed; nothing is written after the stall (an fsync of later writes
    # would also sync whatever the server forgot).
    while g.n < ops:
        for _ in range(min(ops - g.n, rng.randrange(1, 3))):
            g.write(tick=False)
        g.tick(1000)
    g.steps.append(_steps.ClearFaults())
    g.idle(8000)
    g.steps.append(_steps.InjectFaults(
        FaultPlan((SlowSync(delay_ms=3000, nth=1, path_glob=_LOG),))))
    g.write((b"SET", b"s-stall", b"early"), tick=False)  # its fsync stalls
    for n, gap_ms in enumerate((600, 1000, 700, 300, 200, 100, 100, 200, 300, 700)):
        g.tick(gap_ms)
        g.write((b"INCRBY", b"n-stall", b"%d" % (n + 1)), tick=False)
    g.steps.append(_steps.ClearFaults())
    g.idle(3000)
    return g.steps


def _expiry(ops: int, rng: random.Random) -> list[_steps.Step]:
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
            g.steps.append(_steps.BgRewrite())
        if half <= i < half + max(1, ops // 10) and i % 3 == 0:
            g.steps.append(_steps.ChildStep(count=2))
        if i == half + max(1, ops // 10):
            g.steps.append(_steps.ChildStep(count=1_000_000))
        g.write(expiring() if rng.random() < 0.7 else None)
    return g.settle()


def _multi(ops: int, rng: random.Random) -> list[_steps.Step]:
    """MULTI/EXEC blocks (some with values long enough to cross sectors) among plain writes;
    now and then a read queued among the writes, or a malformed command that makes EXEC abort
    the whole block (nothing of it may reach the AOF)."""
    g = _Gen(rng)
    while g.n < ops:
        if rng.random() < 0.4:
            size = rng.randrange(2, 6)
            block = [g.command() for _ in range(size)]
            r = rng.random()
            if r < 0.15:
                block.insert(rng.randrange(len(block)), (b"GET", g.key(b"s")))
            elif r < 0.25:
                block.insert(rng.randrange(len(block)), (b"SET", g.key(b"s")))  # wrong arity
            elif r < 0.3:
                block.insert(rng.randrange(len(block)), (b"NOSUCHCOMMAND", g.key(b"s")))
            g.steps.append(_steps.Multi(tuple(block)))
            g.n += 1
            g.maybe_tick()
        elif rng.random() < 0.02:
            g.write((b"NOSUCHCOMMAND", g.key(b"s")))  # refused: nothing may reach the AOF
        else:
            g.write()
    return g.settle()


def _boundaries(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Multi-key commands on existing keys and members, collections grown past the rewrite's
    64-item batch, a rewrite with writes during it, more of both after the swap."""
    g = _Gen(rng, keys=12, select_rate=0.01)
    g.mixed_writes(ops // 4, multi_key=0.4)
    g.big()
    g.big()
    g.rewrite(max(2, ops // 10))
    g.mixed_writes(max(1, ops // 4), multi_key=0.4)
    g.big()
    g.rewrite(max(2, ops // 10))
    g.mixed_writes(max(0, ops - g.n), multi_key=0.4)
    return g.settle()


def _rewrite_faults(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Rewrites whose done handler meets a fault, one each: a short write and ENOSPC on the
    append of the rewrite buffer, EIO on its fsync and on the rename; then one that completes;
    then EIO on the directory fsync after the rename (under ``always`` the server stops)."""
    g = _Gen(rng, keys=12)
    g.mixed_writes(max(1, ops // 5))
    g.big()
    faults = (
        # The child's own write makes no progress: the child fails, the rewrite is dropped.
        ShortWrite(nth=1, written_bytes=0, path_glob=_CHILD_TEMP),
        ShortWrite(nth=1, written_bytes=rng.randrange(1, 30), path_glob=_REWRITTEN),
        NoSpace(nth=1, times=1, partial_bytes=rng.randrange(0, 20), path_glob=_REWRITTEN),
        IOFault(op=FaultOp.FDATASYNC, nth=1, path_glob=_REWRITTEN),
        IOFault(op=FaultOp.RENAME, nth=1),
        None,
        IOFault(op=FaultOp.FSYNC_DIR, nth=1),
    )
    per = max(1, ops // 10)
    for fault in faults:
        if fault is not None and fault.path_glob == _CHILD_TEMP:
            g.steps.append(_steps.InjectFaults(FaultPlan((fault,))))
            fault = None
        g.steps.append(_steps.BgRewrite())
        for _ in range(2):  # the rewrite buffer the done handler appends (no tick: the child
            g.write(tick=False)  # must not finish before the fault is in place)
        g.steps.append(_steps.ChildStep(count=1_000_000))
        if fault is not None:
            g.steps.append(_steps.InjectFaults(FaultPlan((fault,))))
        g.idle(200)  # the cron reaps the child and runs the done handler
        g.steps.append(_steps.ClearFaults())
        g.mixed_writes(per)
    g.mixed_writes(max(0, ops - g.n))
    return g.settle()


def _auto_rewrite(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Writes past a small auto-rewrite size (``options``: 4 KB): the server starts rewrites by
    itself from its cron (growth over the base size), with writes going on while the child
    runs one step per tick, some collections past the 64-item batch among them."""
    g = _Gen(rng, keys=24)
    while g.n < ops:
        if rng.random() < 0.05:
            g.big()
        else:
            g.write()
        if rng.random() < 0.3:
            g.tick(rng.choice((100, 200)))  # cron: starts and steps rewrites
    return g.settle()


def _second_epoch(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Two epochs: writes and a rewrite, a crash inside an AOF write (a torn tail), recovery
    (process model: the torn tail is truncated), then writes, multi-key commands, a big
    collection and a rewrite on the recovered file, and faults (a short write, a stalled
    fsync); every crash point of the second epoch is explored against the recovered prefix."""
    g = _Gen(rng, keys=16)
    first = max(2, ops // 3)
    g.mixed_writes(first // 2)
    g.rewrite(max(1, first // 8))
    g.mixed_writes(max(1, first - g.n))
    torn = Crash(nth=1, op=FaultOp.WRITE, torn_bytes=rng.randrange(3, 40), path_glob=_LOG)
    g.steps.append(_steps.ArmCrash(FaultPlan((torn,))))
    g.write((b"SET", g.key(b"s"), b"torn-" + b"x" * rng.randrange(40, 120)))
    g.steps.append(_steps.Recover(model=PersistenceModel.PROCESS, downtime_ms=100))
    g.mixed_writes(max(1, (ops - g.n) // 2), multi_key=0.3)
    g.big()
    g.rewrite(max(2, ops // 10))
    g.mixed_writes(max(0, ops - g.n), multi_key=0.3)
    _epoch_faults(g)
    return g.settle()


def _epoch_faults(g: _Gen) -> None:
    """Faults in a later epoch, on the file a recovery cut: a short write to the AOF (everysec
    retries it; always stops the server, which ends the run there), then a stalled fsync, each
    with writes after it. Fixed values: the workload's random draws stay as they were."""
    g.steps.append(_steps.InjectFaults(
        FaultPlan((ShortWrite(nth=1, written_bytes=9, path_glob=_LOG),))))
    g.write((b"SET", b"s-epoch", b"short-" + b"x" * 40), tick=False)
    g.write((b"INCRBY", b"n-epoch", b"3"), tick=False)
    g.steps.append(_steps.ClearFaults())
    g.idle(1200)
    g.steps.append(_steps.InjectFaults(
        FaultPlan((SlowSync(delay_ms=1500, nth=1, path_glob=_LOG),))))
    g.write((b"SET", b"s-epoch", b"stalled"), tick=False)
    g.idle(1100)
    g.write((b"APPEND", b"s-epoch", b"-more"), tick=False)
    g.steps.append(_steps.ClearFaults())


def _big_aof(ops: int, rng: random.Random) -> list[_steps.Step]:
    """A first epoch that grows the AOF past 128 KB (long values, MULTI blocks of them), torn
    inside the write of a MULTI block, recovered (process model): the loader takes the big file
    in several 64 KB pieces with a transaction open at its tail. Then a second epoch of writes
    and MULTI blocks on the recovered file, whose every crash point is explored."""
    g = _Gen(rng, keys=48)

    def long_set() -> tuple[bytes, ...]:
        size = rng.randrange(300, 1200)
        return (b"SET", g.key(b"s"), (b"v%d-" % g.n + b"x" * size)[:size])

    size_bytes = 0
    while size_bytes < 150_000:
        if rng.random() < 0.5:
            block = tuple(long_set() for _ in range(rng.randrange(2, 6)))
            g.steps.append(_steps.Multi(block))
            g.n += 1
            size_bytes += sum(len(argv[2]) + 40 for argv in block) + 30
        else:
            argv = long_set()
            g.write(argv, tick=False)
            size_bytes += len(argv[2]) + 40
        if rng.random() < 0.05:
            g.tick(rng.choice((100, 300)))
    g.idle(1100)
    torn = Crash(nth=1, op=FaultOp.WRITE, torn_bytes=rng.randrange(120, 900), path_glob=_LOG)
    g.steps.append(_steps.ArmCrash(FaultPlan((torn,))))
    g.steps.append(_steps.Multi(tuple(long_set() for _ in range(3))))
    g.steps.append(_steps.Recover(model=PersistenceModel.PROCESS, downtime_ms=100))
    stop = g.n + ops
    while g.n < stop:
        if rng.random() < 0.3:
            g.steps.append(_steps.Multi((g.command(), g.command(), long_set())))
            g.n += 1
            g.maybe_tick()
        else:
            g.write()
    _epoch_faults(g)
    return g.settle()


def _surface(ops: int, rng: random.Random) -> list[_steps.Step]:
    """Every (command, form) pair of the reference's command surface table (every option and
    arity form it implements: SET EXAT, ZADD INCR, LPOP with a count, an EXPIRE in the past,
    FLUSHALL ASYNC...), in shuffled rounds until `ops` writes, each on a key that mostly
    exists (a write creates it first), some inside a MULTI block with that write."""
    g = _Gen(rng, keys=6)
    prefix = {"string": b"s", "list": b"l", "set": b"t", "zset": b"z", "hash": b"h"}
    # The write that makes a key of each kind exist (the key goes after the command name).
    create: dict[str, tuple[bytes, ...]] = {
        "string": (b"SET", b"7"),
        "list": (b"RPUSH", b"m0", b"m1", b"m2"),
        "set": (b"SADD", b"m0", b"m1"),
        "zset": (b"ZADD", b"1", b"m0", b"2", b"m1"),
        "hash": (b"HSET", b"m0", b"v", b"m1", b"w"),
    }
    pairs = list(SURFACE_PAIRS)
    rounds = 0
    while rounds == 0 or g.n < ops:
        rounds += 1
        rng.shuffle(pairs)
        for name, form in pairs:
            kind = KEY_KIND[name]
            if kind == "any":
                kind = rng.choice(sorted(prefix))
            key = g.key(prefix[kind])
            argv = surface_argv(name, form, key=key, other=g.key(prefix[kind]), value=g.value(),
                                members=tuple(rng.sample([b"m0", b"m1", b"m2", b"m3"], 2)),
                                amount=rng.randrange(1, 4000), now_ms=g.now_ms)
            how = create[kind]
            first = (how[0], key, *how[1:]) if rng.random() < 0.7 else None
            if first is not None and rng.random() < 0.15:
                g.steps.append(_steps.Multi((first, argv)))
                g.n += 1
                g.maybe_tick()
                continue
            if first is not None:
                g.write(first, tick=False)
            g.write(argv)
    return g.settle()


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
        Workload("boundaries", "multi-key commands on existing keys, collections past the "
                 "rewrite's 64-item batch, rewrites", _boundaries, "always"),
        Workload("rewrite-faults", "a short write, ENOSPC, EIO on fsync, rename and directory "
                 "fsync in the rewrite done handler", _rewrite_faults, "always"),
        Workload("slow-fsync", "a background fsync stalls 4 s while writes go on, a long "
                 "idle period, then a 3 s stall whose end the writes straddle", _slow_fsync),
        Workload("second-epoch", "crash (torn write), recover, write more and rewrite: the "
                 "second epoch's crash points", _second_epoch),
        Workload("auto-rewrite", "writes past a 4 KB auto-rewrite size: rewrites started by "
                 "the server itself", _auto_rewrite,
                 options=(("auto_rewrite_min_size_bytes", 4096),)),
        Workload("big-aof", "an AOF past 128 KB torn inside a MULTI block, recovered (loaded in "
                 "64 KB pieces), then a second epoch", _big_aof, "always"),
        Workload("surface", "every option and arity form of every write command the reference "
                 "implements (its command surface table)", _surface, "always",
                 reference_only="it sends every option of the reference's commands, judged by "
                 "the reference's semantics"),
    )
}

# The full pass of the default suite: (workload, policy, ops). Every named workload under the
# policy its faults matter for, everysec and always both, the boundaries of the contract among
# them (multi-key commands, big collections, faults in the rewrite done handler, a second epoch
# after a recovery, an AOF loaded in several 64 KB pieces with a transaction open at its tail).
# Cheapest first (crash states a target without the reference's fast path recovers one by one,
# measured on examples/segstore): a user who stops early has seen the most workloads.
FULL_PASS: tuple[tuple[str, str, int], ...] = (
    ("rewrite-faults", "always", 100),
    ("second-epoch", "everysec", 150),
    ("second-epoch", "always", 150),
    ("no-space", "no", 150),
    ("fsync-error", "everysec", 150),
    ("fsync-error", "always", 150),
    ("boundaries", "always", 150),
    ("boundaries", "everysec", 150),
    ("slow-fsync", "everysec", 100),
    ("expiry", "everysec", 150),
    ("mixed", "always", 150),
    ("short-write", "no", 150),
    ("auto-rewrite", "everysec", 200),
    ("surface", "always", 120),
    ("big-aof", "always", 60),
    ("killed-child", "everysec", 150),
    ("rewrite", "everysec", 200),
    ("multi", "always", 150),
)

# The quick pass runs first: every run of the full pass at QUICK_PASS_OPS writes (each
# workload keeps its rewrite, faults, crash and recovery at that size). Every mechanism a
# workload reaches is then met within the first part of the suite (about a sixth of its
# time), not only when its turn in the full pass comes: with no fast path (a target of one's
# own) the full pass takes minutes, and a bug only the expiry or the idle-everysec workload
# reaches was found after 205-260 s. The full pass then looks for what needs a longer history.
QUICK_PASS_OPS = 20

# What ``aofcrash explore`` runs by default: the quick pass, then the full pass.
DEFAULT_SUITE: tuple[tuple[str, str, int], ...] = tuple(
    (workload, policy, min(ops, QUICK_PASS_OPS)) for workload, policy, ops in FULL_PASS
) + FULL_PASS


def suite_config(workload: str, policy: str,
                 base: _steps.RunConfig | None = None) -> _steps.RunConfig:
    """The RunConfig a workload runs under: `base` (defaults) with the policy and the options
    the workload needs (``Workload.options``)."""
    options = dict(WORKLOADS[workload].options) if workload in WORKLOADS else {}
    return dataclasses.replace(base or _steps.RunConfig(), policy=policy, **options)


def make_workload(name: str, *, ops: int, seed: int = 0,
                  accept: Accept | None = None) -> tuple[_steps.Step, ...]:
    """The steps of workload `name` with `ops` write commands, drawn from `seed`; with
    `accept` (``harness.machine.target_accepts``), fitted to it (``fit_workload``)."""
    workload = WORKLOADS.get(name)
    if workload is None:
        raise ValueError(f"workload: unknown name {name!r} (known: {', '.join(WORKLOADS)})")
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 1:
        raise ValueError(f"ops: must be an integer >= 1, got {ops!r}")
    steps = tuple(workload.build(ops, random.Random(f"{name}:{seed}")))
    return fit_workload(steps, accept)[0] if accept is not None else steps



def aim_workload(steps: Sequence[_steps.Step], *, files: Sequence[str],
                 temp_files: Sequence[str]) -> tuple[_steps.Step, ...]:
    """`steps` with the faults aimed at Redis's file names aimed at a target's own: the AOF's
    at its `files` (one glob: that one; several: any file), the rewrite's temporary files' at
    its `temp_files` (kept when it declares none). Aimed at ``appendonly.aof``, a fault never
    fires on a store whose log has another name."""
    def one(globs: Sequence[str]) -> str | None:
        return None if not globs else globs[0] if len(globs) == 1 else "*"

    log, temp = one(files), one(temp_files)
    new_glob = {_AOF: log, _REWRITTEN: temp, _CHILD_TEMP: temp}

    def aimed(plan: FaultPlan) -> FaultPlan:
        faults: list[Any] = []
        for fault in plan.faults:
            glob = new_glob.get(getattr(fault, "path_glob", ""))
            faults.append(fault if glob is None else dataclasses.replace(
                fault, path_glob=glob))  # type: ignore[call-arg]
        return FaultPlan(tuple(faults))

    return tuple(dataclasses.replace(step, plan=aimed(step.plan))
                 if isinstance(step, _steps.InjectFaults | _steps.ArmCrash) else step
                 for step in steps)


def _shown(argv: tuple[bytes, ...]) -> str:
    """A command line's name and forms (``DEL several``), for the one-line summary."""
    name = argv[0].decode("latin-1").upper()
    forms = [form for _, form in command_forms(argv)]
    return " ".join([name, *forms]) if forms and forms != ["plain"] else name


def _fit_argv(argv: tuple[bytes, ...], accept: Accept,
              changes: Counter[str]) -> tuple[bytes, ...] | None:
    """`argv`, or the closest command line `accept` takes (see the module docstring), or
    None (dropped); `changes` counts what was done."""
    if accept(argv):
        return argv
    name = argv[0].upper()
    if name == b"SELECT":
        changes["SELECT dropped (one keyspace)"] += 1
        return None
    for cut in (argv[:3], argv[:2]):
        # A shorter line of the same command that still has a form of its own (not a
        # wrong-arity one): DEL a b -> DEL a, SET k v EX 5 -> SET k v, LPOP l 3 -> LPOP l.
        if len(cut) < len(argv) and command_forms(cut) and accept(cut):
            changes[f"{_shown(argv)} -> {_shown(cut)}"] += 1
            return cut
    key = argv[1] if len(argv) > 1 else b"s0"
    key = key if key[:1] == b"s" else b"s" + key[1:]
    value = max(argv[2:], key=len, default=b"v") or b"v"
    instead = (b"SET", key, value)
    shown = argv[0].decode("latin-1").upper()  # (no form of it is accepted: by name)
    if accept(instead):
        changes[f"{shown} -> SET"] += 1
        return instead
    changes[f"{shown} dropped"] += 1
    return None


def fit_workload(steps: Sequence[_steps.Step], accept: Accept | None,
                 ) -> tuple[tuple[_steps.Step, ...], Counter[str]]:
    """`steps` with only command lines `accept` takes (None: unchanged), and what was
    changed, counted by kind (see the module docstring)."""
    changes: Counter[str] = Counter()
    if accept is None:
        return tuple(steps), changes
    multi = accept((b"MULTI",)) and accept((b"EXEC",))
    rewrite = accept((b"BGREWRITEAOF",))
    out: list[_steps.Step] = []
    for step in steps:
        if isinstance(step, _steps.Write):
            argv = _fit_argv(step.argv, accept, changes)
            if argv is not None:
                out.append(dataclasses.replace(step, argv=argv))
        elif isinstance(step, _steps.Multi):
            kept = [a for a in (_fit_argv(c, accept, changes) for c in step.commands)
                    if a is not None]
            if kept and multi:
                out.append(_steps.Multi(tuple(kept), client=step.client))
            elif kept:
                changes["MULTI blocks sent as pipelined commands"] += 1
                out.extend(_steps.Write(a, client=step.client, iterate=i == len(kept) - 1)
                           for i, a in enumerate(kept))
        elif (isinstance(step, _steps.BgRewrite | _steps.ChildStep | _steps.KillChild)
              and not rewrite):
            if isinstance(step, _steps.BgRewrite):
                changes["BGREWRITEAOF dropped"] += 1
        else:
            out.append(step)
    return tuple(out), changes


def describe_fitting(changes: Counter[str]) -> str:
    """One line: what fitting the workloads to the target changed (most frequent first)."""
    return "; ".join(f"{what} x{n}" for what, n in changes.most_common())
