"""Damage to durable bytes (a media error): applying a ``Damage`` fault to a crash image.

The crash models only ever damage what was not synced (torn and reordered sectors of an unsynced
tail). A ``Damage`` fault hits what was: bytes of a file that an fsync made durable read back
flipped or zeroed. Which bytes were synced is the disk's knowledge (``synced_bytes``); the
fault then picks a file and an offset among them (``damage_image``), deterministically.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from faults._image import CrashChoice, DiskImage, PersistenceModel
from faults._plan import Damage, DamageKind
from faults._simdisk import SimDisk

__all__ = ["DamageSite", "damage_image", "synced_bytes"]


@dataclass(frozen=True, slots=True)
class DamageSite:
    """Where a ``Damage`` fault hit an image: ``length_bytes`` bytes of ``path`` from
    ``offset_bytes``, flipped or zeroed (``kind``)."""

    path: str
    offset_bytes: int
    length_bytes: int
    kind: DamageKind

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "offset_bytes": self.offset_bytes,
                "length_bytes": self.length_bytes, "kind": self.kind.value}

    def describe(self) -> str:
        what = "flipped" if self.kind is DamageKind.FLIP else "zeroed"
        return (f"{self.length_bytes} synced byte(s) of {self.path} {what} at offset "
                f"{self.offset_bytes}")


def synced_bytes(disk: SimDisk, model: PersistenceModel,
                 choice: CrashChoice | None = None) -> dict[str, int]:
    """For each file of the crash image ``disk.crash(model, choice)``: how many of its leading
    bytes are synced data (equal to what the last successful sync of its inode made durable).
    Files with none are left out."""
    image = disk.crash(model, choice)
    if choice is None:
        choice = disk.metadata_choices(model)[0] if model is not PersistenceModel.PROCESS \
            else CrashChoice(model, disk.pending_metadata_for(model), ())
    namespace = disk.namespace_after(choice)
    out: dict[str, int] = {}
    for path, content in image.files.items():
        ino = namespace.get(path)
        if ino is None:
            continue
        durable = disk.inode(ino).durable()
        n = min(len(durable), len(content))
        same = next((i for i in range(n) if durable[i] != content[i]), n)
        if same:
            out[path] = same
    return out


def damage_image(image: DiskImage, damage: Damage,
                 synced: dict[str, int]) -> tuple[DiskImage, DamageSite] | None:
    """`image` with `damage` applied to synced bytes (`synced`: path -> synced leading bytes,
    as ``synced_bytes`` gives), and where it hit; None when no file matches (no synced bytes
    in a file matching ``damage.path_glob``, or fewer than ``damage.nth`` such files)."""
    paths = sorted(p for p, n in synced.items()
                   if n > 0 and p in image.files and fnmatch.fnmatchcase(p, damage.path_glob))
    if len(paths) < damage.nth:
        return None
    path = paths[damage.nth - 1]
    limit = min(synced[path], len(image.files[path]))
    offset = limit * damage.at_permille // 1000
    length = min(damage.length_bytes, limit - offset)
    data = bytearray(image.files[path])
    for i in range(offset, offset + length):
        data[i] = data[i] ^ 0x01 if damage.kind is DamageKind.FLIP else 0
    files = dict(image.files)
    files[path] = bytes(data)
    return DiskImage(files, image.dirs), DamageSite(path, offset, length, damage.kind)
