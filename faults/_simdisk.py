"""SimDisk: an in-memory FileSystem with a page cache (visible) over a disk (durable), a trace of
every operation, crash images per persistence model, and a replay cursor for the explorer.

Representation (chosen so the append path stays O(len(data)) and fsync O(1)):

* An inode keeps its visible bytes ``data``, the durable length ``dlen`` and ``clean`` = the
  length of the prefix untouched since the last successful sync. While ``clean == dlen`` the
  durable contents are ``data[:dlen]`` and need no copy; the first write or truncate below
  ``dlen`` saves them in ``dsaved``.
* ``patches`` are ranges a failed fsync (``linux`` semantics) marked clean without writing: they
  hold what the disk has there, and overlay both durable contents and unsynced images.
* The namespace is visible (``_files``/``_dirs``) and durable (``_dfiles``/``_ddirs``); namespace
  operations not yet made durable by ``fsync_dir`` wait in ``_pending`` in program order. That is
  the ordered journal of ``power`` and ``power-eager-metadata``.
* ``power-posix-metadata`` keeps its own record, by directory entry rather than by path (so a
  directory's contents follow the directory, wherever an image puts it): every directory has an
  id (the root is 0, ``_dir_ids`` maps visible paths to ids), ``_pbase`` holds the settled
  entries per directory id, and ``_ppending`` the operations not settled yet, each a list of
  entry writes plus the directories still to be fsynced (see ``_PosixOp``).
"""

from __future__ import annotations

import enum
import errno
import itertools
import os
import posixpath
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

from faults._fs import FileStat, check_relative_path, os_error
from faults._image import (
    CrashChoice,
    CrashChoiceError,
    DiskImage,
    FileChoice,
    FsyncFailure,
    ImageKind,
    ImageLimits,
    PersistenceModel,
    garbage_sector,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "ChoiceEnumeration",
    "InodeView",
    "Op",
    "OpenFile",
    "ReplayCursor",
    "SimDisk",
    "Trace",
    "TraceEntry",
]

_POSIX = PersistenceModel.POWER_POSIX_METADATA


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


_OPEN, _WRITE, _READ, _LSEEK = Op.OPEN, Op.WRITE, Op.READ, Op.LSEEK
_FSYNC, _FDATASYNC, _FSYNC_FAILED = Op.FSYNC, Op.FDATASYNC, Op.FSYNC_FAILED
_FTRUNCATE, _CLOSE, _RENAME, _UNLINK, _MKDIR, _FSYNC_DIR = (
    Op.FTRUNCATE,
    Op.CLOSE,
    Op.RENAME,
    Op.UNLINK,
    Op.MKDIR,
    Op.FSYNC_DIR,
)


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
_Raw = tuple[Op, str, int, int, int, int, Any]


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
        self._raw: list[_Raw] = []
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


class _Inode:
    __slots__ = ("clean", "data", "dlen", "dsaved", "ino", "patches", "stamp")

    def __init__(self, ino: int, data: bytes = b"", *, durable: bool = False) -> None:
        self.ino = ino
        self.data = bytearray(data)
        self.dlen = len(data) if durable else 0
        self.clean = self.dlen
        self.dsaved: bytes | None = None
        # (start, disk bytes) ranges that a failed fsync marked clean without writing them.
        self.patches: list[tuple[int, bytes]] = []
        # Monotonic counter of the last modification (to pick the most recently written files).
        self.stamp = 0

    def dirty(self) -> bool:
        return not (self.clean == self.dlen == len(self.data))

    def save_durable(self) -> None:
        """Called before the first change below dlen: keep the durable bytes."""
        if self.dsaved is None:
            self.dsaved = self.overlay(bytes(self.data[: self.dlen]))

    def durable(self) -> bytes:
        if self.dsaved is not None:
            return self.dsaved
        return self.overlay(bytes(self.data[: self.dlen]))

    def overlay(self, content: bytes) -> bytes:
        """Apply patches (what the disk really has in ranges a failed fsync dropped)."""
        if not self.patches:
            return content
        buf = bytearray(content)
        for start, disk in self.patches:
            if start < len(buf):
                end = min(len(buf), start + len(disk))
                buf[start:end] = disk[: end - start]
        return bytes(buf)

    def cut_patches(self, start: int, end: int) -> None:
        """Rewriting or truncating [start, end) makes that range ordinary dirty data again."""
        kept: list[tuple[int, bytes]] = []
        for pstart, disk in self.patches:
            pend = pstart + len(disk)
            if pend <= start or pstart >= end:
                kept.append((pstart, disk))
                continue
            if pstart < start:
                kept.append((pstart, disk[: start - pstart]))
            if pend > end:
                kept.append((end, disk[end - pstart :]))
        self.patches = kept


class _Fd:
    __slots__ = ("append", "did", "inode", "is_dir", "path", "pos", "readable", "writable")

    def __init__(
        self,
        inode: _Inode | None,
        path: str,
        readable: bool,
        writable: bool,
        append: bool,
        did: int = -1,
    ) -> None:
        self.inode = inode
        self.path = path
        self.pos = 0
        self.readable = readable
        self.writable = writable
        self.append = append
        self.is_dir = inode is None
        # The directory's id (directory fds only): fsync of the fd syncs that directory.
        self.did = did


class InodeView:
    """A read-only view of one SimDisk inode (``SimDisk.inode``, ``SimDisk.inode_at``).

    Live, like ``types.MappingProxyType``: it shows the inode as it is when read, and has no way
    to change it. Views of the same inode compare equal.

    * ``size_bytes``: visible length; ``read(start, stop)``: visible bytes (a copy of that range
      only, so reading a growing file's new tail costs only the tail).
    * ``durable_size_bytes`` and ``durable()``: what survives power loss if nothing unsynced
      does.
    * ``durable_is_prefix``: the durable contents are ``read(0, durable_size_bytes)`` (false
      after a truncate or overwrite below the durable length since the last sync, or when a
      range a failed fsync dropped lies below it).
    * ``dropped_ranges``: ``(start, end)`` ranges a failed fsync marked clean without writing
      (``FsyncFailure.LINUX``); every crash image reads the disk's old bytes there.
    * ``dirty``: something visible is not durable.
    """

    __slots__ = ("_node",)
    _node: _Inode

    def __init__(self, node: _Inode) -> None:
        object.__setattr__(self, "_node", node)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("InodeView is read-only")

    @property
    def ino(self) -> int:
        return self._node.ino

    @property
    def size_bytes(self) -> int:
        return len(self._node.data)

    @property
    def durable_size_bytes(self) -> int:
        return self._node.dlen

    @property
    def dirty(self) -> bool:
        return self._node.dirty()

    @property
    def durable_is_prefix(self) -> bool:
        node = self._node
        return node.dsaved is None and all(start >= node.dlen for start, _ in node.patches)

    @property
    def dropped_ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple((start, start + len(disk)) for start, disk in self._node.patches)

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        """Visible bytes ``[start:stop]`` (slice semantics)."""
        return bytes(self._node.data[start:stop])

    def durable(self) -> bytes:
        return self._node.durable()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InodeView):
            return NotImplemented
        return self._node is other._node

    def __hash__(self) -> int:
        return hash(id(self._node))

    def __repr__(self) -> str:
        node = self._node
        return (
            f"InodeView(ino={node.ino}, size_bytes={len(node.data)}, "
            f"durable_size_bytes={node.dlen}, dirty={node.dirty()})"
        )


@dataclass(frozen=True, slots=True)
class OpenFile:
    """A snapshot of one open file description (``SimDisk.open_file``).

    ``path`` is the path it was opened under (renames do not change it); ``ino`` is its inode
    (``SimDisk.inode(ino)``), None for a directory; ``position_bytes`` the file offset.
    """

    fd: int
    path: str
    ino: int | None
    position_bytes: int
    readable: bool
    writable: bool
    append: bool

    @property
    def is_dir(self) -> bool:
        return self.ino is None


def _open_file(fd: int, f: _Fd) -> OpenFile:
    return OpenFile(fd, f.path, None if f.inode is None else f.inode.ino, f.pos, f.readable,
                    f.writable, f.append)


