"""SimDisk: an in-memory FileSystem with a page cache (visible) over a disk (durable): the
namespace, the open files, the FileSystem verbs, and the replay cursor over its trace.

Responsibilities live beside it: crash images and choices in ``_crash`` (a mixin SimDisk
inherits), per-inode data and its crash images in ``_inode``, each
metadata model (its rules at the top of its module) in ``_model_ext4``, ``_model_xfs``,
``_model_btrfs`` and ``_model_posix`` over the shared record of ``_journal``, all of them kept
side by side by ``_metadata``; crash-choice enumeration in ``_choices``; the trace in
``_trace``. A SimDisk tells every model each namespace operation and each sync, so a crash can
be asked under any model afterwards.

The visible namespace is ``_files`` (path -> inode) and ``_dirs`` (path -> names in it).
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from faults._crash import CrashImages
from faults._fs import FileStat, check_relative_path, os_error
from faults._image import DiskImage, FsyncFailure, PersistenceModel
from faults._inode import BLOCK_BYTES, Inode, InodeView, block_end
from faults._metadata import Metadata
from faults._trace import Op, Raw, Trace, TraceEntry

__all__ = ["OpenFile", "ReplayCursor", "SimDisk"]

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


class _Fd:
    __slots__ = ("append", "did", "inode", "is_dir", "path", "pos", "readable", "writable")

    def __init__(
        self,
        inode: Inode | None,
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



_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
# The models whose journal commit makes every pending truncate durable (Metadata.commits order).
_SIZE_MODELS = (PersistenceModel.POWER.value, PersistenceModel.POWER_XFS.value)


def _parent(path: str) -> str:
    return posixpath.dirname(path)


class SimDisk(CrashImages):
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
        self._inodes: dict[int, Inode] = {}
        self._next_ino = 1
        self._files: dict[str, Inode] = {}
        self._dirs: dict[str, set[str]] = {"": set()}
        # Every metadata model's record of the namespace operations (see ``_metadata``).
        self._meta = Metadata()
        self._fds: dict[int, _Fd] = {}
        self._next_fd = 3
        self._stamp = 0

    def __repr__(self) -> str:
        return (
            f"SimDisk(files={len(self._files)}, pending_metadata={self._meta.ext4.pending}, "
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
        dirs = sorted(image.dirs, key=lambda p: p.count("/"))
        for d in dirs:
            parent = _parent(d)
            if parent not in self._dirs:
                raise ValueError(f"image.dirs: {d!r} has no parent directory {parent!r}")
            self._dirs[d] = set()
            self._dirs[parent].add(posixpath.basename(d))
        files: dict[str, int] = {}
        for path in sorted(image.files):
            parent = _parent(path)
            if parent not in self._dirs:
                raise ValueError(f"image.files: {path!r} has no parent directory {parent!r}")
            if path in self._dirs:
                raise ValueError(f"image.files: {path!r} is also a directory")
            inode = self._new_inode(image.files[path], durable=True)
            self._files[path] = inode
            self._dirs[parent].add(posixpath.basename(path))
            files[path] = inode.ino
        self._meta.load(files, dirs)

    def _new_inode(self, data: bytes = b"", *, durable: bool = False) -> Inode:
        inode = Inode(self._next_ino, data, durable=durable)
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
            return self._new_fd(_Fd(None, path, True, False, False, self._meta.dir_id(path)), flags)
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
            self._meta.create(path, inode.ino)
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
        if pos + n > size and inode.dlen % BLOCK_BYTES:
            inode.grown(pos + n)  # the new size may be committed before the data
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
        if inode.patches and n:
            _redirty_pages(inode, pos, end)
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
            commits = self._meta.commits()
            self._meta.sync_dir(f.did)
            self._sizes_committed(commits)
            length = 0
        else:
            dirty = inode.dirty()
            length = len(inode.data)
            in_place_only = length == inode.dlen and inode.low is None and not inode.sizes
            if inode.patches:
                # Ranges dropped by a failed fsync stay as they are on disk.
                inode.dsaved = inode.overlay(bytes(inode.data))
            else:
                inode.dsaved = None
            inode.synced()
            commits = self._meta.commits()
            self._meta.sync_file(inode.ino, dirty, datasync=op is _FDATASYNC,
                                 in_place_only=in_place_only)
            self._sizes_committed(commits)
        if self._tracing:
            self._raw.append((op, f.path, fd, 0, length, 0, None))

    def _sizes_committed(self, before: tuple[int, int]) -> None:
        """After a sync: a journal commit (ext4's, xfs's) makes every pending truncate durable
        under its model (btrfs commits one inode at a time; its fsync syncs the data too)."""
        after = self._meta.commits()
        for model, style, was, now in zip(_SIZE_MODELS, ("ext4", "xfs"), before, after,
                                          strict=True):
            if now != was:
                for node in self._inodes.values():
                    if node.trunc is not None:
                        node.commit_size(model, style)

    def fail_fsync(self, fd: int) -> None:
        """An fsync of `fd` failed (EIO): apply this disk's FsyncFailure semantics, traced.

        ``linux``: the dirty range [clean, size) is marked clean without reaching the disk, so
        no later fsync writes it, until a write to one of its pages makes that page dirty again.
        ``retry``: nothing changes; the range stays dirty.
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

    def _truncate(self, inode: Inode, size: int) -> None:
        buf = inode.data
        old = len(buf)
        inode.truncated(old, size)
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
            inode = self._files.get(src)
            self._meta.rename(src, dst, 0 if inode is None else inode.ino)
            if inode is not None:
                del self._files[src]
                self._dirs[_parent(src)].discard(posixpath.basename(src))
                self._files[dst] = inode
                self._dirs[_parent(dst)].add(posixpath.basename(dst))
            else:
                self._move_dir(src, dst)
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
        self._meta.unlink(path, inode.ino)
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
        self._meta.mkdir(path)
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
        commits = self._meta.commits()
        self._meta.sync_dir(self._meta.dir_id(path))
        self._sizes_committed(commits)
        self._collect()
        if self._tracing:
            self._raw.append((_FSYNC_DIR, path, -1, 0, 0, 0, None))

    def _live_candidates(self) -> set[int]:
        live = self._meta.inodes()
        live.update(inode.ino for inode in self._files.values())
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
            self._raw: list[Raw] = trace._raw
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
        sizes = list(inode.sizes)  # the partial write may take a size before its data
        f.pos, f.append = off, False
        self.disk.write(self._fd_map[entry.fd], entry.payload[:written_bytes])  # type: ignore[index]
        try:
            yield self.disk
        finally:
            del inode.data[old_len:]
            inode.data[off : off + len(overwritten)] = overwritten
            inode.clean, inode.dsaved, inode.patches, inode.stamp, f.pos, f.append = saved
            inode.sizes[:] = sizes


def _redirty_pages(inode: Inode, pos: int, end: int) -> None:
    """A write to [pos, end) makes every page it touches dirty again, whole (Linux writes back
    pages, not bytes): the bytes of those pages a failed fsync dropped are in the page cache
    and go to the disk with the new ones, so a dropped range never ends inside a written page.
    """
    lo = pos - pos % BLOCK_BYTES
    hi = block_end(end)
    first = min((max(start, lo) for start, disk in inode.patches
                 if start < hi and start + len(disk) > lo), default=None)
    if first is None:
        return
    if first < inode.clean:
        if first < inode.dlen:
            inode.save_durable()  # before the cut: the disk still has the dropped bytes' old ones
        inode.clean = first
    inode.cut_patches(lo, hi)

