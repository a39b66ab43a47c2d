"""What a target refuses, learned before a run by asking a scratch copy of it.

A write whose reply a crash lost is judged as possibly refused (no effect) where the target
could refuse it (``harness.machine._driver.could_refuse``): a shape it does not declare, or a
shape (name, argument count) it was seen refusing where the model predicts no error. Seen only
during the run, the *first* refusal of an undeclared form is unprotected: a crash that loses
its reply makes the run take the write for one that ran, a false alarm on a correct store (a
stranger's store that refused DEL of several keys gave one). So before a run, every form of the
reference's command surface the target accepts is submitted once, on fresh keys, to a scratch
target on an empty simulated disk; the (command, form) pairs it answers with an error the model
does not predict are its refusals from the start: a lost reply of a command line with such a
form (``reference._surface.command_forms``) may have been refused.

The probe is deterministic (virtual clock, empty disk, a fixed order) and cached per target
spec and configuration; it never fails a run: a target that raises or stops during the probe
keeps what was learned up to then.
"""

from __future__ import annotations

from typing import Any

from harness.machine._steps import RunConfig
from harness.machine._surface import SURFACE_PAIRS, surface_argv
from harness.oracle import Model, ReplyError
from harness.targets import TargetFactory

__all__ = ["probe_refusals"]

Form = tuple[str, str]  # a (command, form) pair of reference._surface.WRITE_SURFACE

_ITERATIONS_PER_FORM = 3  # a reply not released after this many event-loop turns is skipped
_cache: dict[tuple[Any, ...], frozenset[Form]] = {}


def probe_refusals(config: RunConfig, factory: TargetFactory | None = None) -> frozenset[Form]:
    """The (command, form) pairs `config`'s target (or `factory`'s) refuses with an error the
    model does not predict, each form of the reference's command surface it accepts submitted
    once to a scratch copy; empty for the bundled reference (the model knows its refusals)."""
    if config.target is None and factory is None:
        return frozenset()
    make = factory or config.target_factory()
    # Keyed by the spec, or by the factory object itself when there is none (kept alive by
    # the key, so another factory never reuses its id).
    key = (config.target or make, config.policy, repr(config.target_config()))
    if key not in _cache:
        _cache[key] = _probe(config, make)
    return _cache[key]


def _probe(config: RunConfig, make: TargetFactory) -> frozenset[Form]:
    from faults import Clock, SimDisk
    from harness.targets import TargetEnv, accepts_of, check_target

    clock = Clock()
    try:
        target = check_target(make(TargetEnv(fs=SimDisk(), clock=clock,
                                             config=config.target_config())), "probe")
        target.start()
    except Exception:  # the run itself reports an unusable target, in its own words
        return frozenset()
    accepts = accepts_of(target)
    refused: set[Form] = set()
    for number, (name, form) in enumerate(SURFACE_PAIRS):
        argv = surface_argv(name, form, key=b"probe:%d:a" % number,
                            other=b"probe:%d:b" % number, value=b"1", members=(b"m1", b"m2"),
                            amount=5, now_ms=clock.now_ms)
        if not accepts(argv):
            continue  # declared as refused: could_refuse knows it already
        try:
            reply = _ask(target, argv)
        except Exception:
            break  # the probe never fails a run: keep what was learned
        if isinstance(reply, Exception) and not _model_refuses(argv, clock.now_ms):
            refused.add((name, form))
        if getattr(target, "stopped", False):
            break
    return frozenset(refused)


def _ask(target: Any, argv: tuple[bytes, ...]) -> object:
    """The target's reply to `argv` (None when it released none within a few turns)."""
    ticket = target.submit(argv, client=0)
    for _ in range(_ITERATIONS_PER_FORM):
        target.run_iteration()
        if target.released(ticket):
            return target.pop_reply(ticket)
    return None


def _model_refuses(argv: tuple[bytes, ...], now_ms: int) -> bool:
    """Whether the model answers `argv` on an empty keyspace with an error (then the refusal
    is the model's to judge, as in the run)."""
    try:
        return isinstance(Model().execute(argv, db=0, now_ms=now_ms), ReplyError)
    except ValueError:  # a command the model does not know: only the target can refuse it
        return False
