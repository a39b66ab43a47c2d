"""Pool workers that always die when their pool is terminated.

A ``fork`` pool worker inherits this process's Python-level SIGTERM/SIGHUP handlers (the
server and mount clean-up of harness.targets and faults.fuse). A Python handler only runs when
the interpreter gets control back, and an idle worker sits in a semaphore wait that a signal
arriving just before it does not interrupt: ``Pool.terminate()`` then joined a worker that
never died (a test run hung for 27 minutes). The workers of the campaign and explorer pools
start no servers or mounts, so they get the default disposition back: the kernel ends them.
"""

from __future__ import annotations

import signal

__all__ = ["die_on_terminate"]


def die_on_terminate() -> None:
    """Pool initializer: SIGTERM and SIGHUP end this worker at once (default disposition);
    SIGINT is ignored: Ctrl-C reaches the whole process group, and a worker it killed while
    holding the pool's queue lock would hang the parent's ``Pool.terminate``."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
