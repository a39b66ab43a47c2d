"""Crash-image data: persistence models, crash choices (lazy, tiny, JSON round-trip) and DiskImage.

A ``CrashChoice`` names one legal outcome of a crash; ``SimDisk.crash`` turns it into a
``DiskImage`` only when asked, so an explorer can enumerate millions of choices cheaply.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "CrashChoice",
    "CrashChoiceError",
    "DiskImage",
    "FileChoice",
    "FsyncFailure",
    "ImageKind",
    "ImageLimits",
    "PersistenceModel",
    "garbage_sector",
]


class PersistenceModel(enum.Enum):
    """What survives a crash (see the ``faults`` module docstring).

    ``POWER`` (``"power-ext4"``) is the default power model; ``PersistenceModel("power")``, the
    name old reproductions use, is an alias for it. ``filesystem`` says which real filesystem a
    model stands for (None: none, it is a bound), ``describe()`` says it in one line.
    """

    PROCESS = "process"
    POWER = "power-ext4"
    POWER_XFS = "power-xfs"
    POWER_BTRFS = "power-btrfs"
    POWER_EAGER_METADATA = "power-eager-metadata"
    POWER_POSIX_METADATA = "power-posix-metadata"

    @classmethod
    def _missing_(cls, value: object) -> PersistenceModel | None:
        # "power" named the ordered-journal model before the models were calibrated.
        return cls.POWER if value == "power" else None

    @property
    def filesystem(self) -> str | None:
        """The real filesystem this model is calibrated against, or None."""
        return _FILESYSTEMS.get(self.value)

    @property
    def varies_metadata(self) -> bool:
        """Whether a crash may keep some pending namespace operations and not others."""
        return self.value not in ("process", "power-eager-metadata")

    def describe(self) -> str:
        """One line: what survives a crash under this model, and what it stands for."""
        return _DESCRIPTIONS[self.value]


_FILESYSTEMS = {"power-ext4": "ext4", "power-xfs": "xfs", "power-btrfs": "btrfs"}
_DESCRIPTIONS = {
    "process": "process crash, the kernel survives: every returned write survives",
    "power-ext4": "power loss on ext4 (default): a journal commit (fsync of a changed file) "
    "makes every earlier namespace operation durable; fdatasync after only a rename commits "
    "nothing",
    "power-xfs": "power loss on xfs: as ext4, and fdatasync also commits a rename of the file",
    "power-btrfs": "power loss on btrfs: fsync makes the file's own names durable (per-inode "
    "log), not unrelated namespace operations",
    "power-eager-metadata": "power loss with every namespace operation durable at once "
    "(LazyFS-style; most optimistic, no real filesystem)",
    "power-posix-metadata": "power loss with only what POSIX promises: a name is durable once "
    "its directory is fsynced (the POSIX minimum; most pessimistic, no real filesystem)",
}


class FsyncFailure(enum.Enum):
    """What a failed fsync does to the dirty range (see the ``faults`` module docstring)."""

    LINUX = "linux"
    RETRY = "retry"


class ImageKind(enum.Enum):
    """How one file's unsynced contents survive in a crash image."""

    DURABLE = "durable"
    PREFIX = "prefix"
    TORN_ZERO = "torn-zero"
    TORN_GARBAGE = "torn-garbage"
    REORDERED = "reordered"
    VISIBLE = "visible"
    SIZE_BEFORE_DATA = "size-before-data"
    IN_PLACE = "in-place"


_DAMAGED_KINDS = frozenset({ImageKind.TORN_ZERO, ImageKind.TORN_GARBAGE, ImageKind.REORDERED})


