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
    Reproduction,
    RunConfig,
    Step,
    Tick,
    Write,
)
from harness.machine._steps import Crash as CrashStep
from harness.machine._surface import KEY_KIND, SURFACE_PAIRS, surface_argv
from harness.oracle import Outcome
from harness.targets import (
    Target,
    TargetFactory,
    accepts_of,
    shapes_of,
    target_checksummed,
    target_files,
)

__all__ = [
    "DAMAGE_SKIPPED",
    "FEATURES",
    "FEATURE_COMMANDS",
    "PROFILES",
    "CheckAofDisagreement",
    "LivenessViolation",
    "check_aof_agrees",
    "make_state_machine",
    "target_accepts",
    "target_commands",
    "unsent_forms",
    "unsupported_features",
]

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much,
                              HealthCheck.data_too_large],
    "stateful_step_count": 40,
}
# Examples per test of the pytest plugin (campaigns set their own per slice). One Hypothesis
# run of N examples finds a bug about as soon as fuzz's slices of 10 do for one configuration
# (measured: the reference with select-not-reemitted-after-rewrite, first failure after
# 19-336 examples in fuzz's slices, 20-357 in one run), so "ci" runs 2000: a bug fuzz finds
# after ~1000 examples is found with odds of ~85% at worst (1 - e^-2), ~99.7% when fuzz
# spread those examples over its 3 default policies and the test runs the failing one.
PROFILES: dict[str, settings] = {
    "dev": settings(max_examples=100, **_COMMON),  # type: ignore[arg-type]
    "ci": settings(max_examples=2000, derandomize=True, **_COMMON),  # type: ignore[arg-type]
    "nightly": settings(
        max_examples=10_000, **{**_COMMON, "stateful_step_count": 80}  # type: ignore[arg-type]
    ),
}
for _name, _profile in PROFILES.items():
    settings.register_profile(f"aofcrash-{_name}", _profile)

# Features whose rules need a target with a rewrite (harness.targets.RewritingTarget).
_NEEDS_REWRITE = frozenset({"rewrite", "kill_child", "rewrite_done"})

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
    "multi_key",
    "big_collections",
    "rewrite_done",
)

_COLLECTION_WRITES = frozenset({b"LPUSH", b"RPUSH", b"LPOP", b"RPOP", b"SADD", b"SREM", b"ZADD",
                                b"ZREM", b"HSET", b"HDEL"})
# The commands each feature's rules send: a feature runs only against a target that implements
# all of them (when the target declares its ``commands``).
FEATURE_COMMANDS: dict[str, frozenset[bytes]] = {
    # Only SET is required: string writes are drawn among the commands the target declares
    # and the shapes it accepts (``accepts_of``), so a SET/GET/DEL store still gets writes.
    "strings": frozenset({b"SET"}),
    "counters": frozenset({b"INCR", b"DECR", b"INCRBY", b"DECRBY"}),
    "expiry": frozenset({b"SET", b"SETEX", b"PSETEX", b"EXPIRE", b"PEXPIRE", b"EXPIREAT",
                         b"PEXPIREAT", b"PERSIST"}),
    "collections": _COLLECTION_WRITES,
    "multi": frozenset({b"MULTI", b"EXEC"}),
    "select": frozenset({b"SELECT"}),
    "flush": frozenset({b"FLUSHDB", b"FLUSHALL"}),
    "rewrite": frozenset({b"BGREWRITEAOF"}),
    "kill_child": frozenset({b"BGREWRITEAOF"}),
    "rewrite_done": frozenset({b"BGREWRITEAOF"}),
    "multi_key": _COLLECTION_WRITES | {b"DEL"},
    "big_collections": frozenset({b"RPUSH", b"SADD", b"ZADD", b"HSET"}),
}


def target_commands(target: object) -> frozenset[bytes] | None:
    """The upper-case command names `target` declares (its ``commands``), None: all."""
    declared = getattr(target, "commands", None)
    if declared is None:
        return None
    return frozenset(c.encode() if isinstance(c, str) else bytes(c) for c in declared)


def _probe(config: RunConfig, factory: TargetFactory | None) -> Target:
    """One target built on a scratch disk (not started), to read its capabilities; raises
    TargetError when the spec or the factory is unusable."""
    from faults import Clock, SimDisk
    from harness.targets import TargetEnv, TargetError, check_target

    env = TargetEnv(fs=SimDisk(), clock=Clock(), config=config.target_config())
    make = factory or config.target_factory()
    spec = config.target or str(getattr(make, "__qualname__", "reference"))
    try:
        built = make(env)
    except Exception as exc:  # the user's factory: say what it did, in one line
        raise TargetError(f"target {spec!r}: the factory raised {type(exc).__name__}: "
                          f"{exc}") from None
    return check_target(built, spec)


def unsupported_features(
    config: RunConfig, *, factory: TargetFactory | None = None,
    features: tuple[str, ...] = FEATURES,
) -> dict[str, str]:
    """The features (of `features`) whose rules the target cannot run, each with the reason:
    no rewrite capability, or commands it does not declare; and ``damage`` when
    ``config.damage`` asks for it and the target does not declare itself checksummed.
    TargetError if the target's spec or factory is unusable."""
    probe = _probe(config, factory)
    out = _gaps(probe, features)
    if config.damage and not target_checksummed(probe):
        out["damage"] = DAMAGE_SKIPPED
    return out


