"""Steps: what a run does, as data.

A run against an in-process target (the reference unless ``RunConfig.target`` names another) is
a ``RunConfig`` plus a tuple of steps. The Hypothesis
state machines produce steps, the driver executes them, and a reproduction file is exactly
(config, steps), so ``aofcrash replay`` re-runs what the machine did, byte for byte.

JSON: argv items are strings when they are printable ASCII and ``{"b64": ...}`` otherwise, so a
reproduction stays readable and still round-trips arbitrary bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from faults import (
    CrashChoice,
    Damage,
    FaultPlan,
    FaultPlanError,
    FsyncFailure,
    ImageLimits,
    PersistenceModel,
)
from harness.targets import TargetConfig, TargetFactory, TargetSource, load_target_factory

__all__ = [
    "ArmCrash",
    "BgRewrite",
    "ChildStep",
    "ClearFaults",
    "Crash",
    "InjectFaults",
    "KillChild",
    "Multi",
    "Read",
    "Recover",
    "ReproError",
    "Reproduction",
    "RunConfig",
    "Step",
    "Tick",
    "Write",
    "steps_from_json",
    "steps_to_json",
]

POLICIES = ("always", "everysec", "no")
PROFILES = ("safe", "redis-3.0")


class ReproError(ValueError):
    """A reproduction or step list that cannot be loaded; the message names the field."""


def _encode_arg(arg: bytes) -> Any:
    if all(32 <= b < 127 for b in arg):
        return arg.decode("ascii")
    return {"b64": base64.b64encode(arg).decode("ascii")}


def _decode_arg(item: Any, where: str) -> bytes:
    if isinstance(item, str):
        return item.encode("ascii", errors="strict")
    if isinstance(item, dict) and isinstance(item.get("b64"), str):
        return base64.b64decode(item["b64"])
    raise ReproError(f"{where}: expected a string or {{'b64': ...}}, got {item!r}")


def _encode_argv(argv: tuple[bytes, ...]) -> list[Any]:
    return [_encode_arg(a) for a in argv]


def _decode_argv(items: Any, where: str) -> tuple[bytes, ...]:
    if not isinstance(items, list) or not items:
        raise ReproError(f"{where}: expected a non-empty list of arguments")
    return tuple(_decode_arg(x, f"{where}[{i}]") for i, x in enumerate(items))


@dataclass(frozen=True)
class RunConfig:
    """How the in-process target is configured for a run, and how its recovery is judged.

    ``target``: ``MODULE:FACTORY`` of an in-process target (``harness.targets.Target``), or
    None for the bundled reference; ``profile`` and ``defects`` are the reference's options
    (passed to any target in ``TargetConfig.options``). ``allow_unavailable``: refusing to
    start after a crash is reported, not a violation (contract rule 4)."""

    policy: str = "everysec"
    profile: str = "safe"
    defects: frozenset[str] = frozenset()
    fsync_failure: FsyncFailure = FsyncFailure.LINUX
    no_appendfsync_on_rewrite: bool = False
    aof_load_truncated: bool = True
    window_ms: int = 2000
    allow_unavailable: bool = False
    auto_rewrite_min_size_bytes: int = 64 * 1024 * 1024
    # Opt-in crash images (see faults): torn last sectors and reordered sectors.
    torn_sectors: bool = False
    reordered_sectors: bool = False
    target: str | None = None
    damage: bool = False

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(torn=self.torn_sectors, reorder=self.reordered_sectors)

    def target_config(self) -> TargetConfig:
        return TargetConfig(
            appendfsync=self.policy,
            aof_load_truncated=self.aof_load_truncated,
            no_appendfsync_on_rewrite=self.no_appendfsync_on_rewrite,
            auto_rewrite_min_size_bytes=self.auto_rewrite_min_size_bytes,
            options={"profile": self.profile, "defects": self.defects},
        )

    def target_factory(self) -> TargetFactory:
        """The factory ``target`` names (the reference when None); TargetError if unusable."""
        if self.target is None:
            from harness.targets import reference_target

            return reference_target
        return load_target_factory(self.target)

    def __post_init__(self) -> None:
        errors = []
        if self.policy not in POLICIES:
            errors.append(f"policy: must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.profile not in PROFILES:
            errors.append(f"profile: must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.window_ms < 0:
            errors.append(f"window_ms: must be >= 0, got {self.window_ms}")
        if self.auto_rewrite_min_size_bytes < 0:
            errors.append(
                f"auto_rewrite_min_size_bytes: must be >= 0, got {self.auto_rewrite_min_size_bytes}"
            )
        if errors:
            raise ReproError("; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "profile": self.profile,
            "defects": sorted(self.defects),
            "fsync_failure": self.fsync_failure.value,
            "no_appendfsync_on_rewrite": self.no_appendfsync_on_rewrite,
            "aof_load_truncated": self.aof_load_truncated,
            "window_ms": self.window_ms,
            "allow_unavailable": self.allow_unavailable,
            "auto_rewrite_min_size_bytes": self.auto_rewrite_min_size_bytes,
            "torn_sectors": self.torn_sectors,
            "reordered_sectors": self.reordered_sectors,
            **({} if self.target is None else {"target": self.target}),
            **({"damage": True} if self.damage else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        if not isinstance(data, dict):
            raise ReproError("config: expected an object")
        kwargs = dict(data)
        if "strict_availability" in kwargs:
            # Written before availability became a violation by default (contract rule 4).
            strict = kwargs.pop("strict_availability")
            kwargs.setdefault("allow_unavailable", not strict)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ReproError(f"config: unknown field(s) {', '.join(unknown)}")
        if "defects" in kwargs:
            kwargs["defects"] = frozenset(kwargs["defects"])
        if "fsync_failure" in kwargs:
            try:
                kwargs["fsync_failure"] = FsyncFailure(kwargs["fsync_failure"])
            except ValueError:
                raise ReproError(
                    f"config.fsync_failure: must be one of "
                    f"{', '.join(m.value for m in FsyncFailure)}, got {kwargs['fsync_failure']!r}"
                ) from None
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ReproError(f"config: {exc}") from None


@dataclass(frozen=True)
class Write:
    """Submit one write command; with ``iterate`` the server runs an event-loop iteration after."""

    argv: tuple[bytes, ...]
    client: int = 0
    iterate: bool = True
    kind: ClassVar[str] = "write"


@dataclass(frozen=True)
class Multi:
    """MULTI, the commands, EXEC from one client, then one iteration."""

    commands: tuple[tuple[bytes, ...], ...]
    client: int = 0
    kind: ClassVar[str] = "multi"


@dataclass(frozen=True)
class Read:
    """A read command whose reply is checked against the model."""

    argv: tuple[bytes, ...]
    client: int = 0
    kind: ClassVar[str] = "read"


@dataclass(frozen=True)
class Tick:
    """Let ``delta_ms`` of virtual time pass: one event-loop iteration per cron period
    (1000/hz ms), and one step of a running rewrite child per period, as real time would."""

    delta_ms: int
    kind: ClassVar[str] = "tick"


@dataclass(frozen=True)
class BgRewrite:
    kind: ClassVar[str] = "bgrewrite"


@dataclass(frozen=True)
class ChildStep:
    """Advance the rewrite child by ``count`` steps (no-op without a child)."""

    count: int = 1
    kind: ClassVar[str] = "child_step"


@dataclass(frozen=True)
class KillChild:
    kind: ClassVar[str] = "kill_child"


@dataclass(frozen=True)
class InjectFaults:
    """Add faults to the plan; their occurrence counts start at the moment they are added."""

    plan: FaultPlan
    kind: ClassVar[str] = "inject"


@dataclass(frozen=True)
class ClearFaults:
    """Remove every fault (the disk has space again, the device works again)."""

    kind: ClassVar[str] = "clear_faults"


@dataclass(frozen=True)
class ArmCrash:
    """Arm a crash: the process dies when the nth matching filesystem operation is attempted.
    With ``after_release`` the plan is armed only when the next reply is released (through
    ``TargetEnv.release``, or at the end of the iteration that releases it), so ``Crash(nth=1)``
    dies at the first filesystem operation after an acknowledgement."""

    plan: FaultPlan
    after_release: bool = False
    kind: ClassVar[str] = "arm_crash"


@dataclass(frozen=True)
class Crash:
    """The process dies now, between two filesystem operations."""

    kind: ClassVar[str] = "crash"


@dataclass(frozen=True)
class Recover:
    """Build the durable image under ``model`` with ``choice`` (None: drawn from ``seed``), restart
    the server on it, check the contract; with ``crash_during_recovery_op`` the recovery itself is
    crashed at that filesystem operation (nth, 1-based) and recovered once more. With
    ``damage`` the image's synced bytes are damaged first (a media error) and the recovery is
    judged by contract rule 5 (a checksummed target); a damage that hits no file is none."""

    model: PersistenceModel
    choice: CrashChoice | None = None
    seed: int = 0
    downtime_ms: int = 0
    crash_during_recovery_op: int | None = None
    damage: Damage | None = None
    kind: ClassVar[str] = "recover"


Step = (
    Write | Multi | Read | Tick | BgRewrite | ChildStep | KillChild | InjectFaults | ClearFaults
    | ArmCrash | Crash | Recover
)
_STEP_TYPES: dict[str, type[Any]] = {
    t.kind: t
    for t in (Write, Multi, Read, Tick, BgRewrite, ChildStep, KillChild, InjectFaults,
              ClearFaults, ArmCrash, Crash, Recover)
}


def step_to_dict(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"step": step.kind}
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        if f.name == "after_release" and not value:
            continue  # (the usual arming: reproductions stay as they were)
        if f.name == "argv":
            value = _encode_argv(value)
        elif f.name == "commands":
            value = [_encode_argv(c) for c in value]
        elif isinstance(value, FaultPlan | CrashChoice | Damage):
            value = value.to_dict()
        elif isinstance(value, PersistenceModel):
            value = value.value
        out[f.name] = value
    return out


def step_from_dict(data: Any, where: str) -> Step:
    if not isinstance(data, dict) or "step" not in data:
        raise ReproError(f"{where}: expected an object with a 'step' field")
    cls = _STEP_TYPES.get(data["step"])
    if cls is None:
        raise ReproError(
            f"{where}.step: unknown step {data['step']!r} (known: {', '.join(sorted(_STEP_TYPES))})"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"step"})
    if unknown:
        raise ReproError(f"{where}: unknown field(s) {', '.join(unknown)} for step {cls.kind!r}")
    kwargs: dict[str, Any] = {}
    for name in names & set(data):
        value = data[name]
        try:
            if name == "argv":
                value = _decode_argv(value, f"{where}.argv")
            elif name == "commands":
                if not isinstance(value, list):
                    raise ReproError(f"{where}.commands: expected a list")
                value = tuple(
                    _decode_argv(c, f"{where}.commands[{i}]") for i, c in enumerate(value)
                )
            elif name == "plan":
                value = FaultPlan.from_dict(value)
            elif name == "choice" and value is not None:
                value = CrashChoice.from_dict(value)
            elif name == "model":
                value = PersistenceModel(value)
            elif name == "after_release" and not isinstance(value, bool):
                raise ReproError(f"{where}.after_release: expected true or false, got {value!r}")
            elif name == "damage" and value is not None:
                value = _damage_from_dict(value, f"{where}.damage")
        except ReproError:
            raise
        except ValueError as exc:
            raise ReproError(f"{where}.{name}: {exc}") from None
        kwargs[name] = value
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ReproError(f"{where}: {exc}") from None


def _damage_from_dict(value: Any, where: str) -> Damage:
    try:
        (fault,) = FaultPlan.from_dict({"faults": [value]}).faults
    except FaultPlanError as exc:
        raise ReproError(f"{where}: {'; '.join(exc.errors)}") from None
    if not isinstance(fault, Damage):
        raise ReproError(f"{where}: expected a Damage fault, got {type(fault).__name__}")
    return fault


def steps_to_json(steps: tuple[Step, ...]) -> list[dict[str, Any]]:
    return [step_to_dict(s) for s in steps]


def steps_from_json(items: Any) -> tuple[Step, ...]:
    if not isinstance(items, list):
        raise ReproError("steps: expected a list")
    return tuple(step_from_dict(item, f"steps[{i}]") for i, item in enumerate(items))


@dataclass(frozen=True)
class Reproduction:
    """A replayable run: config + steps, and what it showed when it was recorded.

    ``target_source`` (optional; files written before it existed have none): where the
    target's module was imported from, so that a replay from another directory finds it
    (``harness.targets.make_importable``)."""

    config: RunConfig
    steps: tuple[Step, ...]
    expected: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    target_source: TargetSource | None = None

    FORMAT: ClassVar[str] = "aofcrash-repro/1"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": self.FORMAT,
            "note": self.note,
            "config": self.config.to_dict(),
            "steps": steps_to_json(self.steps),
            "expected": self.expected,
        }
        if self.target_source is not None:
            out["target_source"] = self.target_source.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    def with_target_source(self, root: Path) -> Reproduction:
        """This reproduction, with ``target_source`` recorded (relative to the project `root`)
        when it has none and its target is a module of the user's (see ``target_source``)."""
        if self.target_source is not None or self.config.target is None:
            return self
        from harness.targets import target_source

        source = target_source(self.config.target, root=root)
        return self if source is None else dataclasses.replace(self, target_source=source)

    @classmethod
    def from_dict(cls, data: Any) -> Reproduction:
        if not isinstance(data, dict):
            raise ReproError("reproduction: expected a JSON object")
        if data.get("format") != cls.FORMAT:
            raise ReproError(
                f"format: expected {cls.FORMAT!r}, got {data.get('format')!r} (not a reproduction?)"
            )
        expected = data.get("expected", {})
        if not isinstance(expected, dict):
            raise ReproError("expected: must be an object")
        source = None
        if data.get("target_source") is not None:
            try:
                source = TargetSource.from_dict(data["target_source"])
            except ValueError as exc:
                raise ReproError(str(exc)) from None
        return cls(
            config=RunConfig.from_dict(data.get("config", {})),
            steps=steps_from_json(data.get("steps")),
            expected=expected,
            note=str(data.get("note", "")),
            target_source=source,
        )

    @classmethod
    def from_json(cls, text: str) -> Reproduction:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReproError(
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        return cls.from_dict(data)
