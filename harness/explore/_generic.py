"""Exploring the crash states of any in-process target: materialise, recover, ask the oracle.

The explorer's fast path (``_eval``) knows the reference: it reads only the AOF and replays it
with the reference's own loader. Another implementation may keep any files in any format, so
for a target named by ``RunConfig.target`` the explorer walks the same crash points and the same
legal images per persistence model (``_explorer._Walk``: points, limits, coverage, reports,
reproductions, replay confirmation are shared) and judges each state the generic way:

1. materialise the crash image (``SimDisk.crash(model, choice)``);
2. recover it with a fresh target: the factory on ``SimDisk.from_image(image)`` behind an empty
   fault layer, with a ``Clock`` at the recovery time (the end of the workload, as on the
   fast path), ``start()``, ``dump()``;
3. check it with the oracle (``check_recovery`` with the crash point's own history, frontier and
   stalls; a refusal to start is judged by rule 4);
4. stability (rule 3): crash the recovered disk again at once under the state's model (the
   least-surviving image: durable state only, nothing pending kept), recover that, and compare
   (``check_stability``).

Damage (opt-in, ``ExploreLimits.damage``: a plan of ``faults.Damage``): for a target that
declares itself checksummed, at every crash point and model the durable-only image (synced
bytes only) is also recovered with each damage of the plan applied to the target's own
``files`` (a damage whose ``path_glob`` is ``*`` is aimed at each of them), and judged by
contract rule 5 (violations ``damage``; these states are counted in ``damaged_outcomes``,
apart from the legal states). For a target that does not, the damage is skipped and
``ExploreResult.damage_skipped`` says why.

Every image is keyed by the digest of all its files and directories (``DiskImage.digest``), so
each distinct image is recovered once, however many states, points and models share it; within
one point and model, states with the same image (and the same damage flag) share one verdict.
Reported violations (up to ``max_exact_violations``) carry the oracle's verdict for their own
crash choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from faults import (
    Clock,
    CrashChoice,
    Damage,
    DamageSite,
    DiskImage,
    FaultPlan,
    FaultyFileSystem,
    FileChoice,
    ImageKind,
    PersistenceModel,
    ReplayCursor,
    SimDisk,
    damage_image,
    synced_bytes,
)
from harness.explore import _explorer
from harness.explore._record import Recording
from harness.machine._driver import (
    check_allowing_refusals,
    could_refuse,
    unpredicted_refusals,
)
from harness.machine._probe import probe_refusals
from harness.oracle._checker import CrashInfo, Verdict, check_stability
from harness.oracle._history import Entry, Outcome
from harness.oracle._snapshot import Snapshot, snapshot_from_dump
from harness.targets import (
    TargetEnv,
    TargetFactory,
    TargetRefusedToStart,
    check_target,
    reference_target,
    target_checksummed,
    target_files,
)

__all__ = ["GenericWalk", "Recovered", "explore_generic"]


@dataclass(frozen=True)
class Recovered:
    """What a fresh target made of one image: the keyspace (None: it refused, ``reason``) and
    the digests of the images a second crash of its disk leaves, per model."""

    snapshot: Snapshot | None
    reason: str | None
    again: dict[PersistenceModel, DiskImage]


class GenericWalk(_explorer._Walk):
    """``_Walk`` with every state judged by recovering its materialised image with the target
    (see the module docstring)."""

    def __init__(self, rec: Recording, models: tuple[PersistenceModel, ...],
                 limits: _explorer.ExploreLimits, naive: bool, keep_states: bool,
                 progress: Callable[[int, int, int], None] | None, *,
                 factory: TargetFactory | None = None, split: _explorer.Split = ()) -> None:
        super().__init__(rec, models, limits, naive, keep_states, progress, split)
        self.factory = factory or self.config.target_factory()
        self.spec = self.config.target or "reference"
        self.target_config = self.config.target_config()
        self.recovered: dict[str, Recovered] = {}
        self.stable: dict[tuple[str, PersistenceModel], Verdict] = {}
        self.starts = 0
        self._declared: object = None  # the last target built (what it declares)
        self._refused_shapes: set[tuple[bytes, int]] | None = None
        self.damages, self.damage_skipped = self._aimed_damage()

    def _aimed_damage(self) -> tuple[tuple[Damage, ...], str | None]:
        """The plan's damages aimed at the target's files; why none run when it is not
        checksummed."""
        plan = self.limits.damage
        if not plan.faults:
            return (), None
        probe = self.factory(TargetEnv(fs=SimDisk(), clock=Clock(0), config=self.target_config))
        if not target_checksummed(probe):
            return (), (f"{self.spec} is not checksummed: damaged synced bytes are judged only "
                        f"for a store that declares checksums (contract rule 5)")
        out: list[Damage] = []
        for fault in plan.faults:
            assert isinstance(fault, Damage)
            globs = target_files(probe) if fault.path_glob == "*" else (fault.path_glob,)
            out.extend(dataclasses.replace(fault, path_glob=g) for g in globs)
        return tuple(dict.fromkeys(out)), None

    def run(self) -> _explorer.ExploreResult:
        result = super().run()
        result.generic = True
        result.distinct_contents = len(self.recovered)
        result.full_recoveries = self.starts
        result.commands_fed = 0
        result.audits = 0
        result.damage_skipped = self.damage_skipped
        return result

    def _step(self, cursor: ReplayCursor) -> None:
        cursor.step()  # no lineages to keep: every image is materialised

    # -- states

    def _explore_point(self, disk: SimDisk, point: _explorer.CrashPoint, *,
                       overwriting: int | None = None) -> None:
        self._point_no += 1
        res = self.result
        for model in self.models:
            enum = disk.crash_choices(model, limits=self.model_limits[model])
            res.count_choices(model, enum)
            seen: dict[tuple[str, bool], tuple[str, tuple[str, ...]]] = {}
            for choice in enum:
                image = disk.crash(model, choice)
                key = (image.digest(), choice.damaged)
                verdict: Verdict | None = None
                if key in seen:
                    outcome, rules = seen[key]
                else:
                    outcome, rules, verdict = self._judge(image, point, model, choice)
                    seen[key] = (outcome, rules)
                self._record(disk, point, model, choice, _main_file(choice), 1, outcome, rules,
                             verdict)
            if self.damages:
                self._explore_damage(disk, point, model)

    def _explore_damage(self, disk: SimDisk, point: _explorer.CrashPoint,
                        model: PersistenceModel) -> None:
        """The durable-only image of `point` under `model` with each damage applied (rule 5)."""
        base = disk.metadata_choices(model)[0]
        image = disk.crash(model, base)
        synced = synced_bytes(disk, model, base)
        res = self.result
        for damage in self.damages:
            hit = damage_image(image, damage, synced)
            if hit is None:
                continue  # no synced bytes in its files yet
            damaged, site = hit
            outcome, rules, verdict = self._judge(damaged, point, model, base, site=site)
            res.damaged_outcomes[(model.value, outcome)] += 1
            if outcome != "violation":
                continue
            for rule in rules:
                res.violation_counts[(model.value, rule)] += 1
            # Its mechanism: the damage asked for (the image is otherwise the durable one).
            effects = (f"carries damage: {damage.kind.value} of synced bytes",)
            mechanism = (model.value, rules, effects)
            first_of_kind = mechanism not in res.mechanism_states
            res.mechanism_states[mechanism] += 1
            if first_of_kind or len(res.violations) < max(self.limits.max_reproductions,
                                                          self.limits.max_exact_violations):
                repro = (self.reproduction(point, model, base, rules, damage=damage)
                         if first_of_kind
                         or len(res.violations) < self.limits.max_reproductions else None)
                res.violations.append(_explorer.ExploreViolation(
                    point, model, base, rules, verdict, repro, effects=effects))

    def _exact(self, disk: SimDisk, point: _explorer.CrashPoint, model: PersistenceModel,
               choice: CrashChoice) -> tuple[str, tuple[str, ...], Verdict]:
        return self._judge(disk.crash(model, choice), point, model, choice)

    def _judge(self, image: DiskImage, point: _explorer.CrashPoint, model: PersistenceModel,
               choice: CrashChoice, *, site: DamageSite | None = None
               ) -> tuple[str, tuple[str, ...], Verdict]:
        """The oracle's verdict on one state (rules 1, 2, 4, then 3; rule 5 instead of 1, 2
        and 4 on an image damaged at `site`)."""
        self.result.exact_checks += 1
        got = self.recover(image)
        crash = _explorer.crash_info(point, model, choice)
        hit = site is not None
        if got.snapshot is None:
            verdict = self._check(point, model, choice, None, reason=got.reason, crash=crash,
                                  damaged_synced=hit)
        else:
            # A write whose reply the crash lost may have been refused where the target could
            # refuse it (the driver's rule, ``check_allowing_refusals``).
            verdict, _ = check_allowing_refusals(
                self._history(point.trace_index),
                lambda h: self._check(point, model, choice, got.snapshot, reason=None,
                                      crash=crash, history=h, damaged_synced=hit),
                self._could_refuse)
        if site is not None and not verdict.ok:
            verdict = dataclasses.replace(verdict, violations=[
                dataclasses.replace(v, details={**v.details, "damage": site.describe()})
                for v in verdict.violations])
        if not verdict.ok:
            return "violation", _explorer.violated_rules(verdict), verdict
        if got.snapshot is not None:
            stable = self._stability(image, got, model, crash)
            if not stable.ok:
                return "violation", ("stability",), stable
        return verdict.outcome, (), verdict

    def _could_refuse(self, entry: Entry) -> bool:
        if self.factory is reference_target:
            return False
        final = self.rec.final_history
        if entry.index < len(final) and final[entry.index].outcome is Outcome.ERROR:
            return True  # the run itself refused it: its reply came after this point
        if self._refused_shapes is None:
            self._refused_shapes = unpredicted_refusals(final)
        return could_refuse(entry.commands, self._declared, self._refused_shapes,
                            probe_refusals(self.config, self.factory))

    # -- recoveries

    def recover(self, image: DiskImage) -> Recovered:
        """A fresh target started on `image` at the recovery time (each image once)."""
        key = image.digest()
        got = self.recovered.get(key)
        if got is not None:
            return got
        self.starts += 1
        disk = SimDisk.from_image(image, fsync_failure=self.config.fsync_failure)
        clock = Clock(self.t_ms)
        fs = FaultyFileSystem(disk, FaultPlan(), clock=clock)
        env = TargetEnv(fs=fs, clock=clock, config=self.target_config,
                        kill_child=fs.should_kill_child)
        target = check_target(self.factory(env), self.spec)
        self._declared = target  # what it declares (``commands``, ``accepts``)
        try:
            target.start()
        except TargetRefusedToStart as exc:
            got = Recovered(None, exc.reason, {})
        else:
            got = Recovered(snapshot_from_dump(target.dump()), None,
                            {m: disk.crash(m) for m in self.models})
        self.recovered[key] = got
        return got

    def _stability(self, image: DiskImage, got: Recovered, model: PersistenceModel,
                   crash: CrashInfo) -> Verdict:
        key = (image.digest(), model)
        verdict = self.stable.get(key)
        if verdict is None:
            assert got.snapshot is not None
            second = self.recover(got.again[model])
            verdict = check_stability(got.snapshot, second.snapshot, at_ms=self.t_ms,
                                      unavailable_reason=second.reason, crash=crash)
            self.stable[key] = verdict
        return verdict


def _main_file(choice: CrashChoice) -> FileChoice | None:
    """The file choice a state's image kind is reported by: the first one that is not durable
    (None: every file durable, or the process model)."""
    for fc in choice.files:
        if fc.kind is not ImageKind.DURABLE:
            return fc
    return None


def explore_generic(rec: Recording, models: tuple[PersistenceModel, ...],
                    limits: _explorer.ExploreLimits, *, naive: bool = False,
                    keep_states: bool = False,
                    progress: Callable[[int, int, int], None] | None = None,
                    factory: TargetFactory | None = None,
                    split: _explorer.Split = ()) -> _explorer.ExploreResult:
    """Walk `rec`'s crash states with the generic evaluation (see the module docstring);
    `split` keeps some crash positions only (see ``explore``'s `shard`)."""
    return GenericWalk(rec, models, limits, naive, keep_states, progress,
                       factory=factory, split=split).run()

