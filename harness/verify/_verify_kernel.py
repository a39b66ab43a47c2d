"""One ``aofcrash verify --model ext4|xfs|btrfs`` trial: the real server on the real kernel's
filesystem, crashed at the planned point, recovered from a crash image the kernel mounted.

1. A ``faults.kernel.BlockRecorder`` (the filesystem on a recorded loop device); the server
   runs with its ``--dir`` at ``data/`` under ``recorder.root`` (its log elsewhere), started,
   then the recording's baseline is taken.
2. The trial's seeded plan and pipelined workload, exactly as ``run_trial`` draws them
   (``plan_trial``, ``batch_stream``); a marker goes into the block log after each batch's
   replies are read. At the planned batch the server is SIGKILLed (``crash_ms`` taken before
   the kill), the replies it released are read, and a last marker goes in.
3. The crash image is a seeded choice (the plan's ``image_seed``) among the kernel's crash
   states at that last marker: the writes up to the last flush plus a subset of those in
   flight (``KernelLimits``). Every reply counted was read before the marker, so the state
   existed with at least those acknowledgements (the frontier is never stricter than the
   truth; ``crash_ms`` before the kill only makes it more lenient).
4. The image is mounted read-write by the kernel (its journal/log replay) and the same server
   restarts on it: dump, ``check_recovery`` with the filesystem's name as the (power-class)
   model. Rule 3: SIGKILL and restart on the same mount (a process crash: the kernel mount
   survives), dump, ``check_stability``.

Faults: ``--fault fsync-error`` is a media error under the filesystem. Before the batch holding
the plan's ``arm_entry`` (placed as for the SimDisk's fsync-error: ahead of the kill by the
sync lead under everysec), the batch gets one more write, ``SET media:error <value>``, whose
9 KiB value repeats ``MEDIA_ERROR_PATTERN``, and the recorder fails the first block write that
contains it (``BlockRecorder.fail_writes_containing(once=True)``): the page of the AOF holding
that write fails to reach the disk when it is written back, and the fsync that wrote it back
returns EIO, as on a drive with a bad sector that remaps it afterwards. The kernel decides the
rest (what the failed fsync committed, what the next one writes; measured in
``tests/test_kernel.py``). It fired when the block log holds a failed write. The other faults
(ENOSPC, a short write, EIO on a write, slow fsync, a killed child) act on the syscalls, which
the kernel's filesystem does not fail that way: they need the FUSE SimDisk and do not combine
with a kernel model; neither do the SimDisk's image kinds (``--image``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import Collection
from typing import Any, Final

from harness.oracle import (
    ERROR_STALL_MS,
    CrashInfo,
    History,
    Snapshot,
    Verdict,
    check_recovery,
)
from harness.targets._servers import make_run_dir
from harness.verify._config import TrialResult, VerifyConfig, VerifyEnvironmentError
from harness.verify._conn import Conn, ServerGone
from harness.verify._environment import (
    KERNEL_FAULTS,
    KERNEL_VERIFY_MODELS,
    kernel_verify_problem,
    launcher_for,
    server_spec,
)
from harness.verify._faults import plan_trial
from harness.verify._trial import (
    _aof_listing,
    _kill,
    _log_tail,
    _result_fields,
    _Run,
    _scan_log,
    _second_start,
    _start_and_dump,
)
from harness.verify._workload import Item, ItemKind, batch_stream, workload_stream

__all__ = ["KERNEL_FAULTS", "KERNEL_VERIFY_MODELS", "MEDIA_ERROR_PATTERN",
           "kernel_verify_problem", "run_kernel_trial"]

_DATA: Final = "data"
# In the value of the write whose page fails: bytes no journal, inode or directory block holds.
MEDIA_ERROR_PATTERN: Final = b"<aofcrash:media-error>"
_MEDIA_ERROR_KEY: Final = b"media:error"
# 9 KiB: the write covers at least one whole 4 KiB page of the AOF, which no later append makes
# dirty again (Linux would write such a page once more, dropped bytes and all): the failed page
# stays dropped, as a bad sector's would, whatever the batches around it.
_MEDIA_ERROR_VALUE: Final = MEDIA_ERROR_PATTERN * (9216 // len(MEDIA_ERROR_PATTERN))


def run_kernel_trial(
    config: VerifyConfig, index: int, *, without: Collection[str] = ()
) -> TrialResult:
    """Trial `index` of `config` on the kernel filesystem ``config.model`` (see the module
    docstring). Every process, mount and loop device it starts is gone when it returns."""
    from faults.kernel import (
        BlockRecorder,
        KernelFilesystem,
        KernelLimits,
        KernelRecorderError,
        KernelUnavailableError,
        PointKind,
    )

    removed = frozenset(without)
    problem = kernel_verify_problem(config)
    if problem is not None:
        raise VerifyEnvironmentError(problem)
    launcher = launcher_for(server_spec(config))
    rng = random.Random(f"aofcrash-verify/{config.seed}/{index}")
    plan = plan_trial(config, rng, removed)
    batches = batch_stream(rng, workload_stream(rng, config.ops, rewrite_at=plan.rewrite_at),
                           config.batch_max)
    started = time.monotonic()
    history = History()
    run = _Run(history, started)
    scratch = make_run_dir("kverify")
    server: Any = None
    conn: Conn | None = None
    log_tail: list[str] = []
    stability: Verdict | None = None
    recovered: Snapshot | None = None
    try:
        with BlockRecorder(KernelFilesystem(config.model)) as recorder:
            data_dir = os.path.join(recorder.root, _DATA)
            os.mkdir(data_dir)
            server = launcher(data_dir, os.path.join(scratch, "server.log"), config.policy)
            server.start()
            recorder.checkpoint()  # the started server's files are the baseline
            conn = Conn(server.port)
            run.last_alive_ms = run.now_ms()
            died_early = False
            markers = 0
            sent = 0
            armed_at: int | None = None
            for batch, _writes in _batches_until_kill(batches, plan.kill_at):
                try:
                    if batch is None:
                        break
                    if (plan.arm_entry is not None and armed_at is None
                            and sent + abs(_writes) > plan.arm_entry):
                        batch = _with_media_error(batch)
                        recorder.fail_writes_containing(MEDIA_ERROR_PATTERN, once=True)
                        armed_at = sent
                    sent += max(0, _writes)
                    run.queue(batch, conn)
                    if _writes < 0:  # the kill's batch: in flight
                        if plan.kill_delay_s:
                            time.sleep(plan.kill_delay_s)
                        break
                    run.read(conn)
                    recorder.marker(f"batch {markers}")
                    markers += 1
                    if plan.entry_pause_s:
                        time.sleep(plan.entry_pause_s * _writes)
                except ServerGone:
                    died_early = True
                    break
            crash_ms, died_early = _kill(run, server, conn, died_early)
            conn = None
            recorder.marker("crash")
            failed_writes = recorder.log().failed_writes
            # The failed write-back costs one retry period (oracle rule 2). When the server's
            # fsync met it is not seen from here: placed at the crash, the widening always
            # counts, the most lenient choice.
            error_stalls = [(crash_ms, ERROR_STALL_MS)] if failed_writes else []
            _scan_log(server, run.events)
            aof_files = _aof_listing(data_dir, config.aof_glob)
            points = [p for p in recorder.crash_points(limits=KernelLimits(flush_points=False),
                                                       seed=plan.image_seed)
                      if p.kind is PointKind.MARKER and p.label == "crash"]
            state = random.Random(plan.image_seed).choice(points[-1].states)
            choice = {"model": config.model, "kernel_state": {
                "baseline": state.baseline, "durable_writes": state.durable_writes,
                "in_flight": state.in_flight, "kept": list(state.kept)}}
            run.events[f"kernel crash states at the kill: {len(points[-1].states)}"] += 1
            window_ms = config.window_ms + config.margin_ms
            tolerance_ms = 2000 + run.max_latency_ms
            mounter = recorder.mounter()
            try:
                with mounter.mounted(state) as mounted:
                    server = launcher(os.path.join(mounted, _DATA),
                                      os.path.join(scratch, "recovery.log"), config.policy)
                    reason, log_tail, recovery_ms, recovered = _start_and_dump(
                        run, server, None, crash_ms)
                    verdict = check_recovery(
                        history, recovered, policy=config.policy, model=config.model,
                        crash_ms=crash_ms, recovery_ms=recovery_ms, window_ms=window_ms,
                        error_stalls=error_stalls,
                        unavailable_reason=reason, allow_unavailable=config.allow_unavailable,
                        crash=CrashInfo(model=config.model, choice=choice, crash_ms=crash_ms,
                                        trace_index=markers),
                        expiry_tolerance_ms=tolerance_ms,
                    )
                    if recovered is not None:
                        server.kill()  # the second crash: a process crash on the kernel mount
                        stability, tail = _second_start(run, server, None, recovered,
                                                        tolerance_ms, None)
                        if tail is not None:
                            log_tail = tail
                    if not log_tail:
                        log_tail = _log_tail(server, 30)
                    server.kill()
                    server = None
            finally:
                mounter.close()
    except (KernelUnavailableError, KernelRecorderError) as exc:
        raise VerifyEnvironmentError(f"--model {config.model}: {exc}") from None
    finally:
        if conn is not None:
            conn.close()
        if server is not None:
            with contextlib.suppress(Exception):
                server.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    return TrialResult(
        **_result_fields(config, run, index, verdict, stability, history, crash_ms,
                         recovery_ms, started),
        crash_image=f"kernel {config.model}", crash_choice=choice,
        faults=("" if armed_at is None else json.dumps({"media_error": {
            "before_entry": armed_at, "pattern": MEDIA_ERROR_PATTERN.decode()}})),
        fired=([] if not failed_writes else
               [f"media error: {failed_writes} block write(s) of the page holding "
                f"{_MEDIA_ERROR_KEY.decode()} failed (EIO at write-back)"]),
        server_died_early=died_early, log_tail=log_tail, aof_files=aof_files,
        fault_asked=plan.draw is not None and "fault" not in removed,
        fault_armed_at=armed_at,
        fault_note="" if plan.draw is None or armed_at is not None else
        "not armed: the kill came before the batch it was placed at",
    )


def _with_media_error(batch: list[Item]) -> list[Item]:
    """`batch` with the media error's write before its first write (in that write's db)."""
    first = next((i for i, item in enumerate(batch) if item.kind is ItemKind.WRITE), len(batch))
    db = batch[first].db if first < len(batch) else 0
    carrier = Item(ItemKind.WRITE, ((b"SET", _MEDIA_ERROR_KEY, _MEDIA_ERROR_VALUE),), db)
    return [*batch[:first], carrier, *batch[first:]]


def _batches_until_kill(batches: Any, kill_at: int) -> Any:
    """(batch, writes) until the batch holding entry `kill_at`, which comes as (batch, -1)."""
    sent = 0
    for batch, writes in batches:
        if sent + writes > kill_at:
            yield batch, -1
            return
        yield batch, writes
        sent += writes
    yield None, 0
