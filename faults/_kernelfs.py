"""The recorder and the image mounter of ``faults.kernel`` (see its docstring)."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

from faults._blockdev import (
    Watchdog,
    attach_loop,
    detach_loop,
    kernel_supports,
    missing_tools,
    mount,
    mounted_at,
    set_parent_death_signal_kill,
    umount,
)
from faults._blocklog import BlockLog, CrashPoint, KernelCrashState, KernelLimits
from faults._image import DiskImage

__all__: list[str] = []

_MIB: Final = 1 << 20
_T = TypeVar("_T")
_DAEMON: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_blockdaemon.py")


class KernelFilesystem(enum.Enum):
    """A real Linux filesystem the recorder formats, mounts and crashes."""

    EXT4 = "ext4"
    XFS = "xfs"
    BTRFS = "btrfs"


@dataclass(frozen=True, slots=True)
class _Spec:
    size_bytes: int
    mkfs: tuple[str, ...]
    image_options: str
    fsck: tuple[str, ...]
    package: str
    hidden: frozenset[str]  # top-level names mkfs makes, not part of a workload's tree


_SPECS: Final = {
    # A fixed 4 KiB block and eagerly initialised tables/journal: a deterministic log.
    KernelFilesystem.EXT4: _Spec(
        64 * _MIB,
        ("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"),
        "", ("e2fsck", "-fn"), "e2fsprogs", frozenset({"lost+found"})),
    # xfs refuses smaller filesystems; the file is sparse. Images share the recorder's UUID.
    KernelFilesystem.XFS: _Spec(
        300 * _MIB, ("mkfs.xfs", "-q", "-f"), "nouuid", ("xfs_repair", "-n", "-f"), "xfsprogs",
        frozenset()),
    KernelFilesystem.BTRFS: _Spec(
        256 * _MIB, ("mkfs.btrfs", "-q", "-f"), "", ("btrfs", "check", "--readonly"),
        "btrfs-progs", frozenset()),
}


class KernelUnavailableError(RuntimeError):
    """The kernel recorder cannot run here; the message is one line saying what is missing."""


class KernelRecorderError(RuntimeError):
    """Recording failed (mkfs, mount, the daemon); the message says where."""


class ImageMountRefused(RuntimeError):
    """The kernel refused to mount a crash image (a finding about the filesystem)."""


def kernel_unavailable_reason(fs: KernelFilesystem) -> str | None:
    """None if `fs` can be recorded and crashed here, else one line naming what is missing."""
    if not isinstance(fs, KernelFilesystem):
        raise TypeError(f"fs: expected KernelFilesystem, got {fs!r}")
    if os.geteuid() != 0:
        return f"the kernel recorder needs root (running as uid {os.geteuid()})"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this machine or container)"
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (no loop devices in this machine or container)"
    spec = _SPECS[fs]
    # losetup and umount: the watchdog's way to release what a dead process left.
    missing = missing_tools(("fusermount3", "losetup", "umount", spec.mkfs[0], spec.fsck[0]))
    if missing:
        return f"{', '.join(missing)} missing (install {spec.package} with scripts/bootstrap.sh)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, AttributeError) as exc:
        return f"mfusepy/libfuse3 cannot be loaded ({exc}); run scripts/bootstrap.sh"
    if not kernel_supports(fs.value):
        return f"the running kernel has no {fs.value} support"
    return None


_libc = ctypes.CDLL(None, use_errno=True)


def _syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def _scratch_parent() -> str:
    # Images are copied and mounted many times: keep them in memory when we can.
    explicit = os.environ.get("AOFCRASH_KERNEL_TMPDIR")
    if explicit:
        return explicit
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class BlockRecorder:
    """A kernel filesystem on a loop device whose backing file is served by a FUSE daemon that
    logs every block write, flush and marker in one order. A context manager; ``root`` is the
    mounted filesystem. See the ``faults.kernel`` docstring."""

    def __init__(
        self,
        fs: KernelFilesystem,
        *,
        size_bytes: int | None = None,
        mkfs_options: tuple[str, ...] = (),
    ) -> None:
        """`size_bytes`: the (sparse) device size, default per filesystem; `mkfs_options`: extra
        mkfs arguments (``("--mixed",)`` makes btrfs images mount about 3x faster here, at the
        price of a layout real btrfs filesystems above 1 GiB do not use)."""
        if not isinstance(fs, KernelFilesystem):
            raise TypeError(f"fs: expected KernelFilesystem, got {fs!r}")
        self.fs = fs
        self.size_bytes = size_bytes or _SPECS[fs].size_bytes
        self.mkfs_options = tuple(mkfs_options)
        self.workdir = ""
        self.root = ""
        self.device = ""
        self._loop_fd = -1
        self._control_fd = -1
        self._daemon: subprocess.Popen[bytes] | None = None
        self._watchdog: Watchdog | None = None
        self._baselines = 0

    def __repr__(self) -> str:
        return f"BlockRecorder({self.fs.value}, root={self.root!r})"

    def __enter__(self) -> BlockRecorder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def data_dir(self) -> str:
        return os.path.join(self.workdir, "data")

    def start(self) -> BlockRecorder:
        reason = kernel_unavailable_reason(self.fs)
        if reason is not None:
            raise KernelUnavailableError(reason)
        if self._watchdog is not None:
            raise KernelRecorderError("this recorder is already started")
        self._watchdog = Watchdog()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        assert self._watchdog is not None
        self.workdir = tempfile.mkdtemp(
            prefix=f"aofcrash-kernel-{os.getpid()}-", dir=_scratch_parent())
        self._watchdog.watch("dir", self.workdir)
        fuse_dir, root = (os.path.join(self.workdir, n) for n in ("fuse", "root"))
        for path in (fuse_dir, root, self.data_dir, os.path.join(self.workdir, "images")):
            os.mkdir(path)
        daemon_log = open(os.path.join(self.data_dir, "daemon.err"), "wb")  # noqa: SIM115
        with daemon_log:
            self._daemon = subprocess.Popen(
                [sys.executable, _DAEMON, fuse_dir, self.data_dir, str(self.size_bytes)],
                stdin=subprocess.DEVNULL, stdout=daemon_log, stderr=daemon_log,
                start_new_session=True,  # Ctrl-C of the harness must not reach it first
            )
        self._watchdog.watch("pid", str(self._daemon.pid))
        self._watchdog.watch("fuse", fuse_dir)
        disk = os.path.join(fuse_dir, "disk")
        for _ in range(1000):
            if mounted_at(fuse_dir) and os.path.exists(disk):
                break
            if self._daemon.poll() is not None:
                raise KernelRecorderError(f"the block daemon exited: {self._daemon_error()}")
            time.sleep(0.01)
        else:
            raise KernelRecorderError("the block daemon's FUSE mount did not appear in 10 s")
        self.device, self._loop_fd = attach_loop(disk)
        self._watchdog.watch("loop", f"{self.device}={disk}")
        spec = _SPECS[self.fs]
        made = subprocess.run(
            [*spec.mkfs, *self.mkfs_options, self.device],
            capture_output=True, text=True, timeout=300, check=False)
        if made.returncode != 0:
            raise KernelRecorderError(
                f"{spec.mkfs[0]} failed: {(made.stderr or made.stdout).strip()}")
        self._watchdog.watch("mount", root)
        mount(self.device, root, self.fs.value)
        self.root = root
        self._control_fd = os.open(os.path.join(fuse_dir, "control"), os.O_WRONLY | os.O_CLOEXEC)
        self.checkpoint()

    def _daemon_error(self) -> str:
        with contextlib.suppress(OSError), open(
                os.path.join(self.data_dir, "daemon.err"), encoding="utf-8",
                errors="replace") as fh:
            lines = fh.read().strip().splitlines()
            return lines[-1] if lines else "no message"
        return "no message"

    def marker(self, label: str) -> None:
        """Put a marker in the log, after everything the kernel issued so far."""
        if self._control_fd < 0:
            raise KernelRecorderError("the recorder is not running")
        os.pwrite(self._control_fd, b"M" + label.encode("utf-8"), 0)

    def fail_writes_containing(self, pattern: bytes, *, once: bool = False) -> None:
        """From now on every block write whose bytes contain `pattern` fails with EIO (a media
        error under the filesystem; not applied to the disk, logged as failed:
        ``BlockLog.failed_writes``), or only the first one with `once`; ``b""`` stops it.
        Aimed by content: write a file's data with a pattern no journal or metadata block
        holds, and only its pages fail when they are written back."""
        if self._control_fd < 0:
            raise KernelRecorderError("the recorder is not running")
        os.pwrite(self._control_fd, (b"e" if once else b"E") + pattern, 0)

    def checkpoint(self) -> int:
        """syncfs, then snapshot the device as a new baseline (later images start from it, so
        they apply only the writes after it). Returns the baseline's number."""
        if self._control_fd < 0:
            raise KernelRecorderError("the recorder is not running")
        _syncfs(self.root)
        os.pwrite(self._control_fd, b"B", 0)
        self._baselines += 1
        return self._baselines - 1

    def log(self) -> BlockLog:
        """The log as it is now (everything before the last marker is in it)."""
        with open(os.path.join(self.data_dir, "log"), "rb") as fh:
            return BlockLog(fh.read())

    def crash_points(
        self, *, limits: KernelLimits | None = None, seed: int = 0
    ) -> list[CrashPoint]:
        return self.log().crash_points(limits=limits, seed=seed)

    def mounter(self, log: BlockLog | None = None) -> ImageMounter:
        """An ImageMounter for the images of this recording (the log as of now by default)."""
        return ImageMounter(
            self.fs, log or self.log(), self.data_dir, os.path.join(self.workdir, "images"))

    def close(self) -> None:
        """Unmount, detach, stop the daemon, remove the scratch directory. Idempotent."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        errors: list[str] = []
        if self._control_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._control_fd)
            self._control_fd = -1
        if self.root:
            try:
                umount(self.root)
            except OSError as exc:
                errors.append(f"umount {self.root}: {exc}")
            self.root = ""
        if self._loop_fd >= 0:
            detach_loop(self._loop_fd)
            self._loop_fd = -1
        fuse_dir = os.path.join(self.workdir, "fuse") if self.workdir else ""
        if fuse_dir and mounted_at(fuse_dir):
            subprocess.run(["fusermount3", "-u", "-z", "--", fuse_dir],
                           capture_output=True, check=False, timeout=30)
        if self._daemon is not None:
            try:
                self._daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait()
            self._daemon = None
        if self.workdir:
            subprocess.run(["rm", "-rf", "--one-file-system", self.workdir],
                           capture_output=True, check=False)
        watchdog.close()
        if errors:
            raise KernelRecorderError("; ".join(errors))


@dataclass(frozen=True, slots=True)
class KernelCrashImage:
    """A crash image after the kernel mounted it (and replayed its journal/log).

    ``tree``: the files and directories it held (None when the kernel refused to mount it:
    ``mount_error`` says why). ``fsck``: the checker's complaint (None: clean, or not run;
    ``fsck_ran`` says which) — a complaint is a finding about the filesystem.
    """

    fs: KernelFilesystem
    state: KernelCrashState
    tree: DiskImage | None
    mount_error: str | None = None
    fsck_ran: bool = False
    fsck: str | None = None


def read_tree(root: str, hidden: Iterable[str] = ()) -> DiskImage:
    """Every file (path -> bytes) and directory under `root`, paths relative to it."""
    files: dict[str, bytes] = {}
    dirs: list[str] = []
    skip = set(hidden)
    for here, subdirs, names in os.walk(root):
        rel = os.path.relpath(here, root)
        prefix = "" if rel == "." else rel + "/"
        if not prefix:
            subdirs[:] = [d for d in subdirs if d not in skip]
            names = [n for n in names if n not in skip]
        dirs.extend(prefix + d for d in subdirs)
        for name in names:
            with open(os.path.join(here, name), "rb") as fh:
                files[prefix + name] = fh.read()
    return DiskImage(files, dirs)


class ImageMounter:
    """Builds, mounts, reads and releases crash images of one recording, in this process."""

    _counter = itertools.count()

    def __init__(self, fs: KernelFilesystem, log: BlockLog, data_dir: str, scratch: str) -> None:
        self.fs = fs
        self.log = log
        self.data_dir = data_dir
        self.scratch = scratch
        self._watchdog: Watchdog | None = None
        self._owner = 0

    def _ensure_watchdog(self) -> Watchdog:
        if self._watchdog is None or self._owner != os.getpid():
            self._watchdog, self._owner = Watchdog(), os.getpid()
        return self._watchdog

    def close(self) -> None:
        if self._watchdog is not None and self._owner == os.getpid():
            self._watchdog.close()
        self._watchdog = None

    @contextlib.contextmanager
    def _image_file(self, state: KernelCrashState) -> Iterator[str]:
        watchdog = self._ensure_watchdog()
        image = os.path.join(self.scratch, f"img-{os.getpid()}-{next(self._counter)}")
        watchdog.watch("dir", image)
        try:
            self.log.write_image(
                state, os.path.join(self.data_dir, f"baseline.{state.baseline}"), image)
            yield image
        finally:
            with contextlib.suppress(OSError):
                os.unlink(image)
            watchdog.forget("dir", image)

    @contextlib.contextmanager
    def _mounted_file(self, image: str, *, read_only: bool) -> Iterator[str]:
        watchdog = self._ensure_watchdog()
        target = image.replace("img-", "mnt-")
        os.mkdir(target)
        watchdog.watch("dir", target)
        try:
            device, fd = attach_loop(image)
            watchdog.watch("loop", f"{device}={image}")
            try:
                # Registered first: a kill right after mount(2) returned must not leave it.
                watchdog.watch("mount", target)
                try:
                    mount(device, target, self.fs.value, _SPECS[self.fs].image_options,
                          read_only=read_only)
                except OSError as exc:
                    watchdog.forget("mount", target)
                    raise ImageMountRefused(f"mount: {os.strerror(exc.errno or 0)}") from exc
                try:
                    yield target
                finally:
                    umount(target)
                    watchdog.forget("mount", target)
            finally:
                detach_loop(fd)
                watchdog.forget("loop", f"{device}={image}")
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(target)
            watchdog.forget("dir", target)

    @contextlib.contextmanager
    def mounted(self, state: KernelCrashState, *, read_only: bool = False) -> Iterator[str]:
        """The image of `state`, mounted by the kernel (after its journal/log replay) at a
        fresh directory, read-write by default (a server can recover on it); unmounted,
        detached and removed on exit. Raises ``ImageMountRefused`` if the kernel refuses it."""
        with self._image_file(state) as image, self._mounted_file(
                image, read_only=read_only) as target:
            yield target

    def mount_image(
        self,
        state: KernelCrashState,
        *,
        fsck: bool = False,
        subdir: str = "",
        read_only: bool = True,
    ) -> KernelCrashImage:
        """Build the image of `state`, let the kernel mount it, read its tree (only `subdir`
        when given, paths relative to it; empty if it is missing), release it.

        The mount is read-only unless `read_only` is False or `fsck` is asked for: the kernel
        still replays its journal/log on a read-only mount of a writable device (ext4, xfs and
        btrfs gave the same trees either way here), and it is faster on ext4 and btrfs.
        """
        spec = _SPECS[self.fs]
        tree: DiskImage | None = None
        error: str | None = None
        complaint: str | None = None
        with self._image_file(state) as image:
            try:
                with self._mounted_file(image, read_only=read_only and not fsck) as target:
                    if subdir:
                        where = os.path.join(target, subdir)
                        tree = read_tree(where) if os.path.isdir(where) else DiskImage()
                    else:
                        tree = read_tree(target, spec.hidden)
            except ImageMountRefused as exc:
                error = str(exc)
            if fsck:
                complaint = _fsck(spec, image)
        return KernelCrashImage(self.fs, state, tree, error, fsck, complaint)

    def map_mounted(
        self,
        fn: Callable[[str], _T],
        states: Iterable[KernelCrashState],
        *,
        workers: int = 1,
        read_only: bool = False,
    ) -> Iterator[tuple[KernelCrashState, _T | None, str | None]]:
        """``fn(mount path)`` on each state's image while it is mounted (read-write by
        default), in order: (state, result, None), or (state, None, why) when the kernel refused
        to mount it. With `workers` > 1, on that many forked processes (`fn` need not pickle,
        its results must)."""
        if workers <= 1:
            for state in states:
                yield self._visit(fn, state, read_only)
            return
        global _FORKED_VISIT
        _FORKED_VISIT = (self, fn, read_only)
        with _worker_pool(workers) as pool:
            yield from pool.imap(_worker_visit, states, chunksize=1)
            pool.close()
            pool.join()

    def _visit(
        self, fn: Callable[[str], _T], state: KernelCrashState, read_only: bool
    ) -> tuple[KernelCrashState, _T | None, str | None]:
        try:
            with self.mounted(state, read_only=read_only) as path:
                return state, fn(path), None
        except ImageMountRefused as exc:
            return state, None, str(exc)

    def iter_images(
        self,
        states: Iterable[KernelCrashState],
        *,
        workers: int = 1,
        fsck: bool = False,
        subdirs: Iterable[str] | None = None,
    ) -> Iterator[KernelCrashImage]:
        """Mount every state, in order (reading ``subdirs``' matching entry of each, if given);
        with `workers` > 1, on that many forked processes (each with its own watchdog; each
        dies with this process)."""
        jobs = zip(  # noqa: B905 - repeat("") is endless on purpose
            states, subdirs if subdirs is not None else itertools.repeat(""))
        if workers <= 1:
            for state, subdir in jobs:
                yield self.mount_image(state, fsck=fsck, subdir=subdir)
            return
        global _FORKED
        _FORKED = (self, fsck)
        with _worker_pool(workers) as pool:
            for state, files, dirs, error, ran, complaint in pool.imap(
                    _worker_mount, jobs, chunksize=2):
                tree = None if files is None else DiskImage(files, dirs)
                yield KernelCrashImage(self.fs, state, tree, error, ran, complaint)
            pool.close()
            pool.join()


def _fsck(spec: _Spec, image: str) -> str | None:
    proc = subprocess.run(
        [*spec.fsck, image], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode == 0:
        return None
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return f"{spec.fsck[0]} exit {proc.returncode}: " + " | ".join(lines[-6:])


# What forked workers inherit (set just before the pool forks; one pool at a time per process).
_FORKED: tuple[ImageMounter, bool] | None = None
_FORKED_VISIT: tuple[ImageMounter, Callable[[str], Any], bool] | None = None


def _worker_pool(workers: int) -> Any:
    """A pool of `workers` forked mounting processes. SIGINT is blocked while they are forked:
    a Ctrl-C that reached a worker between its fork and ``_worker_init`` (which ignores it)
    killed it inside the pool's machinery, and the parent's terminate then hung (1 run in 5
    beside two CPU hogs). The worker unblocks it once it ignores it; the parent right after."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: a worker it killed while holding the pool's
    # queue lock hung the parent's Pool.terminate. The parent handles it; the worker ends by
    # the pool's SIGTERM or with the parent. SIGTERM/SIGHUP get the default disposition back:
    # the parent's Python handler (faults.fuse's clean-up, for the recorder's mount) never
    # runs in a worker blocked on the pool's semaphore, and the join after Ctrl-C hung (a
    # fresh-clone test run). A worker's mounts are released by its own watchdog.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by _worker_pool
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    set_parent_death_signal_kill()
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


_Shipped = tuple[
    KernelCrashState, dict[str, bytes] | None, list[str], str | None, bool, str | None]


def _worker_mount(job: tuple[KernelCrashState, str]) -> _Shipped:
    # A DiskImage does not pickle (it holds a mappingproxy): ship its parts.
    assert _FORKED is not None
    mounter, fsck = _FORKED
    got = mounter.mount_image(job[0], fsck=fsck, subdir=job[1])
    files = None if got.tree is None else dict(got.tree.files)
    dirs = [] if got.tree is None else sorted(got.tree.dirs)
    return got.state, files, dirs, got.mount_error, got.fsck_ran, got.fsck


def _worker_visit(state: KernelCrashState) -> tuple[KernelCrashState, Any, str | None]:
    assert _FORKED_VISIT is not None
    mounter, fn, read_only = _FORKED_VISIT
    return mounter._visit(fn, state, read_only)
