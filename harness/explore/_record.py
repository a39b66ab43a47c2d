"""The explorer's single recorded run: the workload once on SimDisk with the trace on.

Besides the trace, the run records, for every trace position, what a crash there would see:
the fault layer's operation count (how ``faults.Crash(nth=...)`` names that operation), the
virtual time of the attempt, the step it belongs to, and the trace position of every history
event (submit, resolve). Nothing is re-derived later from the server's internals: a crash
point's history is "the events recorded before its trace position", exactly what the driver has
when a crash fault fires there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faults import (
    FileStat,
    FiredFault,
    IOFault,
    NoSpace,
    Op,
    ShortWrite,
    SimDisk,
    SlowSync,
    Trace,
)
from harness.machine._driver import Driver
from harness.machine._steps import ArmCrash, Recover, RunConfig, Step
from harness.oracle import ERROR_STALL_MS
from harness.oracle._history import History, Outcome

__all__ = ["DiskLayer", "EntryRecord", "NotingLayer", "Recording", "record"]

# Trace operations a Crash fault counts (FaultyFileSystem counts every op but reads/seeks).
NOT_COUNTED = frozenset((Op.READ, Op.LSEEK))


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One history entry with the trace positions of its events (resolve_pos None: never)."""

    commands: tuple[tuple[bytes, ...], ...]
    db: int
    executed_ms: int
    client: int
    during_rewrite: bool
    submit_pos: int
    outcome: Outcome
    ack_ms: int | None
    resolve_pos: int | None


@dataclass
class Recording:
    """Everything the explorer needs from the one run (see the module docstring)."""

    config: RunConfig
    steps: tuple[Step, ...]
    trace: Trace
    op_count_at: list[int]
    time_at: list[int]
    step_of: list[int]
    step_base_ops: list[int]
    boot_ops: int
    end_ms: int
    ended_crashed: bool
    entries: list[EntryRecord]
    stalls: list[tuple[int, int, int]]  # fsync stalls: (trace position, start_ms, delay_ms)
    final_history: History = field(repr=False)
    # Persistence-path I/O errors: (trace position, start_ms, ERROR_STALL_MS) (oracle rule 2).
    error_stalls: list[tuple[int, int, int]] = field(default_factory=list)

    def history_at(self, position: int) -> History:
        """The history a crash at trace `position` leaves (events recorded before it)."""
        history = History()
        for e in self.entries:
            if e.submit_pos > position:
                break
            i = history.submit(e.commands, db=e.db, executed_ms=e.executed_ms, client=e.client,
                               during_rewrite=e.during_rewrite)
            if (e.resolve_pos is not None and e.resolve_pos <= position
                    and e.outcome is not Outcome.UNKNOWN):
                history.resolve(i, e.outcome, at_ms=e.ack_ms)
        return history

    def stalls_at(self, position: int) -> list[tuple[int, int]]:
        """Injected fsync stalls that happened before the operation at `position`."""
        return [(start, delay) for pos, start, delay in self.stalls if pos < position]

    def error_stalls_at(self, position: int) -> list[tuple[int, int]]:
        """Injected persistence-path I/O errors that fired before the operation at
        `position`, one retry period each."""
        return [(start, delay) for pos, start, delay in self.error_stalls if pos < position]


class _RecordingHistory(History):
    """A History that notes the trace position of every submit and resolve."""

    def __init__(self, position: Callable[[], int]) -> None:
        super().__init__()
        self._position = position
        self.submit_pos: list[int] = []
        self.resolve_pos: dict[int, int] = {}

    def _submitted(self, index: int) -> None:
        self.submit_pos.append(self._position())

    def _resolved(self, index: int) -> None:
        self.resolve_pos[index] = self._position()