# Pending namespace operations: (kind, path, path2, inode id); kinds below.
_CREATE, _P_RENAME, _P_UNLINK, _P_MKDIR = "create", "rename", "unlink", "mkdir"
_Pending = tuple[str, str, str, int]

_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR


def _parent(path: str) -> str:
    return posixpath.dirname(path)


def _touches(op: _Pending, d: str) -> bool:
    kind, p1, p2, _ = op
    if kind == _P_RENAME:
        return _parent(p1) == d or _parent(p2) == d
    return _parent(p1) == d


# -- power-posix-metadata: the namespace as directory entries ---------------------------------
# An entry is (directory id, name); its value is what it names: a file (inode number, > 0), a
# directory (minus its id, < 0), or 0 for "no entry". An operation is a tuple of entry writes
# (dir id, name, value): create/mkdir/unlink write one entry, a rename two (its source := 0,
# its target := the object), atomically.
_Write = tuple[int, str, int]


class _PosixOp:
    """A namespace operation not settled under power-posix-metadata.

    ``unsynced``: ids of its parent directories not fsynced since it was issued (it is settled
    when this empties). ``dep``: for a rename, ``seq`` of the pending operation that put the
    renamed object into its source entry (the rename is kept only with it), else -1.
    """

    __slots__ = ("dep", "seq", "unsynced", "writes")

    def __init__(self, seq: int, writes: tuple[_Write, ...], unsynced: set[int], dep: int) -> None:
        self.seq = seq
        self.writes = writes
        self.unsynced = unsynced
        self.dep = dep


def _posix_namespace(
    base: Mapping[int, Mapping[str, int]], kept: Iterable[tuple[_Write, ...]]
) -> tuple[dict[str, int], set[str]]:
    """The namespace of settled entries `base` plus the writes of `kept` operations (in program
    order), as (file path -> inode, directory paths), resolved from the root: entries of a
    directory no entry reaches are not in the image."""
    over: dict[int, dict[str, int]] = {}
    for writes in kept:
        for did, name, value in writes:
            d = over.get(did)
            if d is None:
                d = over[did] = {}
            d[name] = value
    files: dict[str, int] = {}
    dirs: set[str] = {""}
    seen = {0}
    stack = [(0, "")]
    while stack:
        did, prefix = stack.pop()
        entries: Mapping[str, int] = base.get(did, {})
        changes = over.get(did)
        if changes:
            entries = {**entries, **changes}
        for name, value in entries.items():
            if value == 0:
                continue
            path = f"{prefix}/{name}" if prefix else name
            if value > 0:
                files[path] = value
            elif -value not in seen:  # defensive: a directory has at most one entry
                seen.add(-value)
                dirs.add(path)
                stack.append((-value, path))
    return files, dirs


def _posix_deps(ops: Sequence[_PosixOp]) -> list[int]:
    """Per pending operation, the position of the pending operation it depends on, or -1."""
    where = {op.seq: i for i, op in enumerate(ops)}
    return [where.get(op.dep, -1) for op in ops]


def _count_closed_sets(deps: Sequence[int]) -> int:
    """How many sets of positions are closed under `deps` (a forest: each position depends on
    at most one earlier one). Per position p: 1 (p left out, and with it everything depending on
    it) + the product of the counts of its dependants (p kept)."""
    under = [1] * len(deps)  # per position: the product over its dependants counted so far
    total = 1
    for p in range(len(deps) - 1, -1, -1):  # dependants come after what they depend on
        count = 1 + under[p]
        if deps[p] >= 0:
            under[deps[p]] *= count
        else:
            total *= count
    return total