#: Why damaged recoveries do not run against a target (contract rule 5).
DAMAGE_SKIPPED = ("not checksummed: damaged synced bytes are judged only for a store that "
                  "declares checksums (contract rule 5)")


def target_accepts(config: RunConfig, *, factory: TargetFactory | None = None,
                   ) -> Callable[[tuple[bytes, ...]], bool] | None:
    """What the target accepts (``harness.targets.accepts_of``), None when it declares
    nothing (everything is sent). TargetError if the target's spec or factory is unusable."""
    probe = _probe(config, factory)
    return None if _declares_nothing(probe) else accepts_of(probe)


def _gaps(target: Target, features: tuple[str, ...]) -> dict[str, str]:
    from harness.targets import as_rewriting

    declared = shapes_of(target).commands
    commands = None if declared is None else frozenset(c.encode() for c in declared)
    accept = accepts_of(target)
    rewriting = as_rewriting(target) is not None
    out: dict[str, str] = {}
    for f in features:
        if f in _NEEDS_REWRITE and not rewriting:
            out[f] = "no rewrite: not a RewritingTarget"
            continue
        missing = sorted(FEATURE_COMMANDS.get(f, frozenset()) - (commands or frozenset()))
        if commands is not None and missing:
            out[f] = "does not implement " + " ".join(m.decode() for m in missing)
            continue
        probes = _FEATURE_PROBES.get(f)
        if probes is not None and not (
                all(accept(p) for p in probes) if f in _NEEDS_ALL_PROBES
                else any(accept(p) for p in probes)):
            out[f] = "accepts none of its command shapes"
    unsent = unsent_forms(accept, tuple(f for f in features if f not in out))
    if unsent:
        out["shapes"] = "not declared, never sent: " + "; ".join(
            f"{name} {', '.join(forms)}" for name, forms in unsent.items())
    return out


# Command lines each feature's rules send, one per kind: a feature runs only if the target
# accepts one of them (all of them for the features in _NEEDS_ALL_PROBES).
_FEATURE_PROBES: dict[str, tuple[tuple[bytes, ...], ...]] = {
    "strings": ((b"SET", b"k0", b"a"), (b"APPEND", b"k0", b"a"), (b"DEL", b"k0")),
    "counters": ((b"INCR", b"k0"), (b"DECR", b"k0"), (b"INCRBY", b"k0", b"2"),
                 (b"DECRBY", b"k0", b"2")),
    "expiry": ((b"SET", b"k0", b"a", b"PX", b"10"), (b"SET", b"k0", b"a", b"EX", b"1"),
               (b"SETEX", b"k0", b"1", b"a"), (b"PSETEX", b"k0", b"10", b"a"),
               (b"EXPIRE", b"k0", b"1"), (b"PEXPIRE", b"k0", b"10"),
               (b"EXPIREAT", b"k0", b"1"), (b"PEXPIREAT", b"k0", b"10"), (b"PERSIST", b"k0")),
    "collections": ((b"LPUSH", b"l0", b"m0"), (b"RPUSH", b"l0", b"m0"), (b"LPOP", b"l0"),
                    (b"SADD", b"s0", b"m0"), (b"ZADD", b"z0", b"1", b"m0"),
                    (b"HSET", b"h0", b"m0", b"a")),
    "multi": ((b"MULTI",), (b"EXEC",)),
    "select": ((b"SELECT", b"1"),),
    "flush": ((b"FLUSHDB",), (b"FLUSHALL",)),
    "multi_key": ((b"DEL", b"k0", b"k1"), (b"SADD", b"s0", b"m0", b"m1"),
                  (b"SREM", b"s0", b"m0", b"m1"), (b"HSET", b"h0", b"m0", b"a", b"m1", b"a"),
                  (b"HDEL", b"h0", b"m0", b"m1"), (b"ZADD", b"z0", b"1", b"m0", b"2", b"m1"),
                  (b"ZREM", b"z0", b"m0", b"m1"), (b"RPUSH", b"l0", b"m0", b"m1"),
                  (b"LPUSH", b"l0", b"m0", b"m1")),
    "big_collections": ((b"RPUSH", b"l0", b"m0", b"m1"), (b"SADD", b"s0", b"m0", b"m1"),
                        (b"ZADD", b"z0", b"1", b"m0", b"2", b"m1"),
                        (b"HSET", b"h0", b"m0", b"a", b"m1", b"a")),
}
_NEEDS_ALL_PROBES = frozenset({"multi"})


def _declares_nothing(target: object) -> bool:
    """No ``commands``, ``shapes`` or ``accepts``: the target is sent everything."""
    return all(getattr(target, name, None) is None for name in ("commands", "shapes", "accepts"))


