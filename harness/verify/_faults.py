"""A trial's fault and kill, drawn from the seed before the trial and placed during it.

Fault placement: a fault is *armed* during the workload, not counted from the start of the run,
so it lands on an operation the workload is known to reach. At a seeded batch before the kill
(for a fault on fsync under ``everysec``/``no``, at least ``_SYNC_LEAD_S`` before it: that
policy fsyncs about once a second) the fault joins the mount's plan and fires on the 1st-3rd
matching operation (AOF files: ``aof_glob``, default ``*.aof``) after that point. EIO on a sync
hits the kind the server was seen using (fdatasync for Redis on Linux, fsync otherwise). If it
has not fired when the kill batch comes, the kill moves to a later batch (under ``everysec``,
after the last batch, it waits up to ``FIRE_WAIT_S`` for the background fsync). A fault the
server cannot reach (a slow fsync under ``no``, which never fsyncs the AOF without a rewrite)
is not armed, and the trial says so.

Faults (``FAULTS``): ``short-write``, ``no-space`` (ENOSPC), ``io-error`` (EIO on a write or,
in two thirds of the trials, on a sync), ``fsync-error`` (the same draws, always on a sync: EIO
1-2 times, then success), ``write-error`` (the same draws, always on a write), ``slow-sync``,
``kill-child``: a BGREWRITEAOF is sent with the batch where the fault is placed (ahead of the
kill's batch) and its rewrite child is SIGKILLed while it is held at the fsync of its own temp
file (``CHILD_TEMP_GLOB``, a gate on the mount), so the kill lands at the same point of the
rewrite in every trial. Two more columns are built on that rewrite:

* ``incr-fsync-error``: EIO on the fsync of the *old* incr file during a rewrite (Redis 7 and
  Valkey: BGREWRITEAOF opens a new incr file and hands the old one to a background job that
  fsyncs and closes it; 7.0.5-7.0.15 ignore that fsync's result, redis#11713). The batch is
  split at the BGREWRITEAOF, the EIO armed on the incr file written last just before it, and
  the child killed at its temp fsync as with ``kill-child`` (a rewrite that completed would
  make the old incr irrelevant; one that fails or is interrupted by the crash keeps it in the
  manifest). A single-file AOF (6.x) has no incr file: the fault is not armed and says so.
  Taking the fault out keeps the rewrite and its killed child (they are the workload here).
* ``rewrite-completes``: the BGREWRITEAOF's rewrite is waited for (INFO ``aof_rewrite_in_progress``
  and ``aof_rewrite_scheduled`` back to 0) and the next ``PACED_ENTRIES`` writes are paced
  ``PACE_MS`` apart under ``always`` (everysec is paced by its schedule), so acknowledged writes
  follow the rewrite's rename before anything else is synced: the 6.x rename without a
  directory fsync, 7.x's manifest switch. Taken out ("fault"), the rewrite is sent and not
  waited for.

Kill placement under ``everysec``: the kill lands after at least ``window + margin + 500 ms`` of
the workload's schedule (when the schedule is that long), so that some entries must survive; an
injected write/sync error widens the window by a retry period each (oracle rule 2), so with such
a fault the kill goes that much later and the fault is armed that much earlier when the schedule
allows.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from faults import Fault as PlanFault
from faults import FaultOp, IOFault, NoSpace, ShortWrite, SlowSync
from harness.oracle import ERROR_STALL_MS
from harness.verify._config import VerifyConfig

__all__ = [
    "CHILD_TEMP_GLOB",
    "FIRE_WAIT_S",
    "PACED_ENTRIES",
    "PACE_MS",
    "REWRITE_FAULTS",
    "FaultDraw",
    "TrialPlan",
    "child_reached",
    "draw_fault",
    "kill_range",
    "plan_trial",
]

# A fault on fsync under everysec/no is armed at least this long before the kill.
_SYNC_LEAD_S: Final = 1.3
# Under everysec, how long to wait after the last batch for an armed fault to fire.
FIRE_WAIT_S: Final = 1.5
# kill-child: the rewrite child's own temp file (Redis, Valkey, the reference; not the parent's
# temp-rewriteaof-bg-*). The child's fsync of it is a gate on the mount (faults.fuse.FuseHold):
# the child waits there until the harness has killed it, so the kill lands at the same point of
# the rewrite in every trial, however loaded the machine (a small keyspace is rewritten in a
# millisecond; a timed stall raced the scheduler and missed one trial in ten under load).
CHILD_TEMP_GLOB: Final = "temp-rewriteaof-[0-9]*"
# rewrite-completes under always: the writes after the rewrite are paced this far apart.
PACE_MS: Final = 50
PACED_ENTRIES: Final = 20
# The faults whose trial sends a BGREWRITEAOF where the fault is placed.
REWRITE_FAULTS: Final = ("kill-child", "incr-fsync-error", "rewrite-completes")
# How long a rewrite child may take to reach its fsync (a safety net for a child that never
# fsyncs or a rewrite that never starts; a child that exits before it is seen at once).
_CHILD_REACH_CAP_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """One trial's fault, drawn up front from the seed; ``arm`` builds it at arming time."""

    kind: str  # one of FAULTS other than "none"
    position: float  # where in the armable range of batches it is armed, in [0, 1)
    nth: int  # it fires on the nth matching operation after arming
    times: int
    written_bytes: int  # short-write
    partial_bytes: int | None  # no-space
    on_sync: bool  # io-error: on a sync (else on a write)
    delay_ms: int  # slow-sync

    @property
    def errors(self) -> int:
        """How many failed operations it injects (slow syncs and a killed child fail none)."""
        if self.kind in ("slow-sync", "kill-child", "rewrite-completes"):
            return 0
        return 1 if self.kind == "short-write" else self.times

    @property
    def syncs(self) -> bool:
        """Whether it needs the server to fsync (a rare event under everysec and no)."""
        return self.kind in ("slow-sync", "incr-fsync-error") or (
            self.kind == "io-error" and self.on_sync)

    def arm(
        self, glob: str, seen: Counter[FaultOp], *, expect_syncs: bool,
        incr_path: str | None = None,
    ) -> tuple[PlanFault | None, str]:
        """The fault to add now, given the operation kinds the workload made on the AOF files
        so far and whether the server fsyncs them by itself (`incr_path`: the incr file
        written last, for ``incr-fsync-error``); or None and why it cannot be placed."""
        if self.kind == "short-write":
            return ShortWrite(written_bytes=self.written_bytes, nth=self.nth, path_glob=glob), ""
        if self.kind == "no-space":
            return NoSpace(nth=self.nth, times=self.times, partial_bytes=self.partial_bytes,
                           path_glob=glob), ""
        # Syncs of the workload (not of start-up, where Redis fsyncs the files it creates).
        syncs: dict[FaultOp, int] = {
            op: n for op, n in seen.items() if op in (FaultOp.FDATASYNC, FaultOp.FSYNC)}
        reachable = expect_syncs or bool(syncs)
        # The kind this server syncs its AOF with (Redis on Linux: fdatasync); fdatasync until
        # the workload has shown one.
        sync_op = max(syncs, key=lambda k: (syncs[k], k is FaultOp.FDATASYNC)) if syncs \
            else FaultOp.FDATASYNC
        if self.kind == "slow-sync":
            if not reachable:
                return None, ("not armed: the server made no fsync of an AOF file, and under "
                              "appendfsync no it makes none without a rewrite")
            return SlowSync(delay_ms=self.delay_ms, nth=self.nth, times=self.times,
                            path_glob=glob), ""
        if self.kind == "incr-fsync-error":
            if incr_path is None:
                return None, ("not armed: no incr file (a single-file AOF has no old incr file "
                              "to close during a rewrite)")
            return IOFault(op=sync_op, nth=1, times=self.times, path_glob=incr_path), ""
        op = sync_op if self.on_sync and reachable else FaultOp.WRITE
        return IOFault(op=op, nth=self.nth, times=self.times, path_glob=glob), ""


