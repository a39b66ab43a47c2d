"""Pool workers that always die when their pool is terminated.

A ``fork`` pool worker inherits this process's Python-level SIGTERM/SIGHUP handlers (the
server and mount clean-up of harness.targets and faults.fuse). A Python handler only runs when
the interpreter gets control back, and an idle worker sits in a semaphore wait that a signal
arriving just before it does not interrupt: ``Pool.terminate()`` then joined a worker that
never died (a test run hung for 27 minutes). The workers of the campaign and explorer pools
start no servers or mounts, so they get the default disposition back: the kernel ends them.

After Ctrl-C a ``ProcessPoolExecutor`` is stopped by ``stop_executor``, not by
``shutdown(wait=True)``: a KeyboardInterrupt raised inside the executor's own code (halfway
through ``wait()`` or ``submit()``) can leave it waiting for a worker or a lock for ever (an
``explore --server`` run did not exit in 120 s after its Ctrl-C, once in a suite run). The
running jobs get a grace period, then their workers are ended by PID; each worker's own reaper
ends its servers and mounts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

__all__ = ["deferred_sigint", "die_on_terminate", "stop_executor"]


def die_on_terminate() -> None:
    """Pool initializer: SIGTERM and SIGHUP end this worker at once (default disposition);
    SIGINT is ignored: Ctrl-C reaches the whole process group, and a worker it killed while
    holding the pool's queue lock would hang the parent's ``Pool.terminate``."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_executor(pool: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Stop `pool` after an interruption, in bounded time: queued jobs are cancelled, running
    ones get `grace_s` to finish, then their workers get SIGTERM and, 2 s later, SIGKILL (by
    PID: only this pool's processes)."""
    # The executor's own shutdown runs in a daemon thread: if it waits for ever, this does not.
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                              daemon=True)
    closer.start()
    closer.join(grace_s)
    if not closer.is_alive():
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for signum, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        alive = [w for w in workers if w.exitcode is None]
        for worker in alive:
            if worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)
        deadline = time.monotonic() + wait_s
        for worker in alive:
            worker.join(max(0.0, deadline - time.monotonic()))
    closer.join(5.0)


@contextlib.contextmanager
def deferred_sigint() -> Iterator[threading.Event]:
    """Within the block a SIGINT only sets the yielded event; the caller raises
    KeyboardInterrupt where its state is whole (between two crash points, say): raised
    between two counters of one state, it left a partial report whose causes did not add up.
    Outside the main thread, or with SIGINT ignored, the event is never set."""
    seen = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() \
            or previous in (signal.SIG_IGN, None):
        yield seen
        return
    signal.signal(signal.SIGINT, lambda signum, frame: seen.set())
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen.is_set():
        raise KeyboardInterrupt