def unsent_forms(accept: Callable[[tuple[bytes, ...]], bool],
                 features: tuple[str, ...] = FEATURES) -> dict[str, list[str]]:
    """The forms of the reference's surface table (``reference._surface``) that `accept`
    refuses, per command it accepts in some other form and whose feature is among
    `features`: what the generators leave out for that target (reported once)."""
    out: dict[str, list[str]] = {}
    by_name: dict[str, list[tuple[str, bool]]] = {}
    for name, form in SURFACE_PAIRS:
        if _SURFACE_FEATURE[name] not in features:
            continue
        probe = surface_argv(name, form, key=b"k0", other=b"k1", value=b"a",
                             members=(b"m0", b"m1"), amount=5, now_ms=0)
        by_name.setdefault(name, []).append((form, accept(probe)))
    for name, forms in by_name.items():
        refused = [form for form, ok in forms if not ok]
        if refused and len(refused) < len(forms):
            out[name] = refused
    return out


# Which liveness rule a LivenessViolation's reproduction ends with (``expected["liveness"]``),
# so that replay judges the same rule at its end.
LIVENESS_WRITES = "writes-resume"
LIVENESS_REWRITE = "rewrite-takes-effect"


class LivenessViolation(ModelDivergence):
    """A liveness rule of the state machine broke (no data rule sees these): a rewrite that
    never ends or, with no fault armed, never replaces the AOF; writes still refused long after
    every fault was cleared. A ModelDivergence, so campaigns report it as a finding; its
    reproduction replays the steps, but replay judges only the data rules."""


class CheckAofDisagreement(ModelDivergence):
    """The reference's check-aof and its loader judge a crash image differently (whole,
    truncated at another offset, or refused by one only). Checked before each recovery of the
    safe reference, so the tool users run on such files is exercised by every campaign."""


def check_aof_agrees(data: bytes, *, now_ms: int) -> str | None:
    """None if ``reference.check_aof`` and the safe loader agree on the AOF `data`: both take
    it whole, or both cut it at the same offset (a torn tail, an unfinished MULTI, an all-zero
    tail) and count the same commands before it, or the loader refuses it and check-aof calls
    it broken; else what differs."""
    from reference import AofLoader, LoadError, check_aof

    loader = AofLoader(now_ms=now_ms, rollback_multi=True)
    try:
        loader.feed(data)
        valid: int | None = loader.finish().valid_offset_bytes
    except LoadError:
        valid = None
    check = check_aof(data)
    if valid is None:
        return None if not check.valid else "the loader refuses the file, check-aof calls it valid"
    if valid == len(data):
        if not check.valid:
            return f"the loader takes the whole file ({len(data)} bytes), check-aof: {check.reason}"
        if loader.commands_read != check.commands:
            return (f"the file holds {loader.commands_read} commands, check-aof counts "
                    f"{check.commands}")
        return None
    if check.valid:
        return f"the loader cuts the file at {valid} of {len(data)} bytes, check-aof: valid"
    if check.last_valid_offset_bytes != valid:
        return (f"the loader cuts the file at {valid} of {len(data)} bytes, check-aof at "
                f"{check.last_valid_offset_bytes} ({check.reason})")
    # The same prefix: the same number of commands in it (check-aof prints it).
    prefix = AofLoader(now_ms=now_ms, rollback_multi=True)
    prefix.feed(data[:valid])
    prefix.finish()
    if prefix.commands_read != check.commands:
        return (f"the valid prefix ({valid} bytes) holds {prefix.commands_read} commands, "
                f"check-aof counts {check.commands}")
    return None


# Which feature's rules a command of the surface table belongs to.
_SURFACE_FEATURE: dict[str, str] = {
    **{n: "strings" for n in ("SET", "APPEND", "DEL")},
    **{n: "counters" for n in ("INCR", "DECR", "INCRBY", "DECRBY")},
    **{n: "expiry" for n in ("SETEX", "PSETEX", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT",
                             "PERSIST")},
    **{n: "collections" for n in ("LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM", "ZADD",
                                  "ZREM", "HSET", "HMSET", "HDEL")},
    **{n: "flush" for n in ("FLUSHDB", "FLUSHALL")},
}

KEYS = [b"k0", b"k1", b"k2", b"k3"]
LIST_KEYS = [b"l0", b"l1"]
SET_KEYS = [b"s0", b"s1"]
ZSET_KEYS = [b"z0", b"z1"]
HASH_KEYS = [b"h0", b"h1"]
ALL_KEYS = KEYS + LIST_KEYS + SET_KEYS + ZSET_KEYS + HASH_KEYS

keys = st.sampled_from(KEYS)
values = st.sampled_from([b"a", b"bb", b"ccc", b"v" * 40, b"x" * 300, b"\x00\r\n", b"7", b"-3"])
MEMBERS = [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]
members = st.sampled_from(MEMBERS[:5])
scores = st.sampled_from([b"0", b"1.5", b"-2", b"1e3", b"3"])
small_ms = st.integers(min_value=1, max_value=5000)
# Crash offsets from the end of a stall that sit on a cron period's edge (hz 10), where a
# server's postponed write or owed fsync happens or has not happened yet.
_NEAR_ZERO_MS = (-101, -100, -99, -1, 0, 1, 99, 100, 101)
# Anywhere from two seconds before the end of a stall (a 2 s postponement ending inside it)
# to one second after, evenly: a plain integer strategy favours values near zero, which the
# edges above already cover.
_OFFSETS_MS = st.builds(lambda coarse, fine: coarse + fine,
                        st.sampled_from(range(-2000, 1000, 100)), st.integers(0, 99))

