"""SimDisk: agreement with a real directory, persistence models, crash choices, replay."""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import (
    CrashChoice,
    CrashChoiceError,
    DiskImage,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    FileChoice,
    FileStat,
    FsyncFailure,
    ImageKind,
    ImageLimits,
    IOFault,
    Op,
    OpenFile,
    OSFileSystem,
    PersistenceModel,
    ReplayCursor,
    SimDisk,
    garbage_sector,
)

POWER = PersistenceModel.POWER
EAGER = PersistenceModel.POWER_EAGER_METADATA
PROCESS = PersistenceModel.PROCESS
APPEND = os.O_CREAT | os.O_WRONLY | os.O_APPEND


# -- agreement with a real directory -------------------------------------------------------------

PATHS = ["", "a", "b", "d", "d/a", "d/e", "a/x", "e"]
ACCESS = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]
EXTRA = [0, os.O_CREAT, os.O_CREAT | os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_CREAT | os.O_APPEND,
         os.O_CREAT | os.O_TRUNC]

paths = st.sampled_from(PATHS)
handles = st.integers(0, 7)
operations = st.one_of(
    st.tuples(st.just("open"), paths, st.sampled_from(ACCESS), st.sampled_from(EXTRA)),
    st.tuples(st.just("write"), handles, st.binary(max_size=700)),
    st.tuples(st.just("read"), handles, st.integers(0, 800)),
    st.tuples(st.just("lseek"), handles, st.integers(-5, 900), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("ftruncate"), handles, st.integers(-1, 900)),
    st.tuples(st.sampled_from(["fsync", "fdatasync", "close"]), handles),
    st.tuples(st.just("rename"), paths, paths),
    st.tuples(st.sampled_from(["unlink", "mkdir", "listdir", "stat", "exists", "fsync_dir"]),
              paths),
)


def _call(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, exc.errno))


def _run_both(ops: list[tuple[Any, ...]]) -> None:
    sim = SimDisk()
    with tempfile.TemporaryDirectory() as root:
        real = OSFileSystem(root)
        open_pairs: list[tuple[int, int]] = []
        dir_fds: set[int] = set()
        try:
            for step, op in enumerate(ops):
                kind = op[0]
                if kind in ("open", "rename", "unlink", "mkdir", "listdir", "stat", "exists",
                            "fsync_dir"):
                    args = op[1:] if kind != "open" else (op[1], op[2] | op[3])
                    got_sim = _call(getattr(sim, kind), *args)
                    got_real = _call(getattr(real, kind), *args)
                    if kind == "open":
                        if got_sim[0] == got_real[0] == "ok":
                            open_pairs.append((got_sim[1], got_real[1]))
                            if sim.stat(args[0]).is_dir:
                                dir_fds.add(got_sim[1])
                            got_sim = got_real = ("ok", "fd")
                    elif kind == "stat" and got_sim[0] == got_real[0] == "ok":
                        # A directory's st_size is filesystem-specific.
                        got_sim = ("ok", _stat_view(got_sim[1]))
                        got_real = ("ok", _stat_view(got_real[1]))
                    assert got_sim == got_real, f"step {step}: {op}"
                    continue
                if not open_pairs:
                    continue
                sfd, rfd = open_pairs[op[1] % len(open_pairs)]
                if kind == "lseek" and sfd in dir_fds:
                    continue  # seeking in a directory is filesystem-specific
                rest = op[2:]
                got_sim = _call(getattr(sim, kind), sfd, *rest)
                got_real = _call(getattr(real, kind), rfd, *rest)
                assert got_sim == got_real, f"step {step}: {op}"
                if kind == "close" and got_sim[0] == "ok":
                    open_pairs.remove((sfd, rfd))
            assert sim.visible_image() == _real_image(root)
        finally:
            for _, rfd in open_pairs:
                os.close(rfd)


def _stat_view(st: FileStat) -> tuple[bool, int]:
    return (st.is_dir, 0 if st.is_dir else st.size_bytes)


def _real_image(root: str) -> DiskImage:
    files: dict[str, bytes] = {}
    dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        dirs.extend(os.path.join(rel, d) if rel else d for d in dirnames)
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                files[os.path.join(rel, name) if rel else name] = fh.read()
    return DiskImage(files, dirs)


@given(st.lists(operations, max_size=40))
def test_simdisk_agrees_with_a_real_directory_on_random_operations(
    ops: list[tuple[Any, ...]],
) -> None:
    _run_both(ops)


