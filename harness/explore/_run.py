"""Running an exploration: the recording, the walk in this process or on forked workers (each
part of a shard, ``_explorer._dealt``), the merge of their results, and the hand-off to the
generic path (``_generic``) for a target that is not the bundled reference. The walk itself and
the result types are in ``_explorer``; this module sits above both, so neither imports the
other's user."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faults import PersistenceModel
from harness._pool import die_on_terminate
from harness.explore._eval import ExplorerError
from harness.explore._explorer import (
    CrashPoint,
    ExploreLimits,
    ExploreResult,
    ExploreViolation,
    Split,
    _Walk,
)
from harness.explore._generic import explore_generic
from harness.explore._record import Recording, record
from harness.machine._steps import Recover, Reproduction, RunConfig, Step
from harness.oracle._checker import Verdict

__all__ = ["explore"]


def explore(
    config: RunConfig,
    steps: Sequence[Step],
    *,
    models: Sequence[PersistenceModel] = (PersistenceModel.PROCESS, PersistenceModel.POWER),
    limits: ExploreLimits | None = None,
    naive: bool = False,
    keep_states: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    partial: Callable[[ExploreResult], None] | None = None,
) -> ExploreResult:
    """Explore every crash state of `steps` run under `config` (see ``_explorer``'s docstring).

    `naive` recovers every state from scratch with the oracle (the baseline and cross-check);
    `keep_states` keeps every state's outcome in ``result.states_log``; `progress` is called
    with (points done, points total, states so far). `shard` (i, n) explores shard i of the crash
    points dealt to n shards, balanced by crash points (the limits count every shard's points,
    so n shards together explore exactly what one run does); `workers` splits this shard's
    points over that many processes the same way and merges their results (counts add up;
    violations are listed in crash-point order).

    `partial(result)`: the result so far (this process's part), whenever progress is reported,
    for a report that outlives a kill. Ctrl-C ends the walk early: the result holds the crash
    points explored, ``interrupted`` says so (as it does when ``max_crash_points`` ran out).
    """
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and not keep_states:
        return _explore_parallel(config, tuple(steps), tuple(models), limits, naive, progress,
                                 workers, shard, partial)
    return _explore_split(config, steps, models, limits, naive, keep_states, progress,
                          (shard,), partial)


def _explore_split(config: RunConfig, steps: Sequence[Step],
                   models: Sequence[PersistenceModel], limits: ExploreLimits | None,
                   naive: bool, keep_states: bool,
                   progress: Callable[[int, int, int], None] | None,
                   split: Split, partial: Callable[[ExploreResult], None] | None = None
                   ) -> ExploreResult:
    """``explore`` of the crash positions `split` keeps, in this process."""
    prepared = _recorded(config, steps, models, limits, naive)
    if isinstance(prepared, ExploreResult):
        return prepared
    rec, chosen = prepared
    return _walk(rec, chosen, limits, naive, keep_states, progress, split, partial)


def _recorded(config: RunConfig, steps: Sequence[Step], models: Sequence[PersistenceModel],
              limits: ExploreLimits | None, naive: bool,
              ) -> tuple[Recording, tuple[PersistenceModel, ...]] | ExploreResult:
    """The recording of `steps` and the models to explore, or the whole result when the
    workload's own setup already broke the contract."""
    if not isinstance(config, RunConfig):
        raise ValueError(f"config: expected RunConfig, got {type(config).__name__}")
    chosen = tuple(models)
    if not chosen or not all(isinstance(m, PersistenceModel) for m in chosen):
        raise ValueError(f"models: expected one or more PersistenceModel, got {models!r}")
    from harness.machine._driver import ContractViolation

    if config.target is not None:
        steps = _aimed_at_own_files(config, steps)
    try:
        return record(config, steps), chosen
    except ContractViolation as exc:
        # A multi-epoch workload's own recovery broke the contract (before any explored point).
        return _setup_violation(config, chosen, limits or ExploreLimits(), naive, exc)


def _aimed_at_own_files(config: RunConfig, steps: Sequence[Step]) -> Sequence[Step]:
    """`steps` with faults aimed at Redis's file names re-aimed at the files the target
    declares (``files``, ``temp_files``); unchanged when it declares none."""
    from faults import Clock, SimDisk
    from harness.explore._workloads import aim_workload
    from harness.targets import TargetEnv
    from harness.targets._inprocess import target_temp_files

    probe = config.target_factory()(TargetEnv(fs=SimDisk(), clock=Clock(0),
                                              config=config.target_config()))
    files, temp_files = getattr(probe, "files", None), target_temp_files(probe)
    if files is None and not temp_files:
        return steps
    from harness.targets import target_files

    return aim_workload(steps, files=target_files(probe), temp_files=temp_files)


def _walk(rec: Recording, models: tuple[PersistenceModel, ...], limits: ExploreLimits | None,
          naive: bool, keep_states: bool, progress: Callable[[int, int, int], None] | None,
          split: Split, partial: Callable[[ExploreResult], None] | None = None
          ) -> ExploreResult:
    if rec.config.target is not None:
        # Not the bundled reference: every state is recovered with the target itself.
        return explore_generic(rec, models, limits or ExploreLimits(), naive=naive,
                               keep_states=keep_states, progress=progress, split=split)
    walk = _Walk(rec, models, limits or ExploreLimits(), naive, keep_states, progress, split)
    walk.partial = partial
    return walk.run()


# What forked children inherit from the parent (set just before the fork): the recording,
# the models, limits and naive flag, and shared counters of the states each child explored.
_INHERITED: Any = None


def _explore_shard(args: tuple[Split, int]) -> ExploreResult:
    split, slot = args
    rec, models, limits, naive, counters = _INHERITED

    def report(_done: int, _total: int, states: int) -> None:
        counters[slot] = states

    return _walk(rec, models, limits, naive, False, report, split)


def _explore_parallel(
    config: RunConfig, steps: tuple[Step, ...], models: tuple[PersistenceModel, ...],
    limits: ExploreLimits | None, naive: bool,
    progress: Callable[[int, int, int], None] | None, workers: int, shard: tuple[int, int],
    partial: Callable[[ExploreResult], None] | None = None,
) -> ExploreResult:
    """Shard i of n over `workers` processes: the workload is recorded once, here; part 0 of
    `workers` is explored in this process (it would only wait otherwise), parts 1.. in forked
    children, which inherit the recording."""
    import gc
    import multiprocessing

    global _INHERITED
    prepared = _recorded(config, steps, models, limits, naive)
    if isinstance(prepared, ExploreResult):
        return prepared
    rec, chosen = prepared
    context = multiprocessing.get_context("fork")
    counters = context.Array("q", workers - 1, lock=False)
    _INHERITED = (rec, chosen, limits, naive, counters)
    # Children inherit every object; frozen, their collections never walk (and so never
    # copy-on-write) those pages.
    gc.freeze()
    try:
        pool = context.Pool(workers - 1, initializer=die_on_terminate)
    finally:
        gc.unfreeze()
        _INHERITED = None
    try:
        pending = pool.map_async(_explore_shard,
                                 [((shard, (j, workers)), j - 1) for j in range(1, workers)])
        last = [0, 0]  # this process's points done (every part's, in plan order) and total

        def report(done: int, total: int, states: int) -> None:
            last[:] = [done, total]
            if progress is not None:
                progress(done, total, states + sum(counters))

        parts = [_walk(rec, chosen, limits, naive, False, report, (shard, (0, workers)),
                       partial)]
        if not parts[0].interrupted.startswith("Ctrl-C"):
            try:
                parts.extend(pending.get())
            except KeyboardInterrupt:
                parts[0].interrupted = (f"Ctrl-C (SIGINT): only this process's part of the "
                                        f"crash points ({parts[0].points_explored}) finished")
    finally:
        pool.terminate()  # by PID, the pool's own children
        pool.join()
    merged = _merge_results(parts)
    if progress is not None:
        progress(last[0], last[1], merged.states)
    return merged


def _merge_results(parts: list[ExploreResult]) -> ExploreResult:
    """One result from the shards of one exploration (see ``explore``)."""
    first = parts[0]
    merged = ExploreResult(first.config, first.models, first.limits, first.naive,
                           steps=first.steps, trace_ops=first.trace_ops,
                           points_total=first.points_total, generic=first.generic)
    for part in parts:
        merged.points_explored += part.points_explored
        for name in ("outcomes", "kinds", "legal", "cut_dirty", "cut_max", "violation_counts",
                     "mechanism_states", "damaged_outcomes"):
            getattr(merged, name).update(getattr(part, name))
        for name in ("distinct_contents", "full_recoveries", "commands_fed", "audits",
                     "exact_checks"):
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        merged.violations.extend(part.violations)
        merged.harness_bugs.extend(part.harness_bugs)
        if part.interrupted and not merged.interrupted:
            merged.interrupted = part.interrupted
        merged.damage_skipped = merged.damage_skipped or part.damage_skipped
    merged.violations.sort(key=lambda v: (v.point.trace_index, v.point.torn_bytes or -1,
                                          v.model.value))
    return merged


def _setup_violation(config: RunConfig, models: tuple[PersistenceModel, ...],
                     limits: ExploreLimits, naive: bool, exc: Any) -> ExploreResult:
    """The result of a workload whose setup (steps up to its last Recover) already violated the
    contract: that one state, with the driver's verdict and reproduction."""
    repro: Reproduction = exc.reproduction
    verdict: Verdict = exc.verdict
    recover = repro.steps[-1]
    if not isinstance(recover, Recover) or recover.choice is None:  # pragma: no cover
        raise ExplorerError("explore: a setup violation that did not come from a recovery")
    rules = tuple(sorted({v.rule.value for v in verdict.violations}))
    crash = verdict.crash
    crash_ms = crash.crash_ms if crash is not None and crash.crash_ms is not None else 0
    trace_index = crash.trace_index if crash is not None and crash.trace_index is not None else -1
    point = CrashPoint(trace_index, None, len(repro.steps) - 1, None, crash_ms)
    result = ExploreResult(config, models, limits, naive, steps=len(repro.steps))
    result.outcomes[(recover.model.value, "violation")] += 1
    for rule in rules:
        result.violation_counts[(recover.model.value, rule)] += 1
    result.mechanism_states[(recover.model.value, rules, ())] += 1
    result.violations.append(ExploreViolation(point, recover.model, recover.choice, rules,
                                              verdict, repro, True))
    return result