_WRITE_OPS = (FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC, FaultOp.RENAME, FaultOp.FSYNC_DIR)


Accept = Callable[[tuple[bytes, ...]], bool]
_Argv = st.SearchStrategy[tuple[bytes, ...]]


def _fit(accept: Accept | None,
         alternatives: list[tuple[tuple[bytes, ...], _Argv]]) -> _Argv:
    """One of the `alternatives` (a probe command line of each, its strategy) that `accept`
    takes, filtered by it (None: all of them; none accepted: nothing)."""
    if accept is None:
        return st.one_of(*(strategy for _, strategy in alternatives))
    kept = [strategy for probe, strategy in alternatives if accept(probe)]
    return st.one_of(*kept).filter(accept) if kept else st.nothing()


def _string_write(accept: Accept | None = None) -> _Argv:
    return _fit(accept, [
        ((b"SET", b"k0", b"a"), st.tuples(st.just(b"SET"), keys, values)),
        ((b"SET", b"k0", b"a", b"NX"),
         st.tuples(st.just(b"SET"), keys, values, st.sampled_from([b"NX", b"XX"]))),
        ((b"APPEND", b"k0", b"a"), st.tuples(st.just(b"APPEND"), keys, values)),
        ((b"DEL", b"k0"), st.tuples(st.just(b"DEL"), st.sampled_from(ALL_KEYS))),
        ((b"DEL", b"k0", b"k1"), st.lists(st.sampled_from(ALL_KEYS), min_size=2, max_size=4).map(
            lambda ks: (b"DEL", *ks)
        )),
        # Wrong arity on purpose: refused (in a MULTI: the whole EXEC), no effect anywhere.
        ((b"SET", b"k0"), st.tuples(st.sampled_from([b"SET", b"APPEND"]), keys)),
    ])


def _counter_write(accept: Accept | None = None) -> _Argv:
    return _fit(accept, [
        ((b"INCR", b"k0"), st.tuples(st.sampled_from([b"INCR", b"DECR"]), keys)),
        ((b"INCRBY", b"k0", b"2"), st.tuples(
            st.sampled_from([b"INCRBY", b"DECRBY"]),
            keys,
            st.integers(-1000, 1000).map(lambda n: str(n).encode()),
        )),
    ])


