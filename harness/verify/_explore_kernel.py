"""``aofcrash explore --server NAME --model ext4|xfs|btrfs``: the crash-state explorer on a real
server binary whose crash states come from the real kernel (``faults.kernel``), not a model.

Method
------
1. **Record.** A ``faults.kernel.BlockRecorder`` formats the filesystem on a loop device whose
   backing file is served by a FUSE daemon that logs every block write and flush; the server
   runs with its ``--dir`` at ``data/`` under ``recorder.root`` (its log file elsewhere). The
   workload is ``explore --server``'s (``_workload.workload``, one entry at a time over one
   RESP connection, every reply read before the next send). A marker goes into the block log
   before each entry is sent (its ``submit_pos``) and after its reply is read (its
   ``resolve_pos``); positions are marker ordinals. After the end-of-run settle (a rewrite
   finished, the block log quiet) a last marker, then SIGKILL.
2. **Crash states.** ``recorder.crash_points`` (``KernelLimits``): at every marker, the
   writes up to the last flush plus bounded subsets of the writes in flight; at every flush
   (a crash inside a call). A flush point between markers m and m+1 is at position m (what the
   client knew then). Subsets the limits leave out are counted as ``cut_by_max_images``.
3. **Images.** Each distinct state is mounted by the kernel (its own journal/log replay,
   read-only: the kernel still replays), on forked processes, and the tree under ``data/``
   becomes a ``faults.DiskImage``; states are grouped by its digest. A state the kernel
   refuses to mount (or, with ``fsck``, that the checker calls corrupt) is a finding about
   the filesystem, reported apart from the server's violations.
4. **Recover** each distinct image once with the real binary, on ``workers`` processes,
   started while the mounts still run (``_explore_server``'s recovery: a plain scratch dir,
   dump, SIGKILL, and rule 3 on what it left).
5. **Check** every state with the oracle, as ``explore --server`` does: the history at
   position p holds the entries whose submit marker is at or before p, acknowledged iff their
   resolve marker is too; the model given to the oracle is the filesystem's name (a power-loss
   model: the real kernel). ``crash_ms`` of a point is the time taken just before its marker
   was written (a flush point: its marker before): the state existed at or after it, so the
   everysec frontier is never stricter than the truth.
6. **Mechanism** of a violating state, as ``explore --server`` gives it: what its image lacks
   or resurrects against the files the server had written (``_mechanism.image_effects``).
   Those are read right after each marker (``O_NOATIME``, so reading them adds no block
   write to the log being recorded); a marker point is compared with its own marker's files,
   a flush point (inside a call, whose files at the flush nobody read) with the files before
   and after the call: what the image does to both (``_kernel_effects``). Reports group
   violating states by it, one cause per mechanism.

Not modelled: faults (ENOSPC, EIO: ``verify --fault`` on FUSE), torn sectors inside a block
write, ``include_startup`` crashes before the data dir exists.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from faults import PersistenceModel
from faults.kernel import (
    BlockLog,
    BlockRecorder,
    CrashPoint,
    ImageMounter,
    KernelCrashState,
    KernelFilesystem,
    KernelLimits,
    KernelRecorderError,
    KernelUnavailableError,
    PointKind,
    kernel_unavailable_reason,
)
from harness.oracle import (
    History,
    Verdict,
)
from harness.targets._servers import ServerSpec, make_run_dir, remove_stale_run_dirs
from harness.verify._config import VerifyEnvironmentError
from harness.verify._conn import Conn, end_run
from harness.verify._explore_server import (
    ServerExploreConfig,
    ServerExploreError,
    ServerExploreResult,
    _confirm,
    _count_mechanism,
    _EntryPos,
    _exact,
    _extra_config,
    _fast,
    _Frontiers,
    _Histories,
    _judge,
    _keep,
    _load_repro,
    _mechanism_rows,
    _mechanism_text,
    _play,
    _Recording,
    _recover_again,
    _refusal_span,
    _save_repro,
    _settle,
    _spec_and_identity,
    _take_recording,
    _tally,
)
from harness.verify._mechanism import image_effects, server_reason_kind
from harness.verify._recovery import _Content, _read_tree, _Recoveries
from harness.verify._workload import workload

__all__ = [
    "KERNEL_MODELS",
    "KERNEL_REPRO_FORMAT",
    "KernelExploreConfig",
    "KernelExploreResult",
    "KernelViolation",
    "explore_kernel_server",
    "is_kernel_reproduction",
    "replay_kernel_reproduction",
    "write_kernel_reproductions",
]

KERNEL_MODELS: Final = ("ext4", "xfs", "btrfs")
KERNEL_REPRO_FORMAT: Final = "aofcrash-kernel-explore-repro/1"
_DATA: Final = "data"
# The frontier of a kernel state is a power model's: any power-class PersistenceModel will do
# for FrontierIndex (it only asks "process or not").
_POWER_FOR_FRONTIER: Final = "power-ext4"


@dataclass(frozen=True)
class KernelExploreConfig:
    """One kernel exploration: `fs` (ext4, xfs or btrfs), the server run (`server`: its
    workload, policy, server settings, stability, exact; its ``models`` and image limits are
    not used), the kernel's crash-state limits, `fsck` (check every image with the
    filesystem's checker) and extra `mkfs_options`."""

    fs: str
    server: ServerExploreConfig
    limits: KernelLimits | None = None  # None: KernelLimits()
    fsck: bool = False
    mkfs_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.fs not in KERNEL_MODELS:
            errors.append(f"fs must be one of {', '.join(KERNEL_MODELS)}, got {self.fs!r}")
        if not isinstance(self.server, ServerExploreConfig):
            errors.append(  # type: ignore[unreachable]  # callers without type checks
                f"server must be a ServerExploreConfig, got {self.server!r}")
        else:
            if self.server.torn or self.server.reorder:
                errors.append("torn/reorder: a kernel crash image drops in-flight block writes "
                              "whole (no torn sectors)")
            if self.server.include_startup:
                errors.append("include_startup: not with a kernel model (the data dir and the "
                              "server start are the baseline)")
        if self.limits is None:
            object.__setattr__(self, "limits", KernelLimits())
        elif not isinstance(self.limits, KernelLimits):
            errors.append(  # type: ignore[unreachable]  # callers without type checks
                f"limits must be a KernelLimits, got {self.limits!r}")
        object.__setattr__(self, "mkfs_options", tuple(self.mkfs_options))
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def kernel_limits(self) -> KernelLimits:
        assert self.limits is not None  # set by __post_init__
        return self.limits

    def to_dict(self) -> dict[str, Any]:
        out = self.server.to_dict()
        for unused in ("models", "max_images_per_point", "max_dirty_files", "torn", "reorder",
                       "include_startup", "size_before_data", "in_place"):
            out.pop(unused, None)
        return {**out, "models": [self.fs], "kernel_fs": self.fs,
                "kernel_limits": {"max_prefixes": self.kernel_limits.max_prefixes,
                                  "max_subsets": self.kernel_limits.max_subsets,
                                  "flush_points": self.kernel_limits.flush_points},
                "fsck": self.fsck, "mkfs_options": list(self.mkfs_options)}


