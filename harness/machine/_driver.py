"""The in-process driver: executes steps against any in-process Target on a SimDisk.

One ``Driver`` is one run. It owns the virtual clock, the disk, the fault layer, the target (the
reference server unless ``RunConfig.target`` names another factory; see ``harness.targets.Target``)
and the history, and it is the only place where steps turn into effects, so the state machines,
``aofcrash replay`` and the explorer all judge runs the same way. Every recovery is checked with
the oracle (``harness.oracle``); a violation raises ``ContractViolation`` carrying the verdict and
the executed steps (with crash choices made explicit), which is a reproduction as it stands. """

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from faults import (
    Clock,
    CrashChoice,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    NoSpace,
    OperationBudgetExceeded,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SimulatedCrash,
    SlowSync,
    damage_image,
    synced_bytes,
)
from faults import Crash as CrashFault
from harness.machine import _steps
from harness.machine._probe import probe_refusals
from harness.oracle import (
    ERROR_STALL_MS,
    Checker,
    CrashInfo,
    Entry,
    History,
    Model,
    Outcome,
    ReplyError,
    Snapshot,
    UnsupportedCommand,
    Verdict,
    check_recovery,
    check_stability,
    snapshot_from_dump,
)
from harness.targets import (
    RewritingTarget,
    Target,
    TargetEnv,
    TargetFactory,
    TargetRefusedToStart,
    accepts_of,
    as_rewriting,
    check_target,
)
from reference._surface import command_forms

__all__ = [
    "ContractViolation",
    "Driver",
    "ModelDivergence",
    "RecoveryRecord",
    "TargetRunaway",
    "replay",
]


class ContractViolation(AssertionError):
    """A recovery broke the contract. ``.verdict`` says how, ``.reproduction`` replays it."""

    def __init__(self, verdict: Verdict, reproduction: _steps.Reproduction) -> None:
        self.verdict = verdict
        self.reproduction = reproduction
        super().__init__(verdict.render() if hasattr(verdict, "render") else str(verdict))


class ModelDivergence(AssertionError):
    """A read returned something the independent model says it cannot (server or model bug)."""

    def __init__(self, message: str, reproduction: _steps.Reproduction) -> None:
        self.reproduction = reproduction
        super().__init__(message)


class TargetRunaway(ModelDivergence):
    """One step made more filesystem calls than ``MAX_CALLS_PER_STEP``, or ran longer than
    ``MAX_CPU_S_PER_STEP`` of CPU time: the target loops forever (a write retried without
    progress, a loader spinning on a buffer it never consumes). A liveness finding; its
    reproduction replays to the same runaway."""


#: Filesystem calls one step may make (reads and seeks included). A legitimate step makes at
#: most a few thousand (a long tick runs one cron iteration per 100 ms); a million calls is
#: seconds of work, so a target stuck in a loop ends as a finding instead of hanging the run.
MAX_CALLS_PER_STEP = 1_000_000

#: CPU seconds one step may take, for loops that never touch the filesystem (the op budget
#: cannot see them). A legitimate step takes milliseconds, so no real run reaches it and the
#: verdicts stay a function of the seed; it is measured by the process's virtual timer, which
#: only the main thread can arm (elsewhere the op budget alone applies).
MAX_CPU_S_PER_STEP = 5.0


class CpuTimeExceeded(BaseException):
    """Raised by the virtual-timer signal inside the target (BaseException: a target's own
    ``except Exception`` must not swallow it)."""


