"""Fault plans as data: frozen dataclasses with enums, validated at construction (every problem
reported at once, each naming its field), with a JSON round-trip."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Crash",
    "Damage",
    "DamageKind",
    "Fault",
    "FaultOp",
    "FaultPlan",
    "FaultPlanError",
    "IOFault",
    "KillChild",
    "NoSpace",
    "ShortWrite",
    "SlowSync",
]


class FaultOp(enum.Enum):
    """Operation kinds a fault can match."""

    OPEN = "open"
    WRITE = "write"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    FTRUNCATE = "ftruncate"
    CLOSE = "close"
    RENAME = "rename"
    UNLINK = "unlink"
    MKDIR = "mkdir"
    FSYNC_DIR = "fsync_dir"
    ANY = "any"


class DamageKind(enum.Enum):
    """What a ``Damage`` fault does to each byte it hits."""

    FLIP = "flip"  # the lowest bit of each byte inverted (a bit flip per byte)
    ZERO = "zero"  # each byte reads as 0


_ALL_OPS = frozenset(op for op in FaultOp if op is not FaultOp.ANY)
_IO_FAULT_OPS = (FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC, FaultOp.RENAME, FaultOp.FSYNC_DIR)


class FaultPlanError(ValueError):
    """Invalid fault or plan. ``errors`` lists every problem, each prefixed by its field."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid fault plan: " + "; ".join(self.errors))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _glob_problem(pattern: object) -> str | None:
    if not isinstance(pattern, str):
        return f"must be a string, got {type(pattern).__name__}"
    if not pattern:
        return "must not be empty (use '*' for every path)"
    if "\0" in pattern:
        return "must not contain NUL"
    if pattern.startswith("/"):
        return f"must be relative to the filesystem root, got {pattern!r}"
    if ".." in pattern.split("/"):
        return f"must not contain '..', got {pattern!r}"
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        return f"unclosed '[' in {pattern!r}"
    return None