@dataclass(frozen=True)
class KernelViolation:
    """One violating state group: the states at one crash point whose data dir, after the
    kernel mounted them, is the image ``digest``; ``count`` states, ``state`` one of them."""

    position: int  # the marker ordinal the point counts as (a flush: the marker before it)
    point: str  # "marker N (label)" or "flush N"
    crash_ms: int
    model: str
    state: dict[str, Any]
    count: int
    rules: tuple[str, ...]
    digest: str
    verdict: Verdict | None
    reason: str | None
    # What the image lacks or resurrects against the files the server had written (read at
    # the marker; see ``_record``), as ``explore --server`` computes it; None: not read.
    effects: tuple[str, ...] | None = None
    heals: bool | None = None  # after a refusal: whether the next start came up

    @property
    def trace_index(self) -> int:  # the name the report cards read
        return self.position

    @property
    def mechanism(self) -> str | None:
        """The rules, what the image lacks or resurrects, why the server refused; None
        without the visible state to compare with."""
        if self.effects is None:
            return None
        return _mechanism_text(
            self.rules, self.effects,
            server_reason_kind(self.reason) + _refusal_span(self.heals) if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": list(self.rules), "model": self.model, "trace_index": self.position,
            "point": self.point, "crash_ms": self.crash_ms, "states": self.count,
            "image_digest": self.digest, "choice": self.state, "server_reason": self.reason,
            "image_effects": None if self.effects is None else list(self.effects),
            "mechanism": self.mechanism,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
        }


