"""Mount a ``faults.FileSystem`` through FUSE so an unmodified server process runs on it.

``FuseMount(fs, mountpoint)`` serves `fs` (in practice a ``FaultyFileSystem`` over a ``SimDisk``)
at `mountpoint` with libfuse 3 through ``mfusepy``. The FUSE loop runs in background threads of
*this* process, so the harness can inspect the disk (trace, durable state) while a server writes
through the mount. Every FileSystem call is made under ``FuseMount.lock``; hold it to read a
consistent snapshot of the disk while the mount is live.

Mapping of FUSE operations to FileSystem verbs
----------------------------------------------
getattr -> ``stat`` (for a handle whose file was unlinked: ``lseek`` to the end and back),
readdir -> ``listdir``, create/open -> ``open`` with the access mode and O_CREAT/O_EXCL/O_TRUNC/
O_APPEND, read -> ``lseek`` (only when the kernel's offset differs from the handle's position) +
``read``, write -> ``lseek`` (same rule; never for O_APPEND handles) + ``write``, whose count goes
back to the kernel unchanged (a short write from the plan is a genuine short ``write(2)`` for the
process), truncate -> ``ftruncate`` on the handle (or open/ftruncate/close by path), fsync ->
``fdatasync`` when the datasync flag is set, else ``fsync``, fsyncdir -> ``fsync_dir``, rename,
unlink, mkdir, release -> ``close``, flush -> nothing, statfs -> constants. An ``OSError`` from the
FileSystem becomes ``-errno`` for the kernel, so ENOSPC/EIO reach the process as real errno
values. Rename flags (RENAME_NOREPLACE/EXCHANGE) get EINVAL; chmod/chown/links/xattrs are not
served (ENOSYS); timestamps read as 0 and ``utimens`` is accepted and ignored.

The mount uses ``direct_io`` (no page cache inside the mount: every ``write(2)`` is one FUSE
WRITE, so write/fsync order is what the FileSystem sees) and attribute/entry timeouts of 0 (sizes
seen by the kernel never go stale after an ftruncate or a crash). ``hard_remove`` (default on)
makes unlink of an open file a real unlink instead of a rename to ``.fuse_hidden*``.

Crashing a real server on the mount
-----------------------------------
1. The harness SIGKILLs the server and its rewrite child (``harness.targets.RedisProcess.kill``).
2. ``image = mount.crash(model, choice)``: unmounts (refusing, with the PIDs, if a process still
   holds files under the mount), builds ``image = disk.crash(model, choice)``, boots
   ``SimDisk.from_image(image)`` (wrapped again by ``wrap``, by default in a fresh
   ``FaultyFileSystem`` with an empty plan when the old one was faulty) and mounts it at the same
   place. ``mount.fs`` / ``mount.disk`` now name the new disk.
3. The harness restarts the server on the mountpoint and checks what it recovered.

A ``Crash`` fault from the plan (``SimulatedCrash``) inside a FUSE operation freezes the mount:
the operation and every later one fail with EIO and never reach the disk, the process that made
the call is SIGKILLed (never this process), and ``mount.simulated_crash`` records it. The disk is
then exactly as it was at the crash point; kill the rest of the server and call ``crash``.

A ``SlowSync`` that advances the virtual clock given as ``clock=`` is turned into a real sleep of
the same length (outside the lock), so the process really waits on its fsync.

No mount is left behind: ``stop`` (also run by ``with``, by ``atexit``, and by a SIGTERM/SIGHUP
handler installed on first use from the main thread) unmounts with ``fusermount3 -u``, falling back
to ``fusermount3 -uz``; a watchdog child (``sh``, in its own session) lazily unmounts if this
process dies without stopping (even by SIGKILL). Before unmounting, descriptors *this* process
still holds under the mount are redirected to /dev/null (see ``_release_own_files``: a process
exiting with a file open on its own FUSE mount would hang in the kernel forever).

Known limits: ``fstat`` of a file unlinked while open fails with ESTALE (libfuse's path-based
API with ``hard_remove``); a process SIGKILLed while holding a file on its own mount can still
hang in the kernel (abort it through ``/sys/fs/fuse/connections/<n>/abort``); timestamps,
permissions, links and xattrs are not modelled.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import stat as stat_module
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Final

from faults import (
    CrashChoice,
    DiskImage,
    FaultPlan,
    FaultyFileSystem,
    PersistenceModel,
    SimDisk,
    SimulatedCrash,
)
from faults._clock import Clock
from faults._fs import FileSystem, check_relative_path

__all__ = [
    "FuseHold",
    "FuseMount",
    "FuseMountError",
    "FuseUnavailableError",
    "MountCrash",
    "fuse_unavailable_reason",
    "is_mounted",
    "unmount_under",
]

_FUSERMOUNT: Final = "fusermount3"
# Flags a FileSystem understands; the kernel also passes O_LARGEFILE, O_NOFOLLOW and the like.
_OPEN_FLAGS_MASK: Final = os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND
_BLOCK_BYTES: Final = 4096
_POLL_S: Final = 0.002
# A hold is a gate, not a timer: it waits for `release` however loaded the machine is. This cap
# only keeps a forgotten hold from wedging a FUSE thread forever.
_HOLD_CAP_S: Final = 120.0


class FuseMountError(RuntimeError):
    """A mount could not be started, stopped or crashed; the message says why."""


class FuseUnavailableError(FuseMountError):
    """FUSE cannot be used on this machine (no /dev/fuse, no fusermount3 or no libfuse3)."""


@dataclass(frozen=True, slots=True)
class MountCrash:
    """A ``SimulatedCrash`` raised inside a FUSE operation: the mount froze there."""

    exception: SimulatedCrash
    op: str
    path: str | None
    pid: int  # the process that made the call (0 if unknown)
    killed: bool  # whether that process was SIGKILLed


def fuse_unavailable_reason() -> str | None:
    """None if FUSE mounts can be made here, else one line saying what is missing."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE kernel support in this machine or container)"
    if shutil.which(_FUSERMOUNT) is None:
        return f"{_FUSERMOUNT} is missing (install it with scripts/bootstrap.sh)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse through ctypes)
    except (ImportError, OSError, AttributeError) as exc:
        return f"mfusepy/libfuse3 cannot be loaded ({exc}); run scripts/bootstrap.sh"
    return None


