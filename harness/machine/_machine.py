"""Hypothesis state machines that drive the in-process reference through faults and crashes.

``make_state_machine(config)`` returns a ``RuleBasedStateMachine`` class whose rules each produce
one step (``harness.machine._steps``) and hand it to a ``Driver``: every write command type, reads
checked against the independent model, ticks of the virtual clock, BGREWRITEAOF, stepping and
killing the rewrite child, every fault type of ``faults``, crashes between operations and inside
them, and recoveries under each persistence model with a drawn crash image (sometimes crashing
again during recovery). The driver checks the contract at every recovery; teardown crashes once
more with the least-surviving image, so every run is judged at least once.

Swarm testing: at the start of each run a set of *features* is drawn (``FEATURES``); rules whose
feature is off do not run, so some runs hammer short writes, others rewrites and expiries.
``event()`` labels go to ``--hypothesis-show-statistics`` (faults fired, crash kinds, outcomes).

Boundaries (issue 9), each a feature of its own so a 60-second default campaign meets them:
``multi_key`` creates keys (members, fields) and then changes several of them with one command
(DEL of 2-4 existing keys; SADD/SREM/HSET/HDEL/ZADD/ZREM/LPUSH/RPUSH with existing and new
members); ``big_collections`` grows a collection by 64-200 items (the batch edges often) and
then rewrites it (the rewrite's 64-item batches); ``rewrite_done`` lets the rewrite child finish
and arms a crash at the k-th upcoming filesystem operation (k = 1..8: the done handler's open,
append of the rewrite buffer, fsync, rename, close of the old file, directory fsync, and what
follows) or a short write, ENOSPC or EIO on one of them. Labels ``boundary: ...`` count them.

Timing windows (issue 24): ``crash_near_the_end_of_a_stall`` (feature ``slow_sync``) stalls
the next fsync for 1.5-4 s, writes early in the stall, and crashes at a time drawn relative to
when the stalled fsync returns (from 2 s before to 1 s after, evenly, and on the cron period's
edges), now or at one of the next operations, then recovers (the process model half the time:
there a stall widens the window by one cron period only). A postponed buffer written late, or
an fsync owed after the stall, is visible only in such a window, which operation counts and
ticks alone rarely hit.

Liveness and the reference's own tool (rules no data rule of the contract can see; on the
bundled reference only, raised as ``LivenessViolation`` / ``CheckAofDisagreement``, both
``ModelDivergence`` so campaigns report them): ``rewrite_takes_effect`` finishes a running
rewrite (faults armed or not: it must be over a cron period after its child ended or died), then
with every fault cleared runs one more and requires its file to replace the AOF by a rename;
``writes_resume`` clears every fault and requires a write to be accepted and acknowledged within
the retry period once stalled fsyncs have ended (also run right after the "failed fsync while
the AOF cannot grow" fault); before each recovery of the safe reference, ``check_aof_agrees``
compares ``reference.check_aof`` with the loader on the crash image (same cut, or both refuse).
Their reproductions replay the steps, but ``replay`` judges the data rules only.

Capabilities: a target that is not a ``RewritingTarget`` gets the rewrite features switched off,
and a target that declares the commands it implements (an optional ``commands`` attribute, a
collection of upper-case names such as ``frozenset({b"SET", b"GET"})``; without it every
command is assumed) gets every feature switched off whose rules send a command it lacks
(``FEATURE_COMMANDS``), and reads and transactions restricted to what it implements. A
target that declares command shapes (``harness.targets.CommandShapes``: the forms of each
command it accepts, e.g. DEL of one key only, SET without expiry options) or an ``accepts(argv)``
predicate gets only those: every rule's command lines are drawn from alternatives it accepts
and filtered by ``accepts_of(target)``; a feature none of whose shapes it accepts is off.
``unsupported_features`` says which features are off and why, and under ``"shapes"`` the
(command, form) pairs of the reference's surface never sent (reports say it once).

Damage (opt-in, ``RunConfig.damage``): for a target that declares itself checksummed
(``checksummed = True``), ``recover_damaged`` recovers a crash image whose synced bytes in the
target's own ``files`` were flipped or zeroed (``faults.Damage``), judged by contract rule 5;
for any other target it is switched off and ``unsupported_features`` says why.

Settings profiles: ``aofcrash-dev``, ``aofcrash-ci`` (derandomized) and ``aofcrash-nightly``,
registered on import (``PROFILES`` has them by short name).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any, NoReturn

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from faults import (
    Crash,
    Damage,
    DamageKind,
    FaultOp,
    FaultPlan,
    FiredFault,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SlowSync,
)
from faults import KillChild as KillChildFault
from harness.machine import _steps
from harness.machine._driver import ContractViolation, Driver, ModelDivergence
from harness.machine._features import (
    _NEEDS_REWRITE,
    _SURFACE_FEATURE,
    FEATURES,
    _declares_nothing,
    _gaps,
    _probe,
    target_commands,
)
from harness.machine._generators import (
    _NEAR_ZERO_MS,
    _OFFSETS_MS,
    _WRITE_OPS,
    ALL_KEYS,
    HASH_KEYS,
    KEYS,
    LIST_KEYS,
    MEMBERS,
    SET_KEYS,
    ZSET_KEYS,
    Program,
    _big_collection_program,
    _collection_write,
    _counter_write,
    _expiry_write,
    _multi_key_program,
    _programs,
    _read,
    _string_write,
    values,
)
from harness.machine._rules import (
    LIVENESS_REWRITE,
    LIVENESS_WRITES,
    CheckAofDisagreement,
    LivenessViolation,
    check_aof_agrees,
)
from harness.machine._surface import KEY_KIND, SURFACE_PAIRS, surface_argv
from harness.oracle import Outcome
from harness.targets import (
    TargetFactory,
    accepts_of,
    target_checksummed,
    target_files,
)

__all__ = ["make_state_machine"]


def make_state_machine(
    config: _steps.RunConfig,
    *,
    models: tuple[PersistenceModel, ...] = tuple(PersistenceModel),
    features: tuple[str, ...] = FEATURES,
    swarm: bool = True,
    on_finding: Callable[[BaseException], None] | None = None,
    events: Counter[str] | None = None,
    factory: TargetFactory | None = None,
) -> type[RuleBasedStateMachine]:
    """A state machine class for one configuration (policy, profile, defects, target).

    ``on_finding`` is called with every violation a run raises (before Hypothesis shrinks it),
    ``events`` counts the ``event()`` labels across runs (for reports). ``factory`` builds the
    target instead of ``config.target`` (a factory object, e.g. from the pytest plugin). Features
    that need a capability or a command the target lacks never run (``unsupported_features``);
    TargetError when the target's spec or factory is unusable.
    """
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"features: unknown {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    if not models:
        raise ValueError("models: at least one persistence model is needed")
    # What the target cannot run is off (see the module docstring).
    probe = _probe(config, factory)
    off = _gaps(probe, features)
    features = tuple(f for f in features if f not in off)
    # What the target accepts (None: everything; the draws are then exactly as they were
    # before shapes existed, so a seed means the same program for the reference).
    accept = None if _declares_nothing(probe) else accepts_of(probe)
    reads = _read(target_commands(probe), accept)
    strings = _string_write(accept)
    counters = _counter_write(accept)
    collections = _collection_write(accept)
    writes = st.one_of(*(s for s in (strings, counters) if not s.is_empty))
    # (String writes where the rules always drew them: the same draws for the reference.)
    string_writes = strings if not strings.is_empty else writes
    tx_parts = [s for f, s in (("strings", strings), ("counters", counters),
                               ("collections", collections)) if f in features and not s.is_empty]
    flushes = [argv for argv in ((b"FLUSHDB",), (b"FLUSHALL",)) if accept is None or accept(argv)]
    # The reference's command surface (every option and arity form), for the features on: on
    # the reference, and on a target that declares its forms (``shapes``), the pairs it
    # accepts. (A target that declares names only may implement forms of its own, which the
    # model, the reference's semantics, would misjudge.)
    reference = config.target is None and factory is None
    declares_forms = getattr(probe, "shapes", None) is not None and accept is not None
    # Opt-in (RunConfig.damage): recoveries that also damage synced bytes of the target's own
    # files, for a target that declares checksums (contract rule 5).
    damage_on = config.damage and target_checksummed(probe)
    damage_globs = target_files(probe)
    surface = tuple((f, name, form) for name, form in SURFACE_PAIRS
                    if (f := _SURFACE_FEATURE[name]) in features
                    and (reference or (declares_forms and accept is not None and accept(
                        surface_argv(name, form, key=b"k0", other=b"k1", value=b"a",
                                     members=(b"m0", b"m1"), amount=5, now_ms=0))))
                    ) if reference or declares_forms else ()

    def _event(label: str) -> None:
        event(label)
        if events is not None:
            events[label] += 1

    class AofMachine(RuleBasedStateMachine):
        """Writes, faults and crashes against the reference; the driver checks every recovery."""

        def __init__(self) -> None:
            super().__init__()
            self.driver = Driver(config, factory=factory)
            self.enabled: frozenset[str] = frozenset(features)

        # -- set-up -----------------------------------------------------------------------

        @initialize(data=st.data())
        def choose_features(self, data: st.DataObject) -> None:
            if swarm:
                # Classic swarm testing: every feature on or off with even odds, independently
                # (a drawn set would be small, making feature combinations rare); off shrinks.
                flags = data.draw(st.tuples(*(st.booleans() for _ in features)), label="swarm")
                self.enabled = frozenset(f for f, on in zip(features, flags, strict=True) if on)
            for f in sorted(self.enabled):
                _event(f"feature: {f}")

        def _on(self, feature: str) -> bool:
            if feature in _NEEDS_REWRITE and not self.driver.supports_rewrite:
                return False  # the target has no rewrite to start, step or kill
            return feature in self.enabled and self.driver.alive

        def _do(self, step: _steps.Step) -> None:
            self._run(step)
            if self.driver.crashed:
                _event("crash: " + ("server exited" if self.driver.target.stopped else "fault"))

        def _run(self, step: _steps.Step) -> None:
            try:
                self.driver.run(step)
            except (ContractViolation, ModelDivergence) as exc:
                if on_finding is not None:
                    on_finding(exc)
                raise

        def _raise_finding(self, kind: type[ModelDivergence], message: str, outcome: str,
                           reproduction: _steps.Reproduction | None = None) -> NoReturn:
            """The run found `kind` (a liveness or check-aof finding): mark the driver failed,
            hand it to ``on_finding`` (before Hypothesis shrinks it) and raise it."""
            self.driver.failed = True
            if reproduction is None:
                reproduction = self.driver.reproduction(outcome=outcome)
            exc = kind(message, reproduction)
            if on_finding is not None:
                on_finding(exc)
            raise exc

        # -- writes -----------------------------------------------------------------------

        @precondition(lambda self: self._on("strings"))
        @rule(argv=strings, pipelined=st.booleans())
        def write_string(self, argv: tuple[bytes, ...], pipelined: bool) -> None:
            iterate = not (pipelined and "pipeline" in self.enabled)
            self._do(_steps.Write(argv, iterate=iterate))

        @precondition(lambda self: self._on("counters"))
        @rule(argv=counters)
        def write_counter(self, argv: tuple[bytes, ...]) -> None:
            self._do(_steps.Write(argv))

        @precondition(lambda self: self._on("expiry"))
        @rule(data=st.data())
        def write_expiry(self, data: st.DataObject) -> None:
            argv = data.draw(_expiry_write(self.driver.clock.now_ms, accept), label="argv")
            self._do(_steps.Write(argv))

        @precondition(lambda self: self._on("collections"))
        @rule(argv=collections)
        def write_collection(self, argv: tuple[bytes, ...]) -> None:
            self._do(_steps.Write(argv))

        @precondition(lambda self: self._on("multi") and bool(tx_parts))
        @rule(commands=st.lists(st.one_of(*tx_parts), min_size=1, max_size=4))
        def transaction(self, commands: list[tuple[bytes, ...]]) -> None:
            self._do(_steps.Multi(tuple(commands)))

        @precondition(lambda self: self._on("select"))
        @rule(db=st.integers(0, 2), client=st.integers(0, 1))
        def select(self, db: int, client: int) -> None:
            self._do(_steps.Write((b"SELECT", str(db).encode()), client=client))

        @precondition(lambda self: self._on("select") and not strings.is_empty)
        @rule(argv=strings)
        def write_as_second_client(self, argv: tuple[bytes, ...]) -> None:
            self._do(_steps.Write(argv, client=1))

        @precondition(lambda self: self._on("flush"))
        @rule(argv=st.sampled_from(flushes or [(b"FLUSHDB",)]))
        def flush(self, argv: tuple[bytes, ...]) -> None:
            self._do(_steps.Write(argv))

        @precondition(lambda self: self.driver.alive and bool(surface)
                      and any(f in self.enabled for f, _, _ in surface))
        @rule(data=st.data(), pipelined=st.booleans())
        def write_surface(self, data: st.DataObject, pipelined: bool) -> None:
            # One (command, form) pair of the reference's surface table (SET EXAT, ZADD INCR,
            # LPOP with a count, an EXPIRE in the past...): every form the reference implements
            # and propagates is sent, not only the common ones.
            pairs = [(name, form) for f, name, form in surface if f in self.enabled]
            name, form = data.draw(st.sampled_from(pairs), label="surface")
            pool = {"string": KEYS, "list": LIST_KEYS, "set": SET_KEYS, "zset": ZSET_KEYS,
                    "hash": HASH_KEYS, "any": ALL_KEYS}[KEY_KIND[name]]
            argv = surface_argv(
                name, form, key=data.draw(st.sampled_from(pool), label="key"),
                other=data.draw(st.sampled_from(pool), label="other"),
                value=data.draw(values, label="value"),
                members=tuple(data.draw(st.lists(st.sampled_from(MEMBERS[:5]), min_size=2,
                                                 max_size=4, unique=True), label="members")),
                amount=data.draw(st.integers(1, 5000), label="amount"),
                now_ms=self.driver.clock.now_ms)
            if accept is not None and not accept(argv):
                return  # (a target's own limit beyond its declared forms)
            _event(f"surface: {name} {form}")
            self._do(_steps.Write(argv, iterate=not (pipelined and "pipeline" in self.enabled)))

        def _program(self, program: Program, *, pipelined: bool = False) -> bool:
            """Run the commands in order (with ``pipelined`` all in one event-loop iteration);
            False if the server died on the way."""
            for i, argv in enumerate(program):
                last = i == len(program) - 1
                self._do(_steps.Write(argv, iterate=last or not pipelined))
                if not self.driver.alive:
                    return False
            return True

        @precondition(lambda self: self._on("multi_key"))
        @rule(program=_multi_key_program(accept), pipelined=st.booleans())
        def write_multi_key(self, program: Program, pipelined: bool) -> None:
            # The keys (members) are created first, so the last command changes several that
            # exist: a feed that keeps only one of them is visible after a reload.
            name = program[-1][0].decode()
            if name == "DEL":
                _event(f"boundary: DEL of {len(program) - 1} existing keys")
            else:
                _event(f"boundary: {name} of several members, some existing")
            self._program(program, pipelined=pipelined and "pipeline" in self.enabled)

        @precondition(lambda self: self._on("big_collections"))
        @rule(program=_programs(accept, _big_collection_program()), rewrite=st.booleans())
        def write_big_collection(self, program: Program, rewrite: bool) -> None:
            if not self._program(program):
                return
            _event("boundary: a collection grown by 64+ items")
            if rewrite and self.driver.supports_rewrite:
                # The rewrite splits it into batches of 64: the batch edges are where it breaks.
                _event("boundary: a rewrite after a collection grew by 64+ items")
                self._complete_rewrite()

        # Calls, not properties: what the steps changed, not what mypy narrowed before them.
        def _rewriting(self) -> bool:
            return self.driver.rewriting

        def _alive(self) -> bool:
            return self.driver.alive

        def _complete_rewrite(self) -> bool:
            """Start a rewrite (unless one runs), let the child finish and the parent's done
            handler run (at the cron of the tick)."""
            if not self.driver.rewriting:
                self._do(_steps.BgRewrite())
            if self.driver.alive and self.driver.rewriting:
                self._do(_steps.ChildStep(1_000_000))
            if self.driver.alive:
                self._do(_steps.Tick(100))
            return self.driver.alive

        # -- reads and time ---------------------------------------------------------------

        @precondition(lambda self: self.driver.alive and not reads.is_empty)
        @rule(argv=reads)
        def read(self, argv: tuple[bytes, ...]) -> None:
            self._do(_steps.Read(argv))

        @precondition(lambda self: self.driver.alive)
        @rule(delta_ms=st.one_of(st.integers(1, 150), st.integers(900, 2600)))
        def tick(self, delta_ms: int) -> None:
            self._do(_steps.Tick(delta_ms))

        # -- rewrite ----------------------------------------------------------------------

        @precondition(lambda self: self._on("rewrite"))
        @rule()
        def bgrewriteaof(self) -> None:
            # While a rewrite runs, BGREWRITEAOF is refused (and must change nothing).
            _event("rewrite: " + ("refused, one is running" if self.driver.rewriting
                                  else "started"))
            self._do(_steps.BgRewrite())

        @precondition(lambda self: self._on("rewrite") and self.driver.config.target is None)
        @rule()
        def rewrite_takes_effect(self) -> None:
            # Liveness (no data rule sees these): a rewrite whose child ran to its end (or
            # died) is over one cron period later, faults or not; with every fault cleared, a
            # rewrite's file replaces the AOF (not one that ends "successfully" while the old
            # file stays and grows forever). A rewrite already running may have met the armed
            # faults (a failed or killed child is fine): only that it ends is judged.
            problem = None
            if self.driver.rewriting:
                if not self._complete_rewrite():
                    return
                if self._rewriting():
                    problem = ("BGREWRITEAOF is still running after its child ran to its end "
                               "(or was killed) and a cron period passed")
            else:
                self._do(_steps.ClearFaults())
                if not self.driver.alive:
                    return
                mark = len(self.driver.disk.trace)
                if not self._complete_rewrite():
                    return
                # The reference's AOF name (the rule runs on the reference only).
                aof = str(getattr(getattr(self.driver.target, "server_config", None),
                                  "aof_filename", "appendonly.aof"))
                if self._rewriting():  # (a call: what the steps changed, not what mypy narrowed)
                    problem = ("with no fault armed, BGREWRITEAOF is still running after its "
                               "child ran to its end and a cron period passed")
                elif not any(e.op.value == "rename" and e.result >= 0 and e.payload == aof
                             for e in self.driver.disk.trace[mark:]):
                    problem = ("with no fault armed, BGREWRITEAOF ended without its file "
                               f"replacing {aof} (the old file stays and grows)")
            _event("liveness: " + ("rewrite took effect" if problem is None else problem[:40]))
            if problem is not None:
                self._raise_finding(LivenessViolation, f"liveness: {problem}", "liveness",
                                    self.driver.reproduction(outcome="liveness",
                                                             rules=["liveness"],
                                                             liveness=LIVENESS_REWRITE))

        @precondition(
            lambda self: self._on("rewrite") and self.driver.rewriting
        )
        @rule(count=st.integers(1, 6))
        def step_rewrite_child(self, count: int) -> None:
            self._do(_steps.ChildStep(count))

        @precondition(
            lambda self: self._on("kill_child") and self.driver.rewriting
        )
        @rule()
        def kill_rewrite_child(self) -> None:
            _event("rewrite: child killed")
            self._do(_steps.KillChild())

        @precondition(lambda self: self._on("kill_child") and self._on("rewrite"))
        @rule(at_step=st.integers(0, 4))
        def arm_child_death(self, at_step: int) -> None:
            _event("fault: KillChild")
            self._do(_steps.InjectFaults(
                FaultPlan((KillChildFault(nth_rewrite=1, at_step=at_step),))))

        @precondition(lambda self: self._on("rewrite_done"))
        @rule(kind=st.sampled_from(["crash", "crash", "short_write", "no_space", "io_error"]),
              nth_op=st.integers(1, 8), op=st.sampled_from(_WRITE_OPS),
              torn=st.one_of(st.none(), st.integers(1, 40)),
              written_bytes=st.integers(0, 30), diff=st.one_of(st.none(), string_writes),
              after=st.one_of(st.none(), string_writes))
        def fault_in_rewrite_done(
            self, kind: str, nth_op: int, op: FaultOp, torn: int | None, written_bytes: int,
            diff: tuple[bytes, ...] | None, after: tuple[bytes, ...] | None,
        ) -> None:
            # The child finishes; the fault is armed for the parent's done handler, whose
            # operations come next (open, write of the rewrite buffer, fsync, rename, close of
            # the old file, directory fsync): a crash at the nth_op-th of them, or a short write,
            # ENOSPC or EIO on one of them.
            if not self.driver.rewriting:
                self._do(_steps.BgRewrite())
            if diff is not None and self.driver.alive:
                self._do(_steps.Write(diff))
            if not (self.driver.alive and self.driver.rewriting):
                return
            self._do(_steps.ChildStep(1_000_000))
            if self.driver.crashed:
                return
            fault: Any
            if kind == "crash":
                fault = Crash(nth=nth_op, op=FaultOp.ANY, torn_bytes=torn)
                _event(f"boundary: crash at operation {nth_op} of the rewrite done handler")
            elif kind == "short_write":
                fault = ShortWrite(nth=1, written_bytes=written_bytes)
                _event("boundary: short write in the rewrite done handler")
            elif kind == "no_space":
                fault = NoSpace(nth=1, times=None if torn is None else 1,
                                partial_bytes=None if torn is None else written_bytes)
                _event("boundary: ENOSPC in the rewrite done handler")
            else:
                fault = IOFault(op=op, nth=1, times=1)
                _event(f"boundary: EIO on {op.value} in the rewrite done handler")
            step = _steps.ArmCrash if kind == "crash" else _steps.InjectFaults
            self._do(step(FaultPlan((fault,))))
            if self.driver.alive:
                self._do(_steps.Tick(100))
            if after is not None and self.driver.alive:
                self._do(_steps.Write(after))

        # -- faults -----------------------------------------------------------------------

        @precondition(lambda self: self._on("short_write"))
        @rule(nth=st.integers(1, 3), written_bytes=st.integers(0, 40))
        def inject_short_write(self, nth: int, written_bytes: int) -> None:
            _event("fault: ShortWrite")
            plan = FaultPlan((ShortWrite(nth=nth, written_bytes=written_bytes),))
            self._do(_steps.InjectFaults(plan))

        @precondition(lambda self: self._on("no_space"))
        @rule(nth=st.integers(1, 3), times=st.one_of(st.none(), st.integers(1, 4)),
              partial=st.one_of(st.none(), st.integers(0, 30)))
        def inject_no_space(self, nth: int, times: int | None, partial: int | None) -> None:
            _event("fault: NoSpace")
            plan = FaultPlan((NoSpace(nth=nth, times=times, partial_bytes=partial),))
            self._do(_steps.InjectFaults(plan))

        @precondition(lambda self: self._on("io_error"))
        @rule(op=st.sampled_from(_WRITE_OPS), nth=st.integers(1, 3), times=st.integers(1, 3))
        def inject_io_error(self, op: FaultOp, nth: int, times: int) -> None:
            _event(f"fault: IOFault {op.value}")
            self._do(_steps.InjectFaults(FaultPlan((IOFault(op=op, nth=nth, times=times),))))

        @precondition(lambda self: self._on("io_error"))
        @rule(op=st.sampled_from([FaultOp.FDATASYNC, FaultOp.FSYNC]), nth=st.integers(1, 2))
        def fsync_fails_while_the_aof_cannot_grow(self, op: FaultOp, nth: int) -> None:
            # A failed fsync while the AOF cannot grow (ENOSPC on its writes only): the write
            # error and the fsync error are pending together, and the repair the fsync error
            # starts (a new file from memory) succeeds while the write error stands. A write,
            # the once-a-second fsync that fails; then, with the faults gone, the server must
            # take writes again (``writes_resume``).
            _event("fault: IOFault on fsync while the AOF cannot grow")
            self._do(_steps.InjectFaults(FaultPlan((IOFault(op=op, nth=nth),
                                                    NoSpace(nth=1, path_glob="appendonly.aof")))))
            for _ in range(2):
                if self._alive() and (accept is None or accept((b"SET", b"k1", b"disk-full"))):
                    self._do(_steps.Write((b"SET", b"k1", b"disk-full")))
                if self._alive():
                    self._do(_steps.Tick(1100))
            if self._alive() and self.driver.config.target is None:
                self._writes_resume()

        @precondition(lambda self: self._on("slow_sync"))
        @rule(delay_ms=st.sampled_from([200, 1500, 3000]), nth=st.integers(1, 3))
        def inject_slow_sync(self, delay_ms: int, nth: int) -> None:
            _event("fault: SlowSync")
            self._do(_steps.InjectFaults(FaultPlan((SlowSync(delay_ms=delay_ms, nth=nth),))))

        @precondition(lambda self: self._on("slow_sync"))
        @rule(data=st.data(), delay_ms=st.sampled_from([1500, 2500, 3000, 4000]),
              offset_ms=st.one_of(_OFFSETS_MS, st.sampled_from(_NEAR_ZERO_MS)))
        def crash_near_the_end_of_a_stall(self, data: st.DataObject, delay_ms: int,
                                          offset_ms: int) -> None:
            # Timing windows: what a long fsync stall leaves behind (a postponed buffer, an
            # fsync owed, an error seen late) is exposed for a moment around its end, so the
            # crash is placed relative to when the stalled fsync returns, not after a count of
            # operations: writes early in the stall, then time up to `offset_ms` from its end
            # (before or after), then a crash there or at one of the next operations.
            self._do(_steps.InjectFaults(FaultPlan((SlowSync(delay_ms=delay_ms, nth=1),))))
            mark = len(self.driver.fs.fired)
            for _ in range(3):  # under everysec the fsync is issued at the next second
                if not self._alive() or self._stalled_since(mark):
                    break
                self._do(_steps.Write(data.draw(string_writes, label="write before the stall")))
                if self._alive() and not self._stalled_since(mark):
                    self._do(_steps.Tick(
                        data.draw(st.sampled_from([100, 500, 1000]), label="tick")))
            if not self._alive():
                return
            if not self._stalled_since(mark):  # no fsync (policy no): nothing to aim at
                self._do(_steps.ClearFaults())
                return
            _event(f"timing: a {delay_ms} ms fsync stall")
            for gap_ms in data.draw(st.lists(st.integers(0, 1200), min_size=1, max_size=3),
                                    label="gaps of the writes during the stall"):
                if gap_ms:
                    self._do(_steps.Tick(gap_ms))
                if not self._alive():
                    return
                self._do(_steps.Write(data.draw(string_writes, label="write during the stall")))
                if not self._alive():
                    return
            left_ms = _stall_end_ms(self.driver.fs.fired) + offset_ms - self.driver.clock.now_ms
            if left_ms > 0:
                self._do(_steps.Tick(left_ms))
            if not self._alive():
                return
            when = data.draw(st.sampled_from(["now", "at an operation"]), label="crash")
            _event(f"timing: crash {'before' if offset_ms < 0 else 'after'} a stall ends, "
                   f"{when}")
            if when == "now":
                self._do(_steps.Crash())
            else:
                nth = data.draw(st.integers(1, 3), label="nth")
                self._do(_steps.ArmCrash(FaultPlan((Crash(nth=nth, op=FaultOp.ANY),))))
                self._do(_steps.Tick(100))  # the cron's operations (a postponed write, an fsync)
                for argv in data.draw(st.lists(string_writes, max_size=2),
                                      label="writes after"):
                    if not self._alive():
                        break
                    self._do(_steps.Write(argv))
                if self._alive():
                    self._do(_steps.Crash())
            # Under the process model a stall widens the window by one cron period only, so
            # that is where a late write shows; the power models widen it by the whole stall.
            model = data.draw(st.sampled_from(
                [PersistenceModel.PROCESS] * (PersistenceModel.PROCESS in models) + list(models)),
                label="model")
            choice = data.draw(self.driver.disk.crash_choice_strategy(
                model, limits=config.image_limits), label="choice")
            self._check_aof_agrees(model, choice, 0)
            self._run(_steps.Recover(model=model, choice=choice))

        def _stalled_since(self, mark: int) -> bool:
            return any(isinstance(f.fault, SlowSync) for f in self.driver.fs.fired[mark:])

        @precondition(
            lambda self: self.driver.alive
            and bool(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
        )
        @rule()
        def clear_faults(self) -> None:
            self._do(_steps.ClearFaults())

        @precondition(
            lambda self: self.driver.alive and self.driver.config.target is None
            and bool(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
        )
        @rule()
        def writes_resume(self) -> None:
            self._writes_resume()

        def _writes_resume(self) -> None:
            # Liveness (no data rule sees it): once every fault is cleared, a server that
            # refused writes (MISCONF after a failed write or fsync) or held their replies
            # accepts and acknowledges them again within its retry period, once any stalled
            # fsync has ended (stalls are serial: at most three of 3 s are armed at a time).
            # A server that stopped is not judged here.
            self._do(_steps.ClearFaults())
            for refused, wait_ms in enumerate((10_000, 1_100)):
                if not self._alive():
                    return
                self._do(_steps.Tick(wait_ms))
                if not self._alive():
                    return
                self._do(_steps.Write((b"SET", b"k0", b"after-faults")))
                entry = self.driver.history.entries[-1]
                if entry.outcome is Outcome.OK:  # refused (ERROR) or held (UNKNOWN): not yet
                    _event("liveness: writes resumed" + (" after a retry" if refused else ""))
                    return
            problem = ("writes are still refused or unacknowledged 11 s after every fault was "
                       "cleared (the write error or failed fsync is never retried or cleared)")
            _event("liveness: writes never resume")
            self._raise_finding(LivenessViolation, f"liveness: {problem}", "liveness",
                                self.driver.reproduction(outcome="liveness", rules=["liveness"],
                                                         liveness=LIVENESS_WRITES))

        @precondition(lambda self: self._on("crash_mid_op"))
        @rule(nth=st.integers(1, 6), op=st.sampled_from([FaultOp.ANY, FaultOp.WRITE,
                                                         FaultOp.FDATASYNC, FaultOp.FSYNC,
                                                         FaultOp.RENAME, FaultOp.FSYNC_DIR]),
              torn=st.one_of(st.none(), st.integers(1, 60)))
        def arm_crash(self, nth: int, op: FaultOp, torn: int | None) -> None:
            _event(f"fault: Crash {op.value}")
            torn_bytes = torn if op is FaultOp.WRITE else None
            self._do(_steps.ArmCrash(FaultPlan((Crash(nth=nth, op=op, torn_bytes=torn_bytes),))))

        @precondition(lambda self: self._on("crash_mid_op") and not writes.is_empty)
        @rule(nth=st.sampled_from([1, 1, 2, 3]), argv=writes)
        def crash_after_an_acknowledgement(self, nth: int, argv: tuple[bytes, ...]) -> None:
            # The crash points right after a reply release (ALICE: an acknowledgement is a
            # point in the trace): the nth filesystem operation after the next release dies.
            # A store that releases before its fsync, in the same iteration, loses the write.
            _event("fault: Crash after a reply release")
            self._do(_steps.ArmCrash(FaultPlan((Crash(nth=nth, op=FaultOp.ANY),)),
                                     after_release=True))
            if self.driver.alive:
                self._do(_steps.Write(argv))

        @precondition(lambda self: self._on("crash_mid_op") and not writes.is_empty)
        @rule(data=st.data(), torn_bytes=st.integers(1, 160))
        def crash_while_writing(self, data: st.DataObject, torn_bytes: int) -> None:
            # The process dies inside the write() of the next command's AOF record: the
            # scenario of a torn transaction or a SET torn from its expiry.
            kinds = [k for k in ("multi", "expiry", "strings", "collections") if k in self.enabled]
            kind = data.draw(st.sampled_from(kinds or ["strings"]), label="kind")
            _event(f"fault: Crash inside the write of a {kind} command")
            plan = FaultPlan((Crash(nth=1, op=FaultOp.WRITE, torn_bytes=torn_bytes),))
            self._do(_steps.ArmCrash(plan))
            if kind == "multi":
                commands = data.draw(st.lists(writes,
                                              min_size=2, max_size=4), label="commands")
                self._do(_steps.Multi(tuple(commands)))
            else:
                strategy = {
                    "expiry": _expiry_write(self.driver.clock.now_ms, accept),
                    "collections": collections,
                }.get(kind, string_writes)
                self._do(_steps.Write(data.draw(strategy, label="argv")))

        @precondition(
            lambda self: self._on("crash_mid_op") and self.driver.alive and not writes.is_empty
            and bool(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
        )
        @rule(data=st.data(), torn_bytes=st.integers(1, 60))
        def fault_in_the_next_epoch(self, data: st.DataObject, torn_bytes: int) -> None:
            # Later epochs carry faults too: a write torn by a crash, the recovery that cuts
            # the torn tail (process model: the loader truncates it), then a fault on the
            # recovered file while writes go on; the run then crashes again or carries on.
            _event("epochs: torn write, recovery, a fault in the next epoch")
            self._do(_steps.ArmCrash(FaultPlan((Crash(nth=1, op=FaultOp.WRITE,
                                                      torn_bytes=torn_bytes),))))
            self._do(_steps.Write(data.draw(string_writes, label="torn write")))
            if not self.driver.crashed:
                self._do(_steps.ClearFaults())
                return
            model = PersistenceModel.PROCESS if PersistenceModel.PROCESS in models else models[0]
            choice = data.draw(self.driver.disk.crash_choice_strategy(
                model, limits=config.image_limits), label="choice")
            self._check_aof_agrees(model, choice, 0)
            self._run(_steps.Recover(model=model, choice=choice))
            if not self.driver.alive:
                return
            kinds = sorted(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
            kind = data.draw(st.sampled_from(kinds), label="fault")
            fault: Any = {
                "short_write": ShortWrite(nth=1, written_bytes=data.draw(st.integers(0, 40))),
                "no_space": NoSpace(nth=1, times=data.draw(st.integers(1, 3)),
                                    partial_bytes=data.draw(st.integers(0, 30))),
                "io_error": IOFault(op=data.draw(st.sampled_from(
                    [FaultOp.WRITE, FaultOp.FDATASYNC, FaultOp.FSYNC])), nth=1),
                "slow_sync": SlowSync(delay_ms=3000, nth=1),
            }[kind]
            _event(f"fault: {type(fault).__name__} in the next epoch")
            self._do(_steps.InjectFaults(FaultPlan((fault,))))
            for argv in data.draw(st.lists(string_writes, min_size=1, max_size=3),
                                  label="writes"):
                if not self._alive():
                    return
                self._do(_steps.Write(argv))
                if self._alive() and data.draw(st.booleans(), label="tick"):
                    self._do(_steps.Tick(1100))
            if self._alive() and data.draw(st.booleans(), label="crash again"):
                self._do(_steps.Crash())

        @precondition(lambda self: self.driver.alive and self.driver.writes_since_boot >= 2)
        @rule()
        def crash_now(self) -> None:
            self._do(_steps.Crash())

        # -- recovery ---------------------------------------------------------------------

        @precondition(lambda self: self.driver.crashed)
        @rule(data=st.data(), model=st.sampled_from(models),
              downtime_ms=st.sampled_from([0, 0, 100, 3000]))
        def recover(self, data: st.DataObject, model: PersistenceModel, downtime_ms: int) -> None:
            choice = data.draw(
                self.driver.disk.crash_choice_strategy(model, limits=config.image_limits),
                label="choice",
            )
            again = None
            if "crash_during_recovery" in self.enabled:
                again = data.draw(st.one_of(st.none(), st.integers(1, 4)), label="again")
            _event(f"recover: {model.value}")
            self._check_aof_agrees(model, choice, downtime_ms)
            self._run(_steps.Recover(model=model, choice=choice, downtime_ms=downtime_ms,
                                     crash_during_recovery_op=again))
            _event("outcome: " + ("unavailable" if self.driver.unavailable else "consistent"))

        @precondition(lambda self: damage_on and self.driver.crashed)
        @rule(data=st.data(), model=st.sampled_from(models),
              kind=st.sampled_from(list(DamageKind)), at_permille=st.integers(0, 999),
              length_bytes=st.sampled_from([1, 1, 4, 16]),
              path_glob=st.sampled_from(damage_globs))
        def recover_damaged(self, data: st.DataObject, model: PersistenceModel,
                            kind: DamageKind, at_permille: int, length_bytes: int,
                            path_glob: str) -> None:
            choice = data.draw(
                self.driver.disk.crash_choice_strategy(model, limits=config.image_limits),
                label="choice",
            )
            _event(f"recover: {model.value}, synced bytes damaged")
            damage = Damage(kind=kind, at_permille=at_permille, length_bytes=length_bytes,
                            path_glob=path_glob)
            self._run(_steps.Recover(model=model, choice=choice, damage=damage))
            _event("outcome: " + ("unavailable" if self.driver.unavailable else "consistent"))

        def _check_aof_agrees(self, model: PersistenceModel, choice: Any,
                              downtime_ms: int) -> None:
            # The safe reference's own check-aof on the image this recovery will load (a
            # Redis-format AOF the reference wrote; other targets' files are their own).
            config = self.driver.config
            if config.target is not None or config.profile != "safe" or config.defects:
                return
            aof = str(getattr(getattr(self.driver.target, "server_config", None),
                              "aof_filename", "appendonly.aof"))
            data = self.driver.disk.crash(model, choice).get(aof)
            if not data:
                return
            with self.driver.cpu_limited(f"check-aof of the {model.value} crash image"):
                problem = check_aof_agrees(bytes(data),
                                           now_ms=self.driver.clock.now_ms + downtime_ms)
            _event("check-aof: " + ("agrees with the loader" if problem is None
                                    else "disagrees"))
            if problem is not None:
                # The reproduction ends with the recovery whose image was judged (its choice
                # included), so that replay judges the same image.
                repro = self.driver.reproduction(outcome="check-aof", rules=["check-aof"])
                recover = _steps.Recover(model=model, choice=choice, downtime_ms=downtime_ms)
                repro = dataclasses.replace(repro, steps=(*repro.steps, recover))
                self._raise_finding(
                    CheckAofDisagreement, f"check-aof disagrees with the loader on the "
                    f"{model.value} crash image: {problem}", "check-aof", repro)

        @precondition(lambda self: self.driver.unavailable is not None)
        @rule()
        def start_over(self) -> None:
            # The server refused to start (allowed unless strict): begin a fresh epoch.
            self.driver = Driver(config, factory=factory)

        @invariant()
        def server_is_up_unless_crashed(self) -> None:
            if self.driver.alive:
                assert not self.driver.target.stopped

        def teardown(self) -> None:
            # Judge every run at least once: crash now, keep only what is durable.
            if self.driver.failed or (not self.driver.alive and not self.driver.crashed):
                return
            if self.driver.alive:
                self._run(_steps.Crash())
            model = models[-1] if len(models) == 1 else PersistenceModel.POWER
            if model not in models:
                model = models[0]
            choice = _least_surviving(self.driver, model)
            self._run(_steps.Recover(model=model, choice=choice))

    AofMachine.__name__ = AofMachine.__qualname__ = (
        f"AofMachine_{config.policy}_{config.profile.replace('.', '_').replace('-', '_')}"
    )
    return AofMachine


def _stall_end_ms(fired: list[FiredFault]) -> int:
    """When the last fired fsync stall ends: stalls run one after another (one bio thread,
    one device queue), as the oracle counts them."""
    end_ms = 0
    for at_ms, delay_ms in sorted((f.at_ms, f.fault.delay_ms) for f in fired
                                  if isinstance(f.fault, SlowSync)):
        end_ms = max(at_ms, end_ms) + delay_ms
    return end_ms


def _least_surviving(driver: Driver, model: PersistenceModel) -> Any:
    """The first enumerated choice: durable state only, nothing pending kept."""
    return next(iter(driver.disk.crash_choices(model, limits=driver.config.image_limits)))