# Field checks by name: (allow None, minimum).
_INT_FIELDS: dict[str, tuple[bool, int]] = {
    "nth": (False, 1),
    "nth_rewrite": (False, 1),
    "times": (True, 1),
    "written_bytes": (False, 0),
    "partial_bytes": (True, 0),
    "torn_bytes": (True, 0),
    "delay_ms": (False, 0),
    "at_step": (False, 0),
    "at_permille": (False, 0),
    "length_bytes": (False, 1),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """Base of every fault. Subclasses declare which operation kinds they can match."""

    allowed_ops: ClassVar[tuple[FaultOp, ...]] = ()

    def __post_init__(self) -> None:
        problems = self._problems(self._values())
        if problems:
            raise FaultPlanError([f"{type(self).__name__}.{p}" for p in problems])

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def _problems(cls, values: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for name, value in values.items():
            if name in _INT_FIELDS:
                nullable, minimum = _INT_FIELDS[name]
                if value is None and nullable:
                    continue
                if not _is_int(value):
                    kind = "an integer or null" if nullable else "an integer"
                    out.append(f"{name}: must be {kind}, got {value!r}")
                elif value < minimum:
                    out.append(f"{name}: must be >= {minimum}, got {value}")
            elif name == "path_glob":
                problem = _glob_problem(value)
                if problem:
                    out.append(f"path_glob: {problem}")
            elif name == "op":
                if not isinstance(value, FaultOp):
                    out.append(f"op: must be a FaultOp, got {value!r}")
                elif value not in cls.allowed_ops:
                    known = ", ".join(op.value for op in cls.allowed_ops)
                    out.append(f"op: {value.value!r} is not allowed here (allowed: {known})")
            elif name == "kind" and not isinstance(value, DamageKind):
                out.append(f"kind: must be a DamageKind, got {value!r}")
        return out

    def matches_ops(self) -> frozenset[FaultOp]:
        """The operation kinds this fault counts."""
        return frozenset()

    def window(self) -> tuple[int, int | None]:
        """(first matching occurrence, how many occurrences; None = unbounded)."""
        return (1, 0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for name, value in self._values().items():
            out[name] = value.value if isinstance(value, enum.Enum) else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortWrite(Fault):
    """The nth matching write writes only ``written_bytes`` bytes and returns that count."""

    written_bytes: int
    nth: int = 1
    path_glob: str = "*"

    def matches_ops(self) -> frozenset[FaultOp]:
        return frozenset((FaultOp.WRITE,))

    def window(self) -> tuple[int, int | None]:
        return (self.nth, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSpace(Fault):
    """ENOSPC from the nth matching write on, ``times`` times (None: until the plan changes).
    With ``partial_bytes`` the first failing write is a short write of that many bytes instead."""

    nth: int = 1
    times: int | None = None
    partial_bytes: int | None = None
    path_glob: str = "*"

    def matches_ops(self) -> frozenset[FaultOp]:
        return frozenset((FaultOp.WRITE,))

    def window(self) -> tuple[int, int | None]:
        return (self.nth, self.times)


@dataclass(frozen=True, slots=True, kw_only=True)
class IOFault(Fault):
    """EIO from the nth matching operation of kind ``op``, ``times`` times (None: from then on)."""

    allowed_ops: ClassVar[tuple[FaultOp, ...]] = _IO_FAULT_OPS

    op: FaultOp
    nth: int = 1
    times: int | None = 1
    path_glob: str = "*"

    def matches_ops(self) -> frozenset[FaultOp]:
        return frozenset((self.op,))

    def window(self) -> tuple[int, int | None]:
        return (self.nth, self.times)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlowSync(Fault):
    """The matching fsync/fdatasync takes ``delay_ms`` of virtual time."""

    delay_ms: int
    nth: int = 1
    times: int | None = 1
    path_glob: str = "*"

    def matches_ops(self) -> frozenset[FaultOp]:
        return frozenset((FaultOp.FSYNC, FaultOp.FDATASYNC))

    def window(self) -> tuple[int, int | None]:
        return (self.nth, self.times)


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash(Fault):
    """The process dies when the nth matching operation is attempted (``SimulatedCrash``);
    with ``torn_bytes`` on a write, that many bytes of it are written first."""

    allowed_ops: ClassVar[tuple[FaultOp, ...]] = tuple(FaultOp)

    nth: int
    op: FaultOp = FaultOp.ANY
    path_glob: str = "*"
    torn_bytes: int | None = None

    @classmethod
    def _problems(cls, values: Mapping[str, Any]) -> list[str]:
        out = super(Crash, cls)._problems(values)
        op = values.get("op")
        if values.get("torn_bytes") is not None and op not in (FaultOp.WRITE, FaultOp.ANY):
            shown = op.value if isinstance(op, FaultOp) else op
            out.append(f"torn_bytes: only a write can be torn, but op is {shown!r}")
        return out

    def matches_ops(self) -> frozenset[FaultOp]:
        return _ALL_OPS if self.op is FaultOp.ANY else frozenset((self.op,))

    def window(self) -> tuple[int, int | None]:
        return (self.nth, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class KillChild(Fault):
    """The rewrite child of the ``nth_rewrite``-th rewrite dies at step ``at_step``."""

    at_step: int
    nth_rewrite: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage(Fault):
    """A media error in synced data: ``length_bytes`` bytes of the ``nth`` matching file (in
    path order, among the files with synced bytes), starting ``at_permille`` thousandths into
    its synced bytes, are flipped or zeroed in the crash image. Applied to an image
    (``damage_image``), never by ``FaultyFileSystem``: it matches no operation."""

    kind: DamageKind = DamageKind.FLIP
    at_permille: int = 500
    length_bytes: int = 1
    nth: int = 1
    path_glob: str = "*"

    @classmethod
    def _problems(cls, values: Mapping[str, Any]) -> list[str]:
        out = super(Damage, cls)._problems(values)
        permille = values.get("at_permille")
        if _is_int(permille) and permille > 999:  # type: ignore[operator]
            out.append(f"at_permille: must be <= 999, got {permille}")
        return out


_FAULT_TYPES: dict[str, type[Fault]] = {
    cls.__name__: cls
    for cls in (Crash, Damage, IOFault, KillChild, NoSpace, ShortWrite, SlowSync)
}


def _fault_from_dict(data: Any, where: str, errors: list[str]) -> Fault | None:
    if not isinstance(data, Mapping):
        errors.append(f"{where}: expected an object, got {type(data).__name__}")
        return None
    type_name = data.get("type")
    cls = _FAULT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        known = ", ".join(sorted(_FAULT_TYPES))
        if "type" not in data:
            errors.append(f"{where}.type: required (known: {known})")
        else:
            errors.append(f"{where}: unknown fault type {type_name!r} (known: {known})")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    before = len(errors)
    for key in sorted(set(data) - set(fields) - {"type"}):
        errors.append(f"{where}: unknown field {key!r} for {cls.__name__} "
                      f"(known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                errors.append(f"{where}.{name}: required")
            continue
        value = data[name]
        if name == "op":
            try:
                value = FaultOp(value)
            except (ValueError, TypeError):
                known = ", ".join(op.value for op in cls.allowed_ops)
                errors.append(f"{where}.op: unknown operation {value!r} (allowed: {known})")
                continue
        if name == "kind":
            try:
                value = DamageKind(value)
            except (ValueError, TypeError):
                known = ", ".join(k.value for k in DamageKind)
                errors.append(f"{where}.kind: unknown damage kind {value!r} (known: {known})")
                continue
        values[name] = value
    errors.extend(f"{where}.{p}" for p in cls._problems(values))
    if len(errors) != before:
        return None
    return cls(**values)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """An ordered tuple of faults; empty = no faults. Immutable; build a new plan to change it."""

    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        faults: Any = self.faults
        if isinstance(faults, list):
            faults = tuple(faults)
            object.__setattr__(self, "faults", faults)
        if not isinstance(faults, tuple):
            name = type(faults).__name__
            raise FaultPlanError([f"faults: expected a tuple of faults, got {name}"])
        errors = [
            f"faults[{i}]: expected a fault ({', '.join(sorted(_FAULT_TYPES))}), "
            f"got {type(f).__name__}"
            for i, f in enumerate(faults)
            if not isinstance(f, Fault) or type(f) is Fault
        ]
        if errors:
            raise FaultPlanError(errors)

    def __len__(self) -> int:
        return len(self.faults)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def extended(self, *faults: Fault) -> FaultPlan:
        """This plan with `faults` appended (existing faults keep their counters when the
        result is set on a FaultyFileSystem)."""
        return FaultPlan(self.faults + tuple(faults))

    def to_dict(self) -> dict[str, Any]:
        return {"faults": [f.to_dict() for f in self.faults]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> FaultPlan:
        if not isinstance(data, Mapping):
            raise FaultPlanError([f"plan: expected an object, got {type(data).__name__}"])
        errors: list[str] = []
        for key in sorted(set(data) - {"faults"}):
            errors.append(f"plan: unknown field {key!r} (known: faults)")
        raw = data.get("faults", [])
        if not isinstance(raw, list):
            errors.append(f"faults: expected a list, got {type(raw).__name__}")
            raw = []
        faults = [_fault_from_dict(item, f"faults[{i}]", errors) for i, item in enumerate(raw)]
        if errors:
            raise FaultPlanError(errors)
        return cls(tuple(f for f in faults if f is not None))

    @classmethod
    def from_json(cls, text: str | bytes) -> FaultPlan:
        if not isinstance(text, str | bytes | bytearray):
            raise FaultPlanError([f"plan: expected JSON text, got {type(text).__name__}"])
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultPlanError(
                [f"plan: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
            ) from None
        except UnicodeDecodeError as exc:
            raise FaultPlanError([f"plan: JSON is not valid UTF-8: {exc.reason}"]) from None
        return cls.from_dict(data)
