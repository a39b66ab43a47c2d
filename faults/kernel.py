"""Ground truth: crash states of the real kernel's ext4, xfs and btrfs, with no kernel module.

This is the only part of ``faults`` that needs root (plus /dev/fuse and loop devices);
``kernel_unavailable_reason(fs)`` says in one line what is missing, and nothing here is imported
by the rest of the package.

Method
------
``BlockRecorder(fs)`` (a context manager) starts a single-threaded FUSE daemon in its own
process (``faults/_blockdaemon.py``) serving one sparse backing file on tmpfs, attaches that file
to a loop device (the ``LOOP_CONFIGURE`` ioctl, with autoclear), runs ``mkfs`` on the device and
mounts it at ``recorder.root``. The loop device reports a volatile write cache and no FUA, so a
block-layer flush reaches the daemon as an fsync of its file (a FUA write arrives as flush,
write, flush): the daemon logs every block write (offset, bytes) and every flush in the one order
it served them. ``recorder.marker(label)`` is a write to a control file served by the same
thread, so a marker sits after every write and flush the kernel issued before the call made it:
put one after each syscall that returned (or each reply a server sent). After mkfs + mount +
syncfs the recorder takes a baseline snapshot (``checkpoint()`` takes another, e.g. between
workloads), so an image needs only the writes after it.

Crash states (``recorder.crash_points(limits=, seed=)``): at each marker, the image holds the
baseline plus every write logged before the last flush that precedes the marker, plus a subset
of the writes issued after that flush (in flight): every prefix in issue order (at most
``KernelLimits.max_prefixes``, evenly spaced), then distinct random subsets drawn from the seed
(at most ``max_subsets``; all subsets when there are few). ``CrashPoint.cut_off`` counts the
subsets left out. With ``flush_points`` there is also a point at every flush (a crash inside a
syscall). A ``KernelCrashState`` is a few integers; equal ``key`` means the same image.

Images (``recorder.mounter().mount_image(state, fsck=False)``): copy the baseline (sparse) on
tmpfs, apply the writes, attach a loop device, ``mount`` (the kernel replays its own journal or
log), read the whole tree (``faults.DiskImage``; ext4's ``lost+found`` is left out), unmount,
detach. A refused mount is reported in ``KernelCrashImage.mount_error``; with ``fsck`` the
checker (``e2fsck -fn``, ``xfs_repair -n``, ``btrfs check --readonly``) runs on the replayed image
and its complaint is a finding about the filesystem. ``iter_images(states, workers=N)`` mounts on
N forked processes. To run something on a mounted image (a server's recovery):
``with mounter.mounted(state) as path`` (read-write by default), or
``mounter.map_mounted(fn, states, workers=N)``, which yields ``(state, fn(path), None)`` or
``(state, None, why)`` when the kernel refused the image (``ImageMountRefused``).

No leftovers: every mount, loop device, FUSE mount, daemon and scratch directory is released by
``close`` (``with``), and a watchdog (``/bin/sh`` in its own session, one per process that mounts
anything) releases what is left when that process dies, even by SIGKILL: kernel mounts, loop
devices still backed by the recorded file, the FUSE mount, the daemon (by PID), the scratch
directory. Forked image workers die with their parent (PR_SET_PDEATHSIG).

Media errors: ``recorder.fail_writes_containing(pattern)`` makes every later block write
whose bytes contain `pattern` fail with EIO at the daemon (the loop device fails the bio; the
write never reaches the disk; the log records it as failed, ``BlockLog.failed_writes``), or
only the first such write with ``once=True``. Written into one append's data, it fails only
that data's pages when they are written back, never the journal: the fsync that writes them
back returns EIO, as on a disk with a bad sector. ``b""`` stops it.

Limits
------
* The log is what the loop device sends: a write larger than FUSE's maximum arrives as several
  writes, so the in-flight subsets are at that granularity (finer than a bio: never fewer states).
* A crash state drops in-flight writes whole; no torn sectors inside a write.
* Background commits (ext4 every 5 s, xfs/btrfs and writeback 30 s) appear in slow workloads.
* Sizes: ext4 64 MiB with a 4 KiB block, xfs 300 MiB (its minimum), btrfs 256 MiB; all sparse.
"""

from __future__ import annotations

from faults._blocklog import (
    BlockLog,
    CrashPoint,
    KernelCrashState,
    KernelLimits,
    PointKind,
    iter_unique,
)
from faults._kernelfs import (
    BlockRecorder,
    ImageMounter,
    ImageMountRefused,
    KernelCrashImage,
    KernelFilesystem,
    KernelRecorderError,
    KernelUnavailableError,
    kernel_unavailable_reason,
    read_tree,
)

__all__ = [
    "BlockLog",
    "BlockRecorder",
    "CrashPoint",
    "ImageMountRefused",
    "ImageMounter",
    "KernelCrashImage",
    "KernelCrashState",
    "KernelFilesystem",
    "KernelLimits",
    "KernelRecorderError",
    "KernelUnavailableError",
    "PointKind",
    "iter_unique",
    "kernel_unavailable_reason",
    "read_tree",
]
