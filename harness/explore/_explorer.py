"""Exhaustive crash-state exploration of the in-process reference (ALICE/CrashMonkey style),
for the AOF contract of docs/contract.md.

1. Run the workload once on a traced SimDisk (``harness.explore._record``), recording for every
   trace position the history events before it, the time and how a Crash fault names it. A
   multi-epoch workload (crash, recover, write more) runs its steps up to its last ``Recover``
   first (a violation there is reported as one state); the recording starts on the recovered
   disk, with the recovered prefix as the history, so every point of the last epoch is explored.
2. Crash points: before every operation a Crash fault can hit (every traced op but reads and
   seeks) from the first step on, after the last one, and inside every successful write: at
   every sector boundary of the file, and at every byte for writes smaller than a sector
   (``small_write_bytes``) or for every write (``byte_granularity``).
3. At each point, every legal crash choice of each persistence model (``SimDisk.crash_choices``
   bounded by ``ImageLimits``; cut-offs counted). A state is (point, model, choice).
4. Each state is recovered and checked against the contract with the point's own history: F =
   the durability frontier of the point (policy x model, acks recorded before the point), n =
   the executed entries submitted before it, and the state is consistent iff its recovery
   matches some S(k) with F <= k <= n (rule 1 + 2), its second recovery agrees (rule 3), or it
   refused to start (rule 4: ``availability`` violation unless ``allow_unavailable`` or the
   image carries opted-in damage, torn or reordered sectors).

One recovery time for all states. Every state is recovered at T = the end of the workload
(the reproduction's Recover step carries ``downtime_ms = T - crash_ms``): a legal recovery time
for every point, and it lets recoveries be shared across points (S(k)@T is one table). Keys
that expire before T are absent from both sides, so they are not compared; the ``expiry``
workload therefore mixes TTLs that end during the run with TTLs far beyond it, whose exact
expiry times are compared.

Other targets. With ``RunConfig.target`` set (any in-process implementation of
``harness.targets.Target``, the reference included when named so) the walk is the same but every
state is judged generically (``harness.explore._generic``): its image materialised, recovered by
a fresh target (each distinct image once) and checked by the oracle. What follows is the
reference's own fast path.

Fast path (default) vs naive. The naive mode materialises every image, boots the reference
on it, loads the AOF from byte 0 and runs the oracle's ``check_recovery`` with the point's
history — per state. The fast path skips work that cannot change a verdict:

* recovery reads only the AOF (``harness.explore._eval``), so the choices of one point that give
  the AOF the same image form one group, evaluated once and counted with its size (computed
  exactly from the enumeration's mixed-radix order and cap, and checked against SimDisk's own
  count); the naive mode enumerates every choice and the tests compare the two per group;
* each distinct AOF content is recovered once, prefixes of one file through one incremental
  loader (damaged tails forked from the last boundary before the damage), and a state is then
  checked with two comparisons (some matching k with F <= k <= n).

Violations (up to ``max_exact_violations``) are re-checked with the oracle on the materialised
image, so reported verdicts are the oracle's. A disagreement between the fast path and the
oracle (there, or in the audited sample) is a bug of the explorer, never a finding: that state
is judged by the oracle instead (the naive check), the disagreement is kept in
``ExploreResult.harness_bugs`` with a reproduction of the state, and the walk goes on. Points
where a write refused with an error is still unanswered use the oracle for every state (the
shared table assumes refused writes are known). Stability (rule 3) on the fast path is checked
for every content that needed a full recovery and for the audited sample (every
``audit_every``-th distinct content, whose full recovery must also agree on the match);
prefix contents are stable by construction (the loader truncates to the same boundary the
second recovery reads). The naive mode checks stability for every state.
"""

from __future__ import annotations

import dataclasses
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faults import (
    ChoiceEnumeration,
    CrashChoice,
    Damage,
    DamageKind,
    FaultOp,
    FaultPlan,
    FileChoice,
    ImageKind,
    ImageLimits,
    PersistenceModel,
    ReplayCursor,
    SimDisk,
)
from faults import Crash as CrashFault
from harness._pool import deferred_sigint
from harness.explore._effects import image_effects
from harness.explore._eval import (
    ExplorerError,
    FastPathDisagreement,
    PrefixIndex,
    Rec,
    StateEvaluator,
    full_recover,
)
from harness.explore._record import NOT_COUNTED, Recording
from harness.machine._steps import ArmCrash, Crash, Recover, Reproduction, RunConfig, Step
from harness.oracle._checker import (
    CrashInfo,
    Verdict,
    check_recovery,
    effective_window_ms,
    window_stalls,
)
from harness.oracle._history import History, Outcome
from harness.oracle._snapshot import Snapshot

__all__ = [
    "DEFAULT_DAMAGE",
    "CrashPoint",
    "ExploreLimits",
    "ExploreResult",
    "ExploreRunaway",
    "ExploreViolation",
    "StateRecord",
    "workload_from_reproduction",
]

PROCESS = PersistenceModel.PROCESS


