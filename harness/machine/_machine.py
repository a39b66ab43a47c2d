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

Settings profiles: ``aofcrash-dev``, ``aofcrash-ci`` (derandomized) and ``aofcrash-nightly``,
registered on import (``PROFILES`` has them by short name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, settings
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
    FaultOp,
    FaultPlan,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SlowSync,
)
from faults import KillChild as KillChildFault
from harness.machine._driver import ContractViolation, Driver, ModelDivergence
from harness.machine._steps import (
    ArmCrash,
    BgRewrite,
    ChildStep,
    ClearFaults,
    InjectFaults,
    KillChild,
    Multi,
    Read,
    Recover,
    RunConfig,
    Step,
    Tick,
    Write,
)
from harness.machine._steps import Crash as CrashStep

__all__ = ["FEATURES", "PROFILES", "make_state_machine"]

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                              HealthCheck.data_too_large],
    "stateful_step_count": 40,
}
PROFILES: dict[str, settings] = {
    "dev": settings(max_examples=30, **_COMMON),  # type: ignore[arg-type]
    "ci": settings(max_examples=60, derandomize=True, **_COMMON),  # type: ignore[arg-type]
    "nightly": settings(
        max_examples=2000, **{**_COMMON, "stateful_step_count": 80}  # type: ignore[arg-type]
    ),
}
for _name, _profile in PROFILES.items():
    settings.register_profile(f"aofcrash-{_name}", _profile)

FEATURES = (
    "strings",
    "counters",
    "expiry",
    "collections",
    "multi",
    "pipeline",
    "select",
    "flush",
    "rewrite",
    "kill_child",
    "short_write",
    "no_space",
    "io_error",
    "slow_sync",
    "crash_mid_op",
    "crash_during_recovery",
)

KEYS = [b"k0", b"k1", b"k2", b"k3"]
LIST_KEYS = [b"l0", b"l1"]
SET_KEYS = [b"s0", b"s1"]
ZSET_KEYS = [b"z0", b"z1"]
HASH_KEYS = [b"h0", b"h1"]
ALL_KEYS = KEYS + LIST_KEYS + SET_KEYS + ZSET_KEYS + HASH_KEYS

keys = st.sampled_from(KEYS)
values = st.sampled_from([b"a", b"bb", b"ccc", b"v" * 40, b"x" * 300, b"\x00\r\n", b"7", b"-3"])
members = st.sampled_from([b"m0", b"m1", b"m2", b"m3", b"m4"])
small_ms = st.integers(min_value=1, max_value=5000)

_WRITE_OPS = (FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC, FaultOp.RENAME, FaultOp.FSYNC_DIR)


def _string_write() -> st.SearchStrategy[tuple[bytes, ...]]:
    return st.one_of(
        st.tuples(st.just(b"SET"), keys, values),
        st.tuples(st.just(b"SET"), keys, values, st.sampled_from([b"NX", b"XX"])),
        st.tuples(st.just(b"APPEND"), keys, values),
        st.tuples(st.just(b"DEL"), st.sampled_from(ALL_KEYS)),
    )


def _counter_write() -> st.SearchStrategy[tuple[bytes, ...]]:
    return st.one_of(
        st.tuples(st.sampled_from([b"INCR", b"DECR"]), keys),
        st.tuples(
            st.sampled_from([b"INCRBY", b"DECRBY"]),
            keys,
            st.integers(-1000, 1000).map(lambda n: str(n).encode()),
        ),
    )