def test_simdisk_agrees_with_a_real_directory_on_the_tricky_cases() -> None:
    _run_both([
        ("mkdir", "d"),
        ("open", "a", os.O_RDWR, os.O_CREAT),
        ("write", 0, b"hello world"),
        ("lseek", 0, 20, 0),
        ("write", 0, b""),  # an empty write past EOF does not extend the file
        ("write", 0, b"!"),  # past EOF: zero-filled gap
        ("open", "d", os.O_RDONLY, 0),
        ("read", 1, 10),  # EISDIR
        ("write", 1, b"x"),  # EBADF: directory fds are read-only
        ("open", "d", os.O_RDONLY, os.O_CREAT),  # EISDIR
        ("open", "d/a", os.O_WRONLY, os.O_CREAT | os.O_EXCL),
        ("open", "d/a", os.O_WRONLY, os.O_CREAT | os.O_EXCL),  # EEXIST
        ("rename", "a", "d"),  # EISDIR
        ("rename", "d", "a"),  # ENOTDIR
        ("rename", "d", "d/e"),  # EINVAL
        ("rename", "nope", "a/x"),  # ENOTDIR
        ("rename", "a", "d/a"),  # replaces the open file d/a
        ("unlink", "d/a"),  # the fd of the unlinked file stays usable
        ("write", 0, b"still here"),
        ("lseek", 0, 0, 0),
        ("read", 0, 100),
        ("ftruncate", 2, 3),
        ("unlink", "d"),  # EISDIR
        ("listdir", "a/x"),
        ("fsync_dir", "a"),
        ("rename", "", "e"),  # EINVAL: the root would move into itself
        ("rename", "b", ""),  # ENOENT
        ("rename", "a", ""),  # ENOTEMPTY
        ("open", "a", os.O_RDONLY, os.O_TRUNC),
    ])


def test_unlinking_an_open_file_keeps_its_fd_readable_and_writable() -> None:
    disk = SimDisk()
    fd = disk.open("f", os.O_CREAT | os.O_RDWR)
    disk.write(fd, b"abc")
    disk.unlink("f")
    assert not disk.exists("f")
    assert disk.write(fd, b"def") == 3
    disk.lseek(fd, 0, os.SEEK_SET)
    assert disk.read(fd, 10) == b"abcdef"
    assert disk.visible_image().files == {}


def test_rename_over_an_existing_file_replaces_it_in_one_step() -> None:
    disk = SimDisk()
    for name, content in (("aof", b"old"), ("tmp", b"new")):
        fd = disk.open(name, os.O_CREAT | os.O_WRONLY)
        disk.write(fd, content)
        disk.close(fd)
    disk.rename("tmp", "aof")
    assert disk.visible_image().files == {"aof": b"new"}
    assert disk.listdir("") == ["aof"]


def test_operations_on_unknown_fds_fail_with_ebadf() -> None:
    disk = SimDisk()
    for call in (lambda: disk.write(99, b"x"), lambda: disk.read(99, 1),
                 lambda: disk.fsync(99), lambda: disk.close(99), lambda: disk.ftruncate(99, 0)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF


# -- persistence models --------------------------------------------------------------------------


def _images(disk: SimDisk, model: PersistenceModel, **kw: Any) -> list[DiskImage]:
    return [disk.crash(model, c) for c in disk.crash_choices(model, limits=ImageLimits(**kw))]


def test_power_loss_can_lose_unsynced_data_but_never_synced_data() -> None:
    disk = SimDisk()
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"A" * 700)
    disk.fsync(fd)
    disk.write(fd, b"B" * 900)
    contents = [img["aof"] for img in _images(disk, POWER)]
    assert b"A" * 700 in contents  # the unsynced tail can vanish entirely
    assert b"A" * 700 + b"B" * 900 in contents  # or survive entirely
    assert b"A" * 700 + b"B" * (1024 - 700) in contents  # or up to a sector boundary
    assert all(c.startswith(b"A" * 700) for c in contents)
    assert disk.crash(PROCESS)["aof"] == b"A" * 700 + b"B" * 900


appends = st.lists(
    st.one_of(st.tuples(st.just("write"), st.binary(min_size=1, max_size=1500)),
              st.tuples(st.just("fsync"), st.just(b""))),
    max_size=12,
)


@given(appends)
def test_synced_data_is_a_prefix_of_every_power_loss_image(ops: list[tuple[str, bytes]]) -> None:
    disk = SimDisk()
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    synced = written = b""
    for kind, data in ops:
        if kind == "write":
            disk.write(fd, data)
            written += data
        else:
            disk.fsync(fd)
            synced = written
    images = _images(disk, POWER, byte_granularity=True)
    assert all(img["aof"].startswith(synced) for img in images)
    assert {img["aof"] for img in images} >= {synced, written}
    assert disk.crash(POWER).files == {"aof": synced}


def test_rename_without_fsync_dir_can_be_undone_under_strict_metadata() -> None:
    disk = _rewrite_swap(fsync_dir=False)
    strict = {img["aof"] for img in _images(disk, POWER)}
    assert strict == {b"old", b"new"}
    eager = {img["aof"] for img in _images(disk, EAGER)}
    assert eager == {b"new"}