@dataclass(frozen=True)
class ExploreLimits:
    """Explicit bounds; every cut-off is counted in the result.

    ``max_crash_points``: explore at most this many crash points (None: all).
    ``point_stride``: explore only every n-th position of the trace (sampling a big workload;
    the others are counted as not explored).
    ``max_images_per_point``, ``max_dirty_files``, ``torn``, ``reorder``,
    ``reorder_window_sectors``: the ``ImageLimits`` of each point's enumeration. Torn and
    reordered sectors are opt-in, as in ``ImageLimits``: a Redis-format AOF has no checksum, so
    such a sector inside a long value can load as a complete command with zeros or garbage in
    it (a phantom value the explorer reports as a prefix-consistency violation, on every
    profile).
    ``byte_granularity``: crash inside every write at every byte, and power prefixes at every
    byte. ``small_write_bytes``: every byte inside writes shorter than a sector.
    ``max_exact_violations``: violations re-checked (and reported) with the oracle's verdict;
    ``max_reproductions``: violations kept with a reproduction (the first state of each
    mechanism keeps one too); ``confirm_reproductions``: how many of those, in order, are
    replayed through the driver to confirm them. ``audit_every``: every n-th
    distinct fast-path content is also recovered in full (0: never).
    ``stop_at_first_violation``: end the walk after the first crash point with a violating
    state (the points after it are counted as not explored; for sensitivity runs that only
    need to know whether, and how soon, a bug shows).
    ``size_before_data`` / ``in_place``: the ``SIZE_BEFORE_DATA`` (a size the journal took
    before the data: the file at its new size over zeros) and ``IN_PLACE`` images the
    kernel's ext4 and xfs produce (``faults.ImageLimits``), on by default under power-ext4,
    power-xfs and the POSIX minimum (``model_image_limits``): the fast path reads a zero tail
    as it reads a torn sector of zeros and recovers an in-place image in full.
    """

    max_crash_points: int | None = None
    point_stride: int = 1
    max_images_per_point: int = 4096
    max_dirty_files: int = 4
    torn: bool = False
    reorder: bool = False
    reorder_window_sectors: int = 8
    byte_granularity: bool = False
    small_write_bytes: bool = True
    max_exact_violations: int = 50
    max_reproductions: int = 20
    confirm_reproductions: int = 3
    audit_every: int = 97
    stop_at_first_violation: bool = False
    size_before_data: bool = True
    in_place: bool = True
    damage: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        errors = []
        if self.max_crash_points is not None and (
            not isinstance(self.max_crash_points, int) or self.max_crash_points < 1
        ):
            errors.append(f"max_crash_points: must be None or >= 1, got {self.max_crash_points!r}")
        if not isinstance(self.point_stride, int) or self.point_stride < 1:
            errors.append(f"point_stride: must be an integer >= 1, got {self.point_stride!r}")
        for name in ("max_exact_violations", "max_reproductions", "confirm_reproductions",
                     "audit_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(f"{name}: must be an integer >= 0, got {value!r}")
        if not isinstance(self.damage, FaultPlan) or not all(
                isinstance(f, Damage) for f in self.damage):
            errors.append("damage: must be a FaultPlan of Damage faults")
        if errors:
            raise ValueError("invalid ExploreLimits: " + "; ".join(errors))
        self.image_limits()  # validates the ImageLimits fields

    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_choices_per_point=self.max_images_per_point,
            max_dirty_files=self.max_dirty_files,
            torn=self.torn,
            reorder=self.reorder,
            reorder_window_sectors=self.reorder_window_sectors,
            byte_granularity=self.byte_granularity,
            size_before_data=self.size_before_data,
            in_place=self.in_place,
        )


# The models under which a size journalled before its data (a file at its new size over
# zeros) and in-place blocks are legal images: ext4 and xfs produce them (measured on the
# kernel), and the POSIX minimum allows anything they do. Not btrfs (the kernel's btrfs showed
# none in any explored crash state: its log commits a size with its data) nor eager metadata
# (the optimistic bound).
_SIZE_FIRST_MODELS: frozenset[PersistenceModel] = frozenset({
    PersistenceModel.POWER, PersistenceModel.POWER_XFS, PersistenceModel.POWER_POSIX_METADATA})


def model_image_limits(limits: ImageLimits, model: PersistenceModel) -> ImageLimits:
    """`limits` for `model`: without size-before-data and in-place images where its
    filesystem does not produce them (see ``_SIZE_FIRST_MODELS``)."""
    if model in _SIZE_FIRST_MODELS or not (limits.size_before_data or limits.in_place):
        return limits
    return dataclasses.replace(limits, size_before_data=False, in_place=False)


#: The damage ``explore --damage`` asks for: one byte flipped, and one zeroed, a tenth, half
#: and nine tenths into the synced bytes of each of the target's files.
DEFAULT_DAMAGE = FaultPlan(tuple(Damage(kind=kind, at_permille=at)
                                 for kind in DamageKind for at in (100, 500, 900)))


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """Where a crash happens: before trace operation ``trace_index`` (None torn_bytes) or after
    ``torn_bytes`` bytes of that write. ``step_index`` is the step it happens in (== number of
    steps: after the last one) and ``nth_op`` the Crash fault's ``nth`` counted from that
    step's start (None after the last step)."""

    trace_index: int
    torn_bytes: int | None
    step_index: int
    nth_op: int | None
    crash_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"trace_index": self.trace_index, "torn_bytes": self.torn_bytes,
                "step_index": self.step_index, "nth_op": self.nth_op, "crash_ms": self.crash_ms}