def draw_fault(rng: random.Random, fault: str) -> FaultDraw | None:
    if fault == "none":
        return None
    # The same draws for every fault (a trial's workload does not depend on the fault kind).
    return FaultDraw(
        kind="io-error" if fault in ("fsync-error", "write-error") else fault,
        position=rng.random(),
        nth=1 + rng.randrange(3),
        times=rng.randrange(1, 6) if fault == "no-space" else rng.randrange(1, 3),
        written_bytes=rng.randrange(1, 40),
        partial_bytes=rng.choice([None, rng.randrange(1, 40)]),
        on_sync=(rng.randrange(3) != 0 or fault == "fsync-error") and fault != "write-error",
        delay_ms=rng.choice([500, 1500, 3000]),
    )


def kill_range(config: VerifyConfig, *, extra_ms: int = 0) -> tuple[int, int]:
    """Entries among which the kill is drawn. everysec: late enough in the schedule that the
    entries of its first part had to survive (else the trial checks no durability); `extra_ms`
    is how much injected errors are expected to widen the window."""
    if config.policy != "everysec":
        return 0, config.ops
    duration = config.workload_duration_ms
    need_ms = config.window_ms + config.margin_ms + 500 + extra_ms
    if duration <= need_ms:
        if extra_ms:
            return kill_range(config)  # place it as well as it goes without the errors
        return 0, config.ops  # too short to place; the idle-before-kill trials still exercise
    low = min(config.ops - 1, math.ceil(config.ops * need_ms / duration))
    return low, config.ops


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """What a trial draws from its seed before its workload (the workload and its batches are
    drawn after these, from the same generator, as they are sent)."""

    draw: FaultDraw | None  # the fault asked for (kept when "fault" is taken out: never armed)
    kill_at: int  # the batch holding this entry is in flight when the server is killed
    rewrite_at: int | None  # BGREWRITEAOF goes before this entry
    kill_delay_s: float  # after sending the kill's batch
    durable_only: bool  # crash images: durable state only instead of a drawn image
    image_seed: int
    stability_seed: int
    idle_s: float  # everysec: idle this long before the kill's batch
    entry_pause_s: float  # the schedule: a pause per write entry
    arm_entry: int | None  # the fault is armed before the batch holding this entry
    kill_child: bool  # kill-child: the rewrite child of the BGREWRITEAOF at arm_entry is killed
    await_rewrite: bool = False  # rewrite-completes: wait for it, then pace the next writes
    split_at_rewrite: bool = False  # incr-fsync-error: the BGREWRITEAOF starts its own batch