def test_rename_followed_by_fsync_dir_survives_under_every_model() -> None:
    disk = _rewrite_swap(fsync_dir=True)
    for model in (POWER, EAGER, PROCESS):
        assert {img["aof"] for img in _images(disk, model)} == {b"new"}


def _rewrite_swap(*, fsync_dir: bool) -> SimDisk:
    disk = SimDisk()
    for name, content in (("aof", b"old"), ("tmp", b"new")):
        fd = disk.open(name, os.O_CREAT | os.O_WRONLY)
        disk.write(fd, content)
        disk.fsync(fd)
        disk.close(fd)
        if name == "aof":
            disk.fsync_dir("")
    disk.rename("tmp", "aof")
    if fsync_dir:
        disk.fsync_dir("")
    return disk


def test_metadata_prefixes_keep_program_order() -> None:
    disk = SimDisk()
    disk.mkdir("d")
    fd = disk.open("d/f", os.O_CREAT | os.O_WRONLY)
    disk.close(fd)
    choices = list(disk.crash_choices(POWER))
    assert [c.metadata_kept for c in choices] == [0, 1, 2]
    assert [disk.crash(POWER, c) for c in choices] == [
        DiskImage({}, []), DiskImage({}, ["d"]), DiskImage({"d/f": b""}, ["d"])
    ]


def test_fsync_dir_commits_the_whole_journal_under_ext4_and_only_its_directory_under_posix(
) -> None:
    disk = SimDisk()
    disk.mkdir("d")
    disk.fsync_dir("")
    disk.close(disk.open("top", os.O_CREAT | os.O_WRONLY))
    disk.close(disk.open("d/inner", os.O_CREAT | os.O_WRONLY))
    disk.close(disk.open("later", os.O_CREAT | os.O_WRONLY))
    disk.fsync_dir("d")
    # A journal commit writes every operation recorded so far, in any directory.
    assert disk.pending_metadata == 0
    assert disk.crash(POWER).files == {"top": b"", "d/inner": b"", "later": b""}
    # The POSIX minimum settles only what changed "d".
    posix = PersistenceModel.POWER_POSIX_METADATA
    assert disk.crash(posix).files == {"d/inner": b""}


def test_a_create_in_a_directory_whose_mkdir_is_pending_is_not_dropped_by_fsync_dir() -> None:
    disk = SimDisk()
    disk.mkdir("appendonlydir")  # parent never fsynced, as Redis 7 does
    fd = disk.open("appendonlydir/incr", os.O_CREAT | os.O_WRONLY)
    disk.write(fd, b"data")
    disk.fsync(fd)
    disk.fsync_dir("appendonlydir")
    assert disk.pending_metadata == 0
    assert disk.crash(POWER).files == {"appendonlydir/incr": b"data"}
    assert disk.crash(PersistenceModel.POWER_EAGER_METADATA).files == {
        "appendonlydir/incr": b"data"
    }


@pytest.mark.parametrize(("semantics", "survives"), [(FsyncFailure.LINUX, False),
                                                     (FsyncFailure.RETRY, True)])
def test_failed_fsync_loses_data_under_linux_even_after_a_later_successful_fsync(
    semantics: FsyncFailure, survives: bool
) -> None:
    disk = SimDisk(fsync_failure=semantics)
    fs = FaultyFileSystem(disk, FaultPlan((IOFault(op=FaultOp.FSYNC, nth=2),)))
    fd = fs.open("aof", APPEND)
    fs.fsync_dir("")
    fs.write(fd, b"first")
    fs.fsync(fd)
    fs.write(fd, b"second")
    with pytest.raises(OSError) as info:
        fs.fsync(fd)
    assert info.value.errno == errno.EIO
    fs.fsync(fd)  # succeeds
    expected = b"firstsecond" if survives else b"first" + bytes(6)
    assert disk.crash(POWER)["aof"] == expected
    assert disk.crash(PROCESS)["aof"] == b"firstsecond"  # the page cache still has it
    fd2 = fs.open("aof", os.O_WRONLY)
    fs.lseek(fd2, 5, os.SEEK_SET)
    fs.write(fd2, b"SECOND")  # rewriting the range makes it dirty again
    fs.fsync(fd2)
    assert disk.crash(POWER)["aof"] == b"firstSECOND"


def test_failed_fsync_under_linux_hides_the_range_from_every_crash_image() -> None:
    disk = SimDisk()
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"x" * 1000)
    disk.fail_fsync(fd)
    images = _images(disk, POWER, torn=False)
    assert len(images) > 2
    assert {bytes(set(img["aof"])) for img in images if img["aof"]} == {b"\0"}
    assert disk.trace[-1].op is Op.FSYNC_FAILED


def _zeros_then_data(content: bytes) -> bool:
    """Whether `content` has a zero byte with a non-zero byte somewhere after it."""
    first_zero = content.find(b"\0")
    return first_zero >= 0 and content.rstrip(b"\0") != content[:first_zero].rstrip(b"\0")


