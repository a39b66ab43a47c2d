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
  operations not yet made durable by ``fsync_dir`` wait in ``_pending`` in program order.
"""

from __future__ import annotations

import enum
import errno
import itertools
import os
import posixpath
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["ChoiceEnumeration", "Op", "ReplayCursor", "SimDisk", "Trace", "TraceEntry"]


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
    __slots__ = ("append", "inode", "is_dir", "path", "pos", "readable", "writable")

    def __init__(
        self, inode: _Inode | None, path: str, readable: bool, writable: bool, append: bool
    ) -> None:
        self.inode = inode
        self.path = path
        self.pos = 0
        self.readable = readable
        self.writable = writable
        self.append = append
        self.is_dir = inode is None


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


class ChoiceEnumeration(Iterator[CrashChoice]):
    """The legal crash choices at one crash point, lazily, with the cut-offs reported.

    ``total`` counts every legal choice under the limits' shape settings (torn, reorder, window,
    granularity); ``cut_by_dirty_files`` and ``cut_by_max_choices`` say how many of them the
    limits left out; ``emitted`` counts what the iterator has produced so far.
    """

    def __init__(
        self, choices: Iterator[CrashChoice], total: int, cut_dirty: int, cut_max: int
    ) -> None:
        self._it = choices
        self.total = total
        self.cut_by_dirty_files = cut_dirty
        self.cut_by_max_choices = cut_max
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
            return self._new_fd(_Fd(None, path, True, False, False), flags)
        inode = self._files.get(path)
        if inode is None:
            parent = _parent(path)
            if parent not in self._dirs:
                raise self._fail(_OPEN, path, self._lookup_error(path), payload=flags)
            if not flags & os.O_CREAT:
                raise self._fail(_OPEN, path, errno.ENOENT, payload=flags)
            inode = self._new_inode()
            self._files[path] = inode
            self._dirs[parent].add(posixpath.basename(path))
            self._pending.append((_CREATE, path, "", inode.ino))
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
            if src in self._files:
                inode = self._files.pop(src)
                self._dirs[_parent(src)].discard(posixpath.basename(src))
                self._files[dst] = inode
                self._dirs[_parent(dst)].add(posixpath.basename(dst))
                ino = inode.ino
            else:
                self._move_dir(src, dst)
                ino = 0
            self._pending.append((_P_RENAME, src, dst, ino))
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
            self._dirs[_parent(dst)].discard(posixpath.basename(dst))
        cut = len(src)
        for d in [d for d in self._dirs if d == src or d.startswith(src + "/")]:
            self._dirs[dst + d[cut:]] = self._dirs.pop(d)
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
        self._dirs[_parent(path)].discard(posixpath.basename(path))
        self._pending.append((_P_UNLINK, path, "", inode.ino))
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
        self._dirs[parent].add(posixpath.basename(path))
        self._pending.append((_P_MKDIR, path, "", 0))
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

    def _live_candidates(self) -> set[int]:
        live = {inode.ino for inode in self._files.values()}
        live.update(self._dfiles.values())
        live.update(op[3] for op in self._pending)
        live.update(f.inode.ino for f in self._fds.values() if f.inode is not None)
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
        """How many namespace operations are not yet durable."""
        return len(self._pending)

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
        dfiles, ddirs = self._namespace_after(choice.metadata_kept)
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
        errors: list[str] = []
        if not isinstance(choice, CrashChoice):
            raise CrashChoiceError([f"choice: expected CrashChoice, got {type(choice).__name__}"])
        if choice.model is not model:
            errors.append(
                f"model: choice is for {choice.model.value!r}, crash asked for {model.value!r}"
            )
        pending = len(self._pending)
        if model is PersistenceModel.PROCESS:
            if choice.files:
                errors.append("files: the process model has no per-file choices")
            if choice.metadata_kept != pending:
                errors.append(f"metadata_kept: must be {pending} under 'process'")
        elif model is PersistenceModel.POWER_EAGER_METADATA and choice.metadata_kept != pending:
            errors.append(
                f"metadata_kept: must be {pending} (all pending operations) under "
                f"'power-eager-metadata', got {choice.metadata_kept}"
            )
        elif not 0 <= choice.metadata_kept <= pending:
            errors.append(f"metadata_kept: must be in 0..{pending}, got {choice.metadata_kept}")
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
        rng = random.Random(f"garbage:{inode.ino}:{(length - 1) // sector}")
        return head + rng.randbytes(length - start)

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
        pending = len(self._pending)
        if model is PersistenceModel.PROCESS:
            return ChoiceEnumeration(iter((CrashChoice(model, pending, ()),)), 1, 0, 0)
        if model is PersistenceModel.POWER_EAGER_METADATA:
            kepts: Sequence[int] = (pending,)
        else:
            kepts = range(pending + 1)
        options_cache: dict[int, tuple[FileChoice, ...]] = {}
        inodes = self._inodes
        plans: list[tuple[int, list[tuple[FileChoice, ...]]]] = []
        total = allowed = 0
        for kept in kepts:
            if kept == 0:
                ns: Iterable[int] = self._dfiles.values()
            else:
                ns = self._namespace_after(kept)[0].values()
            dirty = [inodes[i] for i in set(ns) if inodes[i].dirty()]
            dirty.sort(key=lambda node: (-node.stamp, node.ino))
            per_file = []
            full = 1
            for k, node in enumerate(dirty):
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
            plans.append((kept, per_file))
        cap = limits.max_choices_per_point
        emitted = min(allowed, cap)
        return ChoiceEnumeration(
            itertools.islice(_expand(model, plans), cap), total, total - allowed, allowed - emitted
        )

    def draw_crash_choice(
        self, model: PersistenceModel, seed: int, *, limits: ImageLimits | None = None
    ) -> CrashChoice:
        """One legal crash choice drawn deterministically from `seed`."""
        rng = random.Random(seed)
        return self._draw(model, limits, lambda n: rng.randrange(n))

    def crash_choice_strategy(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> SearchStrategy[CrashChoice]:
        """A Hypothesis strategy over the legal crash choices here (shrinks towards fewer kept
        metadata operations and durable contents). Bound to the disk state at call time."""
        from hypothesis import strategies as st

        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        options = self._option_table(model, limits)

        @st.composite
        def choices(draw: st.DrawFn) -> CrashChoice:
            return _pick(model, options, lambda n: draw(st.integers(0, n - 1)))

        return choices()

    def _option_table(
        self, model: PersistenceModel, limits: ImageLimits | None
    ) -> list[tuple[int, list[tuple[FileChoice, ...]]]]:
        limits = limits or _DEFAULT_LIMITS
        pending = len(self._pending)
        if model is PersistenceModel.PROCESS:
            return [(pending, [])]
        kepts = range(pending + 1) if model is PersistenceModel.POWER else (pending,)
        table = []
        for kept in kepts:
            ns = self._namespace_after(kept)[0].values()
            dirty = sorted((self._inodes[i] for i in set(ns) if self._inodes[i].dirty()),
                           key=lambda node: node.ino)
            table.append((kept, [self._file_options(node, limits) for node in dirty]))
        return table

    def _draw(
        self, model: PersistenceModel, limits: ImageLimits | None, pick: Any
    ) -> CrashChoice:
        if not isinstance(model, PersistenceModel):
            raise ValueError(f"model: expected PersistenceModel, got {model!r}")
        return _pick(model, self._option_table(model, limits), pick)

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


def _expand(
    model: PersistenceModel, plans: list[tuple[int, list[tuple[FileChoice, ...]]]]
) -> Iterator[CrashChoice]:
    # Canonical choices leave DURABLE files out; per-file one-element tuples are built once per
    # crash point so the common single-dirty-file case allocates only the CrashChoice.
    for kept, per_file in plans:
        parts = [
            tuple(() if fc.kind is ImageKind.DURABLE else (fc,) for fc in opts)
            for opts in per_file
        ]
        if not parts:
            yield CrashChoice(model, kept, ())
        elif len(parts) == 1:
            for files in parts[0]:
                yield CrashChoice(model, kept, files)
        else:
            for combo in itertools.product(*parts):
                yield CrashChoice(model, kept, tuple(itertools.chain.from_iterable(combo)))


def _pick(
    model: PersistenceModel, table: list[tuple[int, list[tuple[FileChoice, ...]]]], pick: Any
) -> CrashChoice:
    kept, per_file = table[pick(len(table))]
    files = tuple(opts[pick(len(opts))] for opts in per_file)
    # DURABLE entries are the default; leaving them out keeps choices canonical and small.
    return CrashChoice(model, kept, tuple(fc for fc in files if fc.kind is not ImageKind.DURABLE))


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