def _expiry_write(now_ms: int, accept: Accept | None = None) -> _Argv:
    ms = small_ms.map(lambda n: str(n).encode())
    secs = st.integers(1, 5).map(lambda n: str(n).encode())
    return _fit(accept, [
        ((b"SET", b"k0", b"a", b"PX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.just(b"PX"), ms)),
        # An option before the expiry: the feed must still find it.
        ((b"SET", b"k0", b"a", b"NX", b"PX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.sampled_from([b"NX", b"XX"]),
                   st.just(b"PX"), ms)),
        ((b"SET", b"k0", b"a", b"EX", b"5"),
         st.tuples(st.just(b"SET"), keys, values, st.just(b"EX"), secs)),
        ((b"SETEX", b"k0", b"5", b"a"), st.tuples(st.just(b"SETEX"), keys, secs, values)),
        ((b"PSETEX", b"k0", b"5", b"a"), st.tuples(st.just(b"PSETEX"), keys, ms, values)),
        ((b"EXPIRE", b"k0", b"5"),
         st.tuples(st.just(b"EXPIRE"), st.sampled_from(ALL_KEYS), secs)),
        ((b"PEXPIRE", b"k0", b"5"),
         st.tuples(st.just(b"PEXPIRE"), st.sampled_from(ALL_KEYS), ms)),
        ((b"PEXPIREAT", b"k0", str(now_ms + 5).encode()), st.tuples(
            st.just(b"PEXPIREAT"),
            st.sampled_from(ALL_KEYS),
            small_ms.map(lambda n: str(now_ms + n).encode()),
        )),
        ((b"EXPIREAT", b"k0", str(now_ms // 1000 + 5).encode()), st.tuples(
            st.just(b"EXPIREAT"),
            st.sampled_from(ALL_KEYS),
            st.integers(1, 5).map(lambda n: str(now_ms // 1000 + n).encode()),
        )),
        ((b"PERSIST", b"k0"), st.tuples(st.just(b"PERSIST"), st.sampled_from(ALL_KEYS))),
    ])


def _collection_write(accept: Accept | None = None) -> _Argv:
    many = st.lists(members, min_size=1, max_size=4).map(tuple)
    pairs = st.lists(st.tuples(scores, members), min_size=1, max_size=3).map(
        lambda ps: tuple(x for p in ps for x in p)
    )
    fields = st.lists(st.tuples(members, values), min_size=1, max_size=3).map(
        lambda ps: tuple(x for p in ps for x in p)
    )
    return _fit(accept, [
        ((b"LPUSH", b"l0", b"m0"),
         st.tuples(st.sampled_from([b"LPUSH", b"RPUSH"]), st.sampled_from(LIST_KEYS),
                   many).map(lambda t: (t[0], t[1], *t[2]))),
        ((b"LPOP", b"l0"),
         st.tuples(st.sampled_from([b"LPOP", b"RPOP"]), st.sampled_from(LIST_KEYS))),
        ((b"SADD", b"s0", b"m0"),
         st.tuples(st.sampled_from([b"SADD", b"SREM"]), st.sampled_from(SET_KEYS),
                   many).map(lambda t: (t[0], t[1], *t[2]))),
        ((b"ZADD", b"z0", b"1", b"m0"),
         st.tuples(st.just(b"ZADD"), st.sampled_from(ZSET_KEYS), pairs).map(
             lambda t: (t[0], t[1], *t[2]))),
        ((b"ZREM", b"z0", b"m0"),
         st.tuples(st.just(b"ZREM"), st.sampled_from(ZSET_KEYS), many).map(
             lambda t: (t[0], t[1], *t[2]))),
        ((b"HSET", b"h0", b"m0", b"a"),
         st.tuples(st.just(b"HSET"), st.sampled_from(HASH_KEYS), fields).map(
             lambda t: (t[0], t[1], *t[2]))),
        ((b"HDEL", b"h0", b"m0"),
         st.tuples(st.just(b"HDEL"), st.sampled_from(HASH_KEYS), many).map(
             lambda t: (t[0], t[1], *t[2]))),
        # Wrong types on purpose: the error must have no effect anywhere.
        ((b"LPUSH", b"k0", b"m0"), st.tuples(st.just(b"LPUSH"), keys, members)),
    ])


def _read(commands: frozenset[bytes] | None = None,
          accept: Accept | None = None) -> _Argv:
    """Reads checked against the model (only those of `commands` and `accept` when given;
    none: nothing)."""
    every = {
        b"GET": st.tuples(st.just(b"GET"), keys),
        b"EXISTS": st.tuples(st.just(b"EXISTS"), st.sampled_from(ALL_KEYS)),
        b"PTTL": st.tuples(st.just(b"PTTL"), st.sampled_from(ALL_KEYS)),
        b"LRANGE": st.tuples(st.just(b"LRANGE"), st.sampled_from(LIST_KEYS), st.just(b"0"),
                             st.just(b"-1")),
        b"SMEMBERS": st.tuples(st.just(b"SMEMBERS"), st.sampled_from(SET_KEYS)),
        b"ZRANGE": st.tuples(
            st.just(b"ZRANGE"), st.sampled_from(ZSET_KEYS), st.just(b"0"), st.just(b"-1"),
            st.just(b"WITHSCORES"),
        ),
        b"HGETALL": st.tuples(st.just(b"HGETALL"), st.sampled_from(HASH_KEYS)),
    }
    chosen = [s for name, s in every.items() if commands is None or name in commands]
    if accept is None:
        return st.one_of(*chosen)
    probe = {b"LRANGE": (b"0", b"-1"), b"ZRANGE": (b"0", b"-1", b"WITHSCORES")}
    return _fit(accept, [((name, b"k0", *probe.get(name, ())), s) for name, s in every.items()
                         if commands is None or name in commands])


# -- boundary programs: several commands that set up a case, then the command that hits it ------

Program = tuple[tuple[bytes, ...], ...]


def _flat(pairs: list[tuple[bytes, bytes]]) -> tuple[bytes, ...]:
    return tuple(x for pair in pairs for x in pair)


def _create(key: bytes, value: bytes) -> tuple[bytes, ...]:
    """A write that makes `key` exist with the type its pool gives it."""
    kind = key[:1]
    if kind == b"l":
        return (b"RPUSH", key, value, b"m0")
    if kind == b"s":
        return (b"SADD", key, b"m0", b"m1")
    if kind == b"z":
        return (b"ZADD", key, b"1", b"m0", b"2", b"m1")
    if kind == b"h":
        return (b"HSET", key, b"m0", value, b"m1", b"v")
    return (b"SET", key, value)


@st.composite
def _del_program(draw: st.DrawFn) -> Program:
    """DEL of 2-4 keys that all exist (each is created first), sometimes one missing key more."""
    chosen = draw(st.lists(st.sampled_from(ALL_KEYS), min_size=2, max_size=4, unique=True),
                  label="keys")
    created = tuple(_create(k, draw(values, label="value")) for k in chosen)
    missing = draw(st.lists(st.sampled_from(ALL_KEYS), max_size=1), label="missing")
    return (*created, (b"DEL", *chosen, *missing))


@st.composite
def _members_program(draw: st.DrawFn) -> Program:
    """A collection is filled, then one variadic command changes several of its members: some
    already there (overwritten, re-scored, removed), some new."""
    kind = draw(st.sampled_from([b"SADD", b"SREM", b"HSET", b"HDEL", b"ZADD", b"ZREM",
                                 b"LPUSH", b"RPUSH"]), label="command")
    before = draw(st.lists(st.sampled_from(MEMBERS), min_size=2, max_size=5, unique=True),
                  label="existing")
    kept = draw(st.lists(st.sampled_from(before), min_size=1, max_size=len(before), unique=True),
                label="changed")
    new = draw(st.lists(st.sampled_from(MEMBERS), max_size=2, unique=True), label="new")
    after = kept + [m for m in new if m not in kept]
    if len(after) < 2:
        after.append(next(m for m in MEMBERS if m not in after))
    if kind in (b"SADD", b"SREM"):
        key = draw(st.sampled_from(SET_KEYS), label="key")
        return ((b"SADD", key, *before), (kind, key, *after))
    if kind in (b"HSET", b"HDEL"):
        key = draw(st.sampled_from(HASH_KEYS), label="key")
        fill = _flat([(m, b"old") for m in before])
        if kind == b"HDEL":
            return ((b"HSET", key, *fill), (b"HDEL", key, *after))
        pairs = [(m, draw(values, label="value")) for m in after]
        return ((b"HSET", key, *fill), (b"HSET", key, *_flat(pairs)))
    if kind in (b"ZADD", b"ZREM"):
        key = draw(st.sampled_from(ZSET_KEYS), label="key")
        fill = _flat([(b"%d" % i, m) for i, m in enumerate(before)])
        if kind == b"ZREM":
            return ((b"ZADD", key, *fill), (b"ZREM", key, *after))
        options = draw(st.sampled_from([(), (), (b"CH",), (b"XX",), (b"NX",), (b"GT", b"CH"),
                                        (b"LT",)]), label="options")
        pairs = [(draw(scores, label="score"), m) for m in after]
        return ((b"ZADD", key, *fill), (b"ZADD", key, *options, *_flat(pairs)))
    key = draw(st.sampled_from(LIST_KEYS), label="key")
    return ((b"RPUSH", key, *before), (kind, key, *after))


def _multi_key_program(accept: Accept | None = None) -> st.SearchStrategy[Program]:
    """Commands that really change several existing keys, fields or members at once (the
    last command of the program; the ones before it create what it changes)."""
    if accept is None:
        return st.one_of(_del_program(), _members_program())
    parts = [_members_program()]
    if accept((b"DEL", b"k0", b"k1")):
        parts.insert(0, _del_program())
    return _programs(accept, st.one_of(*parts))


def _programs(accept: Accept | None,
              strategy: st.SearchStrategy[Program]) -> st.SearchStrategy[Program]:
    """`strategy` with the programs `accept` takes whole (None: all of them)."""
    if accept is None:
        return strategy
    return strategy.filter(lambda program: all(accept(argv) for argv in program))


@st.composite
def _big_collection_program(draw: st.DrawFn) -> Program:
    """A list, set, sorted set or hash pushed past the rewrite's 64-item batch (64 to 200 new
    items, the batch edges often) in one to three commands."""
    kind = draw(st.sampled_from([b"RPUSH", b"SADD", b"ZADD", b"HSET"]), label="command")
    size = draw(st.one_of(st.sampled_from([64, 65, 127, 128, 129]), st.integers(65, 200)),
                label="items")
    parts = draw(st.integers(1, 3), label="commands")
    pool = {b"RPUSH": LIST_KEYS, b"SADD": SET_KEYS, b"ZADD": ZSET_KEYS, b"HSET": HASH_KEYS}
    key = draw(st.sampled_from(pool[kind]), label="key")
    items: list[tuple[bytes, ...]] = []
    for i in range(size):
        if kind == b"ZADD":
            items.append((b"%d" % i, b"b%d" % i))
        elif kind == b"HSET":
            items.append((b"b%d" % i, b"v%d" % i))
        else:
            items.append((b"b%d" % i,))
    per = -(-size // parts)
    return tuple((kind, key, *(x for item in items[j:j + per] for x in item))
                 for j in range(0, size, per))


def make_state_machine(
    config: RunConfig,
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

        def _do(self, step: Step) -> None:
            self._run(step)
            if self.driver.crashed:
                _event("crash: " + ("server exited" if self.driver.target.stopped else "fault"))

        def _run(self, step: Step) -> None:
            try:
                self.driver.run(step)
            except (ContractViolation, ModelDivergence) as exc:
                if on_finding is not None:
                    on_finding(exc)
                raise

        def _raise_finding(self, kind: type[ModelDivergence], message: str, outcome: str,
                           reproduction: Reproduction | None = None) -> NoReturn:
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
            self._do(Write(argv, iterate=iterate))

        @precondition(lambda self: self._on("counters"))
        @rule(argv=counters)
        def write_counter(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

        @precondition(lambda self: self._on("expiry"))
        @rule(data=st.data())
        def write_expiry(self, data: st.DataObject) -> None:
            argv = data.draw(_expiry_write(self.driver.clock.now_ms, accept), label="argv")
            self._do(Write(argv))

        @precondition(lambda self: self._on("collections"))
        @rule(argv=collections)
        def write_collection(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

        @precondition(lambda self: self._on("multi") and bool(tx_parts))
        @rule(commands=st.lists(st.one_of(*tx_parts), min_size=1, max_size=4))
        def transaction(self, commands: list[tuple[bytes, ...]]) -> None:
            self._do(Multi(tuple(commands)))

        @precondition(lambda self: self._on("select"))
        @rule(db=st.integers(0, 2), client=st.integers(0, 1))
        def select(self, db: int, client: int) -> None:
            self._do(Write((b"SELECT", str(db).encode()), client=client))

        @precondition(lambda self: self._on("select") and not strings.is_empty)
        @rule(argv=strings)
        def write_as_second_client(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv, client=1))

        @precondition(lambda self: self._on("flush"))
        @rule(argv=st.sampled_from(flushes or [(b"FLUSHDB",)]))
        def flush(self, argv: tuple[bytes, ...]) -> None:
            self._do(Write(argv))

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
            self._do(Write(argv, iterate=not (pipelined and "pipeline" in self.enabled)))

        def _program(self, program: Program, *, pipelined: bool = False) -> bool:
            """Run the commands in order (with ``pipelined`` all in one event-loop iteration);
            False if the server died on the way."""
            for i, argv in enumerate(program):
                last = i == len(program) - 1
                self._do(Write(argv, iterate=last or not pipelined))
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
                self._do(BgRewrite())
            if self.driver.alive and self.driver.rewriting:
                self._do(ChildStep(1_000_000))
            if self.driver.alive:
                self._do(Tick(100))
            return self.driver.alive

        # -- reads and time ---------------------------------------------------------------

        @precondition(lambda self: self.driver.alive and not reads.is_empty)
        @rule(argv=reads)
        def read(self, argv: tuple[bytes, ...]) -> None:
            self._do(Read(argv))

        @precondition(lambda self: self.driver.alive)
        @rule(delta_ms=st.one_of(st.integers(1, 150), st.integers(900, 2600)))
        def tick(self, delta_ms: int) -> None:
            self._do(Tick(delta_ms))

        # -- rewrite ----------------------------------------------------------------------

        @precondition(lambda self: self._on("rewrite"))
        @rule()
        def bgrewriteaof(self) -> None:
            # While a rewrite runs, BGREWRITEAOF is refused (and must change nothing).
            _event("rewrite: " + ("refused, one is running" if self.driver.rewriting
                                  else "started"))
            self._do(BgRewrite())

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
                self._do(ClearFaults())
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
            self._do(ChildStep(count))

        @precondition(
            lambda self: self._on("kill_child") and self.driver.rewriting
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
                self._do(BgRewrite())
            if diff is not None and self.driver.alive:
                self._do(Write(diff))
            if not (self.driver.alive and self.driver.rewriting):
                return
            self._do(ChildStep(1_000_000))
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
            step = ArmCrash if kind == "crash" else InjectFaults
            self._do(step(FaultPlan((fault,))))
            if self.driver.alive:
                self._do(Tick(100))
            if after is not None and self.driver.alive:
                self._do(Write(after))

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

        @precondition(lambda self: self._on("io_error"))
        @rule(op=st.sampled_from([FaultOp.FDATASYNC, FaultOp.FSYNC]), nth=st.integers(1, 2))
        def fsync_fails_while_the_aof_cannot_grow(self, op: FaultOp, nth: int) -> None:
            # A failed fsync while the AOF cannot grow (ENOSPC on its writes only): the write
            # error and the fsync error are pending together, and the repair the fsync error
            # starts (a new file from memory) succeeds while the write error stands. A write,
            # the once-a-second fsync that fails; then, with the faults gone, the server must
            # take writes again (``writes_resume``).
            _event("fault: IOFault on fsync while the AOF cannot grow")
            self._do(InjectFaults(FaultPlan((IOFault(op=op, nth=nth),
                                             NoSpace(nth=1, path_glob="appendonly.aof")))))
            for _ in range(2):
                if self._alive() and (accept is None or accept((b"SET", b"k1", b"disk-full"))):
                    self._do(Write((b"SET", b"k1", b"disk-full")))
                if self._alive():
                    self._do(Tick(1100))
            if self._alive() and self.driver.config.target is None:
                self._writes_resume()

        @precondition(lambda self: self._on("slow_sync"))
        @rule(delay_ms=st.sampled_from([200, 1500, 3000]), nth=st.integers(1, 3))
        def inject_slow_sync(self, delay_ms: int, nth: int) -> None:
            _event("fault: SlowSync")
            self._do(InjectFaults(FaultPlan((SlowSync(delay_ms=delay_ms, nth=nth),))))

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
            self._do(InjectFaults(FaultPlan((SlowSync(delay_ms=delay_ms, nth=1),))))
            mark = len(self.driver.fs.fired)
            for _ in range(3):  # under everysec the fsync is issued at the next second
                if not self._alive() or self._stalled_since(mark):
                    break
                self._do(Write(data.draw(string_writes, label="write before the stall")))
                if self._alive() and not self._stalled_since(mark):
                    self._do(Tick(data.draw(st.sampled_from([100, 500, 1000]), label="tick")))
            if not self._alive():
                return
            if not self._stalled_since(mark):  # no fsync (policy no): nothing to aim at
                self._do(ClearFaults())
                return
            _event(f"timing: a {delay_ms} ms fsync stall")
            for gap_ms in data.draw(st.lists(st.integers(0, 1200), min_size=1, max_size=3),
                                    label="gaps of the writes during the stall"):
                if gap_ms:
                    self._do(Tick(gap_ms))
                if not self._alive():
                    return
                self._do(Write(data.draw(string_writes, label="write during the stall")))
                if not self._alive():
                    return
            left_ms = _stall_end_ms(self.driver.fs.fired) + offset_ms - self.driver.clock.now_ms
            if left_ms > 0:
                self._do(Tick(left_ms))
            if not self._alive():
                return
            when = data.draw(st.sampled_from(["now", "at an operation"]), label="crash")
            _event(f"timing: crash {'before' if offset_ms < 0 else 'after'} a stall ends, "
                   f"{when}")
            if when == "now":
                self._do(CrashStep())
            else:
                self._do(ArmCrash(FaultPlan((Crash(nth=data.draw(st.integers(1, 3), label="nth"),
                                                   op=FaultOp.ANY),))))
                self._do(Tick(100))  # the cron's operations (a postponed write, an fsync)
                for argv in data.draw(st.lists(string_writes, max_size=2),
                                      label="writes after"):
                    if not self._alive():
                        break
                    self._do(Write(argv))
                if self._alive():
                    self._do(CrashStep())
            # Under the process model a stall widens the window by one cron period only, so
            # that is where a late write shows; the power models widen it by the whole stall.
            model = data.draw(st.sampled_from(
                [PersistenceModel.PROCESS] * (PersistenceModel.PROCESS in models) + list(models)),
                label="model")
            choice = data.draw(self.driver.disk.crash_choice_strategy(
                model, limits=config.image_limits), label="choice")
            self._check_aof_agrees(model, choice, 0)
            self._run(Recover(model=model, choice=choice))

        def _stalled_since(self, mark: int) -> bool:
            return any(isinstance(f.fault, SlowSync) for f in self.driver.fs.fired[mark:])

        @precondition(
            lambda self: self.driver.alive
            and bool(self.enabled & {"short_write", "no_space", "io_error", "slow_sync"})
        )
        @rule()
        def clear_faults(self) -> None:
            self._do(ClearFaults())

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
            self._do(ClearFaults())
            for refused, wait_ms in enumerate((10_000, 1_100)):
                if not self._alive():
                    return
                self._do(Tick(wait_ms))
                if not self._alive():
                    return
                self._do(Write((b"SET", b"k0", b"after-faults")))
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
            self._do(ArmCrash(FaultPlan((Crash(nth=nth, op=op, torn_bytes=torn_bytes),))))

        @precondition(lambda self: self._on("crash_mid_op") and not writes.is_empty)
        @rule(nth=st.sampled_from([1, 1, 2, 3]), argv=writes)
        def crash_after_an_acknowledgement(self, nth: int, argv: tuple[bytes, ...]) -> None:
            # The crash points right after a reply release (ALICE: an acknowledgement is a
            # point in the trace): the nth filesystem operation after the next release dies.
            # A store that releases before its fsync, in the same iteration, loses the write.
            _event("fault: Crash after a reply release")
            self._do(ArmCrash(FaultPlan((Crash(nth=nth, op=FaultOp.ANY),)), after_release=True))
            if self.driver.alive:
                self._do(Write(argv))

        @precondition(lambda self: self._on("crash_mid_op") and not writes.is_empty)
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
                commands = data.draw(st.lists(writes,
                                              min_size=2, max_size=4), label="commands")
                self._do(Multi(tuple(commands)))
            else:
                strategy = {
                    "expiry": _expiry_write(self.driver.clock.now_ms, accept),
                    "collections": collections,
                }.get(kind, string_writes)
                self._do(Write(data.draw(strategy, label="argv")))

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
            self._do(ArmCrash(FaultPlan((Crash(nth=1, op=FaultOp.WRITE,
                                               torn_bytes=torn_bytes),))))
            self._do(Write(data.draw(string_writes, label="torn write")))
            if not self.driver.crashed:
                self._do(ClearFaults())
                return
            model = PersistenceModel.PROCESS if PersistenceModel.PROCESS in models else models[0]
            choice = data.draw(self.driver.disk.crash_choice_strategy(
                model, limits=config.image_limits), label="choice")
            self._check_aof_agrees(model, choice, 0)
            self._run(Recover(model=model, choice=choice))
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
            self._do(InjectFaults(FaultPlan((fault,))))
            for argv in data.draw(st.lists(string_writes, min_size=1, max_size=3),
                                  label="writes"):
                if not self._alive():
                    return
                self._do(Write(argv))
                if self._alive() and data.draw(st.booleans(), label="tick"):
                    self._do(Tick(1100))
            if self._alive() and data.draw(st.booleans(), label="crash again"):
                self._do(CrashStep())

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
            self._check_aof_agrees(model, choice, downtime_ms)
            self._run(Recover(model=model, choice=choice, downtime_ms=downtime_ms,
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
            self._run(Recover(model=model, choice=choice, damage=damage))
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
                recover = Recover(model=model, choice=choice, downtime_ms=downtime_ms)
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