@pytest.mark.parametrize("model", [POWER, PersistenceModel.POWER_POSIX_METADATA,
                                   PersistenceModel.POWER_XFS, PersistenceModel.POWER_BTRFS])
def test_a_write_into_a_page_a_failed_fsync_dropped_makes_the_whole_page_dirty_again(
    model: PersistenceModel,
) -> None:
    # Linux writes back pages: the dropped bytes are still in the page cache and go to the disk
    # with the new ones. Found by the CI smoke campaign: bytes per range let an everysec server
    # leave zeros in the middle of its AOF, which no loader takes.
    disk = SimDisk()
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"a" * 100)
    disk.fsync(fd)
    disk.write(fd, b"b" * 50)
    disk.fail_fsync(fd)
    assert disk.inode_at("aof").dropped_ranges == ((100, 150),)
    disk.write(fd, b"c" * 30)
    assert disk.inode_at("aof").dropped_ranges == ()
    contents = {img["aof"] for img in _images(disk, model, torn=False)}
    assert b"a" * 100 + b"b" * 50 + b"c" * 30 in contents
    assert not any(_zeros_then_data(c) for c in contents)
    disk.fsync(fd)
    assert disk.crash(model)["aof"] == b"a" * 100 + b"b" * 50 + b"c" * 30


def test_pages_a_failed_fsync_dropped_stay_zero_below_data_written_to_later_pages() -> None:
    disk = SimDisk()
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"a" * 100)
    disk.fsync(fd)
    disk.write(fd, b"b" * 5000)  # pages 0 and 1: [100, 5100)
    disk.fail_fsync(fd)
    disk.write(fd, b"c" * 30)  # page 1 only: its dropped part [4096, 5100) is dirty again
    assert disk.inode_at("aof").dropped_ranges == ((100, 4096),)
    disk.fsync(fd)
    assert disk.crash(POWER)["aof"] == b"a" * 100 + bytes(3996) + b"b" * 1004 + b"c" * 30


def test_overwrite_below_the_durable_length_offers_durable_or_new_prefixes() -> None:
    disk = SimDisk()
    fd = disk.open("f", os.O_CREAT | os.O_RDWR)
    disk.fsync_dir("")
    disk.write(fd, b"a" * 1024)
    disk.fsync(fd)
    disk.ftruncate(fd, 100)
    disk.lseek(fd, 100, os.SEEK_SET)
    disk.write(fd, b"b" * 600)
    contents = {img["f"] for img in _images(disk, POWER)}
    assert contents == {b"a" * 1024, b"a" * 100, b"a" * 100 + b"b" * 412,
                        b"a" * 100 + b"b" * 600}
    # Opt-in (the kernel does it): IN_PLACE, the durable size over blocks written in place
    # before the truncate and the write were committed (the truncate zeroed its block's tail).
    with_in_place = {img["f"] for img in _images(disk, POWER, in_place=True)}
    assert with_in_place == contents | {b"a" * 100 + b"b" * 600 + bytes(324)}


def test_torn_and_reordered_images_are_off_unless_asked_for() -> None:
    disk = SimDisk(sector_size_bytes=4)
    fd = disk.open("f", APPEND)
    disk.write(fd, b"abcdefgh")
    kinds = {f.kind for c in disk.crash_choices(POWER) for f in c.files}
    assert kinds == {ImageKind.PREFIX}


def test_torn_and_reordered_images_follow_the_sector_rules() -> None:
    disk = SimDisk(sector_size_bytes=4)
    fd = disk.open("f", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"ab")
    disk.fsync(fd)
    disk.write(fd, b"cdefghij")  # unsynced bytes 2..10
    got = {(c.files[0].kind, c.files[0].length_bytes, c.files[0].sector_index):
           disk.crash(POWER, c)["f"]
           for c in disk.crash_choices(POWER, limits=ImageLimits(torn=True, reorder=True))
           if c.files}
    assert got[(ImageKind.PREFIX, 4, None)] == b"abcd"
    assert got[(ImageKind.TORN_ZERO, 4, 0)] == b"ab\0\0"
    assert got[(ImageKind.TORN_ZERO, 10, 2)] == b"abcdefgh\0\0"
    assert got[(ImageKind.REORDERED, 10, 0)] == b"ab\0\0efghij"
    assert got[(ImageKind.REORDERED, 10, 1)] == b"abcd\0\0\0\0ij"
    garbage = got[(ImageKind.TORN_GARBAGE, 8, 1)]
    assert garbage[:4] == b"abcd" and len(garbage) == 8
    again = disk.crash(POWER, CrashChoice(POWER, 0, (FileChoice(1, ImageKind.TORN_GARBAGE, 8, 1),)))
    assert again["f"] == garbage  # garbage is deterministic