class DiskLayer:
    """A FileSystem over a SimDisk (``inner``) that hands every operation to one hook,
    ``_call(name, *args)``: a layer that notes something around each operation (the explorer's
    recorder, ``explore --server``'s timing) overrides only the hook. Lookups (listdir, stat,
    exists) never reach the trace; they go to ``_look``, which passes them straight on unless
    a layer says otherwise. ``inner`` is what ``FuseMount.disk`` follows to the SimDisk."""

    def __init__(self, disk: SimDisk) -> None:
        self.inner = disk

    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self.inner, name)(*args)

    def _look(self, name: str, *args: Any) -> Any:
        return getattr(self.inner, name)(*args)

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return int(self._call("open", path, flags, mode))

    def write(self, fd: int, data: bytes) -> int:
        return int(self._call("write", fd, data))

    def read(self, fd: int, size: int) -> bytes:
        return bytes(self._call("read", fd, size))

    def lseek(self, fd: int, position: int, how: int) -> int:
        return int(self._call("lseek", fd, position, how))

    def fsync(self, fd: int) -> None:
        self._call("fsync", fd)

    def fdatasync(self, fd: int) -> None:
        self._call("fdatasync", fd)

    def fail_fsync(self, fd: int) -> None:
        self._call("fail_fsync", fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._call("ftruncate", fd, size)

    def close(self, fd: int) -> None:
        self._call("close", fd)

    def rename(self, src: str, dst: str) -> None:
        self._call("rename", src, dst)

    def unlink(self, path: str) -> None:
        self._call("unlink", path)

    def mkdir(self, path: str) -> None:
        self._call("mkdir", path)

    def fsync_dir(self, path: str) -> None:
        self._call("fsync_dir", path)

    def listdir(self, path: str) -> list[str]:
        return list(self._look("listdir", path))

    def stat(self, path: str) -> FileStat:
        result: FileStat = self._look("stat", path)
        return result

    def exists(self, path: str) -> bool:
        return bool(self._look("exists", path))


class NotingLayer(DiskLayer):
    """A DiskLayer that calls ``note()`` just before and just after every traced operation,
    so whoever watches the run sees each operation's effects in the order they happened (the
    explorer's recorder, the report's replay study). Anything else (``trace``, ``tracing``,
    ...) is the SimDisk's own attribute."""

    def __init__(self, disk: SimDisk, note: Callable[[], None]) -> None:
        super().__init__(disk)
        self._around = note

    def _call(self, name: str, *args: Any) -> Any:
        self._around()
        try:
            return super()._call(name, *args)
        finally:
            self._around()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # trace, tracing, ... (untraced lookups)


class _Recorder(NotingLayer):
    """Stands between the fault layer and the SimDisk during the recorded run and notes, for
    every traced operation, the fault layer's op count, the time and the step."""

    def __init__(self, driver: Driver) -> None:
        super().__init__(driver.disk, self._note)
        self._fs = driver.fs
        self._clock = driver.clock
        self.op_count_at: list[int] = []
        self.time_at: list[int] = []
        self.step_of: list[int] = []
        self.step = -1

    def _note(self) -> None:
        trace = self.inner.trace
        ops, now, step = self._fs.op_count, self._clock.now_ms, self.step
        while len(self.op_count_at) < len(trace):
            self.op_count_at.append(ops)
            self.time_at.append(now)
            self.step_of.append(step)


def _stalls_of(
    fired: Sequence[FiredFault],
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(fsync stalls, persistence-path I/O errors) that fired, as (trace position, start_ms,
    duration_ms): the two kinds of stall the oracle's rule 2 knows."""
    stalls: list[tuple[int, int, int]] = []
    errors: list[tuple[int, int, int]] = []
    for f in fired:
        if f.trace_index is None:
            continue
        if isinstance(f.fault, IOFault | NoSpace | ShortWrite):
            errors.append((f.trace_index, f.at_ms, ERROR_STALL_MS))
        elif isinstance(f.fault, SlowSync):
            stalls.append((f.trace_index, f.at_ms, f.fault.delay_ms))
    return stalls, errors


def _unfired(steps: Sequence[Step]) -> str:
    """Why an armed crash may not have fired: the files it was aimed at (another target names
    its files differently)."""
    globs = sorted({str(getattr(fault, "path_glob", "*")) for step in steps
                    if isinstance(step, ArmCrash) for fault in step.plan.faults} - {"*"})
    if not globs:
        return ""
    return (f" (its crash is armed for files matching {', '.join(map(repr, globs))}, which "
            f"the target never wrote)")


def record(config: RunConfig, steps: Sequence[Step]) -> Recording:
    """Run `steps` once on a traced SimDisk and record what every crash point would see.

    The run stops early if the server dies by itself (e.g. ``always`` after a write error);
    the recording then holds the steps that ran and ``ended_crashed`` is True.

    Multi-epoch workloads: steps up to the last ``Recover`` are the *setup* (writes, a crash, a
    recovery, maybe several), run once by the driver, which checks their recoveries as usual
    (a violation there raises ``ContractViolation``). The recording starts on the disk of the
    recovered server: its trace begins with that server's start-up (the recovered image is the
    trace's initial state) and its history is the recovered prefix (the driver's rebased
    history: acknowledged entries, known before every crash point), so every crash point of the
    last epoch is explored. Stalls of the setup's epochs count before every point.
    """
    driver = Driver(config)
    last_recover = max((i for i, s in enumerate(steps) if isinstance(s, Recover)), default=-1)
    old_stalls: list[tuple[int, int, int]] = []
    old_error_stalls: list[tuple[int, int, int]] = []
    for step in steps[: last_recover + 1]:
        if isinstance(step, Recover):
            if not driver.crashed and driver.unavailable is None:
                raise ValueError(f"the workload's setup recovers from a crash that never "
                                 f"happened{_unfired(driver.steps)}")
            stalls_before, errors_before = _stalls_of(driver.fs.fired)
            old_stalls += [(-1, start, delay) for _, start, delay in stalls_before]
            old_error_stalls += [(-1, start, delay) for _, start, delay in errors_before]
        driver.run(step)
    if driver.crashed or driver.unavailable is not None:
        raise ValueError("the workload's setup left the server down (it refused to start, or "
                         "it crashed after its last recovery)")
    setup = list(driver.steps)  # Recover steps with their crash choices resolved
    history = _RecordingHistory(lambda: len(driver.disk.trace))
    for e in driver.history.entries:
        i = history.submit(e.commands, db=e.db, executed_ms=e.executed_ms, client=e.client,
                           during_rewrite=e.during_rewrite)
        if e.outcome is not Outcome.UNKNOWN:
            history.resolve(i, e.outcome, at_ms=e.ack_ms)
    driver.history = history
    recorder = _Recorder(driver)
    boot_ops = len(driver.disk.trace)
    recorder._note()  # boot operations belong to no step
    driver.fs.inner = recorder
    ran: list[Step] = list(setup)
    step_base_ops: list[int] = [0] * len(setup)  # setup steps have no crash points
    for index, step in enumerate(steps[last_recover + 1:], start=len(setup)):
        recorder.step = index
        step_base_ops.append(driver.fs.op_count)
        driver.run(step)
        recorder._note()
        ran.append(step)
        if not driver.alive:
            break
    driver.fs.inner = driver.disk
    trace = driver.disk.trace
    time_at = list(recorder.time_at)
    stalls, error_stalls = _stalls_of(driver.fs.fired)
    for pos, start, _ in stalls:
        # A crash at that fsync fires before the stall: its time is the stall's start.
        if pos < len(time_at):
            time_at[pos] = min(time_at[pos], start)
    stalls = old_stalls + stalls
    error_stalls = old_error_stalls + error_stalls
    entries = [
        EntryRecord(
            commands=e.commands,
            db=e.db,
            executed_ms=e.executed_ms,
            client=e.client,
            during_rewrite=e.during_rewrite,
            submit_pos=history.submit_pos[e.index],
            outcome=e.outcome,
            ack_ms=e.ack_ms,
            resolve_pos=history.resolve_pos.get(e.index),
        )
        for e in history.entries
    ]
    if len(recorder.op_count_at) != len(trace):  # pragma: no cover - a recorder bug
        raise RuntimeError("explore: the recorder missed traced operations")
    return Recording(
        config=config,
        steps=tuple(ran),
        trace=trace,
        op_count_at=recorder.op_count_at,
        time_at=time_at,
        step_of=recorder.step_of,
        step_base_ops=step_base_ops,
        boot_ops=boot_ops,
        end_ms=driver.clock.now_ms,
        ended_crashed=driver.crashed,
        entries=entries,
        stalls=stalls,
        final_history=history,
        error_stalls=error_stalls,
    )
