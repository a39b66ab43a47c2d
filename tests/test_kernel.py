"""faults.kernel and faults.calibration: the real kernel's crash states as ground truth.

Needs root, /dev/fuse and loop devices (and xfsprogs/btrfs-progs for xfs/btrfs); every test
skips with the one-line reason when they are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faults import DiskImage, FileSystem, OSFileSystem, PersistenceModel
from faults.calibration import (
    WorkloadOpKind,
    claiming_model,
    compare,
    generate_workloads,
    redis_workloads,
    run_kernel,
)
from faults.kernel import (
    BlockLog,
    BlockRecorder,
    KernelFilesystem,
    KernelLimits,
    PointKind,
    kernel_unavailable_reason,
)

pytestmark = pytest.mark.real

EXT4, XFS, BTRFS = KernelFilesystem.EXT4, KernelFilesystem.XFS, KernelFilesystem.BTRFS
ROOT = Path(__file__).resolve().parents[1]


def _need(fs: KernelFilesystem) -> None:
    reason = kernel_unavailable_reason(fs)
    if reason is not None:
        pytest.skip(reason)


def _trees_at_last_marker(recorder: BlockRecorder, subdir: str) -> list[DiskImage]:
    points = [p for p in recorder.crash_points() if p.kind is PointKind.MARKER]
    mounter = recorder.mounter()
    try:
        images = [mounter.mount_image(s, subdir=subdir) for s in points[-1].states]
    finally:
        mounter.close()
    assert all(i.mount_error is None for i in images), [i.mount_error for i in images]
    return [i.tree for i in images if i.tree is not None]


Row = Callable[[OSFileSystem], None]


def _row(recorder: BlockRecorder, name: str, ops: Row) -> list[DiskImage]:
    """FACTS.md's setup (d/C and d/P durable) in its own directory, then `ops`, then a marker;
    the kernel's trees of `d` at that marker."""
    base = os.path.join(recorder.root, name)
    os.makedirs(os.path.join(base, "d"))
    fs = OSFileSystem(base)
    for path in ("d/C", "d/P"):
        fd = fs.open(path, os.O_WRONLY | os.O_CREAT)
        fs.write(fd, b"old " + path.encode() + b"." * 3000)
        fs.fsync(fd)
        fs.close(fd)
    recorder.checkpoint()
    ops(fs)
    recorder.marker(f"{name}:end")
    return _trees_at_last_marker(recorder, os.path.join(name, "d"))


def _create(fs: OSFileSystem, path: str, sync: str = "") -> None:
    fd = fs.open(path, os.O_WRONLY | os.O_CREAT)
    fs.write(fd, b"A" * 10_000)
    if sync == "fsync":
        fs.fsync(fd)
    elif sync == "fdatasync":
        fs.fdatasync(fd)
    fs.close(fd)


def _sync_other(fs: OSFileSystem, path: str, how: str) -> None:
    fd = fs.open(path, os.O_WRONLY)
    if how == "fsync":
        fs.fsync(fd)
    else:
        fs.fdatasync(fd)
    fs.close(fd)


def _create_then_sync_p(fs: OSFileSystem) -> None:
    _create(fs, "d/A")
    _sync_other(fs, "d/P", "fsync")


def _rename_over_c(how: str) -> Row:
    def ops(fs: OSFileSystem) -> None:
        _create(fs, "d/B", "fsync")
        fs.rename("d/B", "d/C")
        if how:
            _sync_other(fs, "d/C", how)

    return ops


@pytest.fixture(scope="module")
def ext4() -> Iterator[BlockRecorder]:
    _need(EXT4)
    with BlockRecorder(EXT4) as recorder:
        yield recorder


# -- the recorder ---------------------------------------------------------------------------


def test_the_log_holds_writes_flushes_and_markers_in_one_order(ext4: BlockRecorder) -> None:
    os.mkdir(os.path.join(ext4.root, "roundtrip"))
    ext4.checkpoint()
    ext4.marker("rt:before")
    path = os.path.join(ext4.root, "roundtrip", "A")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 10_000)
    ext4.marker("rt:written")
    os.fsync(fd)
    os.close(fd)
    ext4.marker("rt:synced")
    log = ext4.log()
    events = [(kind, str(payload)) for kind, _, payload in log.events if kind in "FM"]
    marks = [events.index(("M", label)) for label in ("rt:before", "rt:written", "rt:synced")]
    assert marks == sorted(marks)
    # An fsync that commits something is at least one flush, and its data reached the log.
    assert any(kind == "F" for kind, _ in events[marks[1] : marks[2]])
    data = [log.write_bytes(n) for n in range(len(log.writes))]
    assert any(b"x" * 4096 in chunk for chunk in data)
    # A fresh parse of the same bytes gives the same log.
    again = BlockLog(log.raw)
    assert again.events == log.events and len(again.writes) == len(log.writes)


