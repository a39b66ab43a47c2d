"""What ``aofcrash verify`` runs and what it found: the configuration (validated, with the
command line that re-runs it), one trial's result, a run's result and its report, and a
violating trial's cause attribution.

The server is any of ``harness.targets.resolve_server``'s forms: a preset (redis-server 6.0,
6.2, 7.0, Valkey 9.1 as ``valkey``, the reference as a process), a path to a binary run with
redis-server's flags, or a command template (``server_cmd``).
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from faults import FaultPlanError, ShortWrite
from harness.oracle import History, Verdict
from harness.targets._servers import SERVER_PRESETS, ServerSpecError, _template_words
from harness.verify._mechanism import cause_text, describe_effects, server_reason_kind

__all__ = [
    "FAULTS",
    "IMAGES",
    "INGREDIENTS",
    "MODELS",
    "OUTCOMES",
    "POLICIES",
    "SERVERS",
    "Attribution",
    "Dumper",
    "Launcher",
    "TrialResult",
    "Variant",
    "VerifyConfig",
    "VerifyEnvironmentError",
    "VerifyResult",
    "verify_report",
]

SERVERS: Final = SERVER_PRESETS  # or a path to a binary, or a command template (server_cmd)
POLICIES: Final = ("always", "everysec", "no")
# "power" is the old name of "power-ext4" (reproductions written before the calibration).
# "ext4", "xfs", "btrfs": the real kernel (``_verify_kernel``: the server on a recorded loop
# device, the crash image mounted by Linux).
MODELS: Final = ("process", "power-ext4", "power-xfs", "power-btrfs", "power-posix-metadata",
                  "power-eager-metadata", "power", "ext4", "xfs", "btrfs")
# "fsync-error": io-error always on a sync (EIO 1-2 times, then success); "write-error": always
# on a write; "kill-child": a BGREWRITEAOF during the workload whose rewrite child is SIGKILLed;
# "incr-fsync-error": EIO on the old incr file's fsync during a rewrite (redis#11713);
# "rewrite-completes": a BGREWRITEAOF waited for, then paced writes (see _faults).
FAULTS: Final = ("none", "short-write", "no-space", "io-error", "fsync-error", "write-error",
                 "slow-sync", "kill-child", "incr-fsync-error", "rewrite-completes")
# What cause attribution can take out of a violating trial, one at a time (``run_trial``'s
# `without`; "metadata" replaces a strict metadata model by ``power-eager-metadata``).
INGREDIENTS: Final = ("fault", "metadata", "rewrite")
# A trial's outcome. "not-exercised": an everysec trial in which no entry had to survive.
OUTCOMES: Final = ("consistent", "not-exercised", "unavailable", "violation")
# Power-model crash images: "drawn" with SimDisk's default ImageLimits (sector-aligned
# prefixes of the unsynced data, kept metadata prefixes), "drawn-damaged" also with torn and
# reordered sectors (opt-in in faults: an AOF has no checksums, so a damaged sector inside a
# value tests the file format rather than the persistence protocol), "durable" = durable state
# only. Both drawn kinds use the durable-only image in a seeded quarter of the trials.
IMAGES: Final = ("drawn", "drawn-damaged", "durable")


# A dump as dump_keyspace returns it: {db: {key: (type, value, expire_at_ms | None)}}.
DumpMapping: TypeAlias = Mapping[int, Mapping[bytes, tuple[str, Any, int | None]]]
# (client, now_ms) -> dump. A test double can wrap dump_keyspace to corrupt what it reports.
Dumper: TypeAlias = Callable[[Any, int], DumpMapping]
# (data_dir, log_path, policy) -> an unstarted RedisProcess-like object.
Launcher: TypeAlias = Callable[[str, str, str], Any]


# 6.x appendonly.aof, 7.0 / Valkey base and incr files, temp rewrite files (never the manifest).
_AOF_GLOB: Final = "*.aof"


class VerifyEnvironmentError(RuntimeError):
    """The run cannot start here (missing binary, not a RESP server, no FUSE); one line."""


@dataclass(frozen=True)
class VerifyConfig:
    """What ``aofcrash verify`` runs. Every field is validated; errors name the field.

    `server` is a preset of ``SERVERS`` or a path to a binary (run with redis-server's flags);
    `server_cmd`, when given, is a command template instead (``server`` then reads "command").
    `aof_glob` names the server's AOF files (relative to its directory) for fault placement and
    the report; None means ``*.aof``, what Redis and Valkey write.
    """

    server: str = "7.0"
    policy: str = "always"
    model: str = "process"
    trials: int = 5
    ops: int = 200
    fault: str = "none"
    rewrite: bool = False
    seed: int = 0
    first_trial: int = 0  # trial indices run are first_trial .. first_trial + trials - 1
    window_ms: int = 2000
    margin_ms: int = 500
    batch_max: int = 6
    allow_unavailable: bool = False
    image: str = "drawn"
    duration_ms: int | None = None  # None: 6000 for everysec, else 0 (as fast as it goes)
    server_cmd: str | None = None
    aof_glob: str | None = None

    def __post_init__(self) -> None:
        errors = []
        if self.server_cmd is not None:
            object.__setattr__(self, "server", "command")
            try:
                _template_words(str(self.server_cmd))
            except ServerSpecError as exc:
                errors.append(str(exc))
        elif not isinstance(self.server, str) or (
            self.server not in SERVERS and "/" not in self.server
        ):
            errors.append(
                f"server must be one of {', '.join(SERVERS)} or a path to a server binary "
                f"(a path has a '/'), got {self.server!r}"
            )
        for name, allowed in (("policy", POLICIES), ("model", MODELS),
                              ("fault", FAULTS), ("image", IMAGES)):
            value = getattr(self, name)
            if value not in allowed:
                errors.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name, minimum in (("trials", 1), ("ops", 1), ("seed", 0), ("first_trial", 0),
                              ("window_ms", 0), ("margin_ms", 0), ("batch_max", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                errors.append(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.duration_ms is not None and (
            isinstance(self.duration_ms, bool) or not isinstance(self.duration_ms, int)
            or self.duration_ms < 0
        ):
            errors.append(f"duration_ms must be None or an int >= 0, got {self.duration_ms!r}")
        if self.aof_glob is not None:
            try:
                ShortWrite(written_bytes=1, path_glob=self.aof_glob)
            except (FaultPlanError, TypeError) as exc:
                problem = "; ".join(getattr(exc, "errors", [str(exc)]))
                errors.append(f"aof_glob{problem.split('path_glob', 1)[-1]}")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def workload_duration_ms(self) -> int:
        """How long the writes are spread over. everysec needs seconds: only entries acked
        more than W before the crash must survive, so a fast run would check nothing."""
        if self.duration_ms is not None:
            return self.duration_ms
        return 6000 if self.policy == "everysec" else 0

    @property
    def needs_mount(self) -> bool:
        """Power models and faults only reach a real process through a FUSE mount."""
        return self.model not in ("process", "ext4", "xfs", "btrfs") or self.fault != "none"

    @property
    def fault_glob(self) -> str:
        return self.aof_glob if self.aof_glob is not None else _AOF_GLOB

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "server_cmd": self.server_cmd, "aof_glob": self.aof_glob,
            "policy": self.policy, "model": self.model,
            "trials": self.trials, "ops": self.ops, "fault": self.fault,
            "rewrite": self.rewrite, "seed": self.seed, "first_trial": self.first_trial,
            "window_ms": self.window_ms, "margin_ms": self.margin_ms,
            "batch_max": self.batch_max, "allow_unavailable": self.allow_unavailable,
            "image": self.image, "duration_ms": self.workload_duration_ms,
        }

    def command_line(self, *, trial: int | None = None) -> str:
        """The ``aofcrash verify`` command line that runs this (or only trial `trial`)."""
        first, count = (trial, 1) if trial is not None else (self.first_trial, self.trials)
        parts = ["aofcrash", "verify"]
        if self.server_cmd is not None:
            parts += ["--server-cmd", shlex.quote(self.server_cmd)]
        else:
            parts += ["--server", shlex.quote(self.server)]
        if self.aof_glob is not None:
            parts += ["--aof-glob", shlex.quote(self.aof_glob)]
        parts += ["--policy", self.policy, "--model", self.model, "--fault", self.fault,
                  "--ops", str(self.ops), "--seed", str(self.seed), "--trials", str(count)]
        if first:
            parts += ["--first-trial", str(first)]
        if self.rewrite:
            parts.append("--rewrite")
        if self.margin_ms != 500:
            parts += ["--margin-ms", str(self.margin_ms)]
        if self.batch_max != 6:
            parts += ["--batch-max", str(self.batch_max)]
        if self.allow_unavailable:
            parts.append("--allow-unavailable")
        if self.image != "drawn":
            parts += ["--image", self.image]
        if self.duration_ms is not None:
            parts += ["--duration-ms", str(self.duration_ms)]
        return " ".join(parts)


@dataclass
class TrialResult:
    """One trial: what ran, what the client learned, and the verdicts."""

    index: int
    outcome: str  # one of OUTCOMES
    recovery: Verdict
    stability: Verdict | None
    entries: int
    acked: int
    unknown: int
    errors: int
    crash_ms: int
    recovery_ms: int
    crash_image: str  # "visible" (process), "durable-only" or "drawn"
    crash_choice: dict[str, Any] | None
    faults: str  # the armed plan, as JSON ("" for none)
    fired: list[str]
    events: Counter[str]
    elapsed_s: float
    server_died_early: bool
    log_tail: list[str] = field(default_factory=list)
    history: History | None = None
    fault_asked: bool = False
    fault_armed_at: int | None = None  # entries sent when the fault was armed
    fault_note: str = ""  # why a fault asked for was not armed
    aof_files: list[tuple[str, int]] = field(default_factory=list)  # at the crash: (path, bytes)
    # What the crash image lacks or resurrects against the visible state (_mechanism).
    image_effects: tuple[str, ...] = ()
    # Starts refused after the crash (0: it came up; 1: refused once, then the next start came
    # up, judged as `after_refusal`; 2: refused on the next start too).
    refused_starts: int = 0
    after_refusal: str = ""
    attribution: Attribution | None = None  # violations only: which ingredients it needs

    @property
    def fault_fired(self) -> bool:
        return bool(self.fired)

    @property
    def unavailable_after_ack(self) -> bool:
        """The server acknowledged writes, then refused to start after a legal crash."""
        return self.recovery.unavailable_reason is not None and self.acked > 0

    @property
    def mechanism(self) -> str:
        """What explains the violation: the rules it broke, what the crash image lacks or
        resurrects against what the server had written, and why the server refused to start
        (its log line, numbers normalised); "" for a trial without violations."""
        rules = sorted({v.rule.value for v in self.violations})
        if not rules:
            return ""
        text = f"{'/'.join(rules)}: {describe_effects(self.image_effects)}"
        if self.recovery.unavailable_reason:
            text += f"; the server: {server_reason_kind(self.recovery.unavailable_reason)}"
            text += self.refusal_span
        return text

    @property
    def refusal_span(self) -> str:
        """For how many starts the server refused ("" when it came up)."""
        if self.refused_starts == 1:
            return (f" (one start only: the next start came up, {self.after_refusal})")
        if self.refused_starts >= 2:
            return " (the next start refused too)"
        return ""

    @property
    def mechanism_parts(self) -> tuple[tuple[str, ...], str]:
        """(image effects, the server's refusal kind or "") for ``same_mechanism_part``."""
        reason = self.recovery.unavailable_reason
        return self.image_effects, server_reason_kind(reason) if reason else ""

    @property
    def violations(self) -> list[Any]:
        found = list(self.recovery.violations)
        if self.stability is not None:
            found += self.stability.violations
        return found

    def render(self) -> str:
        head = (
            f"trial {self.index}: {self.outcome.upper()}  entries={self.entries} "
            f"acked={self.acked} unknown={self.unknown} errors={self.errors} "
            f"k={self.recovery.k} F={self.recovery.frontier} image={self.crash_image}"
        )
        if self.fault_asked:
            head += f" fault={'fired' if self.fault_fired else 'not fired'}"
        body = [v.render() for v in self.violations]
        if self.attribution is not None:
            body.append(f"  cause: {self.attribution.summary()}")
        if self.outcome == "not-exercised":
            body.append("  not exercised: no acknowledged entry was old enough that it had to "
                        "survive (everysec frontier is empty)")
        if self.fault_note:
            body.append(f"  fault: {self.fault_note}")
        if self.recovery.unavailable_reason:
            what = ("acknowledged, then unavailable" if self.unavailable_after_ack
                    else "refused to start")
            body.append(f"  {what}: {self.recovery.unavailable_reason}{self.refusal_span}")
        return "\n".join([head, *body])

    def row(self) -> dict[str, Any]:
        return {
            "trial": self.index, "outcome": self.outcome, "entries": self.entries,
            "acked": self.acked, "unknown": self.unknown, "errors": self.errors,
            "k": self.recovery.k, "frontier": self.recovery.frontier,
            "crash_ms": self.crash_ms, "recovery_ms": self.recovery_ms,
            "image": self.crash_image, "fired": "; ".join(self.fired),
            "fault_fired": self.fault_fired if self.fault_asked else None,
            "fault_armed_at_entry": self.fault_armed_at,
            "fault_note": self.fault_note or None,
            "aof_files": "; ".join(f"{name} ({size} B)" for name, size in self.aof_files),
            "acknowledged_then_unavailable": self.unavailable_after_ack,
            "server_reason": self.recovery.unavailable_reason,
            "mechanism": self.mechanism or None,
            "refused_starts": self.refused_starts or None,
            "after_refusal": self.after_refusal or None,
            "image_effects": list(self.image_effects),
            "cause": None if self.attribution is None else self.attribution.summary(),
            "seconds": round(self.elapsed_s, 3),
        }


@dataclass
class VerifyResult:
    config: VerifyConfig
    server_version: str
    trials: list[TrialResult]
    elapsed_s: float
    server_name: str = ""
    workers: int = 1
    attribution_s: float = 0.0  # of elapsed_s: re-running violating trials for their causes
    # Why the run stopped before every trial finished ("" when it did not): the trials are
    # the ones that finished.
    interrupted: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.trials if t.outcome == outcome)

    @property
    def fault_fired(self) -> int:
        """Trials in which the fault asked for actually fired."""
        return sum(1 for t in self.trials if t.fault_asked and t.fault_fired)

    @property
    def ok(self) -> bool:
        return self.count("violation") == 0


@dataclass(frozen=True)
class Variant:
    """One variant of a violating trial: the same trial (seed, index) with some of its
    ingredients taken out, and what its re-runs showed."""

    kept: tuple[str, ...]  # labels of the ingredients kept ("fault io-error", "rewrite", ...)
    removed: tuple[str, ...]  # the ingredients taken out (of INGREDIENTS)
    model: str  # the model it ran under (a weaker one when "metadata" is taken out)
    runs: int  # re-runs made (they stop at the first that recurs)
    recurred: int  # re-runs that broke one of the rules the trial broke
    outcomes: tuple[str, ...] = ()  # each re-run: outcome, rules broken, mechanism
    skipped: str = ""  # why it was not run (it contains a sufficient set; it is another one)

    @property
    def sufficient(self) -> bool:
        return self.recurred > 0

    def to_dict(self) -> dict[str, Any]:
        return {"kept": list(self.kept), "removed": list(self.removed), "model": self.model,
                "runs": self.runs, "recurred": self.recurred, "sufficient": self.sufficient,
                "outcomes": list(self.outcomes), "skipped": self.skipped or None}


def _conjunction(labels: Sequence[str]) -> str:
    return " AND ".join(labels)


@dataclass(frozen=True)
class Attribution:
    """Which sets of ingredients are enough for a violating trial to break its rule again.

    The trial is first re-run as it was, up to `repeats` times: a violation that does not come
    back unchanged (the same rules, the same mechanism: ``TrialResult.mechanism``) is
    timing-dependent and not attributed. Then every subset of its ingredients (the fault, strict
    metadata, the rewrite) is kept in turn, the others taken out, smallest first; a variant
    re-runs up to `repeats` times and is *sufficient* at its first violation of a rule the
    trial broke, the same way (its image effects and refusal a part of the trial's:
    ``_mechanism.same_mechanism_part``). `minimal` are the minimal sufficient sets (a
    superset of a sufficient set is not run: it is taken to be sufficient too). "needs the
    rewrite AND strict metadata" is one set of two; "either the fault OR strict metadata" is
    two sets of one."""

    rules: tuple[str, ...]
    repeats: int
    as_is_runs: int
    as_is_recurred: int
    ingredients: tuple[str, ...] = ()  # labels of the trial's ingredients
    variants: tuple[Variant, ...] = ()
    minimal: tuple[tuple[str, ...], ...] = ()  # minimal sufficient sets, as labels
    mechanism: str = ""  # the trial's mechanism
    as_is_outcomes: tuple[str, ...] = ()
    # (x, y): ingredient x implies y (the killed child its rewrite): y is not repeated beside x.
    implied: tuple[tuple[str, str], ...] = ()

    def _shown(self, group: Sequence[str]) -> list[str]:
        hidden = {y for x, y in self.implied if x in group}
        return [label for label in group if label not in hidden]

    @property
    def reproducible(self) -> bool:
        return self.as_is_recurred > 0

    @property
    def needs(self) -> list[str]:
        """Labels of the ingredients in every minimal sufficient set (each one is necessary)."""
        if not self.reproducible or not self.minimal:
            return []
        common = set(self.minimal[0]).intersection(*map(set, self.minimal[1:]))
        return [label for label in self.ingredients if label in common]

    @property
    def happens_without(self) -> list[str]:
        """Labels of the ingredients in no minimal sufficient set (not causes)."""
        if not self.reproducible:
            return []
        used = {label for group in self.minimal for label in group}
        return [label for label in self.ingredients if label not in used]

    def summary(self) -> str:
        """One line: "needs the rewrite AND strict metadata (...)", "either the fault
        fsync-error OR strict metadata (...)", "needs none of them", or "timing-dependent"."""
        if not self.reproducible:
            return (f"timing-dependent: it did not recur unchanged in {self.as_is_runs} "
                    "re-run(s) of the same trial (not attributed)")
        if not self.ingredients:
            return ("needs only the workload and the crash (no fault, rewrite or strict "
                    "metadata to take out)")
        if self.minimal == ((),):
            return "needs none of them: it recurs without " + ", ".join(
                f"the {label}" for label in self.ingredients)
        shown = [self._shown(group) for group in self.minimal]
        if len(shown) == 1:
            text = "needs the " + _conjunction(shown[0])
        else:
            text = "either " + " OR ".join(
                "the " + _conjunction(group) if len(group) == 1
                else "(" + _conjunction(group) + ")" for group in shown)
        spare = self.happens_without
        if spare:
            text += "; not needed: " + ", ".join(spare)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "rules": list(self.rules), "repeats": self.repeats,
                "reproducible": self.reproducible, "as_is_runs": self.as_is_runs,
                "as_is_recurred": self.as_is_recurred,
                "as_is_outcomes": list(self.as_is_outcomes), "mechanism": self.mechanism,
                "ingredients": list(self.ingredients),
                "implied": [list(pair) for pair in self.implied],
                "minimal_sufficient_sets": [list(g) for g in self.minimal],
                "needs": self.needs, "happens_without": self.happens_without,
                "variants": [v.to_dict() for v in self.variants]}