def test_enumeration_reports_how_many_choices_the_limits_cut_off() -> None:
    disk = SimDisk()
    fds = [disk.open(name, APPEND) for name in ("a", "b", "c")]
    disk.fsync_dir("")
    for fd in fds:
        disk.write(fd, b"x" * 2000)
    full = disk.crash_choices(POWER, limits=ImageLimits(max_choices_per_point=10**6))
    assert full.cut_off == 0 and len(list(full)) == full.total == full.emitted
    capped = disk.crash_choices(POWER, limits=ImageLimits(max_choices_per_point=10,
                                                          max_dirty_files=2))
    assert len(list(capped)) == 10
    per_file = round(full.total ** (1 / 3))
    assert capped.cut_by_dirty_files == full.total - per_file**2
    assert capped.cut_by_max_choices == per_file**2 - 10
    assert capped.cut_off == full.total - 10


def test_an_illegal_crash_choice_is_rejected_with_the_field_named() -> None:
    disk = SimDisk()
    fd = disk.open("f", APPEND)
    disk.write(fd, b"x" * 100)
    bad = CrashChoice(POWER, 5, (FileChoice(1, ImageKind.PREFIX, 101),
                                 FileChoice(9, ImageKind.PREFIX, 1)))
    with pytest.raises(CrashChoiceError) as info:
        disk.crash(POWER, bad)
    text = str(info.value)
    assert "metadata_kept" in text and "files[0]: length_bytes" in text and "files[1].inode" in text


def test_crash_choices_round_trip_through_json() -> None:
    disk = SimDisk()
    fd = disk.open("f", APPEND)
    disk.write(fd, b"x" * 3000)
    for choice in disk.crash_choices(POWER):
        assert CrashChoice.from_json(choice.to_json()) == choice
    with pytest.raises(CrashChoiceError, match=r"files\[0\]\.kind: unknown value 'half'"):
        CrashChoice.from_dict({"model": "power", "metadata_kept": 0,
                               "files": [{"inode": 1, "kind": "half", "length_bytes": 3}]})
    with pytest.raises(CrashChoiceError, match="malformed JSON"):
        CrashChoice.from_json("{")


def test_drawn_choices_are_deterministic_per_seed_and_legal() -> None:
    disk = SimDisk()
    fd = disk.open("f", APPEND)
    disk.write(fd, b"x" * 5000)
    draws = [disk.draw_crash_choice(POWER, seed) for seed in range(30)]
    assert draws == [disk.draw_crash_choice(POWER, seed) for seed in range(30)]
    assert len(set(draws)) > 5
    for choice in draws:
        disk.crash(POWER, choice)


def _dirty_disk() -> SimDisk:
    disk = SimDisk()
    fd = disk.open("f", APPEND)
    disk.write(fd, b"x" * 3000)
    disk.rename("f", "g")
    return disk


@given(st.data())
def test_strategy_choices_are_always_legal(data: st.DataObject) -> None:
    disk = _dirty_disk()
    choice = data.draw(disk.crash_choice_strategy(POWER))
    image = disk.crash(POWER, choice)
    assert set(image.files) <= {"f", "g"}


def test_strategy_choice_at_the_edge_is_the_durable_only_image() -> None:
    disk = _dirty_disk()
    assert disk.crash(POWER, CrashChoice(POWER, 0, ())) == disk.durable_image() == DiskImage({})


# -- replay --------------------------------------------------------------------------------------


