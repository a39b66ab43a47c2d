"""Where a server keeps its AOF: the single ``appendonly.aof`` of Redis 6, or the manifest and
the base/incr files in ``appendonlydir/`` of Redis 7+ and Valkey (``parse_manifest``,
``aof_paths`` in load order, ``find_aof_files`` with an optional glob).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

__all__ = [
    "AofManifestEntry",
    "AofManifestError",
    "aof_manifest_path",
    "aof_paths",
    "find_aof_files",
    "parse_manifest",
]


class AofManifestError(ValueError):
    """A Redis 7 AOF manifest line that does not parse (names the line)."""


@dataclass(frozen=True, slots=True)
class AofManifestEntry:
    """One manifest line: ``file <name> seq <n> type <b|h|i>`` (base, history, incremental)."""

    name: str
    seq: int
    type: Literal["b", "h", "i"]


def parse_manifest(text: str | bytes) -> list[AofManifestEntry]:
    """Parse a Redis 7+ ``appendonly.aof.manifest`` (Redis 8's ``startoffset``/``endoffset``
    and any other extra pair are skipped: only the files and their order matter here; the
    reference's check-aof reads them); raises AofManifestError naming the line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    entries: list[AofManifestEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)  # Redis quotes names with spaces like sdssplitargs
        except ValueError as exc:
            raise AofManifestError(f"manifest line {number}: {exc}: {line!r}") from None
        fields = dict(zip(words[0::2], words[1::2], strict=False))
        if len(words) % 2 or not {"file", "seq", "type"} <= fields.keys():
            raise AofManifestError(
                f"manifest line {number}: expected 'file <name> seq <n> type <b|h|i>', got {line!r}"
            )
        kind = fields["type"]
        if kind not in ("b", "h", "i"):
            raise AofManifestError(f"manifest line {number}: type must be b, h or i, got {kind!r}")
        if not fields["seq"].isdigit():
            raise AofManifestError(f"manifest line {number}: seq must be an integer: {line!r}")
        entries.append(AofManifestEntry(fields["file"], int(fields["seq"]), kind))  # type: ignore[arg-type]
    return entries


def aof_manifest_path(dir: str | os.PathLike[str], *, dirname: str = "appendonlydir") -> Path:
    """Where Redis 7 keeps the manifest (it may not exist yet)."""
    return Path(dir) / dirname / "appendonly.aof.manifest"


def aof_paths(
    dir: str | os.PathLike[str], *, multipart: bool, dirname: str = "appendonlydir"
) -> list[Path]:
    """The AOF files a server loads from `dir`, in load order (only those that exist).

    6.x (`multipart` False): ``dir/appendonly.aof``. 7.0: the base then the incr files listed in
    ``dir/appendonlydir/appendonly.aof.manifest`` (history files are skipped: they are not
    loaded).
    """
    if not multipart:
        single = Path(dir) / "appendonly.aof"
        return [single] if single.exists() else []
    manifest = aof_manifest_path(dir, dirname=dirname)
    if not manifest.exists():
        return []
    entries = parse_manifest(manifest.read_bytes())
    ordered = [e for e in entries if e.type == "b"] + sorted(
        (e for e in entries if e.type == "i"), key=lambda e: e.seq
    )
    return [manifest.parent / e.name for e in ordered if (manifest.parent / e.name).exists()]


def find_aof_files(dir: str | os.PathLike[str], *, glob: str | None = None) -> list[Path]:
    """The AOF files of a server's `dir`: with `glob`, every file whose path relative to `dir`
    matches it (``fnmatch``: ``*`` also matches ``/``, the rule fault plans use), sorted; else
    the files listed by a Redis 7 / Valkey manifest (``appendonlydir``) when there is one, else
    the single-file ``appendonly.aof`` of Redis 6."""
    root = Path(dir)
    if glob is not None:
        found = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and fnmatchcase(path.relative_to(root).as_posix(), glob):
                found.append(path)
        return found
    if aof_manifest_path(root).exists():
        return aof_paths(root, multipart=True)
    return aof_paths(root, multipart=False)
