"""Running every trial of a configuration, then attributing the violating ones.

Workers: ``run_verify(config, workers=N)`` runs trials in N forked worker processes (each with
its own reaper, and killed by the kernel when the parent dies: ``PR_SET_PDEATHSIG``). A trial is a
function of (seed, index) whichever worker runs it; results come back in index order.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Final

from harness._pool import stop_executor
from harness.targets._servers import remove_stale_run_dirs
from harness.verify._attribution import attribute_trial
from harness.verify._config import Dumper, Launcher, TrialResult, VerifyConfig, VerifyResult
from harness.verify._dispatch import run_trial
from harness.verify._environment import check_fuse, server_identity

__all__ = ["run_verify", "worker_attribution", "worker_init", "worker_pool", "worker_trial"]

_PR_SET_PDEATHSIG: Final = 1


def worker_init(parent_pid: int) -> None:
    """In a forked worker: die (SIGKILL) with the parent, so a SIGKILLed harness takes its
    workers along; each worker's own reaper then ends that worker's servers."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    # Ctrl-C reaches the whole process group: the parent handles it (it reports the trials
    # that finished); a worker ends the trial it runs, its servers and mounts cleaned up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_trial(config: VerifyConfig, index: int) -> TrialResult:
    return run_trial(config, index)


def worker_attribution(config: VerifyConfig, trial: TrialResult, repeats: int) -> TrialResult:
    trial.attribution = attribute_trial(config, trial, repeats=repeats)
    return trial


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of forked trial workers (each dies with this process: ``PR_SET_PDEATHSIG``).

    fork: a worker starts in a millisecond with everything already imported and the server
    already resolved (``check_environment`` first; no resource-tracker process either); the
    parent must hold no mount or server when it forks."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"),
        initializer=worker_init, initargs=(os.getpid(),),
    )