def _workload(disk: SimDisk) -> None:
    fd = disk.open("aof", APPEND)
    disk.fsync_dir("")
    for i in range(20):
        disk.write(fd, b"%04d" % i * 50)
        if i % 5 == 4:
            disk.fsync(fd)
    tmp = disk.open("tmp", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    disk.write(tmp, b"rewritten")
    disk.fsync(tmp)
    disk.rename("tmp", "aof")
    disk.close(fd)


def test_replay_reproduces_every_intermediate_state_and_crash_images() -> None:
    original = SimDisk()
    _workload(original)
    states = []
    for state in SimDisk.replay(original.trace):
        states.append((state.visible_image(), [state.crash(POWER, c)
                                               for c in state.crash_choices(POWER)]))
    assert len(states) == len(original.trace) + 1
    assert states[-1][0] == original.visible_image()
    assert states[-1][1] == [original.crash(POWER, c) for c in original.crash_choices(POWER)]
    assert states[0][0] == DiskImage({})


def test_replay_starts_from_the_image_a_disk_was_booted_from() -> None:
    boot = DiskImage({"d/aof": b"base"}, ["d"])
    disk = SimDisk.from_image(boot)
    assert disk.crash(POWER) == boot
    fd = disk.open("d/aof", os.O_WRONLY | os.O_APPEND)
    disk.write(fd, b"+more")
    *_, last = SimDisk.replay(disk.trace)
    assert last.visible_image() == DiskImage({"d/aof": b"base+more"}, ["d"])


def test_inside_write_shows_a_torn_write_and_restores_the_state() -> None:
    original = SimDisk()
    fd = original.open("aof", APPEND)
    original.write(fd, b"a" * 100)
    original.write(fd, b"b" * 1000)
    cursor = ReplayCursor(original.trace)
    cursor.seek(2)
    assert cursor.torn_write_offsets() == [412, 924]
    with cursor.inside_write(412) as torn:
        assert torn.crash(PROCESS)["aof"] == b"a" * 100 + b"b" * 412
    assert cursor.disk.crash(PROCESS)["aof"] == b"a" * 100
    cursor.step()
    assert cursor.disk.crash(PROCESS)["aof"] == b"a" * 100 + b"b" * 1000


def test_inside_write_forgets_the_size_its_partial_write_journalled() -> None:
    # 100 B synced, then 1000 B appended: a partial write of 300 B grows the file inside its
    # last durable block, so a size before the data (400) is legal inside the write only.
    original = SimDisk()
    fd = original.open("aof", APPEND)
    original.write(fd, b"a" * 100)
    original.fsync(fd)
    original.write(fd, b"b" * 1000)
    cursor = ReplayCursor(original.trace)
    cursor.seek(3)
    limits = ImageLimits(size_before_data=True)
    before = list(cursor.disk.crash_choices(POWER, limits=limits))
    with cursor.inside_write(300) as torn:
        inside = list(torn.crash_choices(POWER, limits=limits))
    assert any(f.kind is ImageKind.SIZE_BEFORE_DATA and f.length_bytes == 400
               for c in inside for f in c.files)
    assert list(cursor.disk.crash_choices(POWER, limits=limits)) == before
    cursor.step()  # the whole write: its size (1100) only, as on a disk that never tore it
    *_, whole = SimDisk.replay(original.trace)
    after = list(cursor.disk.crash_choices(POWER, limits=limits))
    assert after == list(whole.crash_choices(POWER, limits=limits))
    assert {f.length_bytes for c in after for f in c.files
            if f.kind is ImageKind.SIZE_BEFORE_DATA} == {1100}


def test_apply_partial_write_builds_the_crashed_inside_write_state() -> None:
    original = SimDisk()
    fd = original.open("aof", APPEND)
    original.write(fd, b"hello world")
    replayed = list(SimDisk.replay(original.trace[:1]))[-1]
    assert replayed.apply_partial_write(original.trace[1], 5) == 5
    assert replayed.visible_image().files == {"aof": b"hello"}


def _apply_ignoring_errors(disk: SimDisk, ops: list[tuple[Any, ...]]) -> None:
    fds: list[int] = []
    for op in ops:
        kind = op[0]
        try:
            if kind == "open":
                fds.append(disk.open(op[1], op[2] | op[3]))
            elif kind in ("rename", "unlink", "mkdir", "listdir", "stat", "exists", "fsync_dir"):
                getattr(disk, kind)(*op[1:])
            elif fds:
                fd = fds[op[1] % len(fds)]
                getattr(disk, kind)(fd, *op[2:])
                if kind == "close":
                    fds.remove(fd)
            if kind == "fsync" and fds and op[1] % 3 == 0:
                disk.fail_fsync(fds[op[1] % len(fds)])
        except OSError:
            pass


@given(st.lists(operations, max_size=40))
def test_replay_of_any_trace_rebuilds_the_same_visible_durable_and_crash_states(
    ops: list[tuple[Any, ...]],
) -> None:
    original = SimDisk()
    _apply_ignoring_errors(original, ops)
    *_, replayed = SimDisk.replay(original.trace)
    assert replayed.visible_image() == original.visible_image()
    assert replayed.durable_image() == original.durable_image()
    limits = ImageLimits(max_choices_per_point=50)
    for model in (POWER, PersistenceModel.POWER_POSIX_METADATA):
        choices = list(original.crash_choices(model, limits=limits))
        assert list(replayed.crash_choices(model, limits=limits)) == choices
        assert [replayed.crash(model, c) for c in choices] == [original.crash(model, c)
                                                              for c in choices]
    # Keeping every pending operation is the visible namespace under both metadata models.
    posix_all = CrashChoice(PersistenceModel.POWER_POSIX_METADATA,
                            original.pending_posix_metadata, ())
    assert set(original.namespace_after(posix_all).items()) == set(
        original.namespace_after(original.pending_metadata).items()) == set(
        original.namespace_after(CrashChoice(PROCESS, original.pending_metadata, ())).items())


@pytest.mark.parametrize("semantics", list(FsyncFailure))
def test_replay_uses_the_settings_of_the_disk_that_recorded_the_trace(
    semantics: FsyncFailure,
) -> None:
    original = SimDisk(fsync_failure=semantics, sector_size_bytes=64)
    fd = original.open("f", APPEND)
    original.fsync_dir("")
    original.write(fd, b"x" * 100)
    original.fail_fsync(fd)
    original.fsync(fd)
    *_, replayed = SimDisk.replay(original.trace)
    assert replayed.sector_size_bytes == 64 and replayed.fsync_failure is semantics
    assert replayed.durable_image() == original.durable_image()
    assert original.durable_image()["f"] == (b"x" * 100 if semantics is FsyncFailure.RETRY
                                             else bytes(100))


def test_replaced_files_are_freed_once_nothing_can_reach_them() -> None:
    disk = _rewrite_swap(fsync_dir=False)
    assert len(disk._inodes) == 2  # the old aof is still the durable one
    disk.fsync_dir("")
    assert len(disk._inodes) == 1
    assert disk.crash(POWER).files == {"aof": b"new"}


# -- read-only inspection ------------------------------------------------------------------------


def test_open_file_is_a_frozen_snapshot_of_an_fd_and_none_once_closed() -> None:
    disk = SimDisk()
    disk.mkdir("d")
    fd = disk.open("d/f", APPEND)
    disk.write(fd, b"hello")
    node = disk.inode_at("d/f")
    assert node is not None
    got = disk.open_file(fd)
    assert got == OpenFile(fd, "d/f", node.ino, 5, False, True, True)
    assert not got.is_dir
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.position_bytes = 0  # type: ignore[misc]
    disk.write(fd, b"!")
    assert got.position_bytes == 5  # a snapshot, not a live view
    dfd = disk.open("d", os.O_RDONLY)
    assert disk.open_file(dfd) == OpenFile(dfd, "d", None, 0, True, False, False)
    assert disk.open_file(dfd).is_dir  # type: ignore[union-attr]
    disk.close(fd)
    assert disk.open_file(fd) is None


def test_replay_cursor_maps_the_traced_fds_to_the_replayed_disk() -> None:
    original = SimDisk()
    first = original.open("a", APPEND)
    second = original.open("b", APPEND)
    original.write(second, b"xyz")
    cursor = ReplayCursor(original.trace)
    assert cursor.replayed_fd(first) is None and cursor.open_file(first) is None
    cursor.seek(3)
    mine = cursor.replayed_fd(second)
    assert mine is not None
    view = cursor.open_file(second)
    assert view is not None and view.path == "b" and view.position_bytes == 3
    assert view == cursor.disk.open_file(mine)
    assert view.ino == cursor.disk.inode_at("b").ino  # type: ignore[union-attr]


def test_an_inode_view_is_live_read_only_and_compares_by_inode() -> None:
    disk = SimDisk()
    fd = disk.open("f", os.O_CREAT | os.O_RDWR)
    disk.write(fd, b"abcdef")
    view = disk.inode_at("f")
    assert view is not None

    def state() -> tuple[bool, int, int, bool]:
        assert view is not None
        return view.dirty, view.size_bytes, view.durable_size_bytes, view.durable_is_prefix

    assert state() == (True, 6, 0, True)
    disk.fsync(fd)
    assert state() == (False, 6, 6, True)
    disk.write(fd, b"gh")
    assert state() == (True, 8, 6, True)
    assert view.read(6) == b"gh" and view.read(1, 3) == b"bc" and view.durable() == b"abcdef"
    disk.lseek(fd, 0, os.SEEK_SET)
    disk.write(fd, b"X")  # overwrite below the durable length
    assert view.read(0, 2) == b"Xb" and view.durable() == b"abcdef"
    assert state() == (True, 8, 6, False)
    assert view == disk.inode(view.ino) and hash(view) == hash(disk.inode(view.ino))
    with pytest.raises(AttributeError, match="read-only"):
        setattr(view, "ino", 0)  # noqa: B010 - the point is that it fails


def test_an_inode_view_shows_the_ranges_a_failed_fsync_dropped() -> None:
    disk = SimDisk()
    fd = disk.open("f", APPEND)
    disk.write(fd, b"a" * 10)
    disk.fsync(fd)
    disk.write(fd, b"b" * 5)
    view = disk.inode(disk.inode_at("f").ino)  # type: ignore[union-attr]
    before = view.dropped_ranges
    disk.fail_fsync(fd)
    assert (before, view.dropped_ranges) == ((), ((10, 15),))
    assert view.durable() == b"a" * 10 and view.read() == b"a" * 10 + b"b" * 5


def test_inode_lookups_say_clearly_when_there_is_nothing() -> None:
    disk = SimDisk()
    disk.mkdir("d")
    assert disk.inode_at("nope") is None and disk.inode_at("d") is None
    with pytest.raises(KeyError, match="no inode 7"):
        disk.inode(7)


def test_namespace_after_is_an_immutable_view_of_each_crash_namespace() -> None:
    disk = _rewrite_swap(fsync_dir=False)  # ext4 pending: rename tmp -> aof (fsync committed
    old, new = disk.namespace_after(0)["aof"], disk.namespace_after(0)["tmp"]  # the create)
    assert disk.namespace_after(0) == {"aof": old, "tmp": new}
    assert disk.namespace_after(1) == {"aof": new}
    for model in (POWER, EAGER, PROCESS, PersistenceModel.POWER_POSIX_METADATA):
        for choice in disk.crash_choices(model):
            ns = disk.namespace_after(choice)
            assert set(ns) == set(disk.crash(model, choice).files)
    with pytest.raises(TypeError):
        disk.namespace_after(0)["aof"] = 1  # type: ignore[index]
    with pytest.raises(ValueError, match=r"metadata: must be in 0\.\.1"):
        disk.namespace_after(2)
    with pytest.raises(CrashChoiceError, match="metadata_kept"):
        disk.namespace_after(CrashChoice(EAGER, 0, ()))


def test_dirty_inodes_come_most_recently_written_first_as_the_enumeration_keeps_them() -> None:
    disk = SimDisk()
    fa, fb = disk.open("a", APPEND), disk.open("b", APPEND)
    disk.fsync_dir("")
    disk.write(fa, b"x" * 600)
    disk.write(fb, b"y" * 600)
    disk.write(fa, b"x")
    a, b = disk.inode_at("a"), disk.inode_at("b")
    assert disk.dirty_inodes(0) == (a, b)
    varied = {f.inode for c in disk.crash_choices(POWER, limits=ImageLimits(max_dirty_files=1))
              for f in c.files}
    assert varied == {a.ino}  # type: ignore[union-attr]


def test_file_options_are_the_images_the_enumeration_offers_for_that_file() -> None:
    disk = SimDisk(sector_size_bytes=4)
    fd = disk.open("f", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"abcdefghij")
    limits = ImageLimits(torn=True, reorder=True)
    ino = disk.inode_at("f").ino  # type: ignore[union-attr]
    options = disk.file_options(ino, limits=limits)
    assert options == disk.file_options("f", limits=limits)
    assert options[0].kind is ImageKind.DURABLE
    enumerated = [c.files[0] if c.files else options[0]
                  for c in disk.crash_choices(POWER, limits=limits)]
    assert list(options) == enumerated
    disk.fsync(fd)
    assert disk.file_options("f") == (FileChoice(ino, ImageKind.DURABLE, 10),)
    with pytest.raises(FileNotFoundError):
        disk.file_options("missing")
    with pytest.raises(KeyError):
        disk.file_options(99)


def test_garbage_sector_is_the_formula_behind_torn_garbage_images() -> None:
    disk = SimDisk(sector_size_bytes=4)
    fd = disk.open("f", APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"ab")
    disk.fsync(fd)
    disk.write(fd, b"cdefghij")
    ino = disk.inode_at("f").ino  # type: ignore[union-attr]
    torn = disk.crash(POWER, CrashChoice(POWER, 0, (FileChoice(ino, ImageKind.TORN_GARBAGE, 8,
                                                                1),)))
    assert torn["f"] == b"abcd" + garbage_sector(ino, 1, 4)
    torn_first = disk.crash(POWER, CrashChoice(POWER, 0, (FileChoice(
        ino, ImageKind.TORN_GARBAGE, 4, 0),)))
    assert torn_first["f"] == b"ab" + garbage_sector(ino, 0, 2)  # synced bytes stay
    assert garbage_sector(ino, 1, 4) != garbage_sector(ino, 2, 4)
    with pytest.raises(ValueError):
        garbage_sector(ino, -1, 4)


def test_metadata_choices_list_the_outcomes_the_enumeration_goes_through() -> None:
    disk = _rewrite_swap(fsync_dir=False)
    assert disk.metadata_choices(POWER) == tuple(CrashChoice(POWER, k, ()) for k in range(2))
    assert disk.metadata_choices(EAGER) == (CrashChoice(EAGER, 1, ()),)
    assert disk.metadata_choices(PROCESS) == (CrashChoice(PROCESS, 1, ()),)
    seen = [(c.metadata_kept, c.metadata_ops) for c in disk.crash_choices(POWER)]
    assert sorted(set(seen)) == [(c.metadata_kept, c.metadata_ops)
                                 for c in disk.metadata_choices(POWER)]


def test_a_process_choice_recorded_with_an_older_pending_count_still_gives_the_visible_image(
) -> None:
    # Reproductions written before the calibration recorded the old model's pending count;
    # under 'process' the image is the visible state whatever that count was.
    disk = SimDisk()
    fd = disk.open("f", os.O_WRONLY | os.O_CREAT)
    disk.write(fd, b"data")
    image = disk.crash(PersistenceModel.PROCESS, CrashChoice(PersistenceModel.PROCESS, 5, ()))
    assert image == disk.visible_image()
    with pytest.raises(CrashChoiceError, match="must be >= 0"):
        disk.crash(PersistenceModel.PROCESS, CrashChoice(PersistenceModel.PROCESS, -1, ()))
