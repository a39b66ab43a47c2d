"""A lean launcher for short-lived server and check-tool processes (one load = one process).

Speed matters (a campaign starts thousands of processes), so this does less than
``harness.targets.RedisProcess``: the server logs to its stdout (a pipe), readiness is the log
line ``Ready to accept connections`` (no polling), and the stop is SIGKILL (a loader run writes
nothing that SIGKILL could lose: truncation and migration happen at load time, before the
server is ready).

Hygiene, by PID only: every process runs in its own session (so ``killpg`` of its PID reaches a
fork child such as a rewrite the AOF may trigger, and a Ctrl-C to the terminal does not kill it
before the ``finally`` that reaps it); it gets SIGKILL if the Python process that started it dies
(``PR_SET_PDEATHSIG``); ``kill_all`` runs at exit and on SIGTERM. Nothing is killed by name.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ProcResult",
    "drain",
    "exit_status",
    "free_port",
    "install_term_handler",
    "kill_all",
    "run_tool",
    "set_parent_death_signal",
    "spawn",
    "stop",
    "wait_ready",
]

_PR_SET_PDEATHSIG: Final = 1
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()
_SETPRIV: Final = shutil.which("setpriv")
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _child_setup() -> None:
    # Runs in the child between fork and exec: die with the parent, whatever kills it.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv: Sequence[str], *, stdin: int | None = subprocess.DEVNULL
          ) -> subprocess.Popen[bytes]:
    """Start a process (stdout and stderr into one pipe) and register it until ``stop``.

    ``setpriv --pdeathsig KILL`` when it exists: a ``preexec_fn`` would make Python fork its
    whole address space instead of vfork, which costs ~10 ms a process in a busy worker.
    """
    if _SETPRIV is not None:
        args, setup = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], None
    else:  # pragma: no cover - util-linux is everywhere this runs
        args, setup = list(argv), _child_setup
    popen = subprocess.Popen(
        args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=setup,
    )
    with _LOCK:
        _LIVE[popen.pid] = popen
    return popen


def stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its session's fork children, by PID; reap it.

    The process is never reaped before this (``exit_status`` peeks without reaping), so its PID,
    which is also its process group's ID, cannot have been reused by then.
    """
    if popen.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)  # its own session: pgid == pid
    popen.wait()
    if popen.stdout is not None:
        popen.stdout.close()
    with _LOCK:
        _LIVE.pop(popen.pid, None)


def exit_status(popen: subprocess.Popen[bytes]) -> int:
    """Wait for the exit and return the code (negative: the signal) without reaping."""
    if popen.returncode is not None:
        return popen.returncode
    info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
    assert info is not None
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status


def kill_all() -> None:
    """Stop every process this module started that is still registered."""
    with _LOCK:
        popens = list(_LIVE.values())
    for popen in popens:
        with contextlib.suppress(Exception):
            stop(popen)


atexit.register(kill_all)
_PREVIOUS: dict[int, object] = {}


def _signal_all() -> None:
    """SIGKILL every registered process group, without waiting or taking a lock: this runs in
    a signal handler, which may have interrupted ``stop`` holding the lock or inside
    ``Popen.wait`` (whose own lock a second wait would deadlock on). The kernel reaps them."""
    for popen in list(_LIVE.values()):
        if popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)


def _on_term(signum: int, frame: object) -> None:
    _signal_all()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_term_handler() -> None:
    """SIGTERM/SIGHUP stop our processes first (atexit does not run on a fatal signal)."""
    if _PREVIOUS or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, _on_term):
            continue
        _PREVIOUS[signum] = previous
        signal.signal(signum, _on_term)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ProcResult:
    """What a process printed, and how it ended (``exit_code`` < 0: killed by that signal;
    None: still running, or killed by us after ``timed_out``)."""

    output: bytes
    exit_code: int | None
    timed_out: bool


def wait_ready(popen: subprocess.Popen[bytes], ready: Callable[[bytes | bytearray], bool], *,
               timeout_s: float) -> ProcResult:
    """Read the process's output until ``ready(output)``, its exit (EOF) or the timeout."""
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ProcResult(bytes(out), None, True)
            if not sel.select(min(left, 0.05)):
                # An exited server whose fork child still holds the pipe never gives EOF.
                if _exited(popen):
                    return ProcResult(bytes(out), exit_status(popen), False)
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return ProcResult(bytes(out), exit_status(popen), False)
            out += chunk
            if ready(out):
                return ProcResult(bytes(out), None, False)


def _exited(popen: subprocess.Popen[bytes]) -> bool:
    if popen.returncode is not None:
        return True
    info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None and info.si_pid != 0


def drain(popen: subprocess.Popen[bytes], *, timeout_s: float = 2.0) -> bytes:
    """What is left in the pipe of a process that has been stopped."""
    if popen.stdout is None or popen.stdout.closed:
        return b""
    result = wait_ready(popen, lambda _out: False, timeout_s=timeout_s)
    return result.output


def run_tool(argv: Sequence[str], *, timeout_s: float) -> ProcResult:
    """Run a command to completion (or kill it at the timeout) and return its output."""
    popen = spawn(argv)
    try:
        result = wait_ready(popen, lambda _out: False, timeout_s=timeout_s)
    finally:
        stop(popen)
    return result
