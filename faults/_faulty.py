"""FaultyFileSystem: wraps any FileSystem and applies a FaultPlan, recording what fired."""

from __future__ import annotations

import errno
import fnmatch
from dataclasses import dataclass

from faults._clock import Clock
from faults._fs import FileStat, FileSystem, check_relative_path, os_error
from faults._plan import (
    Crash,
    Fault,
    FaultOp,
    FaultPlan,
    IOFault,
    KillChild,
    NoSpace,
    ShortWrite,
    SlowSync,
)

__all__ = ["FaultyFileSystem", "FiredFault", "OperationBudgetExceeded", "SimulatedCrash"]


class OperationBudgetExceeded(BaseException):
    """More filesystem calls than ``FaultyFileSystem.op_budget`` allows: the code under test is
    looping (a write retried forever, a read loop that never ends). A BaseException, like
    SimulatedCrash, so ``except Exception`` in that code cannot swallow it. Off by default."""

    def __init__(self, calls: int) -> None:
        super().__init__(f"more than {calls} filesystem calls without returning")
        self.calls = calls


class SimulatedCrash(BaseException):
    """The process died (a ``Crash`` fault). A BaseException so that ``except Exception`` in code
    under test cannot swallow it. ``trace_index`` is how many inner trace entries exist at the
    moment of death (the crash point for ``SimDisk.replay``), None if the inner disk has no trace.
    """

    def __init__(
        self,
        trace_index: int | None = None,
        *,
        op: FaultOp | None = None,
        path: str = "",
        torn_bytes: int | None = None,
    ) -> None:
        self.op = op
        self.path = path
        self.trace_index = trace_index
        self.torn_bytes = torn_bytes
        torn = f" after {torn_bytes} bytes" if torn_bytes is not None else ""
        where = f" at {op.value} {path!r}" if op is not None else ""
        super().__init__(f"simulated crash{where}{torn} (trace index {trace_index})")


@dataclass(frozen=True, slots=True)
class FiredFault:
    """One fault that took effect: which (index in the plan), on what, and what it did."""

    fault_index: int
    fault: Fault
    op: FaultOp | None
    path: str
    occurrence: int
    trace_index: int | None
    effect: str
    at_ms: int = 0  # virtual time when it fired (a stall starts then)