@dataclass
class KernelExploreResult(ServerExploreResult):
    """``ServerExploreResult`` plus the kernel's part: images mounted (and how fast), the
    filesystem's own findings (refused mounts, fsck complaints) and the recording's size."""

    fs: str = "ext4"
    kernel_states: int = 0
    mounted_images: int = 0
    mount_s: float = 0.0
    block_writes: int = 0
    flushes: int = 0
    markers: int = 0
    filesystem_findings: list[dict[str, Any]] = field(default_factory=list)
    kernel_violations: list[KernelViolation] = field(default_factory=list)

    def _coverage_models(self) -> tuple[str, ...]:
        return (self.fs,)

    @property
    def ok(self) -> bool:
        return self.violating_states == 0 and not self.filesystem_findings

    @property
    def images_per_s(self) -> float | None:
        """Kernel states mounted, recovered and judged per second (mount to last check)."""
        spent = self.mount_s + self.check_s
        return self.kernel_states / spent if spent > 0 else None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        rate = self.images_per_s
        out.update({
            "mode": "server-kernel", "kernel_fs": self.fs,
            "kernel_states": self.kernel_states, "mounted_images": self.mounted_images,
            "kernel_images_per_s": None if rate is None else round(rate, 1),
            "block_writes": self.block_writes, "flushes": self.flushes,
            "markers": self.markers, "filesystem_findings": self.filesystem_findings,
        })
        out["seconds"]["mount"] = round(self.mount_s, 2)
        return out


# ---------------------------------------------------------------------------------------------
# Recording on the kernel filesystem