class CrashChoiceError(ValueError):
    """A malformed or illegal crash choice; ``errors`` lists every problem, each naming a field."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid crash choice: " + "; ".join(self.errors))


def _enum_value(enum_type: type[enum.Enum], value: Any, field: str, errors: list[str]) -> Any:
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except (ValueError, TypeError):
        known = ", ".join(repr(m.value) for m in enum_type)
        errors.append(f"{field}: unknown value {value!r} (known: {known})")
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def garbage_sector(ino: int, sector_index: int, size_bytes: int) -> bytes:
    """The garbage a torn sector reads as (``ImageKind.TORN_GARBAGE``): `size_bytes` bytes derived
    from the inode number and the sector's index in the file, so the same crash choice always
    gives the same image. A torn tail of n bytes in sector s of inode i is
    ``garbage_sector(i, s, n)`` (not a prefix of a longer draw: the size is part of the formula).
    """
    if not (_is_int(ino) and _is_int(sector_index) and _is_int(size_bytes)):
        raise TypeError("garbage_sector: ino, sector_index and size_bytes must be integers")
    if ino < 0 or sector_index < 0 or size_bytes < 0:
        raise ValueError(
            f"garbage_sector: arguments must be >= 0, got {ino}, {sector_index}, {size_bytes}"
        )
    return random.Random(f"garbage:{ino}:{sector_index}").randbytes(size_bytes)


@dataclass(frozen=True, slots=True)
class FileChoice:
    """The fate of one inode's unsynced data: ``kind`` at ``length_bytes``.

    ``sector_index`` is the torn sector (TORN_*) or the sector that reads as zeros (REORDERED).
    """

    inode: int
    kind: ImageKind
    length_bytes: int
    sector_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "inode": self.inode,
            "kind": self.kind.value,
            "length_bytes": self.length_bytes,
            "sector_index": self.sector_index,
        }

    @classmethod
    def _from_dict(cls, data: Any, where: str, errors: list[str]) -> FileChoice | None:
        if not isinstance(data, Mapping):
            errors.append(f"{where}: expected an object, got {type(data).__name__}")
            return None
        known = {"inode", "kind", "length_bytes", "sector_index"}
        for key in sorted(set(data) - known):
            errors.append(f"{where}: unknown field {key!r} (known: {', '.join(sorted(known))})")
        before = len(errors)
        for key in ("inode", "length_bytes"):
            if key not in data:
                errors.append(f"{where}.{key}: required")
            elif not _is_int(data[key]) or data[key] < 0:
                errors.append(f"{where}.{key}: must be an integer >= 0, got {data[key]!r}")
        sector = data.get("sector_index")
        if sector is not None and (not _is_int(sector) or sector < 0):
            errors.append(f"{where}.sector_index: must be null or an integer >= 0, got {sector!r}")
        if "kind" not in data:
            errors.append(f"{where}.kind: required")
            kind = None
        else:
            kind = _enum_value(ImageKind, data["kind"], f"{where}.kind", errors)
        if len(errors) != before or kind is None:
            return None
        return cls(int(data["inode"]), kind, int(data["length_bytes"]), sector)


@dataclass(frozen=True, slots=True)
class CrashChoice:
    """One legal crash outcome: which pending namespace operations survive, and per dirty inode
    which image of its data. Inodes not listed keep their durable contents.

    ``metadata_kept`` is how many pending namespace operations the image keeps. With
    ``metadata_ops`` None they are the first ``metadata_kept`` in program order (the only form
    the kernel models allow); under ``power-posix-metadata`` ``metadata_ops`` may instead name
    them: strictly increasing positions in that model's pending list, ``metadata_kept`` of them.
    Enumerated and drawn choices write a prefix as None, so equal outcomes compare equal.
    """

    model: PersistenceModel
    metadata_kept: int
    files: tuple[FileChoice, ...] = ()
    metadata_ops: tuple[int, ...] | None = None

    @property
    def damaged(self) -> bool:
        """Some file has torn or reordered sectors: damage the caller opted into
        (``ImageLimits(torn=..., reorder=...)``), not a state a correct program must survive."""
        return any(f.kind in _DAMAGED_KINDS for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model.value,
            "metadata_kept": self.metadata_kept,
            "files": [f.to_dict() for f in self.files],
        }
        if self.metadata_ops is not None:
            # Only written when set, so choices of the other models keep their old JSON.
            out["metadata_ops"] = list(self.metadata_ops)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> CrashChoice:
        errors: list[str] = []
        if not isinstance(data, Mapping):
            raise CrashChoiceError([f"choice: expected an object, got {type(data).__name__}"])
        known = {"model", "metadata_kept", "files", "metadata_ops"}
        for key in sorted(set(data) - known):
            errors.append(f"choice: unknown field {key!r} (known: {', '.join(sorted(known))})")
        model = None
        if "model" not in data:
            errors.append("model: required")
        else:
            model = _enum_value(PersistenceModel, data["model"], "model", errors)
        kept: Any = data.get("metadata_kept")
        kept_ok = False
        if "metadata_kept" not in data:
            errors.append("metadata_kept: required")
        elif not _is_int(kept) or kept < 0:
            errors.append(f"metadata_kept: must be an integer >= 0, got {kept!r}")
        else:
            kept_ok = True
        ops = _metadata_ops_from(data.get("metadata_ops"), errors)
        if ops is not None:
            if model is not None and model is not PersistenceModel.POWER_POSIX_METADATA:
                errors.append(
                    "metadata_ops: only 'power-posix-metadata' keeps a set of pending operations "
                    f"that is not a prefix (model is {model.value!r})"
                )
            if kept_ok and kept != len(ops):
                errors.append(
                    f"metadata_kept: must be len(metadata_ops) = {len(ops)}, got {kept}"
                )
        raw_files = data.get("files", [])
        files: list[FileChoice] = []
        if not isinstance(raw_files, list):
            errors.append(f"files: expected a list, got {type(raw_files).__name__}")
        else:
            for i, item in enumerate(raw_files):
                fc = FileChoice._from_dict(item, f"files[{i}]", errors)
                if fc is not None:
                    files.append(fc)
        if errors or model is None:
            raise CrashChoiceError(errors)
        return cls(model, int(kept), tuple(files), ops)

    @classmethod
    def from_json(cls, text: str) -> CrashChoice:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise CrashChoiceError([f"choice: malformed JSON: {exc}"]) from None
        return cls.from_dict(data)


def _metadata_ops_from(raw: Any, errors: list[str]) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        errors.append(f"metadata_ops: expected null or a list, got {type(raw).__name__}")
        return None
    if not all(_is_int(i) and i >= 0 for i in raw):
        errors.append(f"metadata_ops: must list integers >= 0, got {raw!r}")
        return None
    if any(a >= b for a, b in itertools.pairwise(raw)):
        errors.append(f"metadata_ops: positions must be strictly increasing, got {raw!r}")
        return None
    return tuple(raw)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Bounds on crash-choice enumeration. Cut-offs are counted, never silent.

    ``max_choices_per_point``: at most this many choices per crash point.
    ``max_dirty_files``: only the most recently written dirty files vary; the others keep their
    durable contents. ``torn`` / ``reorder``: include torn and reordered sectors;
    ``reorder_window_sectors``: how far back a reordered (zero) sector may be;
    ``byte_granularity``: prefixes at every byte instead of every sector boundary.
    ``max_metadata_subsets``: under ``power-posix-metadata``, at most this many sets of kept
    pending namespace operations per crash point (the prefixes first, as the kernel models have
    them); the others are counted in ``ChoiceEnumeration.cut_by_metadata``.
    ``size_before_data`` / ``in_place``: include the ``SIZE_BEFORE_DATA`` and ``IN_PLACE``
    images. The kernel's ext4 and xfs produce them (the calibration turns both on, and so do
    the explorers by default under power-ext4, power-xfs and the POSIX minimum: the in-process
    fast path reads a zero tail and recovers an in-place image in full); off by default here,
    for the other users of the enumeration.
    """

    max_choices_per_point: int = 4096
    max_dirty_files: int = 4
    torn: bool = False
    reorder: bool = False
    reorder_window_sectors: int = 8
    byte_granularity: bool = False
    max_metadata_subsets: int = 256
    size_before_data: bool = False
    in_place: bool = False

    def __post_init__(self) -> None:
        errors = []
        for name in ("max_choices_per_point", "max_dirty_files", "max_metadata_subsets"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                errors.append(f"{name}: must be an integer >= 1, got {value!r}")
        if not _is_int(self.reorder_window_sectors) or self.reorder_window_sectors < 0:
            errors.append(
                "reorder_window_sectors: must be an integer >= 0, "
                f"got {self.reorder_window_sectors!r}"
            )
        if errors:
            raise ValueError("invalid ImageLimits: " + "; ".join(errors))


class DiskImage(Mapping[str, bytes]):
    """An immutable, hashable filesystem image: file path -> contents, plus the directories.

    The root directory ("") is implicit and never listed in ``dirs``.
    """

    __slots__ = ("_digest", "_dirs", "_files", "_proxy")

    def __init__(
        self,
        files: Mapping[str, bytes] | Iterable[tuple[str, bytes]] = (),
        dirs: Iterable[str] = (),
    ) -> None:
        items = dict(files)
        for path, content in items.items():
            if not isinstance(path, str) or not isinstance(content, bytes):
                raise TypeError(f"DiskImage files: expected str -> bytes, got {path!r}")
        self._files: dict[str, bytes] = items
        self._dirs = frozenset(d for d in dirs if d)
        self._proxy = MappingProxyType(self._files)
        self._digest: str | None = None

    @property
    def files(self) -> Mapping[str, bytes]:
        return self._proxy

    @property
    def dirs(self) -> frozenset[str]:
        return self._dirs

    def __getitem__(self, path: str) -> bytes:
        return self._files[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DiskImage):
            return NotImplemented
        return self._files == other._files and self._dirs == other._dirs

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        sizes = ", ".join(f"{p!r}: {len(c)} B" for p, c in sorted(self._files.items()))
        return f"DiskImage({{{sizes}}}, dirs={sorted(self._dirs)!r})"

    def digest(self) -> str:
        """A stable SHA-256 over paths, contents and directories (for deduplication)."""
        if self._digest is None:
            h = hashlib.sha256()
            for path in sorted(self._files):
                content = self._files[path]
                h.update(b"F%d:%s\0%d:" % (len(path), path.encode(), len(content)))
                h.update(content)
            for d in sorted(self._dirs):
                h.update(b"D%d:%s\0" % (len(d), d.encode()))
            self._digest = h.hexdigest()
        return self._digest