@dataclass(frozen=True)
class ExploreViolation:
    """One violating state: where, which image, which rules, the oracle's verdict (None beyond
    ``max_exact_violations``) and a reproduction (None beyond ``max_reproductions``, except
    for the first state of each mechanism, which always keeps one). ``confirmed``: whether the
    reproduction replayed to one of ``rules``; None when it was not replayed (no reproduction,
    or past ``confirm_reproductions``)."""

    point: CrashPoint
    model: PersistenceModel
    choice: CrashChoice
    rules: tuple[str, ...]
    verdict: Verdict | None
    reproduction: Reproduction | None
    confirmed: bool | None = None
    # What the image lacks or resurrects against the visible state at the crash
    # (``_effects.image_effects``): with the model and the rules, the violation's mechanism.
    effects: tuple[str, ...] = ()
    count: int = 1  # the states this one stands for (they share its AOF image)

    @property
    def mechanism(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(model, rules, image effects): what explains it; reports group by it."""
        return self.model.value, self.rules, self.effects

    def describe(self) -> str:
        head = (f"[{', '.join(self.rules)}] model={self.model.value} "
                f"trace_index={self.point.trace_index}"
                + ("" if self.point.torn_bytes is None
                   else f" torn_bytes={self.point.torn_bytes}")
                + f" crash_ms={self.point.crash_ms} choice={self.choice.to_json()}")
        if self.verdict is not None:
            return head + "\n" + self.verdict.render()
        return head

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": list(self.rules),
            "model": self.model.value,
            "point": self.point.to_dict(),
            "choice": self.choice.to_dict(),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "confirmed_by_replay": self.confirmed,
            "image_effects": list(self.effects),
            "states": self.count,
        }


@dataclass(frozen=True)
class HarnessBug:
    """A state where the explorer's fast path and the oracle disagreed (a bug of aofcrash, not
    of the target): the oracle's verdict (``outcome``, ``rules``) was used, ``what`` says what
    the fast path said, ``reproduction`` replays the state through the driver and oracle."""

    point: CrashPoint
    model: PersistenceModel
    choice: CrashChoice
    what: str
    outcome: str
    rules: tuple[str, ...]
    reproduction: Reproduction

    def describe(self) -> str:
        where = (f"trace index {self.point.trace_index}"
                 + ("" if self.point.torn_bytes is None
                    else f" ({self.point.torn_bytes} bytes into a write)"))
        verdict = self.outcome + (f" ({', '.join(self.rules)})" if self.rules else "")
        return (f"harness bug: at {where}, model {self.model.value}, {self.what}; "
                f"the oracle says {verdict} (used)")

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "model": self.model.value, "point": self.point.to_dict(),
                "choice": self.choice.to_dict(), "oracle_outcome": self.outcome,
                "oracle_rules": list(self.rules), "description": self.describe()}


@dataclass(frozen=True, slots=True)
class StateRecord:
    """The outcome of ``count`` states of one point and model whose AOF image is ``aof``
    (None: durable, absent or the process model), ``choice`` being one of them (kept only with
    ``keep_states=True``, for cross-checks). The naive mode records each state (count 1)."""

    point: int
    model: PersistenceModel
    choice: CrashChoice
    aof: FileChoice | None
    count: int
    outcome: str
    rules: tuple[str, ...]


@dataclass(kw_only=True)
class StateTally:
    """The state counts both explorers keep (this one and ``explore --server``), keyed by the
    persistence model's value: crash points explored of all, outcomes per (model, outcome),
    legal states at the explored points and the ones the image limits cut, violations per
    (model, rule). The base of their results (keyword-only fields, so that each result's own
    required fields stay positional)."""

    points_total: int = 0
    points_explored: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    legal: Counter[str] = field(default_factory=Counter)
    cut_dirty: Counter[str] = field(default_factory=Counter)
    cut_max: Counter[str] = field(default_factory=Counter)
    violation_counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def states(self) -> int:
        return sum(self.outcomes.values())

    @property
    def violation_total(self) -> int:
        return sum(self.violation_counts.values())

    def count_choices(self, model: PersistenceModel, enum: ChoiceEnumeration) -> None:
        """Count one point's legal states under `model` and the ones the limits cut."""
        self.legal[model.value] += enum.total
        self.cut_dirty[model.value] += enum.cut_by_dirty_files
        self.cut_max[model.value] += enum.cut_by_max_choices

    def _coverage_models(self) -> Sequence[str]:
        raise NotImplementedError

    def _model_coverage(self, model: str) -> dict[str, Any]:
        checked = sum(n for (mv, _), n in self.outcomes.items() if mv == model)
        legal = self.legal[model]
        return {
            "states_checked": checked,
            "legal_states_at_explored_points": legal,
            "cut_by_dirty_files": self.cut_dirty[model],
            "cut_by_max_images": self.cut_max[model],
            "fraction": round(checked / legal, 6) if legal else 1.0,
        }

    def coverage(self) -> dict[str, Any]:
        """Covered / total crash points, and per model: states checked / legal states at the
        explored points (choices cut by the limits are the difference)."""
        out: dict[str, Any] = {
            "crash_points": f"{self.points_explored}/{self.points_total}",
        }
        for m in self._coverage_models():
            out[m] = self._model_coverage(m)
        return out

    def outcomes_by_model(self) -> dict[str, dict[str, int]]:
        by_model: dict[str, dict[str, int]] = {}
        for (m, outcome), n in sorted(self.outcomes.items()):
            by_model.setdefault(m, {})[outcome] = n
        return by_model

    def violations_by_rule(self) -> dict[str, int]:
        return {f"{m}/{r}": n for (m, r), n in sorted(self.violation_counts.items())}


