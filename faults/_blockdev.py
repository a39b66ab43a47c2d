"""Root-only plumbing of ``faults.kernel``: loop devices, kernel mounts, the watchdog.

Everything here acts on the kernel. Nothing is found by name: a loop device is one this process
attached (``LOOP_CONFIGURE`` with autoclear, so the kernel detaches it when its last user —
our descriptor or a mount — goes away), a mount is one this process made at a path it created,
a process is one it started (by PID).

The watchdog: a detached ``/bin/sh`` in its own session reading ``+ KIND ARG`` / ``- KIND ARG``
lines from a pipe only this process holds (forked children close it). When the pipe closes
without a ``done`` line (this process exited, crashed or was SIGKILLed) it unmounts every
registered kernel mount (lazily if busy), detaches every registered loop device whose backing
file is still the one recorded, lazily unmounts registered FUSE mounts, SIGKILLs registered PIDs
and removes registered directories, in that order.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import threading
import time
from typing import Final

__all__: list[str] = []

_LOOP_CTL_GET_FREE: Final = 0x4C82
_LOOP_CONFIGURE: Final = 0x4C0A
_LOOP_CLR_FD: Final = 0x4C01
_LO_FLAGS_AUTOCLEAR: Final = 4
# struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
# loop_info64: 5 x u64, 4 x u32 (number, encrypt_type, encrypt_key_size, flags),
# file_name[64], crypt_name[64], encrypt_key[32], 2 x u64 init.
_LOOP_CONFIG: Final = struct.Struct("<II QQQQQ IIII 64s64s32s QQ 64x")
_MS_RDONLY: Final = 1
_MNT_DETACH: Final = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _oserror(path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def attach_loop(backing_path: str) -> tuple[str, int]:
    """Attach `backing_path` to a free loop device with autoclear; returns (device, fd).

    The caller holds the device open through `fd`: the device stays attached while it (or a
    mount) uses it, and the kernel detaches it once both are gone.
    """
    backing = os.open(backing_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(64):  # another process may take the free device first: try again
                number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                name = os.path.basename(backing_path).encode()[:63]
                config = _LOOP_CONFIG.pack(
                    backing, 0, 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR,
                    name, b"", b"", 0, 0,
                )
                try:
                    fcntl.ioctl(fd, _LOOP_CONFIGURE, config)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno == errno.EBUSY:
                        continue
                    raise
                return device, fd
            raise OSError(errno.EBUSY, "no free loop device after 64 tries", backing_path)
        finally:
            os.close(control)
    finally:
        os.close(backing)  # the loop device holds its own reference to the file


def detach_loop(fd: int) -> None:
    """Close our descriptor of a loop device (autoclear detaches it when nothing mounts it)."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, _LOOP_CLR_FD)  # immediate when unused; deferred to autoclear otherwise
    os.close(fd)


def mount(
    device: str, target: str, fstype: str, options: str = "", *, read_only: bool = False
) -> None:
    flags = _MS_RDONLY if read_only else 0
    if _libc.mount(device.encode(), target.encode(), fstype.encode(), flags,
                   options.encode()) != 0:
        raise _oserror(target)


def umount(target: str) -> None:
    """Unmount `target`; a busy mount is retried a few times, then detached lazily."""
    for attempt in range(20):
        if _libc.umount2(target.encode(), 0) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not mounted (any more)
            return
        if err != errno.EBUSY:
            raise OSError(err, os.strerror(err), target)
        time.sleep(0.01 * (attempt + 1))
    if _libc.umount2(target.encode(), _MNT_DETACH) != 0:
        raise _oserror(target)


def mounted_at(target: str) -> bool:
    real = os.path.realpath(target)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        return any(line.split()[4] == real for line in fh)