@contextmanager
def cpu_watchdog(progress: Callable[[], int], seconds: float) -> Iterator[None]:
    """Raise CpuTimeExceeded in this (main) thread when `progress()` has not changed over
    `seconds` of its CPU time (so after between one and two such periods with no progress): a
    long job that loops somewhere without a per-item timer. Elsewhere than the main thread, a
    no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    last = [progress()]

    def check(_signum: int, _frame: Any) -> None:
        now = progress()
        if now == last[0]:
            raise CpuTimeExceeded
        last[0] = now

    previous = signal.signal(signal.SIGVTALRM, check)
    timer = signal.setitimer(signal.ITIMER_VIRTUAL, seconds, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, *timer)  # an enclosing limit goes on
        signal.signal(signal.SIGVTALRM, previous)


@dataclass
class RecoveryRecord:
    """What one recovery showed (for statistics and reports)."""

    model: PersistenceModel
    choice: CrashChoice
    outcome: str
    k: int | None
    frontier: int | None
    entries: int


@dataclass
class _Pending:
    ticket: int
    entry: int | None  # history index (None for non-entries: SELECT, BGREWRITEAOF, reads)
    argv: tuple[bytes, ...]
    db: int
    client: int
    read: bool = False
    executed_ms: int | None = None  # the iteration that executed it (a held reply comes later)
    # Released through the reply channel (``TargetEnv.release``): the reply, its entry already
    # resolved at that moment (its place among the filesystem operations).
    channel: bool = False
    reply: Any = None
    entries_before: int = 0  # history entries submitted before it (what a read sees)


@dataclass
class _Stats:
    recoveries: list[RecoveryRecord] = field(default_factory=list)


class Driver:
    """Runs steps against an in-process target. See the module docstring.

    `factory` overrides ``config.target`` (a factory object instead of an import path, e.g.
    from the pytest plugin); reproductions of such runs replay only with the same factory."""

    def __init__(self, config: _steps.RunConfig, *, factory: TargetFactory | None = None) -> None:
        self.config = config
        self._factory = factory or config.target_factory()
        self._target_config = config.target_config()
        self.clock = Clock()
        self.disk = SimDisk(fsync_failure=config.fsync_failure)
        self.fs = FaultyFileSystem(self.disk, FaultPlan(), clock=self.clock)
        self.history = History()
        self.model = Model()
        self.steps: list[_steps.Step] = []
        self.stats = _Stats()
        self.crashed = False
        self.unavailable: str | None = None
        self.crash_ms = 0
        self._client_db: dict[int, int] = {}
        self._pending: list[_Pending] = []
        # Faults an ``ArmCrash(after_release=True)`` holds until the next reply release.
        self._armed_at_release: list[FaultPlan] = []
        self.channel_releases = 0  # replies released through TargetEnv.release in this run
        self._applied = 0  # history entries applied to the live model
        self._old_stalls: list[tuple[int, int]] = []
        self._old_error_stalls: list[tuple[int, int]] = []
        self.writes_since_boot = 0  # history entries submitted since the last (re)start
        self.failed = False  # a finding was raised: the run is over
        self._rewriter: RewritingTarget | None = None
        # (name, argument count) of writes this target refused with an error in this run: a
        # write of the same shape whose reply a crash lost may have been refused too.
        self._refused_shapes: set[tuple[bytes, int]] = set()
        # The (command, form) pairs a probe before the run saw it refuse (``_probe``): the
        # first refusal of a form, its reply lost, is then no false alarm either.
        self._refused_forms = (frozenset() if self._factory is _reference_factory()
                               else probe_refusals(config, factory))
        # A target other than the reference may run its timers (a stalled fsync) before the
        # commands of an iteration (the protocol's order), so a command ran somewhere in
        # [iteration start, end]: the longest such span so far widens expiry comparisons.
        self._late_ms = 0
        # Entry index -> the end of the late iteration it executed in: the latest time it
        # can have run at (see ``_check``).
        self._ran_until: dict[int, int] = {}
        self.target: Target = self._boot()

    # -- public ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self.crashed and self.unavailable is None

    def reproduction(self, **expected: Any) -> _steps.Reproduction:
        return _steps.Reproduction(config=self.config, steps=tuple(self.steps),
                                   expected=dict(expected))

    def run(self, step: _steps.Step) -> None:
        """Execute one step. Raises ContractViolation / ModelDivergence on a finding."""
        self.fs.set_op_budget(MAX_CALLS_PER_STEP)
        try:
            with self.cpu_limited(step.kind):
                self._run(step)
        except (ContractViolation, ModelDivergence):
            self.failed = True
            raise
        except OperationBudgetExceeded as exc:
            self.failed = True
            raise TargetRunaway(f"{step.kind}: {exc}", self.reproduction()) from None
        finally:
            self.fs.set_op_budget(None)

    @contextmanager
    def cpu_limited(self, what: str) -> Iterator[None]:
        """Run `what` (a step, or a check the state machine makes between steps) under
        ``MAX_CPU_S_PER_STEP``; past it, a TargetRunaway finding."""
        try:
            # No progress to look for: the first check after `MAX_CPU_S_PER_STEP` ends it.
            with cpu_watchdog(lambda: 0, MAX_CPU_S_PER_STEP):
                yield
        except CpuTimeExceeded:
            self.failed = True
            raise TargetRunaway(f"{what}: still running after {MAX_CPU_S_PER_STEP:g} s of "
                                f"CPU time", self.reproduction()) from None

    def _run(self, step: _steps.Step) -> None:
        if isinstance(step, _steps.Recover):
            if not self.crashed:
                raise ValueError("recover: the server has not crashed")
            self._recover(step)
            return
        if not self.alive:
            raise ValueError(f"{step.kind}: the server is down; only 'recover' can follow a crash")
        self.steps.append(step)
        try:
            self._run_live(step)
        except SimulatedCrash:
            self._die()
        if self.target.stopped and not self.crashed:
            self._die()

    def run_all(self, steps: tuple[_steps.Step, ...] | list[_steps.Step]) -> None:
        for step in steps:
            self.run(step)

    # -- live steps -----------------------------------------------------------------------

    def _run_live(self, step: _steps.Step) -> None:
        if isinstance(step, _steps.Write):
            self._submit(step.argv, step.client)
            if step.iterate:
                self._iterate()
        elif isinstance(step, _steps.Multi):
            self._submit((b"MULTI",), step.client, entry=False)
            for argv in step.commands:
                self._submit(argv, step.client, entry=False)
            self._submit((b"EXEC",), step.client, multi=step.commands)
            self._iterate()
        elif isinstance(step, _steps.Read):
            self._submit(step.argv, step.client, read=True)
            self._iterate()
        elif isinstance(step, _steps.Tick):
            # A real event loop wakes for its cron timer (every 1000/hz ms) while time passes,
            # so a long tick is many iterations, not one jump.
            period = max(1, int(getattr(self.target, "cron_period_ms", 100)))
            left = step.delta_ms
            while True:
                delta = min(left, period)
                self.clock.advance(delta)
                left -= delta
                # A real rewrite child works while time passes: one step per period.
                if self.rewriting:
                    self._rewriter_checked().step_rewrite()
                self._iterate()
                if left <= 0 or self.target.stopped:
                    break
        elif isinstance(step, _steps.BgRewrite):
            self._submit((b"BGREWRITEAOF",), 0, entry=False)
            self._iterate()
        elif isinstance(step, _steps.ChildStep):
            for _ in range(step.count):
                if not self.rewriting or not self._rewriter_checked().step_rewrite():
                    break
        elif isinstance(step, _steps.KillChild):
            if self.rewriting:
                self._rewriter_checked().kill_rewrite()
        elif isinstance(step, _steps.ArmCrash) and step.after_release:
            self._armed_at_release.append(step.plan)
        elif isinstance(step, _steps.InjectFaults | _steps.ArmCrash):
            self.fs.add_faults(step.plan)
        elif isinstance(step, _steps.ClearFaults):
            self.fs.plan = FaultPlan()
        elif isinstance(step, _steps.Crash):
            raise SimulatedCrash(self.disk.op_count if hasattr(self.disk, "op_count") else -1)
        else:  # pragma: no cover - exhaustive over Step
            raise TypeError(f"unknown step {step!r}")

    def _submit(
        self,
        argv: tuple[bytes, ...],
        client: int,
        *,
        entry: bool = True,
        read: bool = False,
        multi: tuple[tuple[bytes, ...], ...] | None = None,
    ) -> None:
        db = self._client_db.get(client, 0)
        name = argv[0].upper()
        if name == b"SELECT":
            entry = False
            if len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < 16:
                # Later commands queued in the same iteration already run in the new db.
                self._client_db[client] = int(argv[1])
        ticket = self.target.submit(argv, client=client)
        index = None
        if entry and not read:
            commands = multi if multi is not None else (argv,)
            self.writes_since_boot += 1
            index = self.history.submit(
                commands,
                db=db,
                executed_ms=self.clock.now_ms,
                client=client,
                during_rewrite=self.rewriting,
            )
        self._pending.append(_Pending(ticket, index, argv, db, client, read,
                                      entries_before=len(self.history.entries)
                                      - (index is not None)))

    def _iterate(self) -> None:
        # Commands queued since the last iteration execute at the time of this one.
        now = self.clock.now_ms
        for p in reversed(self._pending):  # the history stays in order: later entries first
            if p.executed_ms is None:
                p.executed_ms = now
                if p.entry is not None:
                    self.history.executed_later(p.entry, now)
        self.target.run_iteration()
        if self._factory is not _reference_factory():
            self._late_ms = max(self._late_ms, self.clock.now_ms - now)
            if self.clock.now_ms > now:
                for p in self._pending:
                    if p.entry is not None and p.executed_ms == now:
                        self._ran_until[p.entry] = self.clock.now_ms
        still: list[_Pending] = []
        released = False
        for p in self._pending:
            if p.channel:
                self._settle(p, p.reply)
                continue
            if not self.target.released(p.ticket):
                still.append(p)
                continue
            released = True
            self._settle(p, _plain(self.target.pop_reply(p.ticket)))
        self._pending = still
        if released:
            self._arm_released()  # a release at the end of the iteration (no channel)

    def _release(self, ticket: int, reply: Any) -> None:
        """The reply channel (``TargetEnv.release``): the reply of `ticket` goes out now, in
        the middle of an iteration. Its write is acknowledged here, at this place among the
        filesystem operations (the history notes it now); the model and reads are settled
        when the iteration returns. An unknown or already released ticket is ignored."""
        for p in self._pending:
            if p.ticket == ticket and not p.channel:
                break
        else:
            return
        p.channel = True
        p.reply = _plain(reply)
        self.channel_releases += 1
        if p.entry is not None:
            outcome = Outcome.ERROR if isinstance(p.reply, ReplyError) else Outcome.OK
            self.history.resolve(p.entry, outcome, at_ms=self.clock.now_ms)
        self._arm_released()

    def _arm_released(self) -> None:
        """Arm the faults an ``ArmCrash(after_release=True)`` held: a reply was released."""
        for plan in self._armed_at_release:
            self.fs.add_faults(plan)
        self._armed_at_release = []

    def _settle(self, p: _Pending, reply: Any) -> None:
        if (p.argv[0].upper() == b"SELECT" and isinstance(reply, ReplyError)
                and self._client_db.get(p.client, 0) != p.db):
            # Refused (a target with one keyspace, an index out of its range): the client
            # stays in its db. (Commands pipelined after it in the same iteration were
            # recorded in the new db: the generators send SELECT in an iteration of its own.)
            self._client_db[p.client] = p.db
        if p.entry is not None:
            outcome = Outcome.ERROR if isinstance(reply, ReplyError) else Outcome.OK
            if outcome is Outcome.ERROR and p.argv[0].upper() != b"EXEC":
                self._note_refusal(p)
            if not p.channel:  # (a channel release resolved it when it happened)
                self.history.resolve(p.entry, outcome, at_ms=self.clock.now_ms)
            self._apply_model(p.entry + 1)
        if p.read:
            # The entries submitted before the read, not later ones whose replies the
            # channel already released in the same iteration.
            self._apply_model(p.entries_before)
            # Judged at the time it executed: a held reply is released later.
            at_ms = self.clock.now_ms if p.executed_ms is None else p.executed_ms
            expected = self.model.read(p.argv, db=p.db, now_ms=at_ms)
            got = reply
            if expected != got and self._late_ms and got in (
                    self.model.read(p.argv, db=p.db, now_ms=self.clock.now_ms),
                    self.model.read(p.argv, db=p.db, now_ms=at_ms - self._late_ms),
                    self.model.read(p.argv, db=p.db, now_ms=at_ms + self._late_ms)):
                # Not the reference: the read may have run after a stall in its iteration
                # (a key expired by then), or after writes that ran late themselves (a key
                # whose relative expiry started later); and a recovery matched within that
                # span may have kept a write whose key the store had already let expire.
                expected = got
            if expected != got:
                raise ModelDivergence(
                    f"read {_fmt_argv(p.argv)} in db {p.db} at {at_ms} ms: "
                    f"server replied {got!r}, the model expects {expected!r}",
                    self.reproduction(outcome="divergence"),
                )

    def _apply_model(self, limit: int | None = None) -> None:
        """Apply the resolved entries in order (up to the first unresolved one, and below
        `limit`)."""
        entries = self.history.entries
        end = len(entries) if limit is None else min(limit, len(entries))
        while self._applied < end:
            e = entries[self._applied]
            if e.outcome is Outcome.UNKNOWN:
                break
            if e.outcome is Outcome.OK:
                self.model.apply_entry(e)
            self._applied += 1

    # -- crash and recovery ---------------------------------------------------------------

    def _die(self) -> None:
        self.crashed = True
        self.crash_ms = self.clock.now_ms
        for p in self._pending:
            # A reply released through the channel before the crash was acknowledged.
            if p.entry is not None and not p.channel:
                self.history.resolve(p.entry, Outcome.UNKNOWN, at_ms=None)
        self._pending = []
        self._armed_at_release = []

    @property
    def rewriting(self) -> bool:
        """A rewrite child exists (the target supports rewrites and one is running)."""
        return self._rewriter is not None and self._rewriter.rewrite_running

    @property
    def supports_rewrite(self) -> bool:
        return self._rewriter is not None

    def _rewriter_checked(self) -> RewritingTarget:
        assert self._rewriter is not None
        return self._rewriter

    def _boot(self) -> Target:
        env = TargetEnv(fs=self.fs, clock=self.clock, config=self._target_config,
                        kill_child=self.fs.should_kill_child, release=self._release)
        target = check_target(self._factory(env), self.config.target or "reference")
        self._rewriter = as_rewriting(target)
        target.start()
        return target

    def _restart_on(self, disk: SimDisk, plan: FaultPlan) -> Target:
        self._old_stalls = self._stalls()
        self._old_error_stalls = self._error_stalls()
        self.disk = disk
        self.fs = FaultyFileSystem(disk, plan, clock=self.clock)
        self.fs.set_op_budget(MAX_CALLS_PER_STEP)  # the recovery's load is part of the step
        return self._boot()

    def _recover(self, step: _steps.Recover) -> None:
        old_disk = self.disk
        choice = step.choice or old_disk.draw_crash_choice(
            step.model, step.seed, limits=self.config.image_limits
        )
        resolved = dataclasses.replace(step, choice=choice)
        self.steps.append(resolved)
        self.clock.advance(step.downtime_ms)
        crash = CrashInfo(
            model=step.model.value,
            choice=choice.to_dict(),
            trace_index=len(old_disk.trace),
            crash_ms=self.crash_ms,
        )
        image = old_disk.crash(step.model, choice)
        site = None
        if step.damage is not None:
            # A media error in synced bytes (rule 5); a damage that hits no file is none.
            hit = damage_image(image, step.damage, synced_bytes(old_disk, step.model, choice))
            if hit is not None:
                image, site = hit
        plan = FaultPlan()
        if step.crash_during_recovery_op is not None:
            plan = FaultPlan(faults=(CrashFault(nth=step.crash_during_recovery_op),))
        damaged = choice.damaged
        snapshot, reason = self._start_from(image, plan)
        if reason == "crashed-during-recovery":
            # The recovery itself died: crash its disk too and recover once more.
            second = self.disk.draw_crash_choice(
                step.model, step.seed + 1, limits=self.config.image_limits
            )
            damaged = damaged or second.damaged
            snapshot, reason = self._start_from(self.disk.crash(step.model, second), FaultPlan())
        verdict = self._check(snapshot, reason, step.model, crash, damaged=damaged,
                              damaged_synced=site is not None)
        if site is not None and not verdict.ok:
            verdict = dataclasses.replace(verdict, violations=[
                dataclasses.replace(v, details={**v.details, "damage": site.describe()})
                for v in verdict.violations])
        if not verdict.ok:
            raise ContractViolation(verdict, self.reproduction(**_expect(verdict)))
        if snapshot is None:
            self.unavailable = reason
            self.crashed = False
            return
        # Stability: crash the freshly recovered server at once and recover again.
        again_choice = self.disk.draw_crash_choice(
            step.model, step.seed + 7, limits=self.config.image_limits
        )
        again, reason2 = self._start_from(self.disk.crash(step.model, again_choice), FaultPlan())
        stable = check_stability(
            snapshot, again, at_ms=self.clock.now_ms, unavailable_reason=reason2, crash=crash
        )
        if not stable.ok:
            raise ContractViolation(stable, self.reproduction(**_expect(stable)))
        self.stats.recoveries.append(
            RecoveryRecord(step.model, choice, verdict.outcome, verdict.k, verdict.frontier,
                           len(self.history.entries))
        )
        self._rebase(self._rebase_point(verdict, snapshot))
        self.crashed = False

    def _rebase_point(self, verdict: Verdict, snapshot: Snapshot) -> int:
        """The prefix the run goes on from: the verdict's, unless it matched only thanks to
        the expiry tolerance and a prefix matches without it. The recovered server lacks the
        keys that tolerance took for expired; a model that kept them would judge every later
        command on them (SET NX, INCR) against a key the server does not have (a false alarm
        on tinyaof: a torn SET ... PX 1 counted as recovered and expired, then SET NX)."""
        k = verdict.k or 0
        if not self._entries_late_ms(self.history):
            return k
        exact = Checker(self.history).matching_prefixes(snapshot, at_ms=self.clock.now_ms)
        kept = [j for j in exact if j >= (verdict.frontier or 0)]
        return kept[-1] if kept else k

    def _start_from(self, image: Any, plan: FaultPlan) -> tuple[Snapshot | None, str | None]:
        disk = SimDisk.from_image(image, fsync_failure=self.config.fsync_failure)
        self._client_db = {}
        self.writes_since_boot = 0
        try:
            self.target = self._restart_on(disk, plan)
        except TargetRefusedToStart as exc:
            return None, exc.reason
        except SimulatedCrash:
            return None, "crashed-during-recovery"
        return snapshot_from_dump(self.target.dump()), None

    def _check(
        self, snapshot: Snapshot | None, reason: str | None, model: PersistenceModel,
        crash: CrashInfo, *, damaged: bool, damaged_synced: bool = False,
    ) -> Verdict:
        if snapshot is None:
            return self._check_with(self.history, snapshot, reason, model, crash,
                                    damaged=damaged, damaged_synced=damaged_synced)
        # A write whose reply the crash lost may have been refused (no effect) where the
        # target could refuse it; the history then records it so (the rebase keeps what
        # survived).
        def check(history: History) -> tuple[Verdict, History]:
            return check_allowing_refusals(
                history,
                lambda h: self._check_with(h, snapshot, reason, model, crash, damaged=damaged,
                                           damaged_synced=damaged_synced),
                self._could_refuse)

        verdict, history = check(self.history)
        if not verdict.ok and self._ran_until:
            # A target other than the reference ran an iteration's commands after its timers
            # (a stalled fsync moves the clock): each ran at some time up to the iteration's
            # end. A command near an expiry then acts on the key expired (a DECRBY of a key
            # that had just expired makes a new one): judged with the late times too.
            late_verdict, late_history = check(_executed_late(self.history, self._ran_until))
            if late_verdict.ok:
                verdict, history = late_verdict, late_history
        self.history = history
        return verdict

    def _note_refusal(self, p: _Pending) -> None:
        """Remember the shape of a refusal the model does not predict (a wrong type, a bad
        integer are the model's to judge: they have no effect in S(k) anyway)."""
        if self._factory is _reference_factory():
            return
        try:
            predicted = Model(self.model.state.copy()).execute(
                p.argv, db=p.db, now_ms=self.clock.now_ms if p.executed_ms is None
                else p.executed_ms)
        except ValueError:  # a command the model does not know
            predicted = None
        if not isinstance(predicted, ReplyError):
            self._refused_shapes.add(_shape(p.argv))

    def _could_refuse(self, entry: Entry) -> bool:
        if self._factory is _reference_factory():
            return False
        return could_refuse(entry.commands, self.target, self._refused_shapes,
                            self._refused_forms)

    def _check_with(
        self, history: History, snapshot: Snapshot | None, reason: str | None,
        model: PersistenceModel, crash: CrashInfo, *, damaged: bool,
        damaged_synced: bool = False,
    ) -> Verdict:
        return check_recovery(
            history,
            snapshot,
            policy=self.config.policy,
            model=model.value,
            crash_ms=self.crash_ms,
            recovery_ms=self.clock.now_ms,
            window_ms=self.config.window_ms,
            stalls=self._stalls(),
            error_stalls=self._error_stalls(),
            no_appendfsync_on_rewrite=self.config.no_appendfsync_on_rewrite,
            unavailable_reason=reason if snapshot is None else None,
            allow_unavailable=self.config.allow_unavailable,
            damaged_image=damaged,
            damaged_synced=damaged_synced,
            crash=crash,
            expiry_tolerance_ms=self._entries_late_ms(history),
        )

    def _entries_late_ms(self, history: History) -> int:
        """How much later than recorded the entries of `history` can have run: a key's
        expiry is uncertain by its own command's lateness only (a late iteration with no
        write in it, a stalled fsync of a timer, moves no expiry)."""
        entries = history.entries
        return max((until - entries[i].executed_ms for i, until in self._ran_until.items()
                    if i < len(entries)), default=0)

    def _stalls(self) -> list[tuple[int, int]]:
        """Injected fsync stalls of this epoch's disk and of earlier ones (oracle rule 2)."""
        now = [(f.at_ms, f.fault.delay_ms) for f in self.fs.fired
               if isinstance(f.fault, SlowSync)]
        return self._old_stalls + now

    def _error_stalls(self) -> list[tuple[int, int]]:
        """Injected persistence-path I/O errors, one retry period each (oracle rule 2)."""
        now = [(f.at_ms, ERROR_STALL_MS) for f in self.fs.fired
               if isinstance(f.fault, IOFault | NoSpace | ShortWrite)]
        return self._old_error_stalls + now

    def _rebase(self, k: int) -> None:
        """Keep the first k executed entries: the rest did not survive, legitimately."""
        old = self.history
        self.history = History()
        self.model = Model()
        self._applied = 0
        ran_until, self._ran_until = self._ran_until, {}
        kept = 0
        for e in old.entries:
            if kept >= k:
                break
            if e.outcome is Outcome.ERROR:
                continue
            i = self.history.submit(
                e.commands, db=e.db, executed_ms=e.executed_ms, client=e.client,
                during_rewrite=e.during_rewrite,
            )
            if e.index in ran_until:
                self._ran_until[i] = ran_until[e.index]
            self.history.resolve(i, Outcome.OK, at_ms=e.ack_ms if e.ack_ms is not None
                                 else e.executed_ms)
            kept += 1
        self._apply_model()


def _executed_late(history: History, ran_until: dict[int, int]) -> History:
    """`history` with each entry of `ran_until` executed at its iteration's end (as late as
    it can have run), where the order of the entries allows it."""
    late = History.from_dict(history.to_dict())
    for index in sorted(ran_until, reverse=True):
        if index >= len(late.entries):
            continue
        following = late.entries[index + 1].executed_ms if index + 1 < len(late.entries) \
            else ran_until[index]
        try:
            late.executed_later(index, min(ran_until[index], following))
        except ValueError:
            continue  # an acknowledgement before that time: it cannot have run so late
    return late


def _shape(argv: tuple[bytes, ...]) -> tuple[bytes, int]:
    return argv[0].upper(), len(argv)


def could_refuse(commands: tuple[tuple[bytes, ...], ...], target: object,
                 refused_shapes: set[tuple[bytes, int]],
                 refused_forms: frozenset[tuple[str, str]] = frozenset()) -> bool:
    """Whether `target` (not the reference: the oracle's model knows the reference's
    refusals) may have refused this write with an error whatever its state: a command shape
    it does not declare (``commands``, ``shapes``) or accept (``accepts(argv)``; see
    ``harness.targets.accepts_of``), or of a shape (name, argument count) in `refused_shapes`
    (refused before where the model predicted no error), or of a (command, form) pair in
    `refused_forms` (refused by a scratch copy before the run: ``harness.machine._probe``)."""
    accepts = accepts_of(target)
    for argv in commands:
        if not accepts(argv):
            return True
        if _shape(argv) in refused_shapes:
            return True
        if refused_forms and not refused_forms.isdisjoint(command_forms(argv)):
            return True
    return False


def unpredicted_refusals(history: History) -> set[tuple[bytes, int]]:
    """Shapes of the writes `history` records as refused where the model expected no error
    (the target's own refusals; see ``could_refuse``)."""
    model = Model()
    shapes: set[tuple[bytes, int]] = set()
    for e in history.entries:
        if e.outcome is Outcome.ERROR:
            if len(e.commands) == 1:
                try:
                    predicted = Model(model.state.copy()).execute(
                        e.commands[0], db=e.db, now_ms=e.executed_ms)
                except ValueError:
                    predicted = None
                if not isinstance(predicted, ReplyError):
                    shapes.add(_shape(e.commands[0]))
            continue
        try:
            model.apply(e.commands, db=e.db, now_ms=e.executed_ms)
        except ValueError:
            continue  # a command the model does not know (the target's own)
    return shapes


def check_allowing_refusals(
    history: History, check: Callable[[History], Verdict],
    could: Callable[[Entry], bool],
) -> tuple[Verdict, History]:
    """``check(history)``; when it fails, the same check with unanswered writes the target
    could have refused (`could`) resolved as refused, smallest sets first: the first verdict
    that holds, with its history, else the first verdict (a write whose reply a crash lost
    may have been refused where the target could refuse it). An unanswered write the model
    does not know (a command no target in the model's terms implements) was refused: the
    oracle could not judge a prefix that ran it."""
    try:
        verdict = check(history)
    except UnsupportedCommand:
        history = _with_refused(history, frozenset(
            e.index for e in history.entries
            if e.outcome is Outcome.UNKNOWN and _unmodelled(e)))
        verdict = check(history)
    if verdict.ok:
        return verdict, history
    maybe = [e.index for e in history.entries if e.outcome is Outcome.UNKNOWN and could(e)]
    for refused in _refusal_sets(maybe):
        alternative = _with_refused(history, refused)
        again = check(alternative)
        if again.ok:
            return again, alternative
    return verdict, history


def _reference_factory() -> TargetFactory:
    from harness.targets import reference_target

    return reference_target


# Possibly-refused writes whose combinations are tried one by one, at most (beyond: each one
# alone, then all of them).
_MAX_REFUSAL_COMBINATIONS_OF = 8


def _refusal_sets(indices: list[int]) -> Iterator[frozenset[int]]:
    """Non-empty sets of possibly-refused entries to try, smallest first."""
    from itertools import combinations

    if len(indices) <= _MAX_REFUSAL_COMBINATIONS_OF:
        for size in range(1, len(indices) + 1):
            for chosen in combinations(indices, size):
                yield frozenset(chosen)
        return
    for index in indices:
        yield frozenset((index,))
    yield frozenset(indices)


def _unmodelled(entry: Entry) -> bool:
    try:
        Model().apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
    except UnsupportedCommand:
        return True
    return False


def _with_refused(history: History, refused: frozenset[int]) -> History:
    """A copy of `history` with the entries `refused` resolved as refused (ERROR)."""
    copy = History()
    for e in history.entries:
        i = copy.submit(e.commands, db=e.db, executed_ms=e.executed_ms, client=e.client,
                        during_rewrite=e.during_rewrite)
        if e.index in refused:
            copy.resolve(i, Outcome.ERROR)
        elif e.outcome is not Outcome.UNKNOWN:
            copy.resolve(i, e.outcome, at_ms=e.ack_ms)
    return copy


def _expect(verdict: Verdict) -> dict[str, Any]:
    rules = sorted({v.rule.value for v in verdict.violations})
    return {"outcome": verdict.outcome, "rules": rules}


def _plain(reply: Any) -> Any:
    """A target's reply in the model's terms: any Exception is an error reply."""
    if isinstance(reply, BaseException):
        return ReplyError(str(reply))
    if isinstance(reply, list):
        return [_plain(x) for x in reply]
    return reply


def _fmt_argv(argv: tuple[bytes, ...]) -> str:
    return " ".join(a.decode("latin-1") for a in argv)


def replay(reproduction: _steps.Reproduction, *, factory: TargetFactory | None = None) -> Driver:
    """Re-run a reproduction (against ``config.target``, or `factory`); raises the same
    ContractViolation it recorded, if any."""
    driver = Driver(reproduction.config, factory=factory)
    driver.run_all(reproduction.steps)
    return driver