@dataclass
class ExploreResult(StateTally):
    """Counts, coverage, violations. ``ok`` iff no violation."""

    config: RunConfig
    models: tuple[PersistenceModel, ...]
    limits: ExploreLimits
    naive: bool
    steps: int = 0
    trace_ops: int = 0
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[ExploreViolation] = field(default_factory=list)
    # Violating states per mechanism (model, rules, image effects): every one counted, so
    # they add up to the violating states; ``violations`` keeps the first of each.
    mechanism_states: Counter[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=Counter)
    distinct_contents: int = 0
    full_recoveries: int = 0
    commands_fed: int = 0
    audits: int = 0
    exact_checks: int = 0
    states_log: list[StateRecord] | None = None
    generic: bool = False  # judged by recovering every image with the target (_generic)
    # States where the fast path and the oracle disagreed (judged by the oracle; see above).
    harness_bugs: list[HarnessBug] = field(default_factory=list)
    # Why the walk ended before its last crash point ("" when it did not): Ctrl-C, or the
    # crash-point budget (``max_crash_points``). The counts are those of the points explored.
    interrupted: str = ""
    # Damaged states (``ExploreLimits.damage``; contract rule 5), per (model, outcome): apart
    # from ``outcomes``, which count the legal states the coverage is measured against.
    damaged_outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    damage_skipped: str | None = None  # why damage was asked for and not run

    @property
    def ok(self) -> bool:
        return self.violation_total == 0

    @property
    def violating_states(self) -> int:
        """States with a violation (a state breaking two rules is one state), damaged ones
        (``damaged_outcomes``) included."""
        return sum(n for counts in (self.outcomes, self.damaged_outcomes)
                   for (_, outcome), n in counts.items() if outcome == "violation")

    def _coverage_models(self) -> Sequence[str]:
        return [m.value for m in self.models]

    def _model_coverage(self, model: str) -> dict[str, Any]:
        # ... and, per model, the states checked by image kind.
        kinds = {k: n for (mv, k), n in sorted(self.kinds.items()) if mv == model}
        return {**super()._model_coverage(model), "by_kind": kinds}

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "generic" if self.generic else "naive" if self.naive else "fast",
            "steps": self.steps,
            "trace_ops": self.trace_ops,
            "states": self.states,
            "by_model": self.outcomes_by_model(),
            "violations_by_rule": self.violations_by_rule(),
            "violations": self.violation_total,
            "violating_states": self.violating_states,
            "mechanisms": [{"model": model, "rules": list(rules), "effects": list(effects),
                            "states": n}
                           for (model, rules, effects), n in sorted(
                               self.mechanism_states.items())],
            "coverage": self.coverage(),
            "distinct_aof_contents": self.distinct_contents,
            "full_recoveries": self.full_recoveries,
            "commands_fed_incrementally": self.commands_fed,
            "audited_contents": self.audits,
            "exact_oracle_checks": self.exact_checks,
            "harness_bugs": len(self.harness_bugs),
            "interrupted": self.interrupted or None,
            **({"damaged_states": {f"{m}/{o}": n for (m, o), n in
                                   sorted(self.damaged_outcomes.items())}}
               if self.damaged_outcomes else {}),
            **({"damage_skipped": self.damage_skipped} if self.damage_skipped else {}),
        }


def workload_from_reproduction(repro: Reproduction) -> tuple[RunConfig, tuple[Step, ...]]:
    """A reproduction's config and its steps up to its first crash (ArmCrash/Crash/Recover
    and everything after are dropped)."""
    steps: list[Step] = []
    for step in repro.steps:
        if isinstance(step, ArmCrash | Crash | Recover):
            break
        steps.append(step)
    return repro.config, tuple(steps)


# --------------------------------------------------------------------------- the walk


class FrontierIndex:
    """F (the frontier) and n (entries executed) of every crash point from each entry's
    outcome and recorded trace positions, O(log n) a point. ``entries``: per history entry
    (outcome, submit_pos, resolve_pos, ack_ms, during_rewrite). The everysec window is the
    subclass's (``_window_ms``); with ``no_appendfsync_on_rewrite`` an entry acknowledged
    during a rewrite does not move the frontier of a power model. Shared with
    ``explore --server``."""

    def __init__(
        self,
        entries: Iterable[tuple[Outcome, int, int | None, int | None, bool]],
        *,
        policy: str,
        no_appendfsync_on_rewrite: bool = False,
    ) -> None:
        self.policy = policy
        self.norw = no_appendfsync_on_rewrite
        position = 0
        self.exec_submit: list[int] = []
        acks: list[tuple[int, int, int, bool]] = []
        self.refused: list[tuple[int, int | None]] = []
        for outcome, submit_pos, resolve_pos, ack_ms, during_rewrite in entries:
            if outcome is Outcome.ERROR:
                self.refused.append((submit_pos, resolve_pos))
                continue
            position += 1
            self.exec_submit.append(submit_pos)
            if outcome is Outcome.OK:
                assert resolve_pos is not None and ack_ms is not None
                acks.append((resolve_pos, ack_ms, position, during_rewrite))
        acks.sort()
        self.ack_pos = [a[0] for a in acks]
        self.ack_ms = [a[1] for a in acks]
        self.best_all: list[int] = []
        self.best_norw: list[int] = []
        hi_all = hi_norw = 0
        for _, _, pos, rw in acks:
            hi_all = max(hi_all, pos)
            if not rw:
                hi_norw = max(hi_norw, pos)
            self.best_all.append(hi_all)
            self.best_norw.append(hi_norw)

    def _window_ms(self, p: int, crash_ms: int, model: PersistenceModel) -> int:
        raise NotImplementedError

    def submitted(self, p: int) -> int:
        return bisect_right(self.exec_submit, p)

    def refused_pending(self, p: int) -> bool:
        return any(s <= p and (r is None or r > p) for s, r in self.refused)

    def frontier(self, p: int, crash_ms: int, model: PersistenceModel) -> int:
        power = model is not PROCESS
        if self.policy == "no" and power:
            return 0
        j = bisect_right(self.ack_pos, p)
        if self.policy == "everysec":
            j = min(j, bisect_right(self.ack_ms, crash_ms - self._window_ms(p, crash_ms, model)))
        best = self.best_norw if (self.norw and power) else self.best_all
        return best[j - 1] if j else 0