def _unescape_mountinfo(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _fuse_mounts() -> dict[str, str]:
    """Mount point -> "major:minor" of every FUSE mount visible to this process."""
    mounts: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            fstype = tail.split(" ", 1)[0]
            if len(fields) >= 5 and (fstype == "fuse" or fstype.startswith("fuse.")):
                mounts[_unescape_mountinfo(fields[4])] = fields[2]
    return mounts


def is_mounted(mountpoint: str | os.PathLike[str]) -> bool:
    """Whether a FUSE filesystem is mounted at `mountpoint` (read from /proc/self/mountinfo)."""
    return os.path.realpath(os.fspath(mountpoint)) in _fuse_mounts()


def unmount_under(root: str | os.PathLike[str]) -> list[str]:
    """Lazily unmount every FUSE mount at or under `root`, deepest first, and abort its
    connection; returns the mount points. For the mounts of a run that died without stopping
    them (the watchdog normally does this): a mount whose daemon is gone answers ENOTCONN, and
    the directory holding it could not be removed otherwise."""
    base = os.path.realpath(os.fspath(root))
    prefix = base.rstrip("/") + "/"
    found = [(point, device) for point, device in _fuse_mounts().items()
             if point == base or point.startswith(prefix)]
    for point, device in sorted(found, key=lambda item: -len(item[0])):
        _fusermount(point, lazy=True)
        _abort_connection(device)
    return [point for point, _ in found]


def _pids_using(mountpoint: str) -> list[int]:
    """PIDs with an open file, cwd or root under `mountpoint` (best effort, from /proc)."""
    prefix = mountpoint.rstrip("/") + "/"
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        base = f"/proc/{name}"
        links: list[str] = [f"{base}/cwd", f"{base}/root"]
        with contextlib.suppress(OSError):
            links += [f"{base}/fd/{fd}" for fd in os.listdir(f"{base}/fd")]
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target == mountpoint or target.startswith(prefix):
                found.append(int(name))
                break
    return sorted(found)


def _release_own_files(mountpoint: str) -> int:
    """Point this process's descriptors under `mountpoint` at /dev/null; returns how many.

    A process that exits holding a file on its *own* FUSE mount hangs forever in the kernel
    (the FLUSH at exit waits for a daemon thread that is already gone), and such a file also
    makes the mount busy. ``dup2`` closes the FUSE file while the loop can still answer, yet
    keeps the descriptor number valid, so a later ``close`` by its owner cannot hit a reused fd.
    """
    prefix = mountpoint.rstrip("/") + "/"
    released = 0
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd == devnull:
                continue
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if target == mountpoint or target.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd, inheritable=False)
                    released += 1
    finally:
        os.close(devnull)
    return released