def _run_pool(
    jobs: Sequence[tuple[Callable[..., TrialResult], tuple[Any, ...]]],
    workers: int,
    on_trial: Callable[[TrialResult], None],
) -> list[TrialResult]:
    """Run `jobs` (each returns a TrialResult) on `workers` forked processes; results in the
    order of `jobs`, `on_trial` called in completion order."""
    pool = worker_pool(workers)
    results: dict[Future[TrialResult], TrialResult] = {}
    try:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        pending: set[Future[TrialResult]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                trial = future.result()
                results[future] = trial
                on_trial(trial)
    except BaseException:
        stop_executor(pool)
        raise
    pool.shutdown(wait=True)
    return [results[future] for future in futures]


def run_verify(
    config: VerifyConfig,
    *,
    workers: int = 1,
    progress: Callable[[int, TrialResult], None] | None = None,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
    attribution: bool = True,
    attribution_repeats: int = 3,
    attribution_max: int | None = None,
    shard: tuple[int, int] = (0, 1),
    attributing: Callable[[int, int], None] | None = None,
    partial: Callable[[VerifyResult], None] | None = None,
) -> VerifyResult:
    """Run every trial of `config` on `workers` processes (1: in this one); `progress(done,
    trial)` after each one (in completion order; the result lists trials in index order).
    `shard` (i, n) runs only the trials numbered i mod n: a trial is a function of (seed,
    index), so n shards on n machines run exactly the trials of one run.

    Then, with `attribution`, each violating trial (the first `attribution_max` of them; None:
    all) is re-checked with one ingredient taken out at a time (``attribute_trial``, up to
    `attribution_repeats` re-runs per variant) and its ``attribution`` says what it needs;
    `attributing(done, total)` before the first and after each attributed trial (it takes as
    long as several trials per violating one: a progress line).

    `partial(result)`, after each trial (and attribution): the run so far, its
    ``interrupted`` saying it had not finished, for a report that outlives a kill. Ctrl-C
    (KeyboardInterrupt) ends the run early: the result holds the trials that finished, and
    ``interrupted`` says so (the trials still running are ended, by the pool, first).

    First removes the scratch directories of dead runs. `launcher` and `dump` (test doubles)
    only work in this process: with either, `workers` must be 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if attribution_max is not None and (isinstance(attribution_max, bool)
                                        or not isinstance(attribution_max, int)
                                        or attribution_max < 0):
        raise ValueError(f"attribution_max must be None or an int >= 0, got {attribution_max!r}")
    if isinstance(attribution_repeats, bool) or not isinstance(attribution_repeats, int) \
            or attribution_repeats < 1:
        raise ValueError(f"attribution_repeats must be an int >= 1, got {attribution_repeats!r}")
    if (not isinstance(shard, tuple) or len(shard) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            or not (shard[1] >= 1 and 0 <= shard[0] < shard[1])):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if workers > 1 and (launcher is not None or dump is not None):
        raise ValueError("workers > 1 runs trials in other processes: a launcher or dump "
                         "given here cannot go there; use workers=1")
    remove_stale_run_dirs()
    if launcher is None:
        info = server_identity(config)
        name, version = info.name, info.version
    else:
        name, version = "custom", "custom launcher"
    check_fuse(config)
    started = time.monotonic()
    indices = [config.first_trial + n for n in range(config.trials) if n % shard[1] == shard[0]]
    done: list[TrialResult] = []
    pool_size = min(workers, len(indices))
    attribution_started: float | None = None

    def result_now(interrupted: str) -> VerifyResult:
        now = time.monotonic()
        return VerifyResult(config, version, sorted(done, key=lambda t: t.index), now - started,
                            server_name=name, workers=pool_size,
                            attribution_s=(0.0 if attribution_started is None
                                           else now - attribution_started),
                            interrupted=interrupted)

    def on_trial(trial: TrialResult) -> None:
        done.append(trial)
        if progress is not None:
            progress(len(done), trial)
        if partial is not None:
            partial(result_now(f"not finished when written: {len(done)} of {len(indices)} "
                               "trial(s) done (the run was still going, or was killed)"))

    try:
        if pool_size == 1:
            for index in indices:
                on_trial(run_trial(config, index, launcher=launcher, dump=dump))
        else:
            _run_pool([(worker_trial, (config, index)) for index in indices],
                      pool_size, on_trial)
    except KeyboardInterrupt:
        return result_now(f"Ctrl-C (SIGINT) after {len(done)} of {len(indices)} trial(s); "
                          "attribution not run")
    trials = sorted(done, key=lambda t: t.index)
    attribution_started = time.monotonic()
    if attribution:
        violating = [t for t in trials if t.outcome == "violation"][:attribution_max]
        told = [0]

        def attributed_one(_trial: TrialResult | None = None) -> None:
            if _trial is not None:
                told[0] += 1
            if attributing is not None and violating:
                attributing(told[0], len(violating))

        attributed_one()
        try:
            if min(workers, len(violating)) <= 1:
                for number, trial in enumerate(violating, 1):
                    trial.attribution = attribute_trial(config, trial,
                                                        repeats=attribution_repeats,
                                                        launcher=launcher, dump=dump)
                    attributed_one(trial)
                    if partial is not None and number < len(violating):
                        partial(result_now(f"not finished when written: attributing causes, "
                                           f"{number} of {len(violating)} done"))
            else:
                attributed = _run_pool(
                    [(worker_attribution, (config, t, attribution_repeats)) for t in violating],
                    min(workers, len(violating)), attributed_one,
                )
                by_index = {t.index: t.attribution for t in attributed}
                for trial in violating:
                    trial.attribution = by_index[trial.index]
        except KeyboardInterrupt:
            return result_now("Ctrl-C (SIGINT) while attributing causes: every trial "
                              "finished; "
                              f"{sum(t.attribution is not None for t in violating)} of "
                              f"{len(violating)} violating trial(s) attributed")
    finished = time.monotonic()
    return VerifyResult(config, version, trials, finished - started,
                        server_name=name, workers=pool_size,
                        attribution_s=finished - attribution_started)
