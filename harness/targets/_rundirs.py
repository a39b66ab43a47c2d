"""Scratch directories: made by ``make_run_dir`` (``aofcrash-<kind>-<pid>-*`` with an owner
marker: PID and process start time); ``remove_stale_run_dirs`` removes those whose owner is dead,
after unmounting any FUSE mount a dead run left inside.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from typing import Final

import psutil

from harness.targets._reaper import _dead

__all__ = ["make_run_dir", "remove_stale_run_dirs", "run_dir_base"]

_OWNER_FILE: Final = ".aofcrash-owner"
_SHM: Final = "/dev/shm"


def _start_time(pid: int) -> str:
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _is_tmpfs(path: str) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = {line.split()[1]: line.split()[2] for line in fh if len(line.split()) > 2}
    except OSError:
        return False
    return mounts.get(path) == "tmpfs"


def run_dir_base() -> str:
    """Where scratch directories go: ``$AOFCRASH_TMPDIR``, else ``$TMPDIR``, else /dev/shm when
    it is a writable tmpfs (a process crash keeps what the kernel holds, so a RAM filesystem
    changes nothing but the cost of fsync under ``always``), else the system temp directory."""
    for name in ("AOFCRASH_TMPDIR", "TMPDIR"):
        value = os.environ.get(name)
        if value:
            return value
    if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK) and _is_tmpfs(_SHM):
        return _SHM
    return tempfile.gettempdir()


def make_run_dir(kind: str, *, base: str | os.PathLike[str] | None = None) -> str:
    """A new scratch directory ``aofcrash-<kind>-<pid>-*`` marked with its owner (this PID and
    its start time), so that ``remove_stale_run_dirs`` can tell when the owner is dead."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", kind):
        raise ValueError(f"kind must be lower-case letters and digits, got {kind!r}")
    where = os.fspath(base) if base is not None else run_dir_base()
    path = tempfile.mkdtemp(prefix=f"aofcrash-{kind}-{os.getpid()}-", dir=where)
    with open(os.path.join(path, _OWNER_FILE), "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return path


def _owner_alive(marker: str) -> bool:
    try:
        with open(marker, encoding="ascii") as fh:
            words = fh.read().split()
        pid = int(words[0])
        started = words[1] if len(words) > 1 else ""
    except (OSError, ValueError, IndexError):
        return True  # unreadable or half written: not provably stale, leave it
    if pid == os.getpid():
        return True
    if _dead(pid):  # gone, or a zombie nobody has reaped yet
        return False
    return not started or _start_time(pid) == started


def remove_stale_run_dirs(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove the scratch directories of dead runs under `base` (default ``run_dir_base()``):
    those made by ``make_run_dir`` whose owner process is gone (a PID now used by another
    process counts as gone: the start time differs). FUSE mounts left inside are unmounted
    first. Returns the directories removed."""
    where = os.fspath(base) if base is not None else run_dir_base()
    removed: list[str] = []
    try:
        entries = list(os.scandir(where))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("aofcrash-") or not entry.is_dir(follow_symlinks=False):
            continue
        marker = os.path.join(entry.path, _OWNER_FILE)
        if not os.path.exists(marker) or _owner_alive(marker):
            continue
        with contextlib.suppress(ImportError):
            from faults.fuse import unmount_under

            unmount_under(entry.path)
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed.append(entry.path)
    return removed

