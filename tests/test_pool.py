"""harness._pool: pool workers that die when told, and an executor stopped in bounded time
after an interruption."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from harness._pool import stop_executor


def _ignore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sleep_forever(started: str) -> None:
    with open(started, "w", encoding="ascii"):
        pass
    while True:
        time.sleep(1)


def _pid() -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().split()[2] != "Z"


def test_stop_executor_ends_a_worker_whose_job_never_returns_and_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                               initializer=_ignore_sigterm)
    pid = pool.submit(_pid).result()
    started = tmp_path / "started"
    stuck = pool.submit(_sleep_forever, str(started))
    queued = pool.submit(_pid)
    while not started.exists():  # the job runs: shutdown(wait=True) alone would never return
        time.sleep(0.01)
    stop_executor(pool, grace_s=0.5)
    assert not _alive(pid)
    assert stuck.done() and queued.done()


def test_stop_executor_lets_running_jobs_finish_within_the_grace_period() -> None:
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    futures = [pool.submit(_pid) for _ in range(4)]
    for future in futures:
        future.result()
    stop_executor(pool, grace_s=30.0)
    assert all(f.done() and not f.cancelled() for f in futures)
    assert all(not _alive(f.result()) for f in futures)