def test_an_image_has_the_data_after_its_fsync_and_not_before(ext4: BlockRecorder) -> None:
    os.mkdir(os.path.join(ext4.root, "sync"))
    ext4.checkpoint()
    path = os.path.join(ext4.root, "sync", "A")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"y" * 10_000)
    ext4.marker("sync:written")
    os.fsync(fd)
    os.close(fd)
    ext4.marker("sync:synced")
    points = {p.label: p for p in ext4.crash_points() if p.kind is PointKind.MARKER}
    mounter = ext4.mounter()
    try:
        before = [mounter.mount_image(s, subdir="sync").tree
                  for s in points["sync:written"].states]
        after = [mounter.mount_image(s, subdir="sync").tree
                 for s in points["sync:synced"].states]
    finally:
        mounter.close()
    assert before and all(t is not None and "A" not in t for t in before)
    assert after and all(t is not None and t.files.get("A") == b"y" * 10_000 for t in after)


def test_crash_states_are_deterministic_and_count_what_the_limits_cut(
    ext4: BlockRecorder,
) -> None:
    limits = KernelLimits(max_prefixes=2, max_subsets=1)
    first = ext4.crash_points(limits=limits, seed=7)
    assert first == ext4.crash_points(limits=limits, seed=7)
    for point in first:
        n = point.states[0].in_flight
        assert point.cut_off == 2**n - len(point.states)
        assert len({s.key for s in point.states}) == len(point.states)