def plan_trial(config: VerifyConfig, rng: random.Random, removed: frozenset[str]) -> TrialPlan:
    """The fault, the kill and the crash images of a trial, drawn in a fixed order from `rng`
    (the trial's generator); `removed` ingredients change the plan but not the draws."""
    draw = draw_fault(rng, config.fault)
    # Each injected write/sync error widens the everysec window by a retry period (oracle rule
    # 2): the kill then goes later still, and the fault is armed that much earlier.
    errors_ms = draw.errors * ERROR_STALL_MS if draw is not None else 0
    kill_at = rng.randrange(*kill_range(config, extra_ms=errors_ms))  # batch in flight
    rewrite_at = None
    if config.rewrite:
        # Half the time just before the kill, so the kill often lands during the rewrite.
        close = max(0, kill_at - rng.randrange(0, 4))
        rewrite_at = close if rng.randrange(2) else rng.randrange(kill_at + 1)
    kill_delay_s = rng.choice([0.0, 0.0, 0.0005, 0.002, 0.005, 0.02])
    durable_only = rng.randrange(4) == 0 or config.image == "durable"
    image_seed, stability_seed = rng.randrange(2**32), rng.randrange(2**32)
    # everysec: a third of the trials go idle for longer than the window before the last
    # batch, so the fsync of a burst that is followed by silence is checked too.
    idle_s = 0.0
    if config.policy == "everysec" and rng.randrange(3) == 0:
        idle_s = (config.window_ms + config.margin_ms + 500) / 1000
    entry_pause_s = config.workload_duration_ms / 1000 / config.ops
    arm_entry: int | None = None
    if draw is not None:
        last = kill_at
        if config.policy != "always" and entry_pause_s > 0:
            lead_s = _SYNC_LEAD_S if draw.syncs else 0.0
            if config.policy == "everysec" and errors_ms:
                # Fire before the window the errors widen, so that entries still must survive.
                window_s = (config.window_ms + config.margin_ms + 500 + errors_ms) / 1000
                if kill_at - math.ceil(window_s / entry_pause_s) > 1:
                    lead_s = max(lead_s, window_s)
            last = kill_at - math.ceil(lead_s / entry_pause_s)
        if draw.kind in REWRITE_FAULTS and last - config.batch_max > 1:
            last -= config.batch_max  # the rewrite's batch completes before the kill's batch
        first = 1 if last > 1 else 0  # after the first batch: the server is writing by then
        arm_entry = first + int(draw.position * max(1, last - first))
    kind = draw.kind if draw is not None else None
    kill_child = kind in ("kill-child", "incr-fsync-error")
    await_rewrite = kind == "rewrite-completes"
    if kind in REWRITE_FAULTS:
        rewrite_at = arm_entry  # the BGREWRITEAOF whose child is killed, or awaited
    if "rewrite" in removed:
        rewrite_at = None
        kill_child = await_rewrite = False
    if "fault" in removed:
        arm_entry = None
        await_rewrite = False
        kill_child = kill_child and kind == "incr-fsync-error"  # there it is the workload
    return TrialPlan(draw, kill_at, rewrite_at, kill_delay_s, durable_only, image_seed,
                     stability_seed, idle_s, entry_pause_s, arm_entry, kill_child,
                     await_rewrite=await_rewrite,
                     split_at_rewrite=kind == "incr-fsync-error" and rewrite_at is not None)


def child_reached(gate: Any, server: Any) -> bool:
    """Wait until a rewrite child is held at `gate`; False if the server has no child left (it
    ended without an fsync of its temp file) or none reached it within the safety cap."""
    deadline = time.monotonic() + _CHILD_REACH_CAP_S
    seen_child = False
    while not gate.wait_reached(0.01):
        children = server.fork_children()
        if children:
            seen_child = True
        elif seen_child or not server.running:
            return bool(gate.reached.is_set())  # the child came and went without reaching the gate
        if time.monotonic() > deadline:
            return False
    return True