def _fusermount(mountpoint: str, *, lazy: bool) -> tuple[bool, str]:
    args = [_FUSERMOUNT, "-u", *(["-z"] if lazy else []), "--", mountpoint]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


def _abort_connection(device: str) -> None:
    """Abort a FUSE connection through fusectl when it is mounted (ends a stuck loop)."""
    minor = device.split(":")[-1]
    with (
        contextlib.suppress(OSError),
        open(f"/sys/fs/fuse/connections/{minor}/abort", "w", encoding="ascii") as fh,
    ):
        fh.write("1")


# ---------------------------------------------------------------------------------------------
# Process-wide cleanup: every live mount is registered until it is really gone.

_LIVE: dict[int, FuseMount] = {}
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False
_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _cleanup_all() -> None:
    with _LIVE_LOCK:
        mounts = list(_LIVE.values())
    for mount in mounts:
        with contextlib.suppress(Exception):
            mount.stop()


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _cleanup_all()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Die of the same signal, as the process would have without us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        # SIGINT already raises KeyboardInterrupt, which reaches `with`/finally and atexit.
        # Installing these before libfuse also stops it from taking SIGTERM/SIGHUP for itself.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            _PREVIOUS_HANDLERS[signum] = previous
            signal.signal(signum, _on_fatal_signal)
    _HOOKS_INSTALLED = True


_WATCHDOG_SCRIPT: Final = (
    # Blocks until this process writes "done" (clean stop) or dies (EOF): then unmounts lazily.
    'read -r line; [ "$line" = done ] || exec ' + _FUSERMOUNT + ' -u -z -- "$1" 2>/dev/null'
)


# ---------------------------------------------------------------------------------------------
# The operations served to libfuse.


class FuseHold:
    """A gate on the mount: the first FUSE operation `op` on a path matching `path_glob` (made
    by any process) stops before it reaches the FileSystem until ``release()``.

    This places a fault at a point of the *program*, not of the wall clock: a process held at
    the gate stays there whatever the scheduler does, so the harness can act on it (e.g. SIGKILL
    a rewrite child at its fsync) in every trial. ``reached`` is set when the operation arrives;
    ``pid`` is the caller (from the FUSE context, 0 if unknown). An operation released after its
    caller died is still applied: kill the caller before releasing if it must not happen.
    """

    def __init__(self, op: str, path_glob: str) -> None:
        self.op = op
        self.path_glob = path_glob
        self.reached = threading.Event()
        self.pid = 0
        self.path = ""
        self._released = threading.Event()
        self._abandoned = False

    def __repr__(self) -> str:
        state = "reached" if self.reached.is_set() else "waiting"
        return f"FuseHold({self.op!r}, {self.path_glob!r}, {state})"

    def matches(self, op: str, path: str) -> bool:
        from fnmatch import fnmatchcase

        return op == self.op and fnmatchcase(path, self.path_glob)

    def wait_reached(self, timeout_s: float) -> bool:
        """True once a matching operation is held (waits up to `timeout_s`)."""
        return self.reached.wait(timeout_s)

    def release(self) -> None:
        self._released.set()

    def abandon(self) -> None:
        self._abandoned = True
        self._released.set()

    def _hold(self, path: str) -> None:
        import mfusepy

        with contextlib.suppress(Exception):
            self.pid = int(mfusepy.fuse_get_context()[2])
        self.path = path
        self.reached.set()
        if not self._released.wait(_HOLD_CAP_S) or self._abandoned:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)


@dataclass(slots=True)
class _Handle:
    position: int | None  # None: unknown (after an O_APPEND write), lseek before the next read
    append: bool


def _rel(path: str | None) -> str:
    if path is None:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    return check_relative_path(path.lstrip("/"))


