"""Where a trial's server keeps its files: a scratch directory (``make_run_dir``: removed at the
next start if this run dies) with, when the model is a power model or a fault is asked for, a
fresh ``SimDisk`` served through ``faults.fuse.FuseMount`` on its ``data`` directory (faults only
reach a real process there); faults are armed on it and it is crashed under a model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from typing import Any

from faults import (
    Clock,
    CrashChoice,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    ImageLimits,
    PersistenceModel,
    SimDisk,
)
from faults import Fault as PlanFault
from harness.targets._servers import make_run_dir
from harness.verify._mechanism import image_effects, zero_holes

__all__ = ["Site", "keep_cwd"]

@contextlib.contextmanager
def keep_cwd() -> Iterator[None]:
    """libfuse's mount loop chdirs this whole process to "/": put the working directory back
    (relative paths given by the user, e.g. --reports, must keep their meaning)."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


class Site:
    """Where the server's files live: a scratch directory, optionally with a SimDisk FUSE mount
    on its ``data`` directory (whose plan starts empty: faults are armed during the trial)."""

    def __init__(self, *, mount: bool) -> None:
        self.root = make_run_dir("verify")
        self.data_dir = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "server.log")
        os.mkdir(self.data_dir)
        self.mount: Any = None
        # The last crash image's zero holes: (path, start, end) byte offsets.
        self.holes: list[tuple[str, int, int]] = []
        if mount:
            from faults.fuse import FuseMount

            clock = Clock()  # a SlowSync advances it; the mount turns that into a real sleep
            self.faulty = FaultyFileSystem(SimDisk(), FaultPlan(), clock=clock)
            self.mount = FuseMount(self.faulty, self.data_dir, clock=clock)
            with keep_cwd():
                self.mount.start()

    def fired(self) -> list[Any]:
        return list(self.faulty.fired) if self.mount is not None else []

    def trace_length(self) -> int:
        with self.mount.lock:
            disk = self.mount.disk
            return len(disk.trace) if disk is not None else 0

    def seen_ops(self, glob: str, *, since: int = 0) -> Counter[FaultOp]:
        """Operation kinds made on files matching `glob` from trace position `since` on."""
        from fnmatch import fnmatchcase

        kinds = {"write": FaultOp.WRITE, "fsync": FaultOp.FSYNC, "fdatasync": FaultOp.FDATASYNC}
        with self.mount.lock:
            disk = self.mount.disk
            entries = list(disk.trace) if disk is not None else []
        seen: Counter[FaultOp] = Counter()
        for entry in entries[since:]:
            kind = kinds.get(entry.op.value)
            if kind is not None and fnmatchcase(entry.path, glob):
                seen[kind] += 1
        return seen

    def last_written(self, glob: str) -> str | None:
        """The path of the last write to a file matching `glob`, else of the last operation
        on one (it may have been created and not written yet); None: no such file."""
        from fnmatch import fnmatchcase

        with self.mount.lock:
            disk = self.mount.disk
            entries = list(disk.trace) if disk is not None else []
        matching = [e for e in entries if isinstance(e.path, str) and fnmatchcase(e.path, glob)]
        written = [e for e in matching if e.op.value == "write"]
        for found in (written, matching):
            if found:
                return str(found[-1].path)
        return None

    def arm(self, fault: PlanFault) -> None:
        """Add `fault` to the live plan: it counts matching operations from now on."""
        with self.mount.lock:
            self.faulty.add_faults(FaultPlan((fault,)))

    def crash(
        self, model: PersistenceModel, seed: int | None, *, limits: ImageLimits | None = None
    ) -> tuple[str, CrashChoice | None, int | None, tuple[str, ...]]:
        """Crash the disk (the server is dead): the image kind, the choice used, the trace
        position of the crash (None on a plain directory) and what the image lacks or
        resurrects against the visible state (``_mechanism.image_effects``)."""
        if self.mount is None:
            return "visible", None, None, ()  # a plain directory: the kernel survives
        self.mount.stop()  # unmount first: no late FUSE operation can change the disk now
        disk = self.mount.disk
        assert disk is not None
        choice: CrashChoice | None = None
        kind = "visible"
        if model is not PersistenceModel.PROCESS:
            kind = "durable-only"
            if seed is not None:
                choice = disk.draw_crash_choice(model, seed, limits=limits)
                kind = "drawn" if limits is None else "drawn-damaged"
        position = len(disk.trace)
        visible = disk.crash(PersistenceModel.PROCESS).files
        with keep_cwd():
            image = self.mount.crash(model, choice)
        self.holes = [(path, start, end) for path, kept in sorted(image.files.items())
                      if path in visible for start, end in zero_holes(visible[path], kept)]
        return kind, choice, position, image_effects(visible, image.files)

    def close(self) -> None:
        try:
            if self.mount is not None:
                self.mount.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