class _Frontiers(FrontierIndex):
    """The frontier index of a recording: the everysec window widened by the stalls before
    each point (oracle rule 2)."""

    def __init__(self, rec: Recording) -> None:
        cfg = rec.config
        super().__init__(((e.outcome, e.submit_pos, e.resolve_pos, e.ack_ms, e.during_rewrite)
                          for e in rec.entries),
                         policy=cfg.policy,
                         no_appendfsync_on_rewrite=cfg.no_appendfsync_on_rewrite)
        self.rec = rec
        self.window_ms = cfg.window_ms

    def _window_ms(self, p: int, crash_ms: int, model: PersistenceModel) -> int:
        stalls = window_stalls(model.value, self.rec.stalls_at(p), self.rec.error_stalls_at(p))
        return effective_window_ms(crash_ms, window_ms=self.window_ms, stalls=stalls)


def crash_info(point: CrashPoint, model: PersistenceModel, choice: CrashChoice) -> CrashInfo:
    """What a verdict says about the crash that made the state it judges."""
    return CrashInfo(model=model.value, choice=choice.to_dict(), trace_index=point.trace_index,
                     crash_ms=point.crash_ms)


def violated_rules(verdict: Verdict) -> tuple[str, ...]:
    """The rules `verdict` found violated, sorted, each once."""
    return tuple(sorted({v.rule.value for v in verdict.violations}))


def _kind(model: PersistenceModel, aof: FileChoice | None) -> str:
    """A state's image kind: that of the AOF, the one file recovery reads."""
    if model is PROCESS:
        return ImageKind.VISIBLE.value
    return ImageKind.DURABLE.value if aof is None else aof.kind.value