class _Operations:
    """The mfusepy ``Operations`` protocol over a FileSystem (duck-typed: mfusepy is untyped)."""

    use_ns = True  # integer nanosecond timestamps (mfusepy deprecates float seconds)

    def __init__(self, mount: FuseMount) -> None:
        self._mount = mount
        self._handles: dict[int, _Handle] = {}
        self._uid = os.getuid()
        self._gid = os.getgid()

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, op: str, path: str | None, fn: Callable[[FileSystem], Any]) -> Any:
        mount = self._mount
        if mount.simulated_crash is not None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        mount._gate(op, (path or "").lstrip("/"))
        clock = mount.clock
        with mount.lock:
            if mount.simulated_crash is not None:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            before_ms = clock.now_ms if clock is not None else 0
            try:
                result = fn(mount.fs)
            except OSError:
                raise
            except SimulatedCrash as exc:
                mount._freeze(exc, op, path)
                raise OSError(errno.EIO, os.strerror(errno.EIO)) from exc
            except Exception as exc:
                # A bug in the FileSystem, not an injected fault: keep it for the harness.
                mount.internal_errors.append(exc)
                raise OSError(errno.EIO, os.strerror(errno.EIO)) from exc
            delay_ms = (clock.now_ms - before_ms) if clock is not None else 0
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)  # a virtual SlowSync becomes a real wait for the process
        return result

    def init(self, path: str) -> None:
        self._mount._on_init()

    def destroy(self, path: str) -> None:
        self._mount._on_destroy()

    # -- metadata --------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        if path == "/":
            size, is_dir = 0, True  # the root always exists; no trace noise for it
        elif path is None and fh is not None:
            # The file was unlinked while open (hard_remove): measure it through the handle.
            size = self._call("getattr", None, lambda fs: _size_by_handle(fs, fh))
            is_dir = False
        else:
            st = self._call("getattr", path, lambda fs: fs.stat(_rel(path)))
            size, is_dir = st.size_bytes, st.is_dir
        mode = (stat_module.S_IFDIR | 0o755) if is_dir else (stat_module.S_IFREG | 0o644)
        return {
            "st_mode": mode,
            "st_nlink": 2 if is_dir else 1,
            "st_size": size,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_blksize": _BLOCK_BYTES,
            "st_blocks": (size + 511) // 512,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        names: list[str] = self._call("readdir", path, lambda fs: fs.listdir(_rel(path)))
        return [".", "..", *names]

    def statfs(self, path: str) -> dict[str, int]:
        total_blocks = 1 << 24  # 64 GiB of 4 KiB blocks: space faults come from the plan
        return {
            "f_bsize": _BLOCK_BYTES,
            "f_frsize": _BLOCK_BYTES,
            "f_blocks": total_blocks,
            "f_bfree": total_blocks // 2,
            "f_bavail": total_blocks // 2,
            "f_files": 1 << 20,
            "f_ffree": 1 << 19,
            "f_favail": 1 << 19,
            "f_namemax": 255,
        }

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        return 0  # timestamps are not modelled

    # -- namespace -------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        self._call("mkdir", path, lambda fs: fs.mkdir(_rel(path)))
        return 0

    def unlink(self, path: str) -> int:
        self._call("unlink", path, lambda fs: fs.unlink(_rel(path)))
        return 0

    def rename(self, old: str, new: str) -> int:
        self._call("rename", old, lambda fs: fs.rename(_rel(old), _rel(new)))
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self._call("fsyncdir", path, lambda fs: fs.fsync_dir(_rel(path)))
        return 0

    # -- files -----------------------------------------------------------------------------

    def _open(self, op: str, path: str, flags: int, mode: int) -> int:
        wanted = flags & _OPEN_FLAGS_MASK
        fd: int = self._call(op, path, lambda fs: fs.open(_rel(path), wanted, mode & 0o7777))
        self._handles[fd] = _Handle(position=0, append=bool(wanted & os.O_APPEND))
        return fd

    def create(self, path: str, mode: int, flags: int) -> int:
        return self._open("create", path, flags | os.O_CREAT, mode)

    def open(self, path: str, flags: int) -> int:
        return self._open("open", path, flags, 0o644)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        handle = self._handles[fh]

        def run(fs: FileSystem) -> bytes:
            if handle.position != offset:
                fs.lseek(fh, offset, os.SEEK_SET)
                handle.position = offset
            data = fs.read(fh, size)
            handle.position = offset + len(data)
            return data

        result: bytes = self._call("read", path, run)
        return result

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        handle = self._handles[fh]

        def run(fs: FileSystem) -> int:
            if not handle.append and handle.position != offset:
                fs.lseek(fh, offset, os.SEEK_SET)
                handle.position = offset
            handle.position = None  # unknown until the write returns
            written = fs.write(fh, data)
            handle.position = None if handle.append else offset + written
            return written

        written: int = self._call("write", path, run)
        return written

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None:
            self._call("truncate", path, lambda fs: fs.ftruncate(fh, length))
            return 0

        def by_path(fs: FileSystem) -> None:
            fd = fs.open(_rel(path), os.O_WRONLY)
            try:
                fs.ftruncate(fd, length)
            finally:
                fs.close(fd)

        self._call("truncate", path, by_path)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if datasync:
            self._call("fdatasync", path, lambda fs: fs.fdatasync(fh))
        else:
            self._call("fsync", path, lambda fs: fs.fsync(fh))
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close(2) of one descriptor; data already went through with direct_io

    def release(self, path: str | None, fh: int) -> int:
        self._handles.pop(fh, None)
        if self._mount.simulated_crash is not None:
            return 0  # frozen: the disk must not see anything after the crash point
        with self._mount.lock:
            self._mount.fs.close(fh)
        return 0


def _size_by_handle(fs: FileSystem, fd: int) -> int:
    here = fs.lseek(fd, 0, os.SEEK_CUR)
    end = fs.lseek(fd, 0, os.SEEK_END)
    fs.lseek(fd, here, os.SEEK_SET)
    return end


def _fuse_major() -> int:
    import mfusepy

    return int(getattr(mfusepy, "fuse_version_major", 3))


def _make_fuse_class() -> Any:
    import mfusepy

    class _Fuse(mfusepy.FUSE):  # type: ignore[misc]
        """mfusepy's FUSE with two fixes for libfuse 3 that the mount relies on."""

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            # mfusepy drops the file handle here; ftruncate(fd) must reach the FileSystem as such.
            fh = fip.contents.fh if fip else None
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            result: int = self.operations.truncate(decoded, length, fh)
            return result

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            if flags:  # RENAME_NOREPLACE / RENAME_EXCHANGE are not FileSystem verbs
                return -errno.EINVAL
            result: int = self.rename_fuse_2(old, new)
            return result

    return _Fuse


# ---------------------------------------------------------------------------------------------


class FuseMount:
    """Serve `fs` at `mountpoint` through FUSE; a context manager (``with FuseMount(...) as m``).

    `fs` may be replaced between mounts (``crash`` does it). `clock`, when given, is the virtual
    clock the FileSystem charges slow fsyncs to; those delays become real sleeps.
    """

    def __init__(
        self,
        fs: FileSystem,
        mountpoint: str | os.PathLike[str],
        *,
        hard_remove: bool = True,
        direct_io: bool = True,
        clock: Clock | None = None,
        kill_on_crash: bool = True,
        start_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(fs, FileSystem):
            raise TypeError(f"fs must implement faults.FileSystem, got {type(fs).__name__}")
        if start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s must be > 0, got {start_timeout_s}")
        self.fs: FileSystem = fs
        self.mountpoint = os.path.realpath(os.fspath(mountpoint))
        self.hard_remove = hard_remove
        self.direct_io = direct_io
        self.clock = clock if clock is not None else getattr(fs, "clock", None)
        self.kill_on_crash = kill_on_crash
        self.start_timeout_s = start_timeout_s
        self.lock = threading.RLock()
        self.internal_errors: list[Exception] = []
        self.simulated_crash: MountCrash | None = None
        self.mount_count = 0
        self.released_fds = 0  # own descriptors redirected to /dev/null at unmount
        self._thread: threading.Thread | None = None
        self._loop_error: BaseException | None = None
        self._initialised = threading.Event()
        self._destroyed = threading.Event()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._device = ""
        self._holds: list[FuseHold] = []  # armed, not yet claimed by an operation
        self._all_holds: list[FuseHold] = []  # every hold of this mount: stop releases them

    def __repr__(self) -> str:
        state = "mounted" if self.mounted else "unmounted"
        return f"FuseMount({self.fs!r}, {self.mountpoint!r}, {state})"

    # -- state -----------------------------------------------------------------------------

    @property
    def mounted(self) -> bool:
        return is_mounted(self.mountpoint)

    @property
    def disk(self) -> SimDisk | None:
        """The SimDisk under `fs` (following ``.inner`` of wrappers), or None if there is none."""
        layer: object = self.fs
        for _ in range(16):
            if isinstance(layer, SimDisk):
                return layer
            layer = getattr(layer, "inner", None)
            if layer is None:
                break
        return None

    # -- holds -----------------------------------------------------------------------------

    def hold(self, op: str, path_glob: str) -> FuseHold:
        """Gate the next `op` ("write", "fsync", "fdatasync", "rename", ...) on a path matching
        `path_glob` (relative to the mount); see ``FuseHold``. ``stop`` releases every hold."""
        hold = FuseHold(op, path_glob)
        with self.lock:
            self._holds.append(hold)
            self._all_holds.append(hold)
        return hold

    def _gate(self, op: str, path: str) -> None:
        if not self._holds:  # the common case, without the lock
            return
        with self.lock:  # claimed under the lock: one operation per hold
            hold = next((h for h in self._holds if h.matches(op, path)), None)
            if hold is not None:
                self._holds.remove(hold)
        if hold is not None:
            hold._hold(path)  # outside the lock: the mount keeps serving everyone else

    def _release_holds(self) -> None:
        with self.lock:
            holds, self._all_holds, self._holds = self._all_holds, [], []
        for hold in holds:
            hold.abandon()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FuseMount:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> FuseMount:
        """Mount and wait until the mount answers; raises FuseMountError (nothing left mounted)."""
        if self._thread is not None:
            raise FuseMountError(f"{self.mountpoint} is already served by this FuseMount")
        reason = fuse_unavailable_reason()
        if reason is not None:
            raise FuseUnavailableError(reason)
        if not os.path.isdir(self.mountpoint):
            raise FuseMountError(f"mountpoint {self.mountpoint} is not an existing directory")
        if is_mounted(self.mountpoint):
            raise FuseMountError(f"mountpoint {self.mountpoint} already has a FUSE mount on it")
        _install_hooks()
        self.simulated_crash = None
        self._loop_error = None
        self._initialised.clear()
        self._destroyed.clear()
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG_SCRIPT, "aofcrash-fuse-watchdog", self.mountpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C to our process group must not kill it
        )
        self._thread = threading.Thread(
            target=self._serve, name=f"fuse:{self.mountpoint}", daemon=True
        )
        # libfuse chdir()s to / while it sets up, which would move the whole process; give
        # the caller its working directory back once the mount is live.
        self._cwd = os.getcwd()
        self._thread.start()
        # Poll by count of short sleeps: this package never reads a clock.
        polls = max(1, int(self.start_timeout_s / _POLL_S))
        try:
            for _ in range(polls):
                if self._initialised.is_set() and self._device_of_mount():
                    break
                if not self._thread.is_alive():
                    raise FuseMountError(
                        f"mounting {self.mountpoint} failed: {self._loop_error!r} "
                        "(libfuse printed the reason on stderr)"
                    )
                time.sleep(_POLL_S)
            else:
                raise FuseMountError(
                    f"mount at {self.mountpoint} not live after {self.start_timeout_s} s"
                )
        except BaseException:
            self.stop()
            raise
        finally:
            if os.getcwd() != self._cwd:
                os.chdir(self._cwd)
        self.mount_count += 1
        return self

    def _device_of_mount(self) -> bool:
        device = _fuse_mounts().get(self.mountpoint)
        if device is None:
            return False
        self._device = device
        return True

    def _serve(self) -> None:
        options: dict[str, Any] = {
            "foreground": True,  # never fork: the loop must stay in this process
            "fsname": "aofcrash",
            "subtype": "aofcrash",
            "attr_timeout": 0,
            "entry_timeout": 0,
            "negative_timeout": 0,
        }
        if _fuse_major() == 3:
            # libfuse 3.14 leaves max_idle_threads "unset" (UINT_MAX) in fuse_main and then logs
            # "Ignoring invalid max threads value 4294967295 > max (100000)." on every mount:
            # the value libfuse 3 used before (10) says nothing and changes nothing.
            options["max_idle_threads"] = 10
        if self.direct_io:
            options["direct_io"] = True
        if self.hard_remove:
            options["hard_remove"] = True
        try:
            _make_fuse_class()(_Operations(self), self.mountpoint, **options)
        except BaseException as exc:  # reported by start() / stop(); the thread must not die loud
            self._loop_error = exc

    def _on_init(self) -> None:
        self._initialised.set()

    def _on_destroy(self) -> None:
        self._destroyed.set()

    def _freeze(self, exc: SimulatedCrash, op: str, path: str | None) -> None:
        import mfusepy

        pid = 0
        with contextlib.suppress(Exception):
            pid = int(mfusepy.fuse_get_context()[2])
        killed = False
        if self.kill_on_crash and pid > 1 and not _is_own_process(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed = True
        self.simulated_crash = MountCrash(exc, op, path, pid, killed)

    def stop(self) -> None:
        """Unmount (``fusermount3 -u``, else ``-uz``) and end the FUSE loop. Idempotent."""
        thread = self._thread
        self._release_holds()
        try:
            if is_mounted(self.mountpoint):
                ok, message = self._unmount(strict=False)
                if not ok:
                    raise FuseMountError(f"could not unmount {self.mountpoint}: {message}")
            if thread is not None:
                thread.join(timeout=5.0)
        finally:
            if not is_mounted(self.mountpoint):
                self._thread = None
                self._retire_watchdog()
                with _LIVE_LOCK:
                    _LIVE.pop(id(self), None)

    def _unmount(self, *, strict: bool) -> tuple[bool, str]:
        """Unmount; with `strict`, never lazily (a busy mount is an error the caller reports)."""
        message = ""
        self.released_fds += _release_own_files(self.mountpoint)
        # Right after SIGKILL the kernel may still be closing the victim's files: retry a bit.
        for attempt in range(25):
            ok, message = _fusermount(self.mountpoint, lazy=False)
            if ok or not is_mounted(self.mountpoint):
                return True, ""
            if "busy" not in message.lower():
                break
            time.sleep(0.02 * min(attempt + 1, 5))
        if strict:
            return False, message
        ok, lazy_message = _fusermount(self.mountpoint, lazy=True)
        if self._device:
            _abort_connection(self._device)
        if ok or not is_mounted(self.mountpoint):
            return True, ""
        return False, f"{message}; lazy unmount: {lazy_message}"

    def _retire_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert watchdog.stdin is not None
            watchdog.stdin.write(b"done\n")
            watchdog.stdin.close()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    # -- crash -----------------------------------------------------------------------------

    def crash(
        self,
        model: PersistenceModel,
        choice: CrashChoice | None = None,
        *,
        wrap: Callable[[SimDisk], FileSystem] | None = None,
    ) -> DiskImage:
        """Unmount, keep only what survives `model`/`choice`, boot a new SimDisk from it, remount.

        The server must be dead already (a process holding files under the mount makes this
        raise FuseMountError with its PID; nothing is changed then). `choice` None is the
        default outcome of ``SimDisk.crash`` (durable-only under the power models). Returns the
        image the new disk was booted from.
        """
        disk = self.disk
        if disk is None:
            raise FuseMountError(
                f"crash() needs a SimDisk under the mounted FileSystem, got {self.fs!r}"
            )
        if self._thread is not None or is_mounted(self.mountpoint):
            ok, message = self._unmount(strict=True)
            if not ok:
                users = _pids_using(self.mountpoint)
                raise FuseMountError(
                    f"cannot crash {self.mountpoint}: still in use by PIDs {users or '?'} "
                    f"({message}); kill the server before crash()"
                )
            self.stop()
        image = disk.crash(model, choice)
        new_disk = SimDisk.from_image(
            image,
            fsync_failure=disk.fsync_failure,
            sector_size_bytes=disk.sector_size_bytes,
        )
        if wrap is not None:
            self.fs = wrap(new_disk)
        elif isinstance(self.fs, FaultyFileSystem):
            # Faults belong to the run before the crash; recovery starts on a healthy disk.
            self.fs = FaultyFileSystem(new_disk, FaultPlan(), clock=self.clock)
        else:
            self.fs = new_disk
        self.start()
        return image


def _is_own_process(pid: int) -> bool:
    if pid == os.getpid():
        return True
    # FUSE reports thread ids; a thread of this process has its tgid in /proc/<tid>/status.
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == os.getpid()
    except OSError:
        return False
    return False


if sys.platform != "linux":  # pragma: no cover - documented limitation
    raise ImportError("faults.fuse needs Linux (FUSE via libfuse3)")
