"""Calibration of the in-process persistence models against the real kernel (``faults.kernel``).

Bounded syscall workloads in the style of ACE (``generate_workloads``: one to three of create,
write, append, overwrite, truncate, fsync, fdatasync, rename, unlink, mkdir and an fsync of a
directory over a few files in two directories, on durable pre-existing files; plus the exact
syscall sequences of a Redis 6 rewrite and a Redis 7 manifest update, ``redis_workloads``) run

* on a kernel filesystem through one ``BlockRecorder`` with a marker after every syscall
  (``run_kernel``: every distinct crash image is mounted once, optionally on N workers), and
* on a ``SimDisk`` under each in-process power model (``run_model``: every crash choice at each
  marker, as trees).

``compare`` gives two figures per filesystem and model (``ModelFigures``): missed states (a tree
the kernel produced that the model does not allow there; goal 0) and over-approximations (what
the model allows to be lost that the kernel kept in every state recorded at that marker and the
program saw there: a directory entry, a file's existence, a prefix of its data; goal 0).
``claiming_model(fs)`` is the model that claims to stand for a filesystem.
``benchmarks/calibration.py`` runs it at scale and writes ``reports/calibration.md``; this needs
what ``faults.kernel`` needs (root, /dev/fuse, loop devices).
"""

from __future__ import annotations

from faults._calibrate import (
    KernelPoint,
    KernelRun,
    MissedState,
    ModelFigures,
    ModelRun,
    OverApproximation,
    claiming_model,
    compare,
    power_models,
    run_kernel,
    run_model,
    summarize,
)
from faults._workloads import (
    Workload,
    WorkloadOp,
    WorkloadOpKind,
    generate_workloads,
    redis_workloads,
)

__all__ = [
    "KernelPoint",
    "KernelRun",
    "MissedState",
    "ModelFigures",
    "ModelRun",
    "OverApproximation",
    "Workload",
    "WorkloadOp",
    "WorkloadOpKind",
    "claiming_model",
    "compare",
    "generate_workloads",
    "power_models",
    "redis_workloads",
    "run_kernel",
    "run_model",
    "summarize",
]