class FaultyFileSystem:
    """A FileSystem that applies ``plan`` to the operations it passes to ``inner``.

    Every fault counts the operations it matches (kind + ``path_glob``) from the moment it
    joined the plan. When ``plan`` is replaced, faults kept at the same index keep their
    counters; the others start counting then. Several faults may act on one operation:
    a Crash wins, then SlowSync delays, then the first error (IOFault/NoSpace) in plan order,
    then a ShortWrite. Only faults that took effect are recorded in ``fired``.
    """

    def __init__(
        self, inner: FileSystem, plan: FaultPlan | None = None, *, clock: Clock | None = None
    ) -> None:
        self.inner = inner
        self.clock = clock if clock is not None else Clock()
        self.fired: list[FiredFault] = []
        self.op_count = 0
        # Calls of any kind (reads and seeks too) since ``op_budget`` was last set; None: no
        # limit. The harness sets it per step so a target that loops forever ends as a finding.
        self.op_budget: int | None = None
        self._calls = 0
        self.crashed: SimulatedCrash | None = None
        self._fd_paths: dict[int, str] = {}
        self._plan = FaultPlan()
        self._counts: list[int] = []
        self._by_op: dict[FaultOp, list[int]] = {}
        self.plan = plan if plan is not None else FaultPlan()

    def __repr__(self) -> str:
        return (
            f"FaultyFileSystem({self.inner!r}, faults={len(self._plan)}, "
            f"fired={len(self.fired)})"
        )

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"plan: expected FaultPlan, got {type(plan).__name__}")
        old, old_counts = self._plan.faults, self._counts
        counts = [
            old_counts[i] if i < len(old) and old[i] == fault else 0
            for i, fault in enumerate(plan.faults)
        ]
        by_op: dict[FaultOp, list[int]] = {}
        for i, fault in enumerate(plan.faults):
            for op in fault.matches_ops():
                by_op.setdefault(op, []).append(i)
        self._plan, self._counts, self._by_op = plan, counts, by_op

    def add_faults(self, plan: FaultPlan) -> None:
        """Append `plan`'s faults to the current plan (the existing ones keep their counters)."""
        self.plan = self._plan.extended(*plan.faults)

    # -- matching ------------------------------------------------------------------------------

    def set_op_budget(self, calls: int | None) -> None:
        """Allow `calls` more filesystem calls (None: no limit) before OperationBudgetExceeded."""
        if calls is not None and calls < 1:
            raise ValueError(f"op budget must be >= 1 or None, got {calls}")
        self.op_budget = calls
        self._calls = 0

    def _spend(self) -> None:
        if self.op_budget is not None:
            self._calls += 1
            if self._calls > self.op_budget:
                self.op_budget = None  # once: reporting the finding may touch the disk
                raise OperationBudgetExceeded(self._calls - 1)

    def _trace_index(self) -> int | None:
        trace = getattr(self.inner, "trace", None)
        if trace is None or getattr(self.inner, "tracing", True) is False:
            return None
        return len(trace)

    def _active(self, op: FaultOp, *paths: str) -> list[tuple[int, Fault, int]]:
        """Count this operation for every fault matching it; return those whose window covers
        it as (index, fault, occurrence)."""
        if self.crashed is not None:
            raise self.crashed
        self._spend()
        self.op_count += 1
        indexes = self._by_op.get(op)
        if not indexes:
            return []
        active = []
        faults, counts = self._plan.faults, self._counts
        for i in indexes:
            fault = faults[i]
            glob: str = getattr(fault, "path_glob", "*")
            if glob != "*" and not any(fnmatch.fnmatchcase(p, glob) for p in paths):
                continue
            counts[i] += 1
            first, times = fault.window()
            occurrence = counts[i]
            if occurrence >= first and (times is None or occurrence < first + times):
                active.append((i, fault, occurrence))
        return active

    def _fire(self, hit: tuple[int, Fault, int], op: FaultOp | None, path: str, effect: str,
              trace_index: int | None = None) -> None:
        index, fault, occurrence = hit
        if trace_index is None:
            trace_index = self._trace_index()
        self.fired.append(
            FiredFault(index, fault, op, path, occurrence, trace_index, effect, self.clock.now_ms)
        )

    def _crash_if(self, active: list[tuple[int, Fault, int]], op: FaultOp, path: str) -> None:
        for hit in active:
            if isinstance(hit[1], Crash):
                self._die(hit, op, path, None)

    def _die(self, hit: tuple[int, Fault, int], op: FaultOp, path: str, torn: int | None) -> None:
        trace_index = self._trace_index()
        self._fire(hit, op, path, "crash" if torn is None else f"crash after {torn} bytes",
                   trace_index)
        self.crashed = SimulatedCrash(trace_index, op=op, path=path, torn_bytes=torn)
        raise self.crashed

    def _error(self, active: list[tuple[int, Fault, int]]) -> tuple[int, Fault, int] | None:
        for hit in active:
            if isinstance(hit[1], IOFault | NoSpace):
                return hit
        return None

    def _simple(self, op: FaultOp, path: str) -> None:
        active = self._active(op, path)
        if active:
            self._crash_if(active, op, path)

    # -- FileSystem verbs ----------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        norm = check_relative_path(path)
        self._simple(FaultOp.OPEN, norm)
        fd = self.inner.open(path, flags, mode)
        self._fd_paths[fd] = norm
        return fd

    def write(self, fd: int, data: bytes) -> int:
        path = self._fd_paths.get(fd, "")
        active = self._active(FaultOp.WRITE, path)
        if not active:
            return self.inner.write(fd, data)
        for hit in active:
            fault = hit[1]
            if isinstance(fault, Crash):
                torn = fault.torn_bytes
                if torn is not None:
                    torn = min(torn, len(data))
                    self.inner.write(fd, data[:torn])
                self._die(hit, FaultOp.WRITE, path, torn)
        error = self._error(active)
        if error is not None:
            fault = error[1]
            if isinstance(fault, IOFault):
                self._fire(error, FaultOp.WRITE, path, "EIO")
                raise os_error(errno.EIO, path)
            assert isinstance(fault, NoSpace)
            first, _ = fault.window()
            if fault.partial_bytes and error[2] == first and data:
                k = min(fault.partial_bytes, len(data))
                trace_index = self._trace_index()
                written = self.inner.write(fd, data[:k])
                self._fire(error, FaultOp.WRITE, path,
                           f"ENOSPC after a partial write of {written} of {len(data)} bytes",
                           trace_index)
                return written
            self._fire(error, FaultOp.WRITE, path, "ENOSPC")
            raise os_error(errno.ENOSPC, path)
        for hit in active:
            fault = hit[1]
            if isinstance(fault, ShortWrite):
                k = min(fault.written_bytes, len(data))
                trace_index = self._trace_index()
                written = self.inner.write(fd, data[:k])
                self._fire(hit, FaultOp.WRITE, path,
                           f"short write of {written} of {len(data)} bytes", trace_index)
                return written
        return self.inner.write(fd, data)

    def read(self, fd: int, size: int) -> bytes:
        if self.crashed is not None:
            raise self.crashed
        self._spend()
        return self.inner.read(fd, size)

    def lseek(self, fd: int, position: int, how: int) -> int:
        if self.crashed is not None:
            raise self.crashed
        self._spend()
        return self.inner.lseek(fd, position, how)

    def fsync(self, fd: int) -> None:
        self._sync(fd, FaultOp.FSYNC)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, FaultOp.FDATASYNC)

    def _sync(self, fd: int, op: FaultOp) -> None:
        path = self._fd_paths.get(fd, "")
        active = self._active(op, path)
        if active:
            self._crash_if(active, op, path)
            for hit in active:
                fault = hit[1]
                if isinstance(fault, SlowSync):
                    # Not modelled: the data is durable at the call; only completion is late.
                    self._fire(hit, op, path, f"delayed {fault.delay_ms} ms")
                    self.clock.sleep(fault.delay_ms)
            error = self._error(active)
            if error is not None:
                self._fire(error, op, path, "EIO")
                fail = getattr(self.inner, "fail_fsync", None)
                if fail is not None:
                    fail(fd)
                raise os_error(errno.EIO, path)
        if op is FaultOp.FSYNC:
            self.inner.fsync(fd)
        else:
            self.inner.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._simple(FaultOp.FTRUNCATE, self._fd_paths.get(fd, ""))
        self.inner.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        self._simple(FaultOp.CLOSE, self._fd_paths.get(fd, ""))
        self.inner.close(fd)
        self._fd_paths.pop(fd, None)

    def rename(self, src: str, dst: str) -> None:
        nsrc, ndst = check_relative_path(src), check_relative_path(dst)
        active = self._active(FaultOp.RENAME, nsrc, ndst)
        if active:
            self._crash_if(active, FaultOp.RENAME, nsrc)
            error = self._error(active)
            if error is not None:
                self._fire(error, FaultOp.RENAME, nsrc, "EIO")
                raise os_error(errno.EIO, src)
        self.inner.rename(src, dst)
        # Keep fd paths current so path_glob keeps matching renamed files' fds.
        prefix = nsrc + "/"
        for fd, p in self._fd_paths.items():
            if p == nsrc:
                self._fd_paths[fd] = ndst
            elif p.startswith(prefix):
                self._fd_paths[fd] = ndst + p[len(nsrc):]

    def unlink(self, path: str) -> None:
        self._simple(FaultOp.UNLINK, check_relative_path(path))
        self.inner.unlink(path)

    def mkdir(self, path: str) -> None:
        self._simple(FaultOp.MKDIR, check_relative_path(path))
        self.inner.mkdir(path)

    def listdir(self, path: str) -> list[str]:
        if self.crashed is not None:
            raise self.crashed
        return self.inner.listdir(path)

    def stat(self, path: str) -> FileStat:
        if self.crashed is not None:
            raise self.crashed
        return self.inner.stat(path)

    def exists(self, path: str) -> bool:
        if self.crashed is not None:
            raise self.crashed
        return self.inner.exists(path)

    def fsync_dir(self, path: str) -> None:
        norm = check_relative_path(path)
        active = self._active(FaultOp.FSYNC_DIR, norm)
        if active:
            self._crash_if(active, FaultOp.FSYNC_DIR, norm)
            error = self._error(active)
            if error is not None:
                self._fire(error, FaultOp.FSYNC_DIR, norm, "EIO")
                raise os_error(errno.EIO, path)
        self.inner.fsync_dir(path)

    # -- rewrite child -------------------------------------------------------------------------

    def should_kill_child(self, rewrite_number: int, step: int) -> bool:
        """True if a KillChild fault says the child of rewrite `rewrite_number` (1-based) dies
        at `step`; the server asks before every step of its rewrite child."""
        for i, fault in enumerate(self._plan.faults):
            if (
                isinstance(fault, KillChild)
                and fault.nth_rewrite == rewrite_number
                and fault.at_step == step
            ):
                self._fire((i, fault, rewrite_number), None, "", f"child killed at step {step}")
                return True
        return False
