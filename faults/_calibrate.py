"""Calibration: the crash states of the in-process persistence models against the kernel's.

``run_kernel(fs, workloads)`` runs every workload on a kernel filesystem through one
``BlockRecorder`` (each in its own directory, after a checkpoint, with a marker after every
syscall) and mounts every distinct crash image; ``run_model(workload, models)`` runs it on a
``SimDisk`` and enumerates each model's crash images at each marker; ``compare`` gives, per
model:

* missed states: a tree the kernel produced that the model does not allow at that point (at a
  marker: the model's images there; at a flush inside a syscall: the images before or after it);
* over-approximations: what the model allows to be lost that the kernel kept in every state it
  recorded at a marker and the program saw there (the visible state) — a directory entry (a
  removal of a name, a directory: ``entry``), a file's existence (``existence``) or a prefix of
  its data (``data``). A model that lets a later operation through early (a rename the kernel
  had not committed yet) loses nothing and is not counted: a removal counts only for a name
  some kernel state had before, a file's existence only when some kernel state shows a prefix
  of what the program saw under that name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from faults._blocklog import KernelLimits, PointKind, iter_unique
from faults._fs import OSFileSystem
from faults._image import DiskImage, ImageLimits, PersistenceModel
from faults._kernelfs import BlockRecorder, KernelFilesystem
from faults._simdisk import SimDisk
from faults._workloads import Workload

__all__: list[str] = []

# The kernel models with every image the calibration found the kernel producing.
_MODEL_LIMITS = ImageLimits(
    max_choices_per_point=4096, max_dirty_files=8, size_before_data=True, in_place=True)


def power_models() -> tuple[PersistenceModel, ...]:
    """Every in-process model of a power loss (all but ``process``)."""
    return tuple(m for m in PersistenceModel if m is not PersistenceModel.PROCESS)


def claiming_model(fs: KernelFilesystem) -> PersistenceModel:
    """The model that claims to stand for `fs`: the one whose ``filesystem`` is `fs` (else whose
    name has the filesystem's name as a word, ``power-xfs``), else ``POWER``."""
    for model in PersistenceModel:
        if getattr(model, "filesystem", None) == fs.value:
            return model
    for model in PersistenceModel:
        if fs.value in model.value.split("-"):
            return model
    return PersistenceModel.POWER


@dataclass(frozen=True, slots=True)
class KernelPoint:
    """The kernel's images at one crash point of one workload."""

    kind: PointKind
    marker: int  # local marker index (MARKER) or the marker before the flush (FLUSH)
    label: str
    trees: tuple[DiskImage, ...]
    mount_errors: tuple[str, ...]
    fsck: tuple[str, ...]
    cut_off: int


@dataclass(frozen=True, slots=True)
class KernelRun:
    fs: KernelFilesystem
    points: tuple[tuple[KernelPoint, ...], ...]  # per workload
    images: int  # distinct images mounted


def _label(k: int, label: str) -> str:
    return f"{k}|{label}"


def _mark(recorder: BlockRecorder, k: int, label: str) -> None:
    recorder.marker(_label(k, label))


def run_kernel(
    fs: KernelFilesystem,
    workloads: Sequence[Workload],
    *,
    workers: int = 1,
    limits: KernelLimits | None = None,
    seed: int = 0,
    fsck: bool = False,
    on_phase: Callable[[str], None] | None = None,
) -> KernelRun:
    """Record every workload on `fs`, then mount each distinct crash image once."""
    phase = on_phase or (lambda _: None)
    with BlockRecorder(fs) as recorder:
        phase("record")
        for k, workload in enumerate(workloads):
            base = os.path.join(recorder.root, f"w{k}")
            os.mkdir(base)
            osfs = OSFileSystem(base)
            workload.make_setup(osfs)
            recorder.checkpoint()
            recorder.marker(_label(k, "start"))
            workload.run(osfs, functools.partial(_mark, recorder, k))
        log = recorder.log()
        points = log.crash_points(limits=limits, seed=seed)
        # Which workload (and local marker) each global marker belongs to.
        owner: list[tuple[int, int]] = []
        last_local: dict[int, int] = {}
        for label in log.markers:
            k = int(label.split("|", 1)[0])
            local = last_local.get(k, -1) + 1
            last_local[k] = local
            owner.append((k, local))
        jobs: list[tuple[int, int, str]] = []  # (workload, point index, label) per kept point
        kept_points = []
        for point in points:
            if point.kind is PointKind.MARKER:
                k, local = owner[point.ordinal]
                label = point.label.split("|", 1)[1]
            else:
                if point.marker_before < 0:
                    continue
                k, local = owner[point.marker_before]
                if local == last_local[k]:
                    continue  # after the workload's last call: the next one's setup
                label = f"flush after {log.markers[point.marker_before].split('|', 1)[1]}"
            kept_points.append(point)
            jobs.append((k, local, label))
        unique = list(iter_unique(kept_points))
        subdir_of: dict[tuple[int, int, tuple[int, ...]], str] = {}
        for point, (k, _, _) in zip(kept_points, jobs, strict=True):
            for state in point.states:
                subdir_of.setdefault(state.key, f"w{k}")
        phase("mount")
        mounter = recorder.mounter(log)
        try:
            images = {
                image.state.key: image
                for image in mounter.iter_images(
                    unique, subdirs=[subdir_of[s.key] for s in unique], workers=workers,
                    fsck=fsck)
            }
        finally:
            mounter.close()
        phase("compare")
    per_workload: list[list[KernelPoint]] = [[] for _ in workloads]
    for point, (k, local, label) in zip(kept_points, jobs, strict=True):
        got = [images[s.key] for s in point.states]
        per_workload[k].append(KernelPoint(
            point.kind, local, label,
            tuple(dict.fromkeys(g.tree for g in got if g.tree is not None)),
            tuple(g.mount_error for g in got if g.mount_error),
            tuple(g.fsck for g in got if g.fsck),
            point.cut_off,
        ))
    return KernelRun(fs, tuple(tuple(p) for p in per_workload), len(images))


@dataclass(frozen=True, slots=True)
class ModelRun:
    """A workload on a SimDisk: at each marker, what the program saw (``visible``) and each
    model's crash images there (by digest)."""

    labels: tuple[str, ...]
    visible: tuple[DiskImage, ...]
    images: dict[PersistenceModel, list[dict[str, DiskImage]]]


def run_model(
    workload: Workload, models: Iterable[PersistenceModel], *, limits: ImageLimits | None = None
) -> ModelRun:
    """Run `workload` on a SimDisk; each model's crash images at each of its markers."""
    models = tuple(models)
    disk = SimDisk.from_image(workload.setup_image())
    labels: list[str] = []
    visible: list[DiskImage] = []
    images: dict[PersistenceModel, list[dict[str, DiskImage]]] = {m: [] for m in models}

    def marker(label: str) -> None:
        labels.append(label)
        visible.append(disk.visible_image())
        for model in models:
            at: dict[str, DiskImage] = {}
            for choice in disk.crash_choices(model, limits=limits or _MODEL_LIMITS):
                image = disk.crash(model, choice)
                at.setdefault(image.digest(), image)
            images[model].append(at)

    marker("start")
    workload.run(disk, marker)
    return ModelRun(tuple(labels), tuple(visible), images)


def summarize(tree: DiskImage) -> str:
    """A short text form of a tree: ``path=size:hash`` per file (plus ``,zeros@start+length``
    for each run of 8 or more zero bytes: workloads never write zeros), ``dir/`` per directory."""
    parts = [f"{d}/" for d in sorted(tree.dirs)]
    for path in sorted(tree.files):
        data = tree.files[path]
        zeros = "".join(
            f",zeros@{m.start()}+{m.end() - m.start()}" for m in _ZERO_RUN.finditer(data))
        parts.append(f"{path}={len(data)}:{hashlib.sha256(data).hexdigest()[:6]}{zeros}")
    return " ".join(parts) or "(empty)"


_ZERO_RUN = re.compile(rb"\0{8,}")


def _distance(a: DiskImage, b: DiskImage) -> int:
    paths = set(a.files) | set(b.files)
    return sum(a.files.get(p) != b.files.get(p) for p in paths) + len(a.dirs ^ b.dirs)


@dataclass(frozen=True, slots=True)
class MissedState:
    """A kernel tree the model does not allow. ``inside_call``: at a flush between two markers
    (a crash during a call, e.g. an fsync that wrote data in place before its commit; the
    models treat a call as atomic), else at a marker (after the call returned)."""

    workload: str
    point: str
    kernel: str  # summarize(kernel tree)
    closest: str  # summarize(the model's closest tree at that point)
    inside_call: bool = False


@dataclass(frozen=True, slots=True)
class OverApproximation:
    workload: str
    marker: str
    kind: str  # entry, existence or data
    path: str


@dataclass(slots=True)
class ModelFigures:
    model: PersistenceModel
    claims: bool  # the model claims to stand for this filesystem
    points: int = 0
    kernel_states: int = 0
    missed: list[MissedState] = field(default_factory=list)
    over: list[OverApproximation] = field(default_factory=list)


def compare(
    run: KernelRun, workloads: Sequence[Workload], models: Iterable[PersistenceModel]
) -> list[ModelFigures]:
    models = tuple(models)
    claim = claiming_model(run.fs)
    figures = {m: ModelFigures(m, m is claim) for m in models}
    for workload, kpoints in zip(workloads, run.points, strict=True):
        model_run = run_model(workload, models)
        labels = model_run.labels
        for model, at in model_run.images.items():
            fig = figures[model]
            # Names some kernel state had durably: only their absence can be a kept removal.
            seen: set[str] = set(workload.setup_image().files)
            for kp in kpoints:
                if kp.kind is PointKind.MARKER:
                    allowed = at[kp.marker]
                    where = labels[kp.marker]
                else:
                    allowed = {**at[kp.marker], **at[min(kp.marker + 1, len(at) - 1)]}
                    where = kp.label
                fig.points += 1
                fig.kernel_states += len(kp.trees)
                for tree in kp.trees:
                    if tree.digest() not in allowed:
                        closest = min(allowed.values(), key=lambda t: _distance(t, tree))
                        fig.missed.append(MissedState(
                            workload.name, where, summarize(tree), summarize(closest),
                            kp.kind is PointKind.FLUSH))
                if kp.kind is PointKind.MARKER and kp.trees:
                    fig.over.extend(_over(
                        workload.name, where, kp.trees, allowed.values(),
                        model_run.visible[kp.marker], seen))
                for tree in kp.trees:
                    seen.update(tree.files)
    return [figures[m] for m in models]


def _over(
    name: str,
    where: str,
    kernel: Sequence[DiskImage],
    model: Iterable[DiskImage],
    visible: DiskImage,
    seen: set[str],
) -> list[OverApproximation]:
    # A loss is the model going back from what the program saw, where every kernel state kept
    # it; the model letting a later operation through early (a rename or truncate the kernel
    # had not committed yet) loses nothing.
    model = list(model)
    found: list[OverApproximation] = []
    paths = set().union(*(t.files for t in kernel), *(t.files for t in model))
    dirs = set.intersection(*(set(t.dirs) for t in kernel)) & set(visible.dirs)
    for d in sorted(dirs):
        if any(d not in t.dirs for t in model):
            found.append(OverApproximation(name, where, "entry", d + "/"))
    for path in sorted(paths):
        contents = [t.files.get(path) for t in kernel]
        if all(c is None for c in contents):
            # A removal (unlink, rename away) that the kernel always kept.
            if (path in seen and path not in visible.files
                    and any(path in t.files for t in model)):
                found.append(OverApproximation(name, where, "entry", path))
            continue
        seen_now = visible.files.get(path)
        if any(c is None for c in contents) or seen_now is None:
            continue
        if not any(seen_now.startswith(c) for c in contents if c is not None):
            continue  # the kernel shows an older file under that name (e.g. before an unlink)
        if any(path not in t.files for t in model):
            found.append(OverApproximation(name, where, "existence", path))
            continue
        kept = _common_prefix([visible.files[path], *(c for c in contents if c is not None)])
        if kept and any(not t.files[path].startswith(kept) for t in model):
            found.append(OverApproximation(name, where, "data", path))
    return found


def _common_prefix(contents: list[bytes]) -> bytes:
    first = min(contents, key=len)
    for i, byte in enumerate(first):
        if any(c[i] != byte for c in contents):
            return first[:i]
    return first