def test_fsck_runs_on_request_and_finds_a_recorded_image_clean(ext4: BlockRecorder) -> None:
    os.mkdir(os.path.join(ext4.root, "fsck"))
    ext4.checkpoint()
    fd = os.open(os.path.join(ext4.root, "fsck", "A"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"f" * 5000)
    os.fsync(fd)
    os.close(fd)
    ext4.marker("fsck:synced")
    point = [p for p in ext4.crash_points() if p.kind is PointKind.MARKER][-1]
    mounter = ext4.mounter()
    try:
        checked = mounter.mount_image(point.states[0], fsck=True, subdir="fsck")
        unchecked = mounter.mount_image(point.states[0], subdir="fsck")
    finally:
        mounter.close()
    assert checked.fsck_ran and checked.fsck is None and checked.mount_error is None
    assert not unchecked.fsck_ran
    assert checked.tree == unchecked.tree and checked.tree is not None
    assert checked.tree.files == {"A": b"f" * 5000}


def _count_and_write(path: str) -> int:
    """What a server's recovery does: read what is there, then write on the image."""
    names = sorted(os.listdir(os.path.join(path, "visit")))
    with open(os.path.join(path, "visit", "recovered"), "wb") as fh:
        fh.write(b"ok")
    return len(names)


def test_a_mounted_image_is_writable_and_fn_runs_on_each_one(ext4: BlockRecorder) -> None:
    os.mkdir(os.path.join(ext4.root, "visit"))
    ext4.checkpoint()
    for i in range(2):
        fd = os.open(os.path.join(ext4.root, "visit", f"f{i}"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"v" * 100)
        os.fsync(fd)
        os.close(fd)
        ext4.marker(f"visit:{i}")
    points = [p for p in ext4.crash_points() if p.label.startswith("visit:")]
    states = [p.states[-1] for p in points]
    mounter = ext4.mounter()
    try:
        with mounter.mounted(states[0]) as path:
            assert sorted(os.listdir(os.path.join(path, "visit"))) == ["f0"]
        results = list(mounter.map_mounted(_count_and_write, states, workers=2))
        again = list(mounter.map_mounted(_count_and_write, states))
    finally:
        mounter.close()
    # Each visit sees its own fresh image: what an earlier visit wrote is gone.
    assert [(r, e) for _, r, e in results] == [(1, None), (2, None)]
    assert [r for _, r, _ in again] == [1, 2]
    assert not os.path.exists(path)


def _synthetic_log(in_flight: int) -> BlockLog:
    from faults._blockdaemon import RECORD

    raw = RECORD.pack(b"B", 0, 0) + RECORD.pack(b"W", 0, 3) + b"abc" + RECORD.pack(b"F", 0, 0)
    for i in range(in_flight):
        raw += RECORD.pack(b"W", 4096 * (i + 1), 2) + b"xy"
    raw += RECORD.pack(b"M", 0, 4) + b"mark"
    return BlockLog(raw)


def test_in_flight_writes_give_prefixes_then_seeded_subsets_with_the_rest_counted() -> None:
    log = _synthetic_log(20)
    limits = KernelLimits(max_prefixes=5, max_subsets=3)
    points = log.crash_points(limits=limits, seed=1)
    assert [p.kind for p in points] == [PointKind.FLUSH, PointKind.MARKER]
    flush, marker = points
    assert flush.states[0].durable_writes == 1 and flush.states[0].kept == ()
    kept = [s.kept for s in marker.states]
    assert kept[:5] == [tuple(range(1, 1 + n)) for n in (0, 5, 10, 15, 20)]
    assert len(kept) == 8 and len(set(kept)) == 8
    assert all(set(k) <= set(range(1, 21)) for k in kept)
    assert marker.cut_off == 2**20 - 8
    assert log.crash_points(limits=limits, seed=1) == points
    assert log.crash_points(limits=limits, seed=2) != points
    # Few in-flight writes: every subset when they fit the limits, nothing cut.
    small = _synthetic_log(2).crash_points(limits=limits)[-1]
    assert {s.kept for s in small.states} == {(), (1,), (2,), (1, 2)} and small.cut_off == 0
    three = _synthetic_log(3).crash_points(limits=limits)[-1]
    assert len(three.states) == 4 + 3 and three.cut_off == 1


def test_an_image_file_is_the_baseline_plus_exactly_the_writes_of_its_state(
    tmp_path: Path,
) -> None:
    log = _synthetic_log(3)  # write 0 "abc" at 0 (durable), then "xy" at 4096, 8192, 12288
    baseline = tmp_path / "baseline"
    baseline.write_bytes(b"B" * 16384)
    marker = log.crash_points()[-1]
    state = next(s for s in marker.states if s.kept == (1, 3))
    log.write_image(state, str(baseline), str(tmp_path / "image"))
    image = (tmp_path / "image").read_bytes()
    expected = bytearray(b"B" * 16384)
    expected[0:3] = b"abc"
    expected[4096:4098] = b"xy"
    expected[12288:12290] = b"xy"
    assert image == bytes(expected)


# -- FACTS.md's table on the kernel ---------------------------------------------------------


def _only(trees: list[DiskImage], path: str) -> set[bytes | None]:
    return {t.files.get(path) for t in trees}


def test_ext4_keeps_a_created_file_in_full_after_its_fsync(ext4: BlockRecorder) -> None:
    trees = _row(ext4, "facts-fsync", lambda fs: _create(fs, "d/A", "fsync"))
    assert _only(trees, "A") == {b"A" * 10_000}


def test_ext4_loses_a_created_file_that_nothing_synced(ext4: BlockRecorder) -> None:
    trees = _row(ext4, "facts-nothing", lambda fs: _create(fs, "d/A"))
    assert _only(trees, "A") == {None}


def test_ext4_keeps_a_rename_over_c_after_an_fsync_of_c(ext4: BlockRecorder) -> None:
    trees = _row(ext4, "facts-rename-fsync", _rename_over_c("fsync"))
    assert _only(trees, "C") == {b"A" * 10_000}


def test_ext4_loses_a_rename_when_only_fdatasync_follows(ext4: BlockRecorder) -> None:
    trees = _row(ext4, "facts-rename-fdatasync", _rename_over_c("fdatasync"))
    assert _only(trees, "C") == {b"old d/C" + b"." * 3000}
    assert _only(trees, "B") == {b"A" * 10_000}


def test_xfs_keeps_a_rename_when_only_fdatasync_follows() -> None:
    _need(XFS)
    with BlockRecorder(XFS) as recorder:
        trees = _row(recorder, "facts-rename-fdatasync", _rename_over_c("fdatasync"))
    assert _only(trees, "C") == {b"A" * 10_000}


def test_btrfs_does_not_commit_an_unrelated_create_with_an_fsync() -> None:
    _need(BTRFS)
    with BlockRecorder(BTRFS) as recorder:
        trees = _row(recorder, "facts-unrelated", _create_then_sync_p)
    assert _only(trees, "A") == {None}


# -- calibration ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_calibration_set_runs_and_tells_models_apart() -> None:
    _need(EXT4)
    workloads = generate_workloads(10, seed=1)
    assert [w.name for w in workloads[:2]] == [w.name for w in redis_workloads()]
    run = run_kernel(EXT4, workloads, workers=2)
    for workload, points in zip(workloads, run.points, strict=True):
        start = next(p for p in points if p.kind is PointKind.MARKER)
        assert start.label == "start"
        assert start.trees == (workload.setup_image(),), workload.name
    models = (claiming_model(EXT4), PersistenceModel.POWER_EAGER_METADATA)
    figures = {f.model: f for f in compare(run, workloads, dict.fromkeys(models))}
    # The kernel never keeps Redis 6's temp file name at open: eager metadata claims it does.
    eager = figures[PersistenceModel.POWER_EAGER_METADATA]
    assert any(m.workload == "redis6-rewrite" for m in eager.missed)
    # Every state the kernel produced is one the claiming model allows.
    claimed = figures[claiming_model(EXT4)]
    assert claimed.claims
    assert claimed.missed == []


# -- no leftovers ---------------------------------------------------------------------------

_VICTIM = textwrap.dedent("""
    import os, sys
    from faults.kernel import BlockRecorder, KernelFilesystem, iter_unique
    with BlockRecorder(KernelFilesystem.EXT4) as recorder:
        for i in range(3):
            fd = os.open(os.path.join(recorder.root, f"f{i}"), os.O_WRONLY | os.O_CREAT)
            os.write(fd, b"z" * 5000)
            os.fsync(fd)
            os.close(fd)
            recorder.marker(str(i))
        states = list(iter_unique(recorder.crash_points()))
        print(recorder.workdir, recorder.device, flush=True)
        mounter = recorder.mounter()
        while True:  # mount images on two workers until killed
            for image in mounter.iter_images(states, workers=2):
                print("mounted", flush=True)
""")


def _leftovers(workdir: str, token: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        found += [line.split()[4] for line in fh if workdir in line]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False)
    found += [line for line in loops.stdout.splitlines() if workdir in line]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().decode(errors="replace")
            except OSError:
                continue
            if (token in cmdline or workdir in cmdline) and int(pid) != os.getpid():
                found.append(f"pid {pid}: {cmdline!r}")
    if os.path.exists(workdir):
        found.append(workdir)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_a_killed_harness_leaves_no_loop_device_mount_or_process(signum: int) -> None:
    _need(EXT4)
    token = f"aofcrash-kernel-victim-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, token], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    try:
        assert victim.stdout is not None
        workdir, device = victim.stdout.readline().split()
        assert victim.stdout.readline().strip() == "mounted"  # workers are mounting now
        assert _leftovers(workdir, token)  # the check sees a live recording
        # Ctrl-C reaches the whole process group (the image workers too), as from a terminal.
        os.killpg(victim.pid, signum)
        victim.wait(timeout=120)  # a bound, not a speed: mounts under load are slow
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    left: list[str] = []
    for _ in range(150):
        left = _leftovers(workdir, token)
        if not left:
            break
        time.sleep(0.1)
    assert left == []
    backing = Path(f"/sys/block/{os.path.basename(device)}/loop/backing_file")
    assert not backing.exists() or workdir not in backing.read_text()  # detached or reused


# -- availability ---------------------------------------------------------------------------


def test_unavailability_is_one_line_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = kernel_unavailable_reason(EXT4)
    assert reason is not None and "root" in reason and "\n" not in reason
    monkeypatch.undo()
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("the next check needs a machine where only the tools are missing")
    monkeypatch.setenv("PATH", str(tmp_path))  # no mkfs, no fusermount3
    reason = kernel_unavailable_reason(XFS)
    assert reason is not None and "mkfs.xfs" in reason and "xfsprogs" in reason
    with pytest.raises(TypeError):
        kernel_unavailable_reason("ext4")  # type: ignore[arg-type]


# -- public surface -------------------------------------------------------------------------


def test_the_kernel_and_calibration_modules_export_exactly_their_intended_names() -> None:
    import faults
    import faults.calibration
    import faults.kernel

    assert set(faults.kernel.__all__) == {
        "BlockLog", "BlockRecorder", "CrashPoint", "ImageMountRefused", "ImageMounter",
        "KernelCrashImage",
        "KernelCrashState", "KernelFilesystem", "KernelLimits", "KernelRecorderError",
        "KernelUnavailableError", "PointKind", "iter_unique", "kernel_unavailable_reason",
        "read_tree"}
    assert set(faults.calibration.__all__) == {
        "KernelPoint", "KernelRun", "MissedState", "ModelFigures", "ModelRun",
        "OverApproximation",
        "Workload", "WorkloadOp", "WorkloadOpKind", "claiming_model", "compare",
        "generate_workloads", "power_models", "redis_workloads", "run_kernel", "run_model",
        "summarize"}
    for module in (faults.kernel, faults.calibration):
        for name in module.__all__:
            assert getattr(module, name).__module__.startswith("faults"), name
    # The package itself does not pull in the root-only part.
    assert "kernel" not in faults.__all__ and "calibration" not in faults.__all__


def test_every_generated_workload_runs_on_a_simdisk_without_an_error() -> None:
    from faults import SimDisk

    kinds: set[WorkloadOpKind] = set()
    for workload in generate_workloads(600, seed=11):
        disk = SimDisk.from_image(workload.setup_image())
        labels: list[str] = []
        workload.run(disk, labels.append)
        assert len(labels) >= len(workload.ops)
        kinds.update(op.kind for op in workload.ops)
    assert kinds == set(WorkloadOpKind)


def test_workloads_are_deterministic_and_start_with_the_redis_sequences() -> None:
    first = generate_workloads(30, seed=3)
    assert first == generate_workloads(30, seed=3)
    assert first != generate_workloads(30, seed=4)
    assert [w.name for w in first[:2]] == ["redis6-rewrite", "redis7-manifest"]
    assert all(1 <= len(w.ops) <= 4 for w in first[2:])  # 1-3 ops plus a persistence point


# -- a media error under the filesystem: the EIO model checked against the kernel -------------

_MEDIA_ERROR = b"<media-error-pattern>"  # written into the data whose pages are to fail


def _failed_fsync_then_more(fs: FileSystem, fail: Callable[[bytes], None],
                            mark: Callable[[str], None]) -> list[str]:
    """16 KiB synced; 8 KiB whose write-back fails (fsync: EIO); 4 KiB more, synced. Returns
    what each fsync answered."""
    answers = []
    fd = fs.open("f", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for data, failing in ((b"a" * 16384, False),
                          ((_MEDIA_ERROR * 400)[:8192], True), (b"c" * 4096, False)):
        fail(_MEDIA_ERROR if failing else b"")
        fs.write(fd, data)
        try:
            fs.fsync(fd)
            answers.append("ok")
        except OSError as exc:
            answers.append(os.strerror(exc.errno or 0))
        fail(b"")
        mark(f"eio:{len(answers)}")
    fs.close(fd)
    return answers


@pytest.mark.parametrize("fs", [EXT4, XFS, BTRFS], ids=lambda f: f.value)
def test_a_failed_fsync_leaves_zeros_under_the_next_one_on_the_kernel_as_the_model_says(
    fs: KernelFilesystem,
) -> None:
    # Measured (ext4, xfs, btrfs alike): the fsync whose data pages fail to write returns EIO
    # and commits nothing (the file keeps its synced size); the next fsync succeeds and commits
    # the new size, so the failed range reads as zeros under the 4 KiB written after it. This
    # is the model's "EIO zero-fill" (docs/contract.md), so each model allows it.
    from faults import FaultOp, FaultPlan, FaultyFileSystem, IOFault, SimDisk

    _need(fs)
    with BlockRecorder(fs) as recorder:
        os.mkdir(os.path.join(recorder.root, "eio"))
        recorder.checkpoint()
        answers = _failed_fsync_then_more(OSFileSystem(os.path.join(recorder.root, "eio")),
                                          recorder.fail_writes_containing, recorder.marker)
        points = {p.label: p for p in recorder.crash_points() if p.kind is PointKind.MARKER}
        failed = recorder.log().failed_writes
        mounter = recorder.mounter()
        try:
            kernel = {label: {mounter.mount_image(s, subdir="eio").tree.files["f"]
                              for s in points[label].states} for label in ("eio:2", "eio:3")}
        finally:
            mounter.close()
    assert answers == ["ok", os.strerror(5), "ok"]
    assert failed >= 1  # the failed block writes are in the log, not on the disk
    assert kernel == {"eio:2": {b"a" * 16384},
                      "eio:3": {b"a" * 16384 + bytes(8192) + b"c" * 4096}}

    model = claiming_model(fs)
    disk = SimDisk()
    images: dict[str, set[bytes]] = {}

    def model_images(label: str) -> None:
        images[label] = {disk.crash(model, choice)["f"]
                         for choice in disk.crash_choices(model)}

    faulty = FaultyFileSystem(disk, FaultPlan((IOFault(op=FaultOp.FSYNC, nth=2),)))
    assert _failed_fsync_then_more(faulty, lambda _: None, model_images) == answers
    assert kernel["eio:2"] <= images["eio:2"] and kernel["eio:3"] <= images["eio:3"]
    assert all(_MEDIA_ERROR not in image for image in images["eio:3"])  # never the lost data
