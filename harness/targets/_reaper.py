"""Process hygiene: nothing a run starts outlives it, even a SIGKILLed harness.

* every server runs in its own process group (its PGID is its PID) and its fork children
  (``redis-aof-rewrite``, ``valkey-aof-rewrite``, bgsave) inherit that group: a crash is one
  ``killpg(SIGKILL)`` that takes the server and its children together (``_kill_tree``);
* every live group is registered with this process's *reaper* (``_REAPER.watch``): a detached
  ``/bin/sh`` that reads ``+ PGID`` / ``- PGID`` lines from a pipe only this process holds.
  When the pipe closes — this process exited, crashed or was SIGKILLed — it SIGKILLs every
  group still registered. It is detached (its parent is init), so callers never see it among
  their children; it ends with this process. A ``fork()``ed child (e.g. a multiprocessing
  worker) drops the inherited registry and pipe and starts its own reaper on its first server;
* ``atexit``, a ``weakref.finalize`` per server (set by the launcher) and a SIGTERM/SIGHUP
  handler (installed on first start from the main thread, chaining to the previous handler)
  kill and reap what is left (``_LIVE``), by PID; nothing is ever killed by name.

Scratch directories, the other half of "no leftovers", are in ``_rundirs``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Any, Final

import psutil

__all__ = ["FORK_CHILD_TITLES"]

# Process titles of the children a server forks (psutil ``cmdline()[0]``).
FORK_CHILD_TITLES: Final = ("redis-aof-rewrite", "redis-rdb-bgsave", "valkey-aof-rewrite",
                             "valkey-rdb-bgsave")


# Detached (the outer sh exits at once, so init adopts it) and in its own session (a Ctrl-C to
# the terminal's process group does not reach it). It reads "+ PGID" / "- PGID" lines from the
# pipe it gets as stdin (moved to fd 3: an asynchronous list would get /dev/null as stdin
# otherwise); at EOF — its owner exited or was SIGKILLed — it SIGKILLs every group left.
_REAPER_SCRIPT: Final = (
    'exec 3<&0 0</dev/null; { g=""; while read -r op p; do case "$op" in'
    ' +) g="$g $p";;'
    ' -) n=""; for q in $g; do [ "$q" = "$p" ] || n="$n $q"; done; g=$n;;'
    ' esac; done; for q in $g; do kill -9 -"$q" 2>/dev/null; done; } <&3 3<&- &'
)


class _Reaper:
    """This process's end of the reaper pipe (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.owner = 0  # the PID that started the reaper: a forked child must start its own

    def _ensure(self) -> int | None:
        if self.fd is not None and self.owner == os.getpid():
            return self.fd
        read_end, write_end = os.pipe()
        try:
            subprocess.run(
                ["/bin/sh", "-c", _REAPER_SCRIPT, "aofcrash-reaper"],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, check=True, timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            os.close(write_end)
            return None  # no reaper: the in-process hooks still work
        finally:
            os.close(read_end)
        self.fd, self.owner = write_end, os.getpid()
        return write_end

    def _send(self, line: bytes) -> None:
        with self.lock:
            fd = self._ensure()
            if fd is None:
                return
            try:
                os.write(fd, line)
            except OSError:  # the reaper is gone (someone killed it): start a new one next time
                with contextlib.suppress(OSError):
                    os.close(fd)
                self.fd = None

    def watch(self, pgid: int) -> None:
        self._send(b"+ %d\n" % pgid)

    def forget(self, pgid: int) -> None:
        if self.fd is not None and self.owner == os.getpid():
            self._send(b"- %d\n" % pgid)

    def after_fork_in_child(self) -> None:
        # The parent's pipe must not stay open here (its reaper would wait for us too), and the
        # parent's servers are not ours to report.
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.owner = None, 0
        self.lock = threading.Lock()


_REAPER = _Reaper()
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _LIVE_LOCK
    _REAPER.after_fork_in_child()
    _LIVE.clear()
    _LIVE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children, recursively)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", encoding="ascii") as fh:
                    kids = [int(word) for word in fh.read().split()]
            except OSError:
                continue
            found += kids
            stack += kids
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def _dead(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (a /proc scan: used when the leader is gone)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(name))
    return members


def _fork_children(pid: int) -> list[psutil.Process]:
    """The server's fork children (rewrite / bgsave), identified by their process title."""
    found: list[psutil.Process] = []
    for child_pid in _children_of(pid):
        try:
            child = psutil.Process(child_pid)
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if cmdline and cmdline[0].startswith(FORK_CHILD_TITLES):
            found.append(child)
    return found


def _kill_tree(popen: subprocess.Popen[bytes], owner: int) -> None:
    """SIGKILL a server's process group (the server and its fork children) and reap the server;
    returns once every member is dead. A no-op in a forked copy of the owner."""
    if os.getpid() != owner:
        return
    pid = popen.pid
    if popen.poll() is None:
        # Freeze it first (every thread: this is the crash instant), then list its children
        # while they are still its children, then kill the whole group at once.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGSTOP)
        members = _children_of(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        popen.wait()
    else:
        # It exited by itself (just reaped, so the group id is still this run's): a rewrite
        # child may live on in its group.
        members = _group_members(pid)
        if members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    # A killed process keeps its files open until it is a zombie: wait for that (bounded).
    for _ in range(1000):
        if all(_dead(member) for member in members):
            break
        time.sleep(0.001)
    _REAPER.forget(pid)
    with _LIVE_LOCK:
        _LIVE.pop(pid, None)


# Run as ``/bin/sh -c SELF_REGISTER NAME COMMAND...`` with the reaper pipe as stdin: the child
# registers its own PID (its process group) with the reaper before it execs the server, whose
# stdin is then /dev/null. Registering after Popen returned left a window (the fork + exec
# Popen waits for) in which a SIGKILL of this process, e.g. a forked worker dying with its
# parent, orphaned the server. A write error (the reaper gone) is ignored: ``_register``
# writes again and starts a new reaper.
SELF_REGISTER: Final = 'trap "" PIPE; echo "+ $$" >&0 2>/dev/null; exec "$@" 0</dev/null'


def reaper_fd() -> int | None:
    """This process's end of its reaper pipe, the reaper started now if it has none (None: no
    reaper could be started)."""
    with _REAPER.lock:
        return _REAPER._ensure()


def _register(popen: subprocess.Popen[bytes]) -> None:
    """A server just launched in its own group: the reaper and the exit hooks now watch it."""
    _REAPER.watch(popen.pid)
    with _LIVE_LOCK:
        _LIVE[popen.pid] = popen


def _unregister(pid: int) -> None:
    """The server `pid` is reaped: the exit hooks forget it (``_kill_tree`` tells the reaper)."""
    with _LIVE_LOCK:
        _LIVE.pop(pid, None)


def _kill_all() -> None:
    with _LIVE_LOCK:
        popens = list(_LIVE.values())
    for popen in popens:
        with contextlib.suppress(Exception):
            _kill_tree(popen, os.getpid())


atexit.register(_kill_all)
_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _kill_all()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. faults.fuse's handler, which then unmounts
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_signal_cleanup() -> None:
    """SIGTERM/SIGHUP kill our servers first (atexit does not run on a fatal signal)."""
    if _PREVIOUS_HANDLERS or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is _on_fatal_signal:
            continue
        _PREVIOUS_HANDLERS[signum] = previous
        signal.signal(signum, _on_fatal_signal)
