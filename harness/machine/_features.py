"""Swarm features and what a target can run: the feature list, the commands each feature's
rules send, the probes of the shapes a target accepts, and the settings profiles.

``unsupported_features`` says which features a target cannot run and why; reports say it once.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, settings

from harness.machine._steps import RunConfig
from harness.machine._surface import SURFACE_PAIRS, surface_argv
from harness.targets import (
    Target,
    TargetFactory,
    accepts_of,
    shapes_of,
    target_checksummed,
)

__all__ = [
    "DAMAGE_SKIPPED",
    "FEATURES",
    "FEATURE_COMMANDS",
    "PROFILES",
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


def declares_checksums(config: RunConfig) -> bool:
    """Whether `config`'s target declares itself checksummed (False also when the target cannot
    be built: ``unsupported_features`` says why in one line)."""
    from harness.targets import TargetError

    try:
        return target_checksummed(_probe(config, None))
    except TargetError:
        return False


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