class _LogLength:
    """What ``_settle`` reads as a mount: ``len(disk.trace)`` is the block log's size, so the
    settle waits until the kernel has stopped writing."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.disk = self
        self._path = path

    @property
    def trace(self) -> range:
        try:
            return range(os.path.getsize(self._path))
        except OSError:
            return range(0)


@dataclass
class _KernelRecording:
    rec: _Recording  # positions are marker ordinals; trace and start_ms unused
    marker_ms: list[int]  # per marker: the time taken just before it was written
    # Per marker: the data dir's files as the server had written them (the page cache),
    # read just after the marker; what a crash image is compared with (its mechanism).
    visible: list[dict[str, bytes]] = field(default_factory=list)


def _read_visible(root: str) -> dict[str, bytes]:
    """Every file under `root` (paths relative to it) as the server sees it now, read with
    O_NOATIME: an atime update is a metadata write, which would land in the block log being
    recorded. A file removed while it is read (a rewrite's temp file) is left out."""
    noatime = getattr(os, "O_NOATIME", 0)
    files: dict[str, bytes] = {}

    def opened(path: str, flags: int) -> int:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:  # O_NOATIME needs the file's owner (or CAP_FOWNER)
            return os.open(path, flags)

    def walk(path: str, prefix: str) -> None:
        fd = opened(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in os.scandir(fd)]
        finally:
            os.close(fd)
        for name, is_dir in sorted(entries):
            where = os.path.join(path, name)
            try:
                if is_dir:
                    walk(where, prefix + name + "/")
                    continue
                fd = opened(where, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                files[prefix + name] = b"".join(chunks)
            finally:
                os.close(fd)

    walk(root, "")
    return files


def _record(config: KernelExploreConfig, spec: ServerSpec, recorder: BlockRecorder, t0: float
            ) -> _KernelRecording:
    cfg = config.server
    rng = random.Random(f"aofcrash-explore-server/{cfg.seed}")  # explore --server's workload
    items = workload(rng, cfg.ops, rewrite_at=cfg.rewrite_before)
    pause_s = cfg.workload_duration_ms / 1000 / cfg.ops
    scratch = make_run_dir("kexplore")
    data_dir = os.path.join(recorder.root, _DATA)
    os.mkdir(data_dir)
    history = History()
    positions: list[_EntryPos] = []
    events: Counter[str] = Counter()
    marker_ms: list[int] = []
    visible: list[dict[str, bytes]] = []
    max_latency = 0
    server: Any = None
    conn: Conn | None = None

    def now_ms() -> float:
        return (time.monotonic() - t0) * 1000

    def marker(label: str) -> int:
        marker_ms.append(math.floor(now_ms()))  # before: the state at it existed from then
        recorder.marker(label)
        # One entry at a time over one connection: between two markers the server has
        # nothing to write but its timers', so its files now are its files at the marker.
        visible.append(_read_visible(data_dir))
        return len(marker_ms) - 1

    try:
        server = spec.process(data_dir, appendfsync=cfg.policy,
                              log_path=os.path.join(scratch, "server.log"),
                              aof_load_truncated=True, extra_config=_extra_config(spec, cfg))
        server.start()
        conn = Conn(server.port)
        recorder.checkpoint()  # the started server's files are the baseline
        first = marker("start")
        max_latency = _play(conn, server, items, marker, now_ms, pause_s, history, positions,
                            events)
        log_file = _LogLength(os.path.join(recorder.data_dir, "log"))
        _settle(conn, log_file, cfg.policy, cfg.window_ms + cfg.margin_ms, events)
        conn.close()
        conn = None
        marker("end")
        end_ms = math.floor(now_ms())
        server.kill()
        server = None
    finally:
        end_run(conn, server)
        shutil.rmtree(scratch, ignore_errors=True)
    rec = _Recording(None, [], first, end_ms, history, positions, max_latency, events)
    return _KernelRecording(rec, marker_ms, visible)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class _KGroup:
    """States at one crash point whose data dir is one image."""

    position: int
    point: str
    crash_ms: int
    digest: str
    state: KernelCrashState  # one of them
    count: int
    flush: bool = False  # a flush point, inside the call between markers position, position+1


def _state_dict(fs: str, state: KernelCrashState) -> dict[str, Any]:
    return {"model": fs, "kernel_state": {
        "baseline": state.baseline, "durable_writes": state.durable_writes,
        "in_flight": state.in_flight, "kept": list(state.kept)}}


def explore_kernel_server(
    config: KernelExploreConfig,
    *,
    workers: int = 1,
    mount_workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> KernelExploreResult:
    """Record `config`'s workload on the real server on the kernel filesystem, mount every
    crash state with the kernel, recover each distinct data dir once with the real binary on
    `workers` processes (mounts on `mount_workers`, default ``os.cpu_count()``) and check
    every state (see the module docstring). Raises VerifyEnvironmentError (one line) when the
    kernel recorder or the server cannot be used here."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    fs = KernelFilesystem(config.fs)
    reason = kernel_unavailable_reason(fs)
    if reason is not None:
        raise VerifyEnvironmentError(f"--model {config.fs} (the real kernel): {reason}")
    remove_stale_run_dirs()
    cfg = config.server
    spec, name, version = _spec_and_identity(cfg)
    report = progress if progress is not None else (lambda phase, done, total: None)
    mounters = mount_workers or max(1, os.cpu_count() or 1)
    started = time.monotonic()
    t0 = started
    wall_offset_ms = time.time() * 1000 - (time.monotonic() - t0) * 1000
    result = KernelExploreResult(cfg, f"{name} ({cfg.server})", version, workers,
                                 wall_offset_ms=wall_offset_ms, fs=config.fs)
    try:
        with BlockRecorder(fs, mkfs_options=config.mkfs_options) as recorder:
            report("record", 0, 1)
            krec = _record(config, spec, recorder, t0)
            result.record_s = time.monotonic() - started
            report("record", 1, 1)
            log = recorder.log()
            points_all = log.crash_points(limits=config.kernel_limits, seed=cfg.seed)
            mounter = recorder.mounter(log)
            try:
                _explore(config, result, krec, log, points_all, mounter, spec, t0, workers,
                         mounters, report)
            finally:
                mounter.close()
    except (KernelUnavailableError, KernelRecorderError) as exc:
        raise VerifyEnvironmentError(f"--model {config.fs}: {exc}") from None
    result.elapsed_s = time.monotonic() - started
    return result


def _explore(config: KernelExploreConfig, result: KernelExploreResult, krec: _KernelRecording,
             log: BlockLog, points_all: list[CrashPoint], mounter: ImageMounter,
             spec: ServerSpec, t0: float, workers: int, mounters: int,
             report: Callable[[str, int, int], None]) -> None:
    cfg = config.server
    rec = krec.rec
    fs = config.fs
    tolerance = _take_recording(result, rec)
    result.block_writes, result.flushes = len(log.writes), log.flushes
    result.markers = len(log.markers)
    if result.markers != len(krec.marker_ms):
        raise ServerExploreError(f"the block log holds {result.markers} markers, the run "
                                 f"wrote {len(krec.marker_ms)}")
    result.trace_ops = result.block_writes
    extra = _extra_config(spec, cfg)
    fr = _Frontiers(rec, cfg)
    power = PersistenceModel(_POWER_FOR_FRONTIER)

    # -- crash points from the first workload marker on
    def position(point: CrashPoint) -> int:
        return point.ordinal if point.kind is PointKind.MARKER else point.marker_before

    points = [pt for pt in points_all if position(pt) >= rec.first_point]
    result.points_total = len(points)
    if cfg.max_crash_points is not None:
        points = points[: cfg.max_crash_points]
    result.points_explored = len(points)
    unique: dict[tuple[int, int, tuple[int, ...]], KernelCrashState] = {}
    for pt in points:
        result.legal[fs] += len(pt.states) + pt.cut_off
        result.cut_max[fs] += pt.cut_off
        for state in pt.states:
            unique.setdefault(state.key, state)
    result.kernel_states = sum(len(pt.states) for pt in points)

    # -- mount each distinct state; recover each new data dir as soon as it turns up
    recoveries = _Recoveries(result, workers, spec, cfg.policy, extra, t0, cfg.stability)
    images = recoveries.images
    digest_of: dict[tuple[int, int, tuple[int, ...]], str | None] = {}  # None: no image

    mount_started = time.monotonic()
    try:
        states = list(unique.values())
        for done, got in enumerate(mounter.iter_images(
                states, workers=mounters, fsck=config.fsck,
                subdirs=itertools.repeat(_DATA))):
            result.mounted_images += 1
            if got.tree is None or got.fsck is not None:
                result.filesystem_findings.append({
                    **_state_dict(fs, got.state),
                    "finding": ("the kernel refused to mount it: " + str(got.mount_error)
                                if got.tree is None else f"fsck: {got.fsck}")})
            if got.tree is None:
                digest_of[got.state.key] = None
                continue
            digest = got.tree.digest()
            digest_of[got.state.key] = digest
            if digest not in images:
                recoveries.submit(digest, got.tree)
            if done % 32 == 0:
                report("mount", done + 1, len(states))
        report("mount", len(states), len(states))
        recoveries.drain(report)
    except BaseException:
        recoveries.close(interrupted=True)
        raise
    recoveries.close()
    result.mount_s = time.monotonic() - mount_started
    result.recover_s = result.mount_s

    # -- check
    check_started = time.monotonic()
    recoveries.match(rec.history, tolerance)
    contents = recoveries.contents
    groups: list[_KGroup] = []
    for pt in points:
        p = position(pt)
        label = (f"marker {pt.ordinal} ({pt.label})" if pt.kind is PointKind.MARKER
                 else f"flush {pt.ordinal} (after marker {pt.marker_before})")
        seen: dict[str, _KGroup] = {}
        for state in pt.states:
            image_digest = digest_of.get(state.key)
            if image_digest is None:
                result.outcomes[(fs, "mount-refused")] += 1
                continue
            group = seen.get(image_digest)
            if group is None:
                group = seen[image_digest] = _KGroup(p, label, krec.marker_ms[p], image_digest,
                                                     state, 0, pt.kind is not PointKind.MARKER)
                groups.append(group)
            group.count += 1
    result.state_groups = len(groups)
    history_at = _Histories(rec)
    # (rules, image effects, server refusal) -> (state groups and states, crash points)
    mechanisms: dict[tuple[Any, ...], tuple[Counter[str], set[int]]] = {}

    for done_groups, group in enumerate(groups):
        content = contents[group.digest]
        p = group.position
        n = fr.submitted(p)
        f = fr.frontier(p, group.crash_ms, power)
        choice = _state_dict(fs, group.state)
        where = f"{group.point} ({fs}, image {group.digest[:12]})"

        def exact(content: _Content = content, group: _KGroup = group,
                  choice: dict[str, Any] = choice, p: int = p
                  ) -> tuple[str, tuple[str, ...], Verdict]:
            return _exact(cfg, content, history_at(p), tolerance, model=fs, choice=choice,
                          position=p, crash_ms=group.crash_ms)

        def fast(content: _Content = content, f: int = f, n: int = n
                 ) -> tuple[str, tuple[str, ...]]:
            return _fast(cfg, content, f, n)

        outcome, rules, verdict = _judge(result, cfg.exact or fr.refused_pending(p),
                                         not fr.refused_pending(p), fast, exact, where)
        mechanism: tuple[Any, ...] = ()
        first_of_kind = False
        effects: tuple[str, ...] | None = None
        reason = content.recovered.reason
        if outcome == "violation":
            effects = _kernel_effects(krec.visible, group, images[group.digest].files)
            refusal = (server_reason_kind(reason) + _refusal_span(content.recovered.heals)
                       if reason else "")
            mechanism = (rules, effects, refusal)
            first_of_kind = effects is not None and mechanism not in mechanisms
        if outcome == "violation" and verdict is None and (
                first_of_kind or len(result.kernel_violations) < cfg.max_exact_violations):
            rules, verdict = _confirm(result, rules, exact, where)
            if rules != mechanism[0]:
                mechanism = (rules, *mechanism[1:])
                first_of_kind = effects is not None and mechanism not in mechanisms
        _tally(result, fs, outcome, rules, group.count)
        if outcome == "violation":
            if effects is not None:
                _count_mechanism(mechanisms, mechanism, group.count, p)
            # Every mechanism keeps its first group; beyond that, the first groups up to the
            # cap; what is left out is counted.
            if first_of_kind \
                    or len(result.kernel_violations) < max(cfg.max_exact_violations, 1):
                result.kernel_violations.append(KernelViolation(
                    p, group.point, group.crash_ms, fs, choice, group.count, rules,
                    group.digest, verdict, reason, effects, content.recovered.heals))
                _keep(result, images, history_at, group.digest, p)
            else:
                result.groups_left_out += 1
                result.states_left_out += group.count
        if done_groups % 256 == 0:
            report("check", done_groups + 1, len(groups))
    report("check", len(groups), len(groups))
    result.mechanisms = _mechanism_rows({(fs, *key): tally for key, tally in mechanisms.items()})
    result.check_s = time.monotonic() - check_started


def _kernel_effects(visible: list[dict[str, bytes]], group: _KGroup,
                    image: Mapping[str, bytes]) -> tuple[str, ...] | None:
    """What `image` lacks or resurrects against the server's files at `group`'s point: a
    marker's own files; for a flush inside the call between two markers (whose files at the
    flush nobody read), what it lacks or resurrects against both: nothing when it equals
    either (the crash lost nothing the server had written before or after the call), else
    the effects the two share (what the call itself did is in one only); None when they
    share none, or no files were read there."""
    p = group.position
    if p >= len(visible):
        return None
    before = image_effects(visible[p], image)
    if not group.flush or p + 1 >= len(visible):
        return before
    after = image_effects(visible[p + 1], image)
    if not before or not after:
        return ()
    shared = tuple(e for e in before if e in after)
    return shared or None


# ---------------------------------------------------------------------------------------------
# Reproductions: the data dir the kernel gave, and a JSON file that re-runs its recovery


def write_kernel_reproductions(
    result: KernelExploreResult, directory: Path, *, max_groups: int = 20
) -> list[dict[str, Any]]:
    """One reproduction per violation group (rules x image): the data dir as the kernel
    mounted it under ``<directory>/<n>-<rule>/image`` and ``repro.json`` beside it, which
    ``replay_kernel_reproduction`` (``aofcrash explore --server ... --replay FILE``) re-runs
    (the recovery and the judgement; the block-level state is recorded in it for reference).
    Returns one summary row per group, in ``write_server_reproductions``' shape."""
    groups: dict[tuple[tuple[str, ...], str, str | None], list[KernelViolation]] = {}
    for v in result.kernel_violations:
        groups.setdefault((v.rules, v.digest, v.mechanism), []).append(v)
    rows: list[dict[str, Any]] = []
    cfg = result.config
    for number, ((rules, digest, _), members) in enumerate(groups.items()):
        first = members[0]
        row: dict[str, Any] = {
            "rules": list(rules), "image_digest": digest,
            "states": sum(v.count for v in members),
            "crash_points": sorted({v.position for v in members}),
            "models": [result.fs], "example": first.to_dict(), "reproduction": None,
            "mechanism": first.mechanism,
        }
        if number < max_groups:
            row["reproduction"] = _save_repro(
                result, directory / f"{number:02d}-{'-'.join(rules)}", rules, digest,
                result.histories[first.position], first.verdict, {
                    "format": KERNEL_REPRO_FORMAT, "model": result.fs, "state": first.state,
                    "point": first.point, "position": first.position,
                    "crash_ms": first.crash_ms},
                f"aofcrash explore --server {cfg.server} --model {result.fs}: "
                f"{', '.join(rules)} after a power loss at {first.point} on the kernel's "
                f"{result.fs}; image/ is the data dir after the kernel mounted the crash "
                f"image; ")
        rows.append(row)
    return rows


def is_kernel_reproduction(path: Path) -> bool:
    """True when `path` is a JSON reproduction written by ``write_kernel_reproductions``."""
    with contextlib.suppress(OSError, ValueError, RecursionError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(data, dict) and data.get("format") == KERNEL_REPRO_FORMAT
    return False


def replay_kernel_reproduction(path: Path, *, server: str | None = None) -> Verdict:
    """Recover a kernel reproduction's image with its server (or `server`) and judge it again
    with the recorded history (rules 1, 2, 4, then 3). Raises ValueError (one line) for a
    file that is not one."""
    data = _load_repro(path, KERNEL_REPRO_FORMAT, "a kernel explore")
    try:
        cfg = ServerExploreConfig(
            server=server or data["server"], policy=data["policy"],
            server_config=tuple((str(k), str(v)) for k, v in data["server_config"].items()),
            window_ms=int(data["window_ms"]), margin_ms=0,
            allow_unavailable=bool(data["allow_unavailable"]))
        fs = str(data["model"])
        if fs not in KERNEL_MODELS:
            raise ValueError(f"model must be one of {', '.join(KERNEL_MODELS)}, got {fs!r}")
        history = History.from_dict(data["history"])
        files, dirs = _read_tree(str(path.parent / data["image_dir"]))
        position, crash_ms = int(data["position"]), int(data["crash_ms"])
        state = dict(data["state"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    content = _recover_again(cfg, files, dirs, data)
    tolerance = int(data["expiry_tolerance_ms"])
    _, _, verdict = _exact(cfg, content, history, tolerance, model=fs, choice=state,
                           position=position, crash_ms=crash_ms)
    return verdict