def _closed_sets(deps: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every set of positions closed under `deps`, each once, leaving later positions out
    first (depth-first; the empty set first)."""
    n = len(deps)
    keep = [False] * n
    tried: list[bool] = []  # per decided position: whether "keep" has been tried
    i = 0
    while True:
        if i < n:
            keep[i] = False
            tried.append(False)
            i += 1
            continue
        yield tuple(j for j in range(n) if keep[j])
        while tried:
            i -= 1
            if not tried[-1] and (deps[i] < 0 or keep[deps[i]]):
                tried[-1] = True
                keep[i] = True
                i += 1
                break
            tried.pop()
            keep[i] = False
        else:
            return


def _is_prefix(kept: tuple[int, ...]) -> bool:
    return not kept or kept[-1] == len(kept) - 1


class ChoiceEnumeration(Iterator[CrashChoice]):
    """The legal crash choices at one crash point, lazily, with the cut-offs reported.

    ``total`` counts every legal choice under the limits' shape settings (torn, reorder, window,
    granularity); ``cut_by_dirty_files`` and ``cut_by_max_choices`` say how many of them the
    limits left out (``cut_off`` is their sum); ``emitted`` counts what the iterator has
    produced so far.

    Under ``power-posix-metadata`` the sets of kept pending namespace operations past
    ``ImageLimits.max_metadata_subsets`` are not looked at: ``cut_by_metadata`` counts those
    sets (not choices; each has at least one), and ``total`` covers the sets looked at.
    """

    def __init__(
        self,
        choices: Iterator[CrashChoice],
        total: int,
        cut_dirty: int,
        cut_max: int,
        cut_metadata: int = 0,
    ) -> None:
        self._it = choices
        self.total = total
        self.cut_by_dirty_files = cut_dirty
        self.cut_by_max_choices = cut_max
        self.cut_by_metadata = cut_metadata
        self.emitted = 0

    @property
    def cut_off(self) -> int:
        return self.cut_by_dirty_files + self.cut_by_max_choices

    def __next__(self) -> CrashChoice:
        choice = next(self._it)
        self.emitted += 1
        return choice

    def __iter__(self) -> ChoiceEnumeration:
        return self


class SimDisk:
    """In-memory FileSystem with visible and durable layers (see the ``faults`` docstring)."""

    def __init__(
        self,
        *,
        fsync_failure: FsyncFailure = FsyncFailure.LINUX,
        sector_size_bytes: int = 512,
        trace: bool = True,
    ) -> None:
        if not isinstance(fsync_failure, FsyncFailure):
            raise ValueError(f"fsync_failure: expected FsyncFailure, got {fsync_failure!r}")
        if (
            not isinstance(sector_size_bytes, int)
            or isinstance(sector_size_bytes, bool)
            or sector_size_bytes < 1
        ):
            raise ValueError(
                f"sector_size_bytes: must be an integer >= 1, got {sector_size_bytes!r}"
            )
        self.fsync_failure = fsync_failure
        self.sector_size_bytes = sector_size_bytes
        self._tracing = bool(trace)
        self.trace = Trace(fsync_failure=fsync_failure, sector_size_bytes=sector_size_bytes)
        self._raw = self.trace._raw
        self._inodes: dict[int, _Inode] = {}
        self._next_ino = 1
        self._files: dict[str, _Inode] = {}
        self._dirs: dict[str, set[str]] = {"": set()}
        self._dfiles: dict[str, int] = {}
        self._ddirs: set[str] = {""}
        self._pending: list[_Pending] = []
        # power-posix-metadata (see the module docstring).
        self._dir_ids: dict[str, int] = {"": 0}
        self._next_did = 1
        self._pbase: dict[int, dict[str, int]] = {0: {}}
        self._ppending: list[_PosixOp] = []
        self._pseq = 0
        # Entry -> seq of the last pending operation that wrote it (to find a rename's dep).
        self._plast: dict[tuple[int, str], int] = {}
        self._fds: dict[int, _Fd] = {}
        self._next_fd = 3
        self._stamp = 0

    def __repr__(self) -> str:
        return (
            f"SimDisk(files={len(self._files)}, pending_metadata={len(self._pending)}, "
            f"trace={len(self.trace)})"
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_image(cls, image: DiskImage, **kwargs: Any) -> SimDisk:
        """A disk whose whole state (namespace and contents) is durable and equal to `image`."""
        disk = cls(**kwargs)
        disk.trace.initial = image
        disk._load(image)
        return disk

    def _load(self, image: DiskImage) -> None:
        for d in sorted(image.dirs, key=lambda p: p.count("/")):
            parent = _parent(d)
            if parent not in self._dirs:
                raise ValueError(f"image.dirs: {d!r} has no parent directory {parent!r}")
            self._dirs[d] = set()
            self._dirs[parent].add(posixpath.basename(d))
            self._ddirs.add(d)
            did = self._new_dir_id(d)
            self._pbase[self._dir_ids[parent]][posixpath.basename(d)] = -did
            self._pbase[did] = {}
        for path in sorted(image.files):
            parent = _parent(path)
            if parent not in self._dirs:
                raise ValueError(f"image.files: {path!r} has no parent directory {parent!r}")
            if path in self._dirs:
                raise ValueError(f"image.files: {path!r} is also a directory")
            inode = self._new_inode(image.files[path], durable=True)
            self._files[path] = inode
            self._dirs[parent].add(posixpath.basename(path))
            self._dfiles[path] = inode.ino
            self._pbase[self._dir_ids[parent]][posixpath.basename(path)] = inode.ino

    def _new_dir_id(self, path: str) -> int:
        did = self._next_did
        self._next_did += 1
        self._dir_ids[path] = did
        return did

    def _new_inode(self, data: bytes = b"", *, durable: bool = False) -> _Inode:
        inode = _Inode(self._next_ino, data, durable=durable)
        self._inodes[inode.ino] = inode
        self._next_ino += 1
        return inode

    # -- path helpers --------------------------------------------------------------------------

    def _lookup_error(self, path: str) -> int:
        """errno for a path whose parent chain is broken (a file in the way, or missing)."""
        prefix = ""
        for part in path.split("/")[:-1]:
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix in self._files:
                return errno.ENOTDIR
            if prefix not in self._dirs:
                return errno.ENOENT
        return errno.ENOENT

    def _check_parent(self, path: str) -> str:
        parent = _parent(path)
        if parent not in self._dirs:
            raise os_error(self._lookup_error(path), path)
        return parent

    def _fail(self, op: Op, path: str, code: int, fd: int = -1, payload: Any = None) -> OSError:
        if self._tracing:
            self._raw.append((op, path, fd, 0, 0, -code, payload))
        return os_error(code, path)

    def _bad_fd(self, op: Op, fd: int) -> OSError:
        if self._tracing:
            self._raw.append((op, "", fd, 0, 0, -errno.EBADF, None))
        return os_error(errno.EBADF)

    # -- FileSystem verbs ----------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        path = check_relative_path(path)
        acc = flags & _ACCMODE
        writable = acc in (os.O_WRONLY, os.O_RDWR)
        readable = acc in (os.O_RDONLY, os.O_RDWR)
        if path in self._dirs:
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise self._fail(_OPEN, path, errno.EEXIST, payload=flags)
            if writable or flags & (os.O_CREAT | os.O_TRUNC):
                raise self._fail(_OPEN, path, errno.EISDIR, payload=flags)
            return self._new_fd(_Fd(None, path, True, False, False, self._dir_ids[path]), flags)
        inode = self._files.get(path)
        if inode is None:
            parent = _parent(path)
            if parent not in self._dirs:
                raise self._fail(_OPEN, path, self._lookup_error(path), payload=flags)
            if not flags & os.O_CREAT:
                raise self._fail(_OPEN, path, errno.ENOENT, payload=flags)
            inode = self._new_inode()
            self._files[path] = inode
            name = posixpath.basename(path)
            self._dirs[parent].add(name)
            self._pending.append((_CREATE, path, "", inode.ino))
            pdid = self._dir_ids[parent]
            self._posix_log(((pdid, name, inode.ino),), {pdid})
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise self._fail(_OPEN, path, errno.EEXIST, payload=flags)
        elif flags & os.O_TRUNC:
            # Linux truncates even with O_RDONLY.
            self._truncate(inode, 0)
        return self._new_fd(_Fd(inode, path, readable, writable, bool(flags & os.O_APPEND)), flags)

    def _new_fd(self, f: _Fd, flags: int) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = f
        if self._tracing:
            self._raw.append((_OPEN, f.path, fd, 0, 0, fd, flags))
        return fd

    def write(self, fd: int, data: bytes) -> int:
        # The hot path of every fuzz run: no allocation beyond the trace tuple.
        f = self._fds.get(fd)
        if f is None or not f.writable:
            raise self._bad_fd(_WRITE, fd)
        if type(data) is not bytes:
            data = bytes(data)  # the trace keeps a reference; callers may reuse their buffer
        inode = f.inode
        assert inode is not None  # directories are never writable
        buf = inode.data
        n = len(data)
        size = len(buf)
        pos = size if f.append else f.pos
        if pos == size:
            buf += data
        elif pos > size:
            if n:  # a write past EOF zero-fills the gap (an empty write changes nothing)
                buf += bytes(pos - size)
                buf += data
        else:
            if pos < inode.clean:
                if pos < inode.dlen:
                    inode.save_durable()
                inode.clean = pos
            buf[pos : pos + n] = data
        f.pos = end = pos + n
        if inode.patches:
            inode.cut_patches(pos, end)
        self._stamp += 1
        inode.stamp = self._stamp
        if self._tracing:
            self._raw.append((_WRITE, f.path, fd, pos, n, n, data))
        return n

    def read(self, fd: int, size: int) -> bytes:
        f = self._fds.get(fd)
        if f is None or not f.readable:
            raise self._bad_fd(_READ, fd)
        if f.inode is None:
            raise self._fail(_READ, f.path, errno.EISDIR, fd)
        if size < 0:
            raise self._fail(_READ, f.path, errno.EINVAL, fd)
        pos = f.pos
        out = bytes(f.inode.data[pos : pos + size])
        f.pos = pos + len(out)
        if self._tracing:
            self._raw.append((_READ, f.path, fd, pos, len(out), len(out), None))
        return out

    def lseek(self, fd: int, position: int, how: int) -> int:
        f = self._fds.get(fd)
        if f is None:
            raise self._bad_fd(_LSEEK, fd)
        if how == os.SEEK_SET:
            new = position
        elif how == os.SEEK_CUR:
            new = f.pos + position
        elif how == os.SEEK_END:
            new = (len(f.inode.data) if f.inode is not None else 0) + position
        else:
            raise self._fail(_LSEEK, f.path, errno.EINVAL, fd, how)
        if new < 0:
            raise self._fail(_LSEEK, f.path, errno.EINVAL, fd, how)
        f.pos = new
        if self._tracing:
            self._raw.append((_LSEEK, f.path, fd, position, 0, new, how))
        return new

    def fsync(self, fd: int) -> None:
        self._sync(fd, _FSYNC)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, _FDATASYNC)

    def _sync(self, fd: int, op: Op) -> None:
        f = self._fds.get(fd)
        if f is None:
            raise self._bad_fd(op, fd)
        inode = f.inode
        if inode is None:
            # fsync on a directory fd is how fsync_dir is done with os.
            self._commit_dir(f.path)
            self._posix_sync(f.did)
            length = 0
        else:
            length = len(inode.data)
            if inode.patches:
                # Ranges dropped by a failed fsync stay as they are on disk.
                inode.dsaved = inode.overlay(bytes(inode.data))
            else:
                inode.dsaved = None
            inode.dlen = inode.clean = length
        if self._tracing:
            self._raw.append((op, f.path, fd, 0, length, 0, None))

    def fail_fsync(self, fd: int) -> None:
        """An fsync of `fd` failed (EIO): apply this disk's FsyncFailure semantics, traced.

        ``linux``: the dirty range [clean, size) is marked clean without reaching the disk, so
        no later fsync writes it. ``retry``: nothing changes; the range stays dirty.
        """
        f = self._fds.get(fd)
        if f is None:
            raise self._bad_fd(_FSYNC_FAILED, fd)
        inode = f.inode
        length = 0
        if inode is not None and self.fsync_failure is FsyncFailure.LINUX and inode.dirty():
            start = inode.clean
            end = len(inode.data)
            if end > start:
                durable = inode.durable()
                disk = durable[start:end]
                disk += bytes(end - start - len(disk))
                inode.cut_patches(start, end)
                inode.patches.append((start, disk))
                length = end - start
        if self._tracing:
            self._raw.append((_FSYNC_FAILED, f.path, fd, 0, length, 0, None))

    def ftruncate(self, fd: int, size: int) -> None:
        f = self._fds.get(fd)
        if f is None:
            raise self._bad_fd(_FTRUNCATE, fd)
        if f.inode is None or not f.writable or size < 0:
            raise self._fail(_FTRUNCATE, f.path, errno.EINVAL, fd, size)
        self._truncate(f.inode, size)
        if self._tracing:
            self._raw.append((_FTRUNCATE, f.path, fd, size, 0, 0, size))

    def _truncate(self, inode: _Inode, size: int) -> None:
        buf = inode.data
        old = len(buf)
        if size < old:
            if size < inode.clean:
                if size < inode.dlen:
                    inode.save_durable()
                inode.clean = size
            del buf[size:]
            if inode.patches:
                inode.cut_patches(size, old)
        elif size > old:
            buf += bytes(size - old)
        self._stamp += 1
        inode.stamp = self._stamp

    def close(self, fd: int) -> None:
        f = self._fds.pop(fd, None)
        if f is None:
            raise self._bad_fd(_CLOSE, fd)
        if f.inode is not None and f.inode.ino not in self._live_candidates():
            self._collect()
        if self._tracing:
            self._raw.append((_CLOSE, f.path, fd, 0, 0, 0, None))

    def rename(self, src: str, dst: str) -> None:
        src = check_relative_path(src)
        dst = check_relative_path(dst)
        code = self._rename_error(src, dst)
        if code:
            raise self._fail(_RENAME, src, code, payload=dst)
        if src != dst:
            sdid, sname = self._dir_ids[_parent(src)], posixpath.basename(src)
            ddid, dname = self._dir_ids[_parent(dst)], posixpath.basename(dst)
            if src in self._files:
                inode = self._files.pop(src)
                self._dirs[_parent(src)].discard(sname)
                self._files[dst] = inode
                self._dirs[_parent(dst)].add(dname)
                ino = obj = inode.ino
            else:
                obj = -self._dir_ids[src]
                self._move_dir(src, dst)
                ino = 0
            self._pending.append((_P_RENAME, src, dst, ino))
            self._posix_log(((sdid, sname, 0), (ddid, dname, obj)), {sdid, ddid},
                            dep_entry=(sdid, sname))
        if self._tracing:
            self._raw.append((_RENAME, src, -1, 0, 0, 0, dst))

    def _rename_error(self, src: str, dst: str) -> int:
        if _parent(src) not in self._dirs:
            return self._lookup_error(src)
        if _parent(dst) not in self._dirs:
            return self._lookup_error(dst)
        # The root has a real parent under OSFileSystem: these match what Linux says there.
        if src == "":
            return 0 if dst == "" else errno.EINVAL
        if dst == "":
            return errno.ENOTEMPTY if src in self._files or src in self._dirs else errno.ENOENT
        if src in self._files:
            return errno.EISDIR if dst in self._dirs else 0
        if src not in self._dirs:
            return errno.ENOENT
        if src == dst:
            return 0
        if dst.startswith(src + "/"):
            return errno.EINVAL
        if dst in self._files:
            return errno.ENOTDIR
        if self._dirs.get(dst):
            return errno.ENOTEMPTY
        return 0

    def _move_dir(self, src: str, dst: str) -> None:
        if dst in self._dirs:
            del self._dirs[dst]
            del self._dir_ids[dst]  # the replaced (empty) directory has no name any more
            self._dirs[_parent(dst)].discard(posixpath.basename(dst))
        cut = len(src)
        for d in [d for d in self._dirs if d == src or d.startswith(src + "/")]:
            self._dirs[dst + d[cut:]] = self._dirs.pop(d)
            self._dir_ids[dst + d[cut:]] = self._dir_ids.pop(d)
        for p in [p for p in self._files if p.startswith(src + "/")]:
            self._files[dst + p[cut:]] = self._files.pop(p)
        self._dirs[_parent(src)].discard(posixpath.basename(src))
        self._dirs[_parent(dst)].add(posixpath.basename(dst))

    def unlink(self, path: str) -> None:
        path = check_relative_path(path)
        if path in self._dirs:
            raise self._fail(_UNLINK, path, errno.EISDIR)
        inode = self._files.pop(path, None)
        if inode is None:
            raise self._fail(_UNLINK, path, self._lookup_error(path))
        name = posixpath.basename(path)
        self._dirs[_parent(path)].discard(name)
        self._pending.append((_P_UNLINK, path, "", inode.ino))
        pdid = self._dir_ids[_parent(path)]
        self._posix_log(((pdid, name, 0),), {pdid})
        if self._tracing:
            self._raw.append((_UNLINK, path, -1, 0, 0, 0, None))

    def mkdir(self, path: str) -> None:
        path = check_relative_path(path)
        if path in self._dirs or path in self._files:
            raise self._fail(_MKDIR, path, errno.EEXIST)
        parent = _parent(path)
        if parent not in self._dirs:
            raise self._fail(_MKDIR, path, self._lookup_error(path))
        self._dirs[path] = set()
        name = posixpath.basename(path)
        self._dirs[parent].add(name)
        self._pending.append((_P_MKDIR, path, "", 0))
        pdid = self._dir_ids[parent]
        self._posix_log(((pdid, name, -self._new_dir_id(path)),), {pdid})
        if self._tracing:
            self._raw.append((_MKDIR, path, -1, 0, 0, 0, None))

    def listdir(self, path: str) -> list[str]:
        path = check_relative_path(path)
        names = self._dirs.get(path)
        if names is None:
            code = errno.ENOTDIR if path in self._files else self._lookup_error(path)
            raise os_error(code, path)
        return sorted(names)

    def stat(self, path: str) -> FileStat:
        path = check_relative_path(path)
        if path in self._dirs:
            return FileStat(size_bytes=0, is_dir=True)
        inode = self._files.get(path)
        if inode is None:
            raise os_error(self._lookup_error(path), path)
        return FileStat(size_bytes=len(inode.data), is_dir=False)

    def exists(self, path: str) -> bool:
        path = check_relative_path(path)
        return path in self._files or path in self._dirs

    def fsync_dir(self, path: str) -> None:
        path = check_relative_path(path)
        if path not in self._dirs:
            code = errno.ENOTDIR if path in self._files else self._lookup_error(path)
            raise self._fail(_FSYNC_DIR, path, code)
        self._commit_dir(path)
        self._posix_sync(self._dir_ids[path])
        self._collect()
        if self._tracing:
            self._raw.append((_FSYNC_DIR, path, -1, 0, 0, 0, None))

    def _commit_dir(self, d: str) -> None:
        """Make every pending namespace operation in or out of directory `d` durable, and with
        them every operation before the last of those: metadata reaches the disk as an ordered
        journal, so the durable namespace is always the result of a prefix of the operations
        (applying only `d`'s operations would drop e.g. a create whose parent mkdir is not
        durable yet)."""
        last = -1
        for i, op in enumerate(self._pending):
            if _touches(op, d):
                last = i
        if last < 0:
            return
        for op in self._pending[: last + 1]:
            _apply_pending(op, self._dfiles, self._ddirs)
        del self._pending[: last + 1]

    def _posix_log(
        self,
        writes: tuple[_Write, ...],
        dirs: set[int],
        *,
        dep_entry: tuple[int, str] | None = None,
    ) -> None:
        """Record a namespace operation for power-posix-metadata (see ``_PosixOp``)."""
        self._pseq += 1
        dep = -1
        if dep_entry is not None:
            # The last pending write of the source entry is the one that put the object there.
            dep = self._plast.get(dep_entry, -1)
        op = _PosixOp(self._pseq, writes, dirs, dep)
        for did, name, _ in writes:
            self._plast[(did, name)] = op.seq
        self._ppending.append(op)

    def _posix_sync(self, did: int) -> None:
        """fsync of directory `did` under power-posix-metadata: an operation whose parent
        directories have all been fsynced since it was issued is settled, and so is every
        operation a settled one depends on (a rename atomically moves what an earlier pending
        operation put in its source). Settled operations are folded into ``_pbase``; writes of
        pending operations a later settled one overwrote can no longer matter and are dropped
        (an operation left with none is dropped)."""
        pending = self._ppending
        if not pending:
            return
        by_seq: dict[int, _PosixOp] | None = None
        settled: set[int] = set()
        for op in pending:
            if did not in op.unsynced:
                continue
            op.unsynced.discard(did)
            if op.unsynced:
                continue
            if by_seq is None:
                by_seq = {o.seq: o for o in pending}
            seq = op.seq
            while seq in by_seq and seq not in settled:
                settled.add(seq)
                seq = by_seq[seq].dep
        if not settled:
            return
        base = self._pbase
        folded_at: dict[tuple[int, str], int] = {}
        rest: list[_PosixOp] = []
        for op in pending:
            if op.seq not in settled:
                rest.append(op)
                continue
            for d, name, value in op.writes:
                entries = base.get(d)
                if entries is None:
                    entries = base[d] = {}
                if value:
                    entries[name] = value
                else:
                    entries.pop(name, None)
                folded_at[(d, name)] = op.seq
                if self._plast.get((d, name)) == op.seq:
                    del self._plast[(d, name)]
        for op in rest:
            if any(folded_at.get((d, name), -1) > op.seq for d, name, _ in op.writes):
                op.writes = tuple(
                    w for w in op.writes if folded_at.get((w[0], w[1]), -1) < op.seq
                )
        self._ppending = [op for op in rest if op.writes]

    def _live_candidates(self) -> set[int]:
        live = {inode.ino for inode in self._files.values()}
        live.update(self._dfiles.values())
        live.update(op[3] for op in self._pending)
        live.update(f.inode.ino for f in self._fds.values() if f.inode is not None)
        for entries in self._pbase.values():
            live.update(v for v in entries.values() if v > 0)
        for pop in self._ppending:
            live.update(v for _, _, v in pop.writes if v > 0)
        return live

    def _collect(self) -> None:
        """Free inodes nothing can reach any more (no name, durable or pending, and no fd), so
        long runs with many rewrites do not keep every old AOF in memory."""
        if len(self._inodes) > len(self._files):
            live = self._live_candidates()
            for ino in [i for i in self._inodes if i not in live]:
                del self._inodes[ino]

    # -- inspection ----------------------------------------------------------------------------

    @property
    def tracing(self) -> bool:
        """Whether operations are recorded in ``trace`` (the ``trace=`` setting)."""
        return self._tracing

    @property
    def pending_metadata(self) -> int:
        """How many namespace operations are not yet durable (the ordered journal of ``power``
        and ``power-eager-metadata``: ``CrashChoice.metadata_kept`` counts among these)."""
        return len(self._pending)

    @property
    def pending_posix_metadata(self) -> int:
        """How many namespace operations are not settled under ``power-posix-metadata`` (the
        positions ``CrashChoice.metadata_ops`` names, in program order)."""
        return len(self._ppending)

    def open_file(self, fd: int) -> OpenFile | None:
        """A snapshot of the open file behind `fd`, or None if `fd` is not open."""
        f = self._fds.get(fd)
        return None if f is None else _open_file(fd, f)

    def inode(self, ino: int) -> InodeView:
        """A read-only view of inode `ino` (KeyError if this disk has no such inode: it was
        never made, or nothing could reach it any more and it was freed)."""
        node = self._inodes.get(ino)
        if node is None:
            raise KeyError(f"no inode {ino} on this disk")
        return InodeView(node)

    def inode_at(self, path: str) -> InodeView | None:
        """A read-only view of the inode the visible file `path` names, or None (no file
        there, or a directory)."""
        node = self._files.get(check_relative_path(path))
        return None if node is None else InodeView(node)

    def namespace_after(self, metadata: int | CrashChoice) -> Mapping[str, int]:
        """The files of a crash image's namespace, as an immutable mapping path -> inode number.

        `metadata` is a ``CrashChoice`` (its model and kept metadata; its file choices are
        ignored; ``process`` gives the visible namespace) or an int: the image keeping the first
        that many of the ``pending_metadata`` operations (``power``). Directories are in
        ``crash(...).dirs``.
        """
        return MappingProxyType(self._metadata_namespace(metadata)[0])

    def dirty_inodes(self, metadata: int | CrashChoice) -> tuple[InodeView, ...]:
        """The dirty inodes the namespace of `metadata` (as in ``namespace_after``) names, most
        recently changed first: the order in which ``ImageLimits.max_dirty_files`` keeps them
        varying in ``crash_choices``."""
        ns = self._metadata_namespace(metadata)[0]
        return tuple(InodeView(node) for node in self._dirty(ns.values()))

    def file_options(
        self, inode: int | str, *, limits: ImageLimits | None = None
    ) -> tuple[FileChoice, ...]:
        """Every legal image of one inode's data under the power models (DURABLE first; just
        that for a clean inode), shaped by `limits` (torn, reorder, window, granularity).
        `inode` is an inode number (KeyError if unknown) or a visible file path (OSError if
        there is no file there)."""
        if isinstance(inode, str):
            path = check_relative_path(inode)
            node = self._files.get(path)
            if node is None:
                code = errno.EISDIR if path in self._dirs else self._lookup_error(path)
                raise os_error(code, path)
        else:
            node = self._inodes.get(inode)
            if node is None:
                raise KeyError(f"no inode {inode} on this disk")
        return self._file_options(node, limits or _DEFAULT_LIMITS)

    def metadata_choices(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> tuple[CrashChoice, ...]:
        """The legal metadata outcomes under `model` as choices without file choices, in the
        order ``crash_choices`` goes through them: ``power`` keeps 0..``pending_metadata``
        operations; ``power-eager-metadata`` and ``process`` all of them;
        ``power-posix-metadata`` every set closed under its dependencies, the prefixes first,
        at most ``limits.max_metadata_subsets`` of them."""
        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        outcomes, _ = self._metadata_outcomes(model, limits or _DEFAULT_LIMITS)
        return tuple(CrashChoice(model, kept, (), ops) for kept, ops in outcomes)

    def _metadata_outcomes(
        self, model: PersistenceModel, limits: ImageLimits
    ) -> tuple[list[tuple[int, tuple[int, ...] | None]], int]:
        """(kept, metadata_ops) of every metadata outcome looked at, and how many were cut."""
        pending = len(self._pending)
        if model is PersistenceModel.POWER:
            return [(k, None) for k in range(pending + 1)], 0
        if model is not _POSIX:
            return [(pending, None)], 0
        n = len(self._ppending)
        cap = limits.max_metadata_subsets
        deps = _posix_deps(self._ppending)
        out: list[tuple[int, tuple[int, ...] | None]] = [(k, None) for k in range(min(n + 1, cap))]
        if len(out) < cap:
            for kept in _closed_sets(deps):
                if _is_prefix(kept):
                    continue
                out.append((len(kept), kept))
                if len(out) >= cap:
                    break
        return out, _count_closed_sets(deps) - len(out)

    def _metadata_namespace(self, metadata: int | CrashChoice) -> tuple[dict[str, int], set[str]]:
        if isinstance(metadata, CrashChoice):
            errors = self._metadata_problems(metadata.model, metadata)
            if errors:
                raise CrashChoiceError(errors)
            return self._outcome_namespace(
                metadata.model, metadata.metadata_kept, metadata.metadata_ops
            )
        pending = len(self._pending)
        if isinstance(metadata, bool) or not isinstance(metadata, int):
            raise TypeError(f"metadata: expected an int or a CrashChoice, got {metadata!r}")
        if not 0 <= metadata <= pending:
            raise ValueError(f"metadata: must be in 0..{pending}, got {metadata}")
        return self._namespace_after(metadata)

    def _outcome_namespace(
        self, model: PersistenceModel, kept: int, ops: tuple[int, ...] | None
    ) -> tuple[dict[str, int], set[str]]:
        """(file path -> inode, directory paths) of an image keeping these pending operations
        (already validated)."""
        if model is PersistenceModel.PROCESS:
            return {path: node.ino for path, node in self._files.items()}, set(self._dirs)
        if model is _POSIX:
            pending = self._ppending
            chosen: Iterable[int] = range(kept) if ops is None else ops
            return _posix_namespace(self._pbase, (pending[i].writes for i in chosen))
        return self._namespace_after(kept)

    def _dirty(self, inos: Iterable[int]) -> list[_Inode]:
        """The dirty inodes among `inos`, most recently changed first."""
        inodes = self._inodes
        dirty = [inodes[i] for i in set(inos) if inodes[i].dirty()]
        dirty.sort(key=lambda node: (-node.stamp, node.ino))
        return dirty

    def visible_image(self) -> DiskImage:
        """What a reader sees now (and what survives a process crash)."""
        files = {path: bytes(inode.data) for path, inode in self._files.items()}
        return DiskImage(files, self._dirs.keys())

    def durable_image(self) -> DiskImage:
        """What survives power loss if nothing unsynced reaches the disk."""
        files = {path: self._inodes[ino].durable() for path, ino in self._dfiles.items()}
        return DiskImage(files, self._ddirs)

    # -- crash images --------------------------------------------------------------------------

    def crash(self, model: PersistenceModel, choice: CrashChoice | None = None) -> DiskImage:
        """The image after a crash under `model`; `choice` None means the default outcome
        (visible state for ``process``, durable-only for the power models)."""
        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        if model is PersistenceModel.PROCESS:
            if choice is not None:
                self._check_choice(model, choice)
            return self.visible_image()
        if choice is None:
            kept = len(self._pending) if model is PersistenceModel.POWER_EAGER_METADATA else 0
            choice = CrashChoice(model, kept, ())
        self._check_choice(model, choice)
        dfiles, ddirs = self._outcome_namespace(model, choice.metadata_kept, choice.metadata_ops)
        by_ino = {fc.inode: fc for fc in choice.files}
        files: dict[str, bytes] = {}
        for path, ino in dfiles.items():
            inode = self._inodes[ino]
            fc = by_ino.get(ino)
            files[path] = inode.durable() if fc is None else self._materialise(inode, fc)
        return DiskImage(files, ddirs)

    def _namespace_after(self, kept: int) -> tuple[dict[str, int], set[str]]:
        dfiles = dict(self._dfiles)
        ddirs = set(self._ddirs)
        for op in self._pending[:kept]:
            _apply_pending(op, dfiles, ddirs)
        return dfiles, ddirs

    def _check_choice(self, model: PersistenceModel, choice: CrashChoice) -> None:
        if not isinstance(choice, CrashChoice):
            raise CrashChoiceError([f"choice: expected CrashChoice, got {type(choice).__name__}"])
        errors = self._metadata_problems(model, choice)
        if model is PersistenceModel.PROCESS and choice.files:
            errors.append("files: the process model has no per-file choices")
        seen: set[int] = set()
        for i, fc in enumerate(choice.files):
            where = f"files[{i}]"
            inode = self._inodes.get(fc.inode)
            if inode is None:
                errors.append(f"{where}.inode: no inode {fc.inode} on this disk")
                continue
            if fc.inode in seen:
                errors.append(f"{where}.inode: inode {fc.inode} chosen twice")
            seen.add(fc.inode)
            problem = self._file_choice_problem(inode, fc)
            if problem:
                errors.append(f"{where}: {problem}")
        if errors:
            raise CrashChoiceError(errors)

    def _metadata_problems(self, model: PersistenceModel, choice: CrashChoice) -> list[str]:
        """What is wrong with the metadata part of `choice` for a crash under `model` here."""
        errors: list[str] = []
        if choice.model is not model:
            errors.append(
                f"model: choice is for {choice.model.value!r}, crash asked for {model.value!r}"
            )
        kept, ops = choice.metadata_kept, choice.metadata_ops
        pending = len(self._pending)
        if ops is not None and model is not _POSIX:
            errors.append(
                "metadata_ops: only 'power-posix-metadata' keeps a set of pending operations "
                "that is not a prefix"
            )
        if model is PersistenceModel.PROCESS:
            if kept != pending:
                errors.append(f"metadata_kept: must be {pending} under 'process'")
        elif model is PersistenceModel.POWER_EAGER_METADATA:
            if kept != pending:
                errors.append(
                    f"metadata_kept: must be {pending} (all pending operations) under "
                    f"'power-eager-metadata', got {kept}"
                )
        elif model is PersistenceModel.POWER:
            if not 0 <= kept <= pending:
                errors.append(f"metadata_kept: must be in 0..{pending}, got {kept}")
        elif ops is None:
            n = len(self._ppending)
            if not 0 <= kept <= n:
                errors.append(f"metadata_kept: must be in 0..{n}, got {kept}")
        else:
            errors.extend(self._posix_ops_problems(kept, ops))
        return errors

    def _posix_ops_problems(self, kept: int, ops: Sequence[int]) -> list[str]:
        n = len(self._ppending)
        if (
            not all(isinstance(i, int) and not isinstance(i, bool) for i in ops)
            or any(a >= b for a, b in itertools.pairwise(ops))
            or (ops and (ops[0] < 0 or ops[-1] >= n))
        ):
            return [
                f"metadata_ops: must be strictly increasing positions in 0..{n - 1} "
                f"(of {n} pending operations), got {list(ops)!r}"
            ]
        if kept != len(ops):
            return [f"metadata_kept: must be len(metadata_ops) = {len(ops)}, got {kept}"]
        deps = _posix_deps(self._ppending)
        kept_set = set(ops)
        for i in ops:
            if deps[i] >= 0 and deps[i] not in kept_set:
                return [
                    f"metadata_ops: keeps pending operation {i} (a rename) without operation "
                    f"{deps[i]}, which put what it renames where it found it"
                ]
        return []

    def _file_choice_problem(self, inode: _Inode, fc: FileChoice) -> str | None:
        sector = self.sector_size_bytes
        n = len(inode.data)
        dlen, clean = inode.dlen, inode.clean
        kind, length = fc.kind, fc.length_bytes
        if kind is ImageKind.DURABLE:
            return None if length == dlen else f"length_bytes: durable length is {dlen}"
        if kind is ImageKind.VISIBLE:
            return "kind: 'visible' is only the process model's image"
        base = dlen if clean == dlen else clean
        if not base <= length <= n:
            return f"length_bytes: must be in {base}..{n}, got {length}"
        if kind is ImageKind.PREFIX:
            return None
        if clean != dlen:
            return (
                f"kind: {kind.value!r} is not modelled after a truncate or overwrite below "
                "the durable length"
            )
        if length == dlen:
            return f"kind: {kind.value!r} needs length_bytes > the durable length {dlen}"
        last = (length - 1) // sector
        if kind in (ImageKind.TORN_ZERO, ImageKind.TORN_GARBAGE):
            if fc.sector_index != last:
                return f"sector_index: the torn sector of a {length}-byte image is {last}"
            return None
        s = fc.sector_index
        if s is None or not (s < last and (s + 1) * sector > dlen):
            return f"sector_index: must be an unsynced sector before sector {last}, got {s}"
        return None

    def _materialise(self, inode: _Inode, fc: FileChoice) -> bytes:
        kind, length = fc.kind, fc.length_bytes
        if kind is ImageKind.DURABLE:
            return inode.durable()
        if kind is ImageKind.PREFIX:
            return inode.overlay(bytes(inode.data[:length]))
        sector = self.sector_size_bytes
        if kind is ImageKind.REORDERED:
            assert fc.sector_index is not None
            buf = bytearray(inode.overlay(bytes(inode.data[:length])))
            start = max(fc.sector_index * sector, inode.dlen)
            end = min((fc.sector_index + 1) * sector, length)
            buf[start:end] = bytes(end - start)
            return bytes(buf)
        start = max(inode.dlen, ((length - 1) // sector) * sector)
        head = inode.overlay(bytes(inode.data[:start]))
        if kind is ImageKind.TORN_ZERO:
            return head + bytes(length - start)
        # Garbage derived from (inode, sector) so the same choice gives the same bytes.
        return head + garbage_sector(inode.ino, (length - 1) // sector, length - start)

    def _file_options(self, inode: _Inode, limits: ImageLimits) -> tuple[FileChoice, ...]:
        """Every legal image of one dirty inode, DURABLE first (see the module docstring)."""
        ino, n, dlen, clean = inode.ino, len(inode.data), inode.dlen, inode.clean
        sector = self.sector_size_bytes
        out = [FileChoice(ino, ImageKind.DURABLE, dlen)]
        base = dlen if clean == dlen else clean
        if limits.byte_granularity:
            lengths: Iterable[int] = range(base if clean != dlen else base + 1, n + 1)
        else:
            first = (base // sector + 1) * sector
            ends = list(range(first, n, sector))
            if clean != dlen:
                ends.insert(0, base)
            if n > base:
                ends.append(n)
            lengths = ends
        # A range a failed fsync dropped never reaches the disk: no torn/reordered variants.
        append_only = clean == dlen and not inode.patches
        window = limits.reorder_window_sectors
        for length in lengths:
            out.append(FileChoice(ino, ImageKind.PREFIX, length))
            if not append_only or length <= dlen:
                continue
            last = (length - 1) // sector
            if limits.torn:
                out.append(FileChoice(ino, ImageKind.TORN_ZERO, length, last))
                out.append(FileChoice(ino, ImageKind.TORN_GARBAGE, length, last))
            if limits.reorder and window:
                lo = max(dlen // sector, last - window)
                for s in range(lo, last):
                    out.append(FileChoice(ino, ImageKind.REORDERED, length, s))
        return tuple(out)

    def crash_choices(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> ChoiceEnumeration:
        """Every legal crash choice here under `model`, lazily, bounded by `limits` (cut-offs
        are counted on the returned enumeration)."""
        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        if limits is None:
            limits = _DEFAULT_LIMITS
        if model is PersistenceModel.PROCESS:
            choice = CrashChoice(model, len(self._pending), ())
            return ChoiceEnumeration(iter((choice,)), 1, 0, 0)
        outcomes, cut_metadata = self._metadata_outcomes(model, limits)
        options_cache: dict[int, tuple[FileChoice, ...]] = {}
        plans: list[_Plan] = []
        total = allowed = 0
        for kept, ops in outcomes:
            if kept == 0 and model is PersistenceModel.POWER:
                ns: Iterable[int] = self._dfiles.values()
            else:
                ns = self._outcome_namespace(model, kept, ops)[0].values()
            per_file = []
            full = 1
            for k, node in enumerate(self._dirty(ns)):
                opts = options_cache.get(node.ino)
                if opts is None:
                    opts = options_cache[node.ino] = self._file_options(node, limits)
                full *= len(opts)
                if k < limits.max_dirty_files:
                    per_file.append(opts)
            varied = 1
            for opts in per_file:
                varied *= len(opts)
            total += full
            allowed += varied
            plans.append((kept, ops, per_file))
        cap = limits.max_choices_per_point
        emitted = min(allowed, cap)
        return ChoiceEnumeration(
            itertools.islice(_expand(model, plans), cap),
            total,
            total - allowed,
            allowed - emitted,
            cut_metadata,
        )

    def draw_crash_choice(
        self, model: PersistenceModel, seed: int, *, limits: ImageLimits | None = None
    ) -> CrashChoice:
        """One legal crash choice drawn deterministically from `seed`."""
        rng = random.Random(seed)
        return self._chooser(model, limits)(lambda n: rng.randrange(n))

    def crash_choice_strategy(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> SearchStrategy[CrashChoice]:
        """A Hypothesis strategy over the legal crash choices here (shrinks towards fewer kept
        metadata operations and durable contents). Bound to the disk state at call time."""
        from hypothesis import strategies as st

        choose = self._chooser(model, limits)

        @st.composite
        def choices(draw: st.DrawFn) -> CrashChoice:
            return choose(lambda n: draw(st.integers(0, n - 1)))

        return choices()

    def _chooser(
        self, model: PersistenceModel, limits: ImageLimits | None
    ) -> Callable[[Callable[[int], int]], CrashChoice]:
        """A function building one legal choice from a source of `pick(n)` in 0..n-1 (0 is the
        least surviving), bound to the disk state now. Not bounded by the enumeration limits."""
        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        limits = limits or _DEFAULT_LIMITS
        if model is _POSIX:
            return self._posix_chooser(limits)
        table = self._option_table(model, limits)
        return lambda pick: _pick(model, table, pick)

    def _option_table(self, model: PersistenceModel, limits: ImageLimits) -> list[_Plan]:
        pending = len(self._pending)
        if model is PersistenceModel.PROCESS:
            return [(pending, None, [])]
        kepts = range(pending + 1) if model is PersistenceModel.POWER else (pending,)
        table: list[_Plan] = []
        for kept in kepts:
            ns = self._namespace_after(kept)[0].values()
            dirty = sorted((self._inodes[i] for i in set(ns) if self._inodes[i].dirty()),
                           key=lambda node: node.ino)
            table.append((kept, None, [self._file_options(node, limits) for node in dirty]))
        return table

    def _posix_chooser(self, limits: ImageLimits) -> Callable[[Callable[[int], int]], CrashChoice]:
        # A snapshot: writes tuples are replaced, never changed, when operations settle.
        base = {did: dict(entries) for did, entries in self._pbase.items()}
        writes = [op.writes for op in self._ppending]
        deps = _posix_deps(self._ppending)
        options = {
            ino: self._file_options(node, limits)
            for ino, node in self._inodes.items()
            if node.dirty()
        }

        def choose(pick: Callable[[int], int]) -> CrashChoice:
            keep: list[int] = []
            kept_set: set[int] = set()
            for i, d in enumerate(deps):
                # Each operation whose dependency is kept survives or not (0: not).
                if (d < 0 or d in kept_set) and pick(2):
                    keep.append(i)
                    kept_set.add(i)
            kept = tuple(keep)
            ns = _posix_namespace(base, (writes[i] for i in kept))[0]
            files = []
            for ino in sorted(set(ns.values())):
                opts = options.get(ino)
                if opts:
                    fc = opts[pick(len(opts))]
                    if fc.kind is not ImageKind.DURABLE:
                        files.append(fc)
            return CrashChoice(_POSIX, len(kept), tuple(files), None if _is_prefix(kept) else kept)

        return choose

    # -- replay --------------------------------------------------------------------------------

    @classmethod
    def replay(cls, trace: Trace | Sequence[TraceEntry], **kwargs: Any) -> Iterator[SimDisk]:
        """The disk state at every position of `trace` (0 .. len), on one disk mutated in place:
        each yielded state is valid until the iterator is advanced."""
        cursor = ReplayCursor(trace, **kwargs)
        yield cursor.disk
        while cursor.step() is not None:
            yield cursor.disk

    def apply_partial_write(self, entry: TraceEntry, written_bytes: int) -> int:
        """Apply the first `written_bytes` of a traced write (same fd, same offset) to this disk:
        the state of a crash inside that write. Traced as a write of that many bytes."""
        if entry.op is not Op.WRITE or entry.fd is None or entry.result < 0:
            raise ValueError(f"entry: expected a successful write entry, got {entry.op.value}")
        if not 0 <= written_bytes <= entry.length:
            raise ValueError(f"written_bytes: must be in 0..{entry.length}, got {written_bytes}")
        f = self._fds.get(entry.fd)
        if f is None:
            raise os_error(errno.EBADF)
        append = f.append
        f.pos, f.append = entry.offset, False
        try:
            return self.write(entry.fd, bytes(entry.payload[:written_bytes]))
        finally:
            f.append = append


_DEFAULT_LIMITS = ImageLimits()


def _apply_pending(op: _Pending, dfiles: dict[str, int], ddirs: set[str]) -> None:
    """Apply one namespace operation to a durable namespace; skipped if its source (or the
    target's parent) is not there."""
    kind, p1, p2, ino = op
    if kind == _CREATE:
        if _parent(p1) in ddirs:
            dfiles[p1] = ino
    elif kind == _P_UNLINK:
        if dfiles.get(p1) == ino:
            del dfiles[p1]
    elif kind == _P_MKDIR:
        if _parent(p1) in ddirs:
            ddirs.add(p1)
    elif _parent(p2) in ddirs:
        if ino:
            if dfiles.get(p1) == ino:
                dfiles[p2] = dfiles.pop(p1)
        elif p1 in ddirs and p2 not in dfiles:
            prefix = p1 + "/"
            cut = len(p1)
            for d in [d for d in ddirs if d == p1 or d.startswith(prefix)]:
                ddirs.discard(d)
                ddirs.add(p2 + d[cut:])
            for p in [p for p in dfiles if p.startswith(prefix)]:
                dfiles[p2 + p[cut:]] = dfiles.pop(p)


# One metadata outcome of a crash point and the options of its varied dirty files:
# (metadata_kept, metadata_ops, per-file options).
_Plan = tuple[int, tuple[int, ...] | None, list[tuple[FileChoice, ...]]]


def _expand(model: PersistenceModel, plans: list[_Plan]) -> Iterator[CrashChoice]:
    # Canonical choices leave DURABLE files out; per-file one-element tuples are built once per
    # crash point so the common single-dirty-file case allocates only the CrashChoice.
    for kept, ops, per_file in plans:
        parts = [
            tuple(() if fc.kind is ImageKind.DURABLE else (fc,) for fc in opts)
            for opts in per_file
        ]
        if not parts:
            yield CrashChoice(model, kept, (), ops)
        elif len(parts) == 1:
            for files in parts[0]:
                yield CrashChoice(model, kept, files, ops)
        else:
            for combo in itertools.product(*parts):
                yield CrashChoice(model, kept, tuple(itertools.chain.from_iterable(combo)), ops)


def _pick(model: PersistenceModel, table: list[_Plan], pick: Callable[[int], int]) -> CrashChoice:
    kept, ops, per_file = table[pick(len(table))]
    files = tuple(opts[pick(len(opts))] for opts in per_file)
    # DURABLE entries are the default; leaving them out keeps choices canonical and small.
    return CrashChoice(
        model, kept, tuple(fc for fc in files if fc.kind is not ImageKind.DURABLE), ops
    )


class ReplayCursor:
    """Walk a trace position by position on a fresh (untraced) disk.

    ``position`` is how many entries have been applied; ``disk`` is the state there (crash it,
    enumerate its choices). ``inside_write(k)`` shows the state of a crash after the first `k`
    bytes of the next entry (a write) and undoes it afterwards.
    """

    def __init__(
        self,
        trace: Trace | Sequence[TraceEntry],
        *,
        fsync_failure: FsyncFailure | None = None,
        sector_size_bytes: int | None = None,
    ) -> None:
        """Settings default to those of the disk that recorded `trace` (a ``Trace``), else to
        SimDisk's defaults."""
        if isinstance(trace, Trace):
            self._raw: list[_Raw] = trace._raw
            initial = trace.initial
            if fsync_failure is None:
                fsync_failure = trace.fsync_failure
            if sector_size_bytes is None:
                sector_size_bytes = trace.sector_size_bytes
        else:
            self._raw = [
                (e.op, e.path, -1 if e.fd is None else e.fd, e.offset, e.length, e.result,
                 e.payload)
                for e in trace
            ]
            initial = None
        self.disk = SimDisk(
            fsync_failure=fsync_failure or FsyncFailure.LINUX,
            sector_size_bytes=sector_size_bytes or 512,
            trace=False,
        )
        if initial is not None:
            self.disk._load(initial)
        self.position = 0
        self._fd_map: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def replayed_fd(self, trace_fd: int) -> int | None:
        """The fd of ``disk`` that stands for `trace_fd` (an fd number of the traced disk), or
        None if that fd is not open at this position."""
        return self._fd_map.get(trace_fd)

    def open_file(self, trace_fd: int) -> OpenFile | None:
        """A snapshot of the open file behind `trace_fd` (an fd number of the traced disk) on
        ``disk``, or None if that fd is not open at this position."""
        mine = self._fd_map.get(trace_fd)
        return None if mine is None else self.disk.open_file(mine)

    def next_entry(self) -> TraceEntry | None:
        """The entry the next ``step`` applies, or None at the end."""
        if self.position >= len(self._raw):
            return None
        op, path, fd, offset, length, result, payload = self._raw[self.position]
        return TraceEntry(
            self.position, op, path, offset, length, result, None if fd < 0 else fd, payload
        )

    def step(self) -> TraceEntry | None:
        """Apply the next entry; returns it, or None when the trace is exhausted."""
        entry = self.next_entry()
        if entry is None:
            return None
        self._apply(entry.op, entry.path, entry.fd, entry.offset, entry.length, entry.result,
                    entry.payload)
        self.position += 1
        return entry

    def seek(self, position: int) -> None:
        """Move forward to `position` (replays cannot go back; start a new cursor)."""
        if not self.position <= position <= len(self._raw):
            raise ValueError(
                f"position: must be in {self.position}..{len(self._raw)}, got {position}"
            )
        while self.position < position:
            self.step()

    def _apply(
        self, op: Op, path: str, fd: int | None, offset: int, length: int, result: int, payload: Any
    ) -> None:
        if result < 0:
            return  # a failed operation changed nothing
        disk = self.disk
        mine = self._fd_map.get(fd, -1) if fd is not None else -1
        if op is Op.WRITE:
            f = disk._fds[mine]
            f.pos, append = offset, f.append
            f.append = False
            disk.write(mine, payload[:length])
            f.append = append
        elif op is Op.OPEN:
            assert fd is not None
            self._fd_map[fd] = disk.open(path, payload)
        elif op is Op.READ:
            disk._fds[mine].pos = offset + length
        elif op is Op.LSEEK:
            disk._fds[mine].pos = result
        elif op is Op.FSYNC:
            disk.fsync(mine)
        elif op is Op.FDATASYNC:
            disk.fdatasync(mine)
        elif op is Op.FSYNC_FAILED:
            disk.fail_fsync(mine)
        elif op is Op.FTRUNCATE:
            disk.ftruncate(mine, payload)
        elif op is Op.CLOSE:
            disk.close(mine)
            del self._fd_map[fd]  # type: ignore[arg-type]
        elif op is Op.RENAME:
            disk.rename(path, payload)
        elif op is Op.UNLINK:
            disk.unlink(path)
        elif op is Op.MKDIR:
            disk.mkdir(path)
        elif op is Op.FSYNC_DIR:
            disk.fsync_dir(path)

    def torn_write_offsets(self, *, byte_granularity: bool = False) -> list[int]:
        """Byte counts k (0 < k < length) at which the next write may be cut by a crash: every
        sector boundary of the file inside the write, or every byte."""
        entry = self.next_entry()
        if entry is None or entry.op is not Op.WRITE or entry.result <= 0:
            return []
        if byte_granularity:
            return list(range(1, entry.length))
        sector = self.disk.sector_size_bytes
        first = (entry.offset // sector + 1) * sector
        return [b - entry.offset for b in range(first, entry.offset + entry.length, sector)]

    @contextmanager
    def inside_write(self, written_bytes: int) -> Iterator[SimDisk]:
        """The disk as if the process crashed after `written_bytes` of the next write (which
        must be a write); restored when the block exits."""
        entry = self.next_entry()
        if entry is None or entry.op is not Op.WRITE or entry.result < 0:
            raise ValueError("inside_write: the next trace entry is not a successful write")
        if not 0 <= written_bytes <= entry.length:
            raise ValueError(f"written_bytes: must be in 0..{entry.length}, got {written_bytes}")
        f = self.disk._fds[self._fd_map[entry.fd]]  # type: ignore[index]
        inode = f.inode
        assert inode is not None
        old_len = len(inode.data)
        off = entry.offset
        overwritten = bytes(inode.data[off : min(off + written_bytes, old_len)])
        saved = (inode.clean, inode.dsaved, list(inode.patches), inode.stamp, f.pos, f.append)
        f.pos, f.append = off, False
        self.disk.write(self._fd_map[entry.fd], entry.payload[:written_bytes])  # type: ignore[index]
        try:
            yield self.disk
        finally:
            del inode.data[old_len:]
            inode.data[off : off + len(overwritten)] = overwritten
            inode.clean, inode.dsaved, inode.patches, inode.stamp, f.pos, f.append = saved
