"""Minimizing a reproduction after Hypothesis has shrunk it: drop what the finding does not need.

Hypothesis shrinks the choices a state machine drew, and a step's rule is a choice among the
rules whose preconditions hold at that point, so deleting an early step changes what later
draws mean: a shrunk program often keeps a fault that never fired, a read, a tick or a cleared
plan that the finding does not need, and the report then names that fault as an ingredient.

``minimize`` replays the reproduction without one step at a time (last to first), and without
one fault at a time of each plan that holds several, with every rule a campaign judges
(``replay_judged``); it keeps a removal when the replay ends in the same finding: the same
kind (violation, liveness, check-aof, divergence) and, for a violation, the same rules. A
replay that fails otherwise (a recorded crash image that no longer exists, an error) keeps the
step. Deterministic (replays only, no clock) and bounded by ``max_replays``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.machine._driver import ContractViolation, ModelDivergence
from harness.machine._judge import replay_judged
from harness.machine._rules import CheckAofDisagreement, LivenessViolation
from harness.machine._steps import ArmCrash, InjectFaults, Reproduction, Step
from harness.targets import TargetFactory

__all__ = ["Minimized", "minimize"]

#: Replays one minimization may make: a 40-step program takes about 40 per pass.
MAX_REPLAYS = 400


@dataclass(frozen=True)
class Minimized:
    """The smaller reproduction, the finding its replay raised, and what was dropped."""

    reproduction: Reproduction
    finding: AssertionError
    removed_steps: int
    removed_faults: int
    replays: int


def _signature(exc: BaseException | None) -> tuple[str, tuple[str, ...]] | None:
    """What makes two findings the same one: their kind and, for a violation, its rules."""
    if isinstance(exc, ContractViolation):
        return ("violation", tuple(sorted({v.rule.value for v in exc.verdict.violations})))
    for kind, name in ((LivenessViolation, "liveness"), (CheckAofDisagreement, "check-aof"),
                       (ModelDivergence, "divergence")):
        if isinstance(exc, kind):
            return (name, ())
    return None


def _replay(repro: Reproduction, factory: TargetFactory | None) -> AssertionError | None:
    try:
        replay_judged(repro, factory=factory)
    except (ContractViolation, ModelDivergence) as exc:
        return exc
    except Exception:  # a shortened program may describe an impossible run
        return None
    return None


def _without_one_fault(step: Step) -> list[Step]:
    """`step` with each one of its plan's faults left out (plans of two or more faults)."""
    if not isinstance(step, InjectFaults | ArmCrash) or len(step.plan.faults) < 2:
        return []
    faults = step.plan.faults
    return [replace(step, plan=replace(step.plan, faults=faults[:i] + faults[i + 1:]))
            for i in range(len(faults))]


def minimize(repro: Reproduction, finding: AssertionError, *,
             factory: TargetFactory | None = None, max_replays: int = MAX_REPLAYS) -> Minimized:
    """The smallest reproduction reached by single deletions that still ends in `finding`'s
    kind and rules (see the module docstring). Returns the original, unchanged, when its own
    replay does not end in that finding (a timing-dependent target)."""
    wanted = _signature(finding)
    replays = 0

    def same(candidate: Reproduction) -> AssertionError | None:
        nonlocal replays
        replays += 1
        exc = _replay(candidate, factory)
        return exc if exc is not None and _signature(exc) == wanted else None

    current, last = repro, same(repro)
    if wanted is None or last is None:
        return Minimized(repro, finding, 0, 0, replays)
    removed_steps = removed_faults = 0
    changed = True
    while changed and replays < max_replays:
        changed = False
        steps = current.steps
        for i in reversed(range(len(steps))):
            if replays >= max_replays or i >= len(current.steps):
                break
            tried = _first_accepted(
                [replace(current, steps=current.steps[:i] + current.steps[i + 1:])], same)
            if tried is not None:
                current, last = tried
                removed_steps += 1
                changed = True
                continue
            step = current.steps[i]
            variants = [replace(current, steps=(*current.steps[:i], v, *current.steps[i + 1:]))
                        for v in _without_one_fault(step)]
            tried = _first_accepted(variants, same)
            if tried is not None:
                current, last = tried
                removed_faults += 1
                changed = True
    return Minimized(current, last, removed_steps, removed_faults, replays)


def _first_accepted(
    candidates: list[Reproduction],
    same: Callable[[Reproduction], AssertionError | None],
) -> tuple[Reproduction, AssertionError] | None:
    for candidate in candidates:
        exc = same(candidate)
        if exc is not None:
            return candidate, exc
    return None
