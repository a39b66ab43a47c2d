"""The trace of a SimDisk: every operation, in order, replayable (``SimDisk.replay``).

Raw tuples are appended on the hot path; ``TraceEntry`` objects are built only when someone
reads the trace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from faults._image import DiskImage, FsyncFailure

__all__ = ["Op", "Raw", "Trace", "TraceEntry"]


class Op(enum.Enum):
    """Kinds of traced SimDisk operations."""

    OPEN = "open"
    WRITE = "write"
    READ = "read"
    LSEEK = "lseek"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    FSYNC_FAILED = "fsync_failed"
    FTRUNCATE = "ftruncate"
    CLOSE = "close"
    RENAME = "rename"
    UNLINK = "unlink"
    MKDIR = "mkdir"
    FSYNC_DIR = "fsync_dir"


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One traced operation. ``result`` is the return value (fd, byte count, new offset, 0) or
    ``-errno`` for an operation that failed. ``fd`` and ``payload`` (write data, open flags,
    rename target, truncate size, seek whence) make the trace replayable."""

    index: int
    op: Op
    path: str
    offset: int
    length: int
    result: int
    fd: int | None = field(default=None, compare=False)
    payload: Any = field(default=None, compare=False, repr=False)


# A raw trace record: (op, path, fd, offset, length, result, payload). Built on the hot path;
# TraceEntry objects are made only when someone reads the trace.
Raw = tuple[Op, str, int, int, int, int, Any]


class Trace(Sequence[TraceEntry]):
    """The list of operations a SimDisk performed; entries are built lazily from raw tuples."""

    __slots__ = ("_raw", "fsync_failure", "initial", "sector_size_bytes")

    def __init__(
        self,
        initial: DiskImage | None = None,
        *,
        fsync_failure: FsyncFailure = FsyncFailure.LINUX,
        sector_size_bytes: int = 512,
    ) -> None:
        self._raw: list[Raw] = []
        # The image and settings of the disk that recorded it: replay starts from the same.
        self.initial = initial
        self.fsync_failure = fsync_failure
        self.sector_size_bytes = sector_size_bytes

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> TraceEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[TraceEntry]: ...

    def __getitem__(self, index: int | slice) -> TraceEntry | list[TraceEntry]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(len(self._raw)))]
        if index < 0:
            index += len(self._raw)
        if not 0 <= index < len(self._raw):
            raise IndexError("trace index out of range")
        return self._entry(index)

    def _entry(self, i: int) -> TraceEntry:
        op, path, fd, offset, length, result, payload = self._raw[i]
        return TraceEntry(i, op, path, offset, length, result, None if fd < 0 else fd, payload)

    def __iter__(self) -> Iterator[TraceEntry]:
        for i in range(len(self._raw)):
            yield self._entry(i)

    def __repr__(self) -> str:
        return f"<Trace of {len(self._raw)} operations>"