def _expiry_write(now_ms: int) -> st.SearchStrategy[tuple[bytes, ...]]:
    ms = small_ms.map(lambda n: str(n).encode())
    secs = st.integers(1, 5).map(lambda n: str(n).encode())
    return st.one_of(
        st.tuples(st.just(b"SET"), keys, values, st.just(b"PX"), ms),
        st.tuples(st.just(b"SET"), keys, values, st.just(b"EX"), secs),
        st.tuples(st.just(b"SETEX"), keys, secs, values),
        st.tuples(st.just(b"PSETEX"), keys, ms, values),
        st.tuples(st.just(b"EXPIRE"), st.sampled_from(ALL_KEYS), secs),
        st.tuples(st.just(b"PEXPIRE"), st.sampled_from(ALL_KEYS), ms),
        st.tuples(
            st.just(b"PEXPIREAT"),
            st.sampled_from(ALL_KEYS),
            small_ms.map(lambda n: str(now_ms + n).encode()),
        ),
        st.tuples(
            st.just(b"EXPIREAT"),
            st.sampled_from(ALL_KEYS),
            st.integers(1, 5).map(lambda n: str(now_ms // 1000 + n).encode()),
        ),
        st.tuples(st.just(b"PERSIST"), st.sampled_from(ALL_KEYS)),
    )


def _collection_write() -> st.SearchStrategy[tuple[bytes, ...]]:
    many = st.lists(members, min_size=1, max_size=4).map(tuple)
    score = st.sampled_from([b"0", b"1.5", b"-2", b"1e3", b"3"])
    return st.one_of(
        st.tuples(st.sampled_from([b"LPUSH", b"RPUSH"]), st.sampled_from(LIST_KEYS), many).map(
            lambda t: (t[0], t[1], *t[2])
        ),
        st.tuples(st.sampled_from([b"LPOP", b"RPOP"]), st.sampled_from(LIST_KEYS)),
        st.tuples(st.sampled_from([b"SADD", b"SREM"]), st.sampled_from(SET_KEYS), many).map(
            lambda t: (t[0], t[1], *t[2])
        ),
        st.tuples(st.just(b"ZADD"), st.sampled_from(ZSET_KEYS), score, members),
        st.tuples(st.just(b"ZREM"), st.sampled_from(ZSET_KEYS), members),
        st.tuples(st.just(b"HSET"), st.sampled_from(HASH_KEYS), members, values),
        st.tuples(st.just(b"HDEL"), st.sampled_from(HASH_KEYS), members),
        # Wrong types on purpose: the error must have no effect anywhere.
        st.tuples(st.just(b"LPUSH"), keys, members),
    )


def _read() -> st.SearchStrategy[tuple[bytes, ...]]:
    return st.one_of(
        st.tuples(st.just(b"GET"), keys),
        st.tuples(st.just(b"EXISTS"), st.sampled_from(ALL_KEYS)),
        st.tuples(st.just(b"PTTL"), st.sampled_from(ALL_KEYS)),
        st.tuples(st.just(b"LRANGE"), st.sampled_from(LIST_KEYS), st.just(b"0"), st.just(b"-1")),
        st.tuples(st.just(b"SMEMBERS"), st.sampled_from(SET_KEYS)),
        st.tuples(
            st.just(b"ZRANGE"), st.sampled_from(ZSET_KEYS), st.just(b"0"), st.just(b"-1"),
            st.just(b"WITHSCORES"),
        ),
        st.tuples(st.just(b"HGETALL"), st.sampled_from(HASH_KEYS)),
    )


def make_state_machine(
    config: RunConfig,
    *,
    models: tuple[PersistenceModel, ...] = tuple(PersistenceModel),
    features: tuple[str, ...] = FEATURES,
    swarm: bool = True,
    on_finding: Callable[[BaseException], None] | None = None,
    events: Counter[str] | None = None,
) -> type[RuleBasedStateMachine]:
    """A state machine class for one configuration (policy, profile, defects).

    ``on_finding`` is called with every violation a run raises (before Hypothesis shrinks it),
    ``events`` counts the ``event()`` labels across runs (for reports).
    """
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"features: unknown {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    if not models:
        raise ValueError("models: at least one persistence model is needed")

    def _event(label: str) -> None:
        event(label)
        if events is not None:
            events[label] += 1

    class AofMachine(RuleBasedStateMachine):
        """Writes, faults and crashes against the reference; the driver checks every recovery."""

        def __init__(self) -> None:
            super().__init__()
            self.driver = Driver(config)
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
            return feature in self.enabled and self.driver.alive

        def _do(self, step: Step) -> None:
            self._run(step)
            if self.driver.crashed:
                _event("crash: " + ("server exited" if self.driver.server.stopped else "fault"))

        def _run(self, step: Step) -> None:
            try:
                self.driver.run(step)
            except (ContractViolation, ModelDivergence) as exc:
                if on_finding is not None:
                    on_finding(exc)
                raise

        # -- writes -----------------------------------------------------------------------

        @precondition(lambda self: self._on("strings"))
        @rule(argv=_string_write(), pipelined=st.booleans())
        def write_string(self, argv: tuple[bytes, ...], pipelined: bool) -> None:
            iterate = not (pipelined and "pipeline" in self.enabled)
            self._do(Write(argv, iterate=iterate))

        @precondition(lambda self: self._on("counters"))
        @rule(argv=_counter_write())
        def write_counter(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

        @precondition(lambda self: self._on("expiry"))
        @rule(data=st.data())
        def write_expiry(self, data: st.DataObject) -> None:
            argv = data.draw(_expiry_write(self.driver.clock.now_ms), label="argv")
            self._do(Write(argv))

        @precondition(lambda self: self._on("collections"))
        @rule(argv=_collection_write())
        def write_collection(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

        @precondition(lambda self: self._on("multi"))
        @rule(commands=st.lists(st.one_of(_string_write(), _counter_write(),
                                          _collection_write()), min_size=1, max_size=4))
        def transaction(self, commands: list[tuple[bytes, ...]]) -> None:
            self._do(Multi(tuple(commands)))

        @precondition(lambda self: self._on("select"))
        @rule(db=st.integers(0, 2), client=st.integers(0, 1))
        def select(self, db: int, client: int) -> None:
            self._do(Write((b"SELECT", str(db).encode()), client=client))

        @precondition(lambda self: self._on("select"))
        @rule(argv=_string_write())
        def write_as_second_client(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv, client=1))

        @precondition(lambda self: self._on("flush"))
        @rule(argv=st.sampled_from([(b"FLUSHDB",), (b"FLUSHALL",)]))
        def flush(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

        # -- reads and time ---------------------------------------------------------------

        @precondition(lambda self: self.driver.alive)
        @rule(argv=_read())
        def read(self, argv: tuple[bytes, ...]) -> None:
            self._do(Read(argv))

        @precondition(lambda self: self.driver.alive)
        @rule(delta_ms=st.one_of(st.integers(1, 150), st.integers(900, 2600)))
        def tick(self, delta_ms: int) -> None:
            self._do(Tick(delta_ms))

        # -- rewrite ----------------------------------------------------------------------

        @precondition(
            lambda self: self._on("rewrite") and self.driver.server.rewrite_child is None
        )
        @rule()
        def bgrewriteaof(self) -> None:
            _event("rewrite: started")
            self._do(BgRewrite())

        @precondition(
            lambda self: self._on("rewrite") and self.driver.server.rewrite_child is not None
        )
        @rule(count=st.integers(1, 6))
        def step_rewrite_child(self, count: int) -> None:
            self._do(ChildStep(count))

        @precondition(
            lambda self: self._on("kill_child") and self.driver.server.rewrite_child is not None
        )
        @rule()
        def kill_rewrite_child(self) -> None:
            _event("rewrite: child killed")
            self._do(KillChild())

        @precondition(lambda self: self._on("kill_child") and self._on("rewrite"))
        @rule(at_step=st.integers(0, 4))
        def arm_child_death(self, at_step: int) -> None:
            _event("fault: KillChild")
            self._do(InjectFaults(FaultPlan((KillChildFault(nth_rewrite=1, at_step=at_step),))))

        # -- faults -----------------------------------------------------------------------

        @precondition(lambda self: self._on("short_write"))
        @rule(nth=st.integers(1, 3), written_bytes=st.integers(0, 40))
        def inject_short_write(self, nth: int, written_bytes: int) -> None:
            _event("fault: ShortWrite")
            plan = FaultPlan((ShortWrite(nth=nth, written_bytes=written_bytes),))
            self._do(InjectFaults(plan))

        @precondition(lambda self: self._on("no_space"))
        @rule(nth=st.integers(1, 3), times=st.one_of(st.none(), st.integers(1, 4)),
              partial=st.one_of(st.none(), st.integers(0, 30)))
        def inject_no_space(self, nth: int, times: int | None, partial: int | None) -> None:
            _event("fault: NoSpace")
            plan = FaultPlan((NoSpace(nth=nth, times=times, partial_bytes=partial),))
            self._do(InjectFaults(plan))

        @precondition(lambda self: self._on("io_error"))
        @rule(op=st.sampled_from(_WRITE_OPS), nth=st.integers(1, 3), times=st.integers(1, 3))
        def inject_io_error(self, op: FaultOp, nth: int, times: int) -> None:
            _event(f"fault: IOFault {op.value}")
            self._do(InjectFaults(FaultPlan((IOFault(op=op, nth=nth, times=times),))))

        @precondition(lambda self: self._on("slow_sync"))
        @rule(delay_ms=st.sampled_from([200, 1500, 3000]), nth=st.integers(1, 3))
        def inject_slow_sync(self, delay_ms: int, nth: int) -> None:
            _event("fault: SlowSync")
            self._do(InjectFaults(FaultPlan((SlowSync(delay_ms=delay_ms, nth=nth),))))

        @precondition(
            lambda self: self.driver.alive
            and bool(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
        )
        @rule()
        def clear_faults(self) -> None:
            self._do(ClearFaults())

        @precondition(lambda self: self._on("crash_mid_op"))
        @rule(nth=st.integers(1, 6), op=st.sampled_from([FaultOp.ANY, FaultOp.WRITE,
                                                         FaultOp.FDATASYNC, FaultOp.FSYNC,
                                                         FaultOp.RENAME, FaultOp.FSYNC_DIR]),
              torn=st.one_of(st.none(), st.integers(1, 60)))
        def arm_crash(self, nth: int, op: FaultOp, torn: int | None) -> None:
            _event(f"fault: Crash {op.value}")
            torn_bytes = torn if op is FaultOp.WRITE else None
            self._do(ArmCrash(FaultPlan((Crash(nth=nth, op=op, torn_bytes=torn_bytes),))))

        @precondition(lambda self: self._on("crash_mid_op"))
        @rule(data=st.data(), torn_bytes=st.integers(1, 160))
        def crash_while_writing(self, data: st.DataObject, torn_bytes: int) -> None:
            # The process dies inside the write() of the next command's AOF record: the
            # scenario of a torn transaction or a SET torn from its expiry.
            kinds = [k for k in ("multi", "expiry", "strings", "collections") if k in self.enabled]
            kind = data.draw(st.sampled_from(kinds or ["strings"]), label="kind")
            _event(f"fault: Crash inside the write of a {kind} command")
            plan = FaultPlan((Crash(nth=1, op=FaultOp.WRITE, torn_bytes=torn_bytes),))
            self._do(ArmCrash(plan))
            if kind == "multi":
                commands = data.draw(st.lists(st.one_of(_string_write(), _counter_write()),
                                              min_size=2, max_size=4), label="commands")
                self._do(Multi(tuple(commands)))
            else:
                strategy = {
                    "expiry": _expiry_write(self.driver.clock.now_ms),
                    "collections": _collection_write(),
                }.get(kind, _string_write())
                self._do(Write(data.draw(strategy, label="argv")))

        @precondition(lambda self: self.driver.alive and self.driver.writes_since_boot >= 2)
        @rule()
        def crash_now(self) -> None:
            self._do(CrashStep())

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
            self._run(Recover(model=model, choice=choice, downtime_ms=downtime_ms,
                              crash_during_recovery_op=again))
            _event("outcome: " + ("unavailable" if self.driver.unavailable else "consistent"))

        @precondition(lambda self: self.driver.unavailable is not None)
        @rule()
        def start_over(self) -> None:
            # The server refused to start (allowed unless strict): begin a fresh epoch.
            self.driver = Driver(config)

        @invariant()
        def server_is_up_unless_crashed(self) -> None:
            if self.driver.alive:
                assert not self.driver.server.stopped

        def teardown(self) -> None:
            # Judge every run at least once: crash now, keep only what is durable.
            if self.driver.failed or (not self.driver.alive and not self.driver.crashed):
                return
            if self.driver.alive:
                self._run(CrashStep())
            model = models[-1] if len(models) == 1 else PersistenceModel.POWER
            if model not in models:
                model = models[0]
            choice = _least_surviving(self.driver, model)
            self._run(Recover(model=model, choice=choice))

    AofMachine.__name__ = AofMachine.__qualname__ = (
        f"AofMachine_{config.policy}_{config.profile.replace('.', '_').replace('-', '_')}"
    )
    return AofMachine


def _least_surviving(driver: Driver, model: PersistenceModel) -> Any:
    """The first enumerated choice: durable state only, nothing pending kept."""
    return next(iter(driver.disk.crash_choices(model, limits=driver.config.image_limits)))