def _inside_offsets(entry: Any, sector: int, limits: ExploreLimits) -> list[int]:
    if entry.op.value != "write" or entry.result <= 1:
        return []
    length = entry.result
    if limits.byte_granularity or (limits.small_write_bytes and length < sector):
        return list(range(1, length))
    first = (entry.offset // sector + 1) * sector
    return [b - entry.offset for b in range(first, entry.offset + length, sector)]


Split = tuple[tuple[int, int], ...]  # shard (i, n), then (j, m) of that shard, ...


def _dealt(weights: list[int], stride: int, split: Split) -> list[bool]:
    """Which planned crash positions `split` explores. Each level deals the positions still
    held, in plan order, each to the shard with the fewest crash points so far (ties: the
    lowest index), and keeps shard i's; a position weighs 1 + its torn offsets. Dealing
    i mod n instead gave one shard every write and the other every fsync under `always`
    (only writes have torn offsets): 98% of the states in one shard."""
    held = [number for number in range(len(weights)) if number % stride == 0]
    for index, count in split:
        loads = [0] * count
        kept = []
        for number in held:
            owner = min(range(count), key=loads.__getitem__)
            loads[owner] += weights[number]
            if owner == index:
                kept.append(number)
        held = kept
    chosen = [False] * len(weights)
    for number in held:
        chosen[number] = True
    return chosen


class ExploreRunaway(ExplorerError):
    """Recovering one crash state ran ``MAX_CPU_S_PER_STEP`` of CPU time (the driver's limit
    per step) without finishing: the loader or target loops forever (a liveness finding)."""


class _Walk:
    def __init__(self, rec: Recording, models: tuple[PersistenceModel, ...],
                 limits: ExploreLimits, naive: bool, keep_states: bool,
                 progress: Callable[[int, int, int], None] | None,
                 split: Split = ()) -> None:
        self.rec = rec
        self.split = split
        self.models = models
        self.limits = limits
        self.naive = naive
        self.progress = progress
        self.config = rec.config
        self.t_ms = rec.end_ms
        self.index = PrefixIndex(rec.final_history, self.t_ms)
        self.ev = StateEvaluator(self.config, self.index, audit_every=limits.audit_every)
        self.fr = _Frontiers(rec)
        self.image_limits = limits.image_limits()
        self.model_limits = {m: model_image_limits(self.image_limits, m) for m in models}
        self.result = ExploreResult(self.config, models, limits, naive,
                                    steps=len(rec.steps), trace_ops=len(rec.trace))
        if keep_states:
            self.result.states_log = []
        if limits.damage.faults:  # the generic walk judges a checksummed target's damage
            self.result.damage_skipped = (
                "the bundled reference is not checksummed (its AOF has no checksums): damaged "
                "synced bytes are judged only for a store that declares checksums (contract "
                "rule 5)")
        self._histories: dict[int, History] = {}
        self._snapshots: dict[bytes | None, tuple[Rec, Snapshot | None]] = {}
        self._point_no = 0
        self._states_seen = 0  # progress the CPU watchdog looks for
        self._visible: tuple[int, Mapping[str, bytes]] | None = None  # (point no, files)
        self._ctrl_c: threading.Event | None = None  # set by a deferred SIGINT (_run_points)
        self._points_done = self._evaluated = 0
        # Called with the result so far whenever progress is (a report that outlives a kill).
        self.partial: Callable[[ExploreResult], None] | None = None

    # -- points

    def _positions(self) -> list[int]:
        trace = self.rec.trace
        out = [p for p in range(self.rec.boot_ops, len(trace)) if trace[p].op not in NOT_COUNTED]
        out.append(len(trace))
        return out

    def point(self, p: int, torn: int | None) -> CrashPoint:
        rec = self.rec
        if p >= len(rec.trace):
            return CrashPoint(p, None, len(rec.steps), None, rec.end_ms)
        step = rec.step_of[p]
        return CrashPoint(p, torn, step, rec.op_count_at[p] - rec.step_base_ops[step],
                          rec.time_at[p])

    def run(self) -> ExploreResult:
        from harness.machine._driver import MAX_CPU_S_PER_STEP, CpuTimeExceeded, cpu_watchdog

        try:
            with cpu_watchdog(lambda: self._point_no + self._states_seen, MAX_CPU_S_PER_STEP):
                return self._run_points()
        except CpuTimeExceeded:
            raise ExploreRunaway(
                f"explore: recovering a state of crash point #{self._point_no} ran "
                f"{MAX_CPU_S_PER_STEP:g} s of CPU time without finishing: the loader (or "
                f"target) loops forever, a liveness violation") from None

    def _run_points(self) -> ExploreResult:
        rec, res = self.rec, self.result
        trace = rec.trace
        cursor = ReplayCursor(trace)
        positions = self._positions()
        sector = trace.sector_size_bytes
        plan: list[tuple[int, list[int]]] = []
        for p in positions:
            inside = _inside_offsets(trace[p], sector, self.limits) if p < len(trace) else []
            plan.append((p, inside))
        res.points_total = sum(1 + len(inside) for _, inside in plan)
        budget = self.limits.max_crash_points
        done = 0  # crash points of every shard: the limits mean the same for each shard
        evaluated = 0
        stride = self.limits.point_stride
        mine = _dealt([1 + len(inside) for _, inside in plan], stride, self.split)
        try:
            with deferred_sigint() as self._ctrl_c:
                done, evaluated = self._walk_plan(cursor, plan, mine)
        except KeyboardInterrupt:
            # What finished stands: the states of the points explored so far.
            res.interrupted = (f"Ctrl-C (SIGINT): {self._evaluated} of {res.points_total} "
                               "crash point(s) explored")
            done, evaluated = self._points_done, self._evaluated
        if budget is not None and done >= budget and done < res.points_total:
            res.interrupted = res.interrupted or (
                f"the crash-point budget (max_crash_points={budget}) ran out: {evaluated} "
                f"of {res.points_total} crash point(s) explored")
        res.points_explored = evaluated
        if self.progress is not None:
            self.progress(done, res.points_total, res.states)
        ev = self.ev
        res.distinct_contents = len(ev.cache) + len(ev.full_cache)
        res.full_recoveries = ev.full_recoveries
        res.commands_fed = ev.commands_fed
        res.audits = ev.audits
        if not res.interrupted.startswith("Ctrl-C"):
            self._confirm()
        return res

    def _stop_if_interrupted(self, done: int, evaluated: int) -> None:
        """Raise the Ctrl-C that came during the point just explored, now that its states
        are counted whole (``deferred_sigint``)."""
        if self._ctrl_c is not None and self._ctrl_c.is_set():
            self._points_done, self._evaluated = done, evaluated
            raise KeyboardInterrupt

    def _walk_plan(self, cursor: ReplayCursor, plan: list[tuple[int, list[int]]],
                   mine: list[bool]) -> tuple[int, int]:
        """Explore the points of `plan` this walk owns; (points done, points evaluated), also
        kept in ``_points_done`` and ``_evaluated`` as it goes (for an interrupted walk)."""
        rec, res = self.rec, self.result
        trace = rec.trace
        budget = self.limits.max_crash_points
        stride = self.limits.point_stride
        done = evaluated = 0
        for number, (p, inside) in enumerate(plan):
            if number % stride:
                continue
            if not mine[number]:
                done += 1 + len(inside)  # another shard's (the replay below catches up)
                continue
            while cursor.position < p:
                self._step(cursor)
            if budget is not None and done >= budget:
                break
            self._explore_point(cursor.disk, self.point(p, None))
            done += 1
            evaluated += 1
            self._stop_if_interrupted(done, evaluated)
            if inside:
                entry = trace[p]
                assert entry.fd is not None
                f = cursor.open_file(entry.fd)
                assert f is not None and f.ino is not None
                size = cursor.disk.inode(f.ino).size_bytes
                overwriting = f.ino if entry.offset < size else None
                for k in inside:
                    if budget is not None and done >= budget:
                        break
                    with cursor.inside_write(k) as disk:
                        self._explore_point(disk, self.point(p, k), overwriting=overwriting)
                    done += 1
                    evaluated += 1
                    self._points_done, self._evaluated = done, evaluated
                    self._stop_if_interrupted(done, evaluated)
            self._points_done, self._evaluated = done, evaluated
            if self.progress is not None and self._point_no % 64 == 0:
                self.progress(done, res.points_total, res.states)
                if self.partial is not None:
                    res.points_explored = evaluated
                    self.partial(res)
            if self.limits.stop_at_first_violation and res.violation_total:
                break
        return done, evaluated

    def _step(self, cursor: ReplayCursor) -> None:
        entry = cursor.next_entry()
        assert entry is not None
        self.ev.before_step(cursor, entry)
        cursor.step()

    # -- states

    def _explore_point(self, disk: SimDisk, point: CrashPoint, *,
                       overwriting: int | None = None) -> None:
        self._point_no += 1
        self.ev.new_point(overwriting=overwriting)
        p = point.trace_index
        n = self.fr.submitted(p)
        exact = self.naive or self.fr.refused_pending(p)
        res = self.result
        for model in self.models:
            enum = disk.crash_choices(model, limits=self.model_limits[model])
            res.count_choices(model, enum)
            f = self.fr.frontier(p, point.crash_ms, model)
            if self.naive:
                states: Any = ((c, self._aof_choice(disk, c), 1) for c in enum)
            else:
                states = self._projected(disk, model, enum.total - enum.cut_off)
            for choice, aof, count in states:
                verdict: Verdict | None = None
                if exact:
                    outcome, rules, verdict = self._exact(disk, point, model, choice)
                else:
                    try:
                        rec = self.ev.evaluate(disk, model, choice)
                    except FastPathDisagreement as exc:
                        outcome, rules, verdict = self._exact(disk, point, model, choice)
                        self._harness_bug(point, model, choice, str(exc), outcome, rules)
                    else:
                        outcome, rules = self._fast(rec, f, n, model, choice)
                self._record(disk, point, model, choice, aof, count, outcome, rules, verdict)

    def _aof_choice(self, disk: SimDisk, choice: CrashChoice) -> FileChoice | None:
        """The FileChoice of the AOF's inode in this choice (None: durable, absent, process)."""
        if choice.model is PROCESS:
            return None
        ino = disk.namespace_after(choice).get(self.ev.name)
        for fc in choice.files:
            if fc.inode == ino:
                return fc
        return None

    def _projected(self, disk: SimDisk, model: PersistenceModel,
                   emitted: int) -> list[tuple[CrashChoice, FileChoice | None, int]]:
        """The states of ``disk.crash_choices`` grouped by what the AOF's image is, each with
        how many enumerated choices share it (they differ only in files recovery never reads).
        Counts follow the enumeration's order and cap exactly (mixed-radix digit counting)."""
        pending = disk.pending_metadata
        if model is PROCESS:
            return [(CrashChoice(model, pending, ()), None, 1)]
        limits = self.model_limits[model]
        left = limits.max_choices_per_point
        options: dict[int, tuple[FileChoice, ...]] = {}
        out: list[tuple[CrashChoice, FileChoice | None, int]] = []
        for base in disk.metadata_choices(model, limits=limits):
            if left <= 0:
                break
            kept = base.metadata_kept
            ns = disk.namespace_after(base)
            varied = disk.dirty_inodes(base)[: limits.max_dirty_files]
            radices = []
            for node in varied:
                if node.ino not in options:
                    options[node.ino] = disk.file_options(node.ino, limits=limits)
                radices.append(len(options[node.ino]))
            allowed = 1
            for r in radices:
                allowed *= r
            quota = min(allowed, left)
            left -= quota
            aof_ino = ns.get(self.ev.name)
            where = next((j for j, node in enumerate(varied) if node.ino == aof_ino), None)
            if where is None or aof_ino is None:
                out.append((CrashChoice(model, kept, (), base.metadata_ops), None, quota))
                continue
            inner = 1
            for r in radices[where + 1:]:
                inner *= r
            block = inner * radices[where]
            for o, fc in enumerate(options[aof_ino]):
                count = (quota // block) * inner + min(max(quota % block - o * inner, 0), inner)
                if count:
                    durable = fc.kind is ImageKind.DURABLE
                    out.append((CrashChoice(model, kept, () if durable else (fc,),
                                            base.metadata_ops),
                                None if durable else fc, count))
        if sum(c for _, _, c in out) != emitted:  # pragma: no cover - enumeration drifted
            raise ExplorerError("explore: grouped states do not add up to SimDisk's enumeration")
        return out

    def _fast(self, rec: Rec, f: int, n: int, model: PersistenceModel,
              choice: CrashChoice) -> tuple[str, tuple[str, ...]]:
        if rec.unavailable is not None:
            if not self.config.allow_unavailable and not choice.damaged:
                return "violation", ("availability",)
            return "unavailable", ()
        best = -1
        for k in rec.ks:
            if k <= n:
                best = k
        if best < 0:
            return "violation", ("prefix-consistency",)
        if best < f:
            return "violation", ("durability",)
        stable = rec.stable_process if model is PROCESS else rec.stable_power
        if stable is False:
            return "violation", ("stability",)
        return "consistent", ()

    def _history(self, p: int) -> History:
        history = self._histories.get(p)
        if history is None:
            if len(self._histories) > 4:
                self._histories.clear()
            history = self._histories[p] = self.rec.history_at(p)
        return history

    def _check(self, point: CrashPoint, model: PersistenceModel, choice: CrashChoice,
               snapshot: Snapshot | None, *, reason: str | None, crash: CrashInfo,
               history: History | None = None, damaged_synced: bool = False) -> Verdict:
        """The oracle's rules 1, 2 and 4 on one state of `point` recovered as `snapshot` (None:
        the recovery refused to start, for `reason`), with the point's history (or
        `history`); rule 5 instead with `damaged_synced`."""
        p = point.trace_index
        return check_recovery(
            self._history(p) if history is None else history,
            snapshot,
            policy=self.config.policy,
            model=model.value,
            crash_ms=point.crash_ms,
            recovery_ms=self.t_ms,
            window_ms=self.config.window_ms,
            stalls=self.rec.stalls_at(p),
            error_stalls=self.rec.error_stalls_at(p),
            no_appendfsync_on_rewrite=self.config.no_appendfsync_on_rewrite,
            unavailable_reason=reason if snapshot is None else None,
            allow_unavailable=self.config.allow_unavailable,
            damaged_image=choice.damaged,
            damaged_synced=damaged_synced,
            crash=crash,
        )

    def _exact(self, disk: SimDisk, point: CrashPoint, model: PersistenceModel,
               choice: CrashChoice) -> tuple[str, tuple[str, ...], Verdict]:
        """The oracle's verdict on the materialised image, recovered from byte 0."""
        self.result.exact_checks += 1
        aof = self.ev.aof_bytes(disk, model, choice)
        if self.naive:
            full, snapshot = full_recover(self.config, aof, self.index)
        else:
            cached = self._snapshots.get(aof)
            if cached is None:
                if len(self._snapshots) > 64:
                    self._snapshots.clear()
                cached = self._snapshots[aof] = full_recover(self.config, aof, self.index)
            full, snapshot = cached
        verdict = self._check(point, model, choice, snapshot, reason=full.unavailable,
                              crash=crash_info(point, model, choice))
        if not verdict.ok:
            return "violation", violated_rules(verdict), verdict
        stable = full.stable_process if model is PROCESS else full.stable_power
        if snapshot is not None and stable is False:
            return "violation", ("stability",), verdict
        return verdict.outcome, (), verdict

    def _record(self, disk: SimDisk, point: CrashPoint, model: PersistenceModel,
                choice: CrashChoice, aof: FileChoice | None, count: int, outcome: str,
                rules: tuple[str, ...], verdict: Verdict | None) -> None:
        self._states_seen += 1
        res = self.result
        if (outcome == "violation" and verdict is None
                and len(res.violations) < self.limits.max_exact_violations):
            outcome2, rules2, verdict = self._exact(disk, point, model, choice)
            if outcome2 != "violation":
                # A bug of ours: the oracle's verdict stands, the disagreement is reported.
                self._harness_bug(point, model, choice,
                                  f"the fast path found {', '.join(rules)}", outcome2, rules2)
            outcome, rules = outcome2, rules2
        res.outcomes[(model.value, outcome)] += count
        res.kinds[(model.value, _kind(model, aof))] += count
        if res.states_log is not None:
            res.states_log.append(
                StateRecord(self._point_no, model, choice, aof, count, outcome, rules))
        if outcome != "violation":
            return
        for rule in rules:
            res.violation_counts[(model.value, rule)] += count
        effects = self._effects(disk, choice)
        mechanism = (model.value, rules, effects)
        first_of_kind = mechanism not in res.mechanism_states
        res.mechanism_states[mechanism] += count
        # Every mechanism keeps its first state (with a reproduction); beyond that, the first
        # states up to the limits.
        cap = max(self.limits.max_reproductions, self.limits.max_exact_violations)
        if first_of_kind or len(res.violations) < cap:
            repro = (self.reproduction(point, model, choice, rules)
                     if first_of_kind or len(res.violations) < self.limits.max_reproductions
                     else None)
            if verdict is None and first_of_kind:
                _, _, verdict = self._exact(disk, point, model, choice)
            res.violations.append(ExploreViolation(point, model, choice, rules, verdict, repro,
                                                   effects=effects, count=count))

    def _effects(self, disk: SimDisk, choice: CrashChoice) -> tuple[str, ...]:
        """What `choice`'s image lacks or resurrects against the files visible at this point."""
        if self._visible is None or self._visible[0] != self._point_no:
            self._visible = (self._point_no, disk.crash(PROCESS).files)
        return image_effects(self._visible[1], disk.crash(choice.model, choice).files)

    def _harness_bug(self, point: CrashPoint, model: PersistenceModel, choice: CrashChoice,
                     what: str, outcome: str, rules: tuple[str, ...]) -> None:
        if len(self.result.harness_bugs) >= 16:
            return  # (one is enough to fix; a few show whether they share a cause)
        repro = self.reproduction(point, model, choice, rules)
        repro = dataclasses.replace(
            repro, expected={"outcome": outcome, "rules": list(rules)},
            note=f"aofcrash explore: harness bug (the fast path disagreed with the oracle: "
                 f"{what}); the oracle says {outcome}")
        self.result.harness_bugs.append(
            HarnessBug(point, model, choice, what, outcome, rules, repro))

    # -- reproductions

    def reproduction(self, point: CrashPoint, model: PersistenceModel, choice: CrashChoice,
                     rules: tuple[str, ...], *, damage: Damage | None = None) -> Reproduction:
        rec = self.rec
        steps: list[Step] = list(rec.steps[: point.step_index])
        if point.nth_op is not None:
            fault = CrashFault(nth=point.nth_op, op=FaultOp.ANY, torn_bytes=point.torn_bytes)
            steps.append(ArmCrash(FaultPlan((fault,))))
            steps.append(rec.steps[point.step_index])
        elif not rec.ended_crashed:
            steps.append(Crash())
        steps.append(Recover(model=model, choice=choice, downtime_ms=self.t_ms - point.crash_ms,
                             damage=damage))
        note = (f"aofcrash explore: {', '.join(rules)} after a crash at trace index "
                f"{point.trace_index}" + ("" if point.torn_bytes is None else
                                          f" ({point.torn_bytes} bytes into a write)")
                + f", model {model.value}"
                + ("" if damage is None else ", synced bytes damaged"))
        return Reproduction(config=rec.config, steps=tuple(steps),
                            expected={"outcome": "violation", "rules": list(rules)}, note=note)

    def _confirm(self) -> None:
        from harness.machine._driver import ContractViolation, replay

        budget = self.limits.confirm_reproductions
        for i, v in enumerate(self.result.violations):
            if budget <= 0:
                break
            if v.reproduction is None:
                continue
            budget -= 1
            try:
                replay(v.reproduction)
                confirmed = False
            except ContractViolation as exc:
                got = {x.rule.value for x in exc.verdict.violations}
                confirmed = bool(got & set(v.rules))
            self.result.violations[i] = dataclasses.replace(v, confirmed=confirmed)