def verify_report(result: VerifyResult, *, run_id: str, argv: Sequence[str] = ()) -> dict[str, Any]:
    """The report.json content for a run (write it with harness.cli._report.write_report)."""
    cfg = result.config
    events: Counter[str] = Counter()
    for t in result.trials:
        events.update(t.events)
        events[f"outcome: {t.outcome}"] += 1
        events[f"crash image: {t.crash_image}"] += 1
    violations = []
    configuration = (f"{result.server_name or cfg.server} {result.server_version} "
                     f"{cfg.policy}{' + rewrite' if cfg.rewrite else ''}").replace("  ", " ")
    for t in result.trials:
        for v in t.violations:
            violations.append({
                "id": f"t{t.index}-{v.rule.value}",
                "configuration": configuration,
                "model": cfg.model,
                "fault": ((cfg.fault + ("" if t.fault_fired or not t.fault_asked
                                        else " (not fired)")) if cfg.fault != "none"
                          else "no fault"),
                "mechanism": t.mechanism,
                "rule": v.rule.value,
                "case": ("acknowledged, then unavailable"
                         if v.rule.value == "availability" and t.unavailable_after_ack
                         else v.rule.value),
                "server_reason": t.recovery.unavailable_reason,
                "trial": t.index,
                "text": f"trial {t.index}\n{v.render()}" + (
                    f"\ncause: {t.attribution.summary()}" if t.attribution is not None else ""),
                "reproduce": cfg.command_line(trial=t.index),
                "cause": None if t.attribution is None else t.attribution.summary(),
                "attribution": None if t.attribution is None else t.attribution.to_dict(),
                "violation": v.to_dict(),
                "faults": t.faults,
                "fired": t.fired,
                "log_tail": t.log_tail,
                "history": None if t.history is None else t.history.to_dict(),
            })
    elapsed = result.elapsed_s
    asked = sum(1 for t in result.trials if t.fault_asked)
    return {
        "command": "verify",
        "run_id": run_id,
        "run": {
            **cfg.to_dict(),
            "server_name": result.server_name,
            "server_version": result.server_version,
            "workers": result.workers,
            "command_line": " ".join(argv) if argv else cfg.command_line(),
        },
        "totals": {
            "trials": len(result.trials),
            "consistent": result.count("consistent"),
            "not_exercised": result.count("not-exercised"),
            "unavailable": result.count("unavailable"),
            "acknowledged_then_unavailable": sum(t.unavailable_after_ack
                                                 for t in result.trials),
            "violations": result.count("violation"),
            "fault_asked_trials": asked,
            "fault_fired_trials": result.fault_fired,
            "acked_entries": sum(t.acked for t in result.trials),
            "unknown_entries": sum(t.unknown for t in result.trials),
            "error_entries": sum(t.errors for t in result.trials),
            "elapsed_s": round(elapsed, 2),
            "attribution_s": round(result.attribution_s, 2),
            "attributed_trials": sum(t.attribution is not None for t in result.trials),
            "trials_per_s": (round(len(result.trials) / trials_s, 2)
                             if (trials_s := elapsed - result.attribution_s) > 0 else None),
        },
        "configurations": [t.row() for t in result.trials],
        "events": dict(events),
        "violations": violations,
        "groups": mechanism_groups(violations, unit="trial"),
        "interrupted": result.interrupted or None,
    }


def mechanism_groups(violations: list[dict[str, Any]], *, unit: str) -> list[dict[str, Any]]:
    """One group per mechanism (``TrialResult.mechanism``: the rules, what the image lacks or
    resurrects, the server's refusal), biggest first; a group counts its `unit`s (a trial
    breaking two rules is one trial of its mechanism), so the counts add up to the violating
    trials. Every violation gets its ``group`` number."""
    by_mechanism: dict[str, list[dict[str, Any]]] = {}
    for v in violations:
        by_mechanism.setdefault(cause_text(str(v.get("mechanism") or v["rule"])), []).append(v)
    rows = []
    for mechanism, members in by_mechanism.items():
        units = list(dict.fromkeys(m.get(unit, m["id"]) for m in members))
        rows.append({"signature": mechanism, "mechanism": mechanism, "count": len(units),
                     "unit": unit, "representative": members[0]["id"],
                     "members": [m["id"] for m in members]})
    rows.sort(key=lambda g: -int(g["count"]))
    for number, g in enumerate(rows, 1):
        g["group"] = number
        for v in by_mechanism[g["mechanism"]]:
            v["group"] = number
    return rows