def kernel_supports(fstype: str) -> bool:
    """Whether the running kernel knows `fstype` (built in or loadable as a module)."""
    with contextlib.suppress(OSError), open("/proc/filesystems", encoding="ascii") as fh:
        if any(line.split()[-1] == fstype for line in fh if line.strip()):
            return True
    release = os.uname().release
    return os.path.isdir(f"/lib/modules/{release}/kernel/fs/{fstype}")


# ---------------------------------------------------------------------------------------------

_WATCHDOG_SCRIPT: Final = r"""
exec 3<&0 0</dev/null
{
  m=""; l=""; f=""; p=""; d=""
  drop() {
    eval "cur=\$$1"; n=""
    for q in $cur; do [ "$q" = "$2" ] || n="$n $q"; done
    eval "$1=\$n"
  }
  while read -r op kind arg; do
    case "$op" in
      done) exit 0;;
      +) case "$kind" in
           mount) m="$arg $m";; loop) l="$l $arg";; fuse) f="$f $arg";;
           pid) p="$p $arg";; dir) d="$d $arg";;
         esac;;
      -) case "$kind" in
           mount) drop m "$arg";; loop) drop l "$arg";; fuse) drop f "$arg";;
           pid) drop p "$arg";; dir) drop d "$arg";;
         esac;;
    esac
  done
  for x in $m; do umount "$x" 2>/dev/null || umount -l "$x" 2>/dev/null; done
  for x in $l; do
    dev=${x%%=*}; back=${x#*=}; name=${dev#/dev/}
    [ "$(cat /sys/block/$name/loop/backing_file 2>/dev/null)" = "$back" ] &&
      losetup -d "$dev" 2>/dev/null
  done
  for x in $f; do fusermount3 -u -z "$x" 2>/dev/null; done
  for x in $p; do kill -9 "$x" 2>/dev/null; done
  # A forked image worker's watchdog may still be unmounting under one of these: retry.
  for x in $d; do
    i=0
    while [ -e "$x" ] && [ $i -lt 100 ]; do
      rm -rf --one-file-system "$x" 2>/dev/null || sleep 0.1; i=$((i + 1))
    done
  done
} <&3 3<&- &
"""

_OPEN_WATCHDOGS: set[int] = set()  # write ends held by this process (closed in forked children)


def _close_inherited_watchdogs() -> None:
    for fd in list(_OPEN_WATCHDOGS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN_WATCHDOGS.clear()


os.register_at_fork(after_in_child=_close_inherited_watchdogs)


class Watchdog:
    """This process's end of one watchdog (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        read_end, write_end = os.pipe()
        try:
            subprocess.run(
                ["/bin/sh", "-c", _WATCHDOG_SCRIPT, "aofcrash-kernel-watchdog"],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, check=True, timeout=10,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._fd: int | None = write_end
        self._owner = os.getpid()
        _OPEN_WATCHDOGS.add(write_end)

    def _send(self, line: str) -> None:
        with self._lock:
            if self._fd is None or self._owner != os.getpid():
                return
            os.write(self._fd, line.encode() + b"\n")

    @staticmethod
    def _check(arg: str) -> str:
        if not arg or any(c.isspace() for c in arg):
            raise ValueError(f"watchdog argument must be a non-empty word, got {arg!r}")
        return arg

    def watch(self, kind: str, arg: str) -> None:
        self._send(f"+ {kind} {self._check(arg)}")

    def forget(self, kind: str, arg: str) -> None:
        self._send(f"- {kind} {self._check(arg)}")

    def close(self) -> None:
        """Retire the watchdog without cleaning anything (everything was released)."""
        self._send("done")
        with self._lock:
            if self._fd is not None and self._owner == os.getpid():
                _OPEN_WATCHDOGS.discard(self._fd)
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd = None


def set_parent_death_signal_kill() -> None:
    """Make the kernel SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    pr_set_pdeathsig = 1
    _libc.prctl(pr_set_pdeathsig, 9, 0, 0, 0)


def missing_tools(tools: tuple[str, ...]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]
