"""The power models against the kernel: every row of FACTS' table "What real Linux filesystems
keep after a power loss" (kernel 6.18, ext4/xfs/btrfs images mounted by the kernel), checked on
the model that claims each filesystem.

A row says what the kernel kept. The model must allow that state (a model that forbids a state
the kernel produces misses bugs) and, where the kernel kept something in every image (a synced
file, a committed name), the model must keep it in every image too (one that may drop it raises
false alarms). d/C and d/P exist and are durable; A is a new 10 KB file; "empty" = the name
survived with size 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faults import CrashChoice, DiskImage, ImageLimits, PersistenceModel, SimDisk

EXT4 = PersistenceModel.POWER
XFS = PersistenceModel.POWER_XFS
BTRFS = PersistenceModel.POWER_BTRFS
POSIX = PersistenceModel.POWER_POSIX_METADATA
EAGER = PersistenceModel.POWER_EAGER_METADATA
KERNEL_MODELS = {"ext4": EXT4, "xfs": XFS, "btrfs": BTRFS}
CREATE = os.O_CREAT | os.O_WRONLY
A_DATA = bytes(range(256)) * 40  # 10 KB
OLD_C, OLD_P = b"old C", b"old P"
# Every prefix at byte granularity, so "empty" and "full" are both in reach when legal.
LIMITS = ImageLimits(max_choices_per_point=100_000, max_dirty_files=8, size_before_data=True,
                     in_place=True)


def _disk() -> SimDisk:
    return SimDisk.from_image(DiskImage({"d/C": OLD_C, "d/P": OLD_P}, ["d"]))


def _images(disk: SimDisk, model: PersistenceModel) -> list[DiskImage]:
    enum = disk.crash_choices(model, limits=LIMITS)
    images = [disk.crash(model, c) for c in enum]
    assert enum.cut_off == 0
    return images


def _write_new(disk: SimDisk, path: str, data: bytes = A_DATA) -> int:
    fd = disk.open(path, CREATE)
    disk.write(fd, data)
    return fd


def _fsync_unrelated_p(disk: SimDisk) -> None:
    # P is an older file that is being appended to and synced (as an AOF is): its fsync has
    # something of its own to commit. (With nothing to commit, see the test below the table.)
    fd = disk.open("d/P", os.O_WRONLY | os.O_APPEND)
    disk.write(fd, b"+")
    disk.fsync(fd)
    disk.close(fd)


def _create_a_fsync_a(disk: SimDisk) -> None:
    disk.fsync(_write_new(disk, "d/A"))


def _create_a_fdatasync_a(disk: SimDisk) -> None:
    disk.fdatasync(_write_new(disk, "d/A"))


def _create_a_nothing(disk: SimDisk) -> None:
    _write_new(disk, "d/A")


def _create_a_fsync_dir(disk: SimDisk) -> None:
    _write_new(disk, "d/A")
    disk.fsync_dir("d")


def _create_a_fsync_p(disk: SimDisk) -> None:
    _write_new(disk, "d/A")
    _fsync_unrelated_p(disk)


def _rename_b_over_c(disk: SimDisk) -> int:
    fd = _write_new(disk, "d/B")
    disk.fsync(fd)
    disk.rename("d/B", "d/C")
    return fd


def _rename_then_fsync_c(disk: SimDisk) -> None:
    disk.fsync(_rename_b_over_c(disk))


def _rename_then_fdatasync_c(disk: SimDisk) -> None:
    disk.fdatasync(_rename_b_over_c(disk))


def _rename_then_nothing(disk: SimDisk) -> None:
    _rename_b_over_c(disk)


def _rename_then_fsync_p(disk: SimDisk) -> None:
    _rename_b_over_c(disk)
    _fsync_unrelated_p(disk)


def _rename_old_c_to_e_fsync_p(disk: SimDisk) -> None:
    disk.rename("d/C", "d/E")
    _fsync_unrelated_p(disk)


def _unlink_c_fsync_p(disk: SimDisk) -> None:
    disk.unlink("d/C")
    _fsync_unrelated_p(disk)


def _mkdir_create_fsync(disk: SimDisk) -> None:
    disk.mkdir("d/sub")
    disk.fsync(_write_new(disk, "d/sub/A"))


# What the kernel kept, per filesystem: "always X" (every image), "allows X" (some image).
Check = Callable[[list[DiskImage]], bool]


def always(pred: Callable[[DiskImage], bool]) -> Check:
    return lambda images: all(pred(img) for img in images)


def allows(pred: Callable[[DiskImage], bool]) -> Check:
    return lambda images: any(pred(img) for img in images)


def both(*checks: Check) -> Check:
    return lambda images: all(c(images) for c in checks)


A_FULL = always(lambda img: img.get("d/A") == A_DATA)
A_GONE = allows(lambda img: "d/A" not in img)
A_EMPTY = both(always(lambda img: "d/A" in img), allows(lambda img: img.get("d/A") == b""))
C_NEW = always(lambda img: img.get("d/C") == A_DATA and "d/B" not in img)
RENAME_LOST = allows(lambda img: img.get("d/C") == OLD_C and img.get("d/B") == A_DATA)
E_ONLY = always(lambda img: img.get("d/E") == OLD_C and "d/C" not in img)
C_KEPT = allows(lambda img: img.get("d/C") == OLD_C)
C_GONE = always(lambda img: "d/C" not in img)
SUB_A_FULL = always(lambda img: img.get("d/sub/A") == A_DATA)

# (row, workload, {filesystem: what the kernel kept}) — FACTS' table, row by row.
ROWS: list[tuple[str, Callable[[SimDisk], None], dict[str, Check]]] = [
    ("create A, fsync(A)", _create_a_fsync_a, dict.fromkeys(KERNEL_MODELS, A_FULL)),
    ("create A, fdatasync(A)", _create_a_fdatasync_a, dict.fromkeys(KERNEL_MODELS, A_FULL)),
    ("create A, nothing", _create_a_nothing, dict.fromkeys(KERNEL_MODELS, A_GONE)),
    ("create A, fsync(dir) only", _create_a_fsync_dir, dict.fromkeys(KERNEL_MODELS, A_EMPTY)),
    ("create A, fsync of unrelated P", _create_a_fsync_p,
     {"ext4": A_EMPTY, "xfs": A_EMPTY, "btrfs": A_GONE}),
    ("fsync(B), rename B over C, fsync(C's fd)", _rename_then_fsync_c,
     dict.fromkeys(KERNEL_MODELS, C_NEW)),
    ("fsync(B), rename B over C, fdatasync(C's fd)", _rename_then_fdatasync_c,
     {"ext4": RENAME_LOST, "xfs": C_NEW, "btrfs": C_NEW}),
    ("fsync(B), rename B over C, nothing", _rename_then_nothing,
     dict.fromkeys(KERNEL_MODELS, RENAME_LOST)),
    ("fsync(B), rename B over C, fsync of unrelated P", _rename_then_fsync_p,
     dict.fromkeys(KERNEL_MODELS, C_NEW)),
    ("rename an old C to E, fsync of unrelated P", _rename_old_c_to_e_fsync_p,
     {"ext4": E_ONLY, "xfs": E_ONLY, "btrfs": C_KEPT}),
    ("unlink C, fsync of unrelated P", _unlink_c_fsync_p,
     {"ext4": C_GONE, "xfs": C_GONE, "btrfs": C_KEPT}),
    ("mkdir sub, create sub/A, fsync(sub/A)", _mkdir_create_fsync,
     dict.fromkeys(KERNEL_MODELS, SUB_A_FULL)),
]

CASES = [
    pytest.param(workload, KERNEL_MODELS[fs], kept, id=f"{fs}: {row}")
    for row, workload, by_fs in ROWS
    for fs, kept in by_fs.items()
]


@pytest.mark.parametrize(("workload", "model", "kernel_kept"), CASES)
def test_each_model_keeps_what_its_kernel_filesystem_kept_after_a_power_loss(
    workload: Callable[[SimDisk], None], model: PersistenceModel, kernel_kept: Check
) -> None:
    disk = _disk()
    workload(disk)
    assert kernel_kept(_images(disk, model))


def test_the_table_has_every_row_of_facts_for_every_kernel_filesystem() -> None:
    assert len(ROWS) == 12  # FACTS' 11 rows, "fsync(A) or fdatasync(A)" as two
    assert len(CASES) == 36


def test_fsync_of_a_file_with_nothing_to_commit_commits_nothing_on_ext4_and_xfs() -> None:
    for model in (EXT4, XFS):
        disk = _disk()
        _write_new(disk, "d/A")
        fd = disk.open("d/P", os.O_WRONLY)
        disk.fsync(fd)  # P is clean: the journal has nothing of P's to commit
        images = _images(disk, model)
        assert A_GONE(images) and allows(lambda img: "d/A" in img)(images)
        assert disk.pending_metadata_for(model) == 1


def test_a_commit_makes_no_other_files_data_durable() -> None:
    for model in (EXT4, XFS):
        disk = _disk()
        _write_new(disk, "d/A")
        _fsync_unrelated_p(disk)
        assert {img["d/A"] for img in _images(disk, model)} >= {b"", A_DATA}


def test_ext4_fsync_after_a_rename_alone_commits_it_but_fdatasync_does_not() -> None:
    disk = _disk()
    fd = _rename_b_over_c(disk)
    disk.fdatasync(fd)
    assert disk.pending_metadata_for(EXT4) == 1
    assert disk.pending_metadata_for(XFS) == 0
    disk.fsync(fd)
    assert disk.pending_metadata_for(EXT4) == 0


def test_a_journal_commit_keeps_every_earlier_namespace_operation_in_order() -> None:
    disk = _disk()
    disk.mkdir("e")
    _write_new(disk, "e/x")
    disk.rename("d/C", "e/C")
    disk.unlink("d/P")
    assert disk.pending_metadata_for(EXT4) == 4
    names = [sorted(img) for img in _images(disk, EXT4)]
    # Prefixes of program order only: never the rename without the create before it.
    assert ["d/P", "e/C"] not in names and ["d/P", "e/C", "e/x"] in names
    disk.fsync(_write_new(disk, "e/y"))
    assert {tuple(sorted(img)) for img in _images(disk, EXT4)} == {("e/C", "e/x", "e/y")}


def test_btrfs_fsync_commits_the_files_names_and_new_parents_only() -> None:
    disk = _disk()
    disk.mkdir("n")
    disk.mkdir("n/m")
    _write_new(disk, "d/other")
    fd = _write_new(disk, "n/m/tmp")
    disk.rename("n/m/tmp", "n/m/f")
    disk.fsync(fd)
    images = _images(disk, BTRFS)
    assert always(lambda img: img.get("n/m/f") == A_DATA and "n/m/tmp" not in img)(images)
    assert allows(lambda img: "d/other" not in img)(images)


def test_btrfs_rename_of_a_logged_inode_waits_for_the_next_log_sync() -> None:
    disk = _disk()
    _rename_b_over_c(disk)
    assert RENAME_LOST(_images(disk, BTRFS))
    fd = disk.open("d/P", os.O_RDONLY)
    disk.fsync(fd)  # P has nothing of its own to log; the fsync still syncs the log
    assert C_NEW(_images(disk, BTRFS))


def test_btrfs_fsync_dir_keeps_a_renamed_file_with_its_create() -> None:
    disk = _disk()
    disk.mkdir("e")
    disk.fsync_dir("")
    _write_new(disk, "e/x")
    disk.rename("e/x", "d/y")
    disk.fsync_dir("d")
    assert always(lambda img: "d/y" in img and "e/x" not in img)(_images(disk, BTRFS))


@pytest.mark.parametrize("model", list(PersistenceModel), ids=lambda m: m.value)
def test_every_model_enumerates_draws_and_round_trips_legal_choices(
    model: PersistenceModel,
) -> None:
    disk = _disk()
    _rename_then_fsync_p(disk)
    _create_a_nothing(disk)
    disk.unlink("d/P")
    choices = list(disk.crash_choices(model, limits=LIMITS))
    assert choices
    drawn = [disk.draw_crash_choice(model, seed) for seed in range(20)]
    for choice in choices + drawn:
        again = CrashChoice.from_json(choice.to_json())
        assert again == choice
        disk.crash(model, again)  # legal
    assert {c.metadata_kept for c in disk.metadata_choices(model)} == (
        set(range(disk.pending_metadata_for(model) + 1)) if model.varies_metadata
        else {disk.pending_metadata_for(model)})


def test_every_model_says_which_filesystem_it_stands_for() -> None:
    assert {m.filesystem for m in PersistenceModel} == {"ext4", "xfs", "btrfs", None}
    assert PersistenceModel.POWER.filesystem == "ext4"
    assert POSIX.filesystem is None and EAGER.filesystem is None
    assert "POSIX minimum" in POSIX.describe() and "LazyFS" in EAGER.describe()
    assert all(m.describe() and "\n" not in m.describe() for m in PersistenceModel)


def test_power_is_an_alias_of_the_ext4_model_in_old_choices() -> None:
    old = CrashChoice.from_json('{"model": "power", "metadata_kept": 0, "files": []}')
    assert old.model is EXT4
    assert old.to_dict()["model"] == "power-ext4"


def test_the_table_tells_the_bounds_apart_from_the_kernel() -> None:
    # The POSIX minimum may lose a fsynced file's name; eager metadata never loses a create.
    disk = _disk()
    _create_a_fsync_a(disk)
    assert not A_FULL(_images(disk, POSIX))
    disk = _disk()
    _create_a_nothing(disk)
    assert not A_GONE(_images(disk, EAGER))


def test_btrfs_fsync_of_a_file_already_logged_with_nothing_new_does_not_sync_the_log() -> None:
    disk = _disk()
    fd = disk.open("d/P", os.O_WRONLY | os.O_APPEND)
    disk.write(fd, b"p")
    disk.fsync(fd)  # P had something to log: it is logged now
    _rename_b_over_c(disk)
    disk.fsync(fd)  # nothing new in P: btrfs returns at once
    assert RENAME_LOST(_images(disk, BTRFS))
    _fsync_unrelated_p(disk)  # P written: logged again, and the log synced
    assert C_NEW(_images(disk, BTRFS))


@settings(max_examples=30)
@given(data=st.data(), model=st.sampled_from(list(PersistenceModel)))
def test_every_models_hypothesis_strategy_draws_legal_choices(
    data: st.DataObject, model: PersistenceModel
) -> None:
    disk = _disk()
    _rename_then_fdatasync_c(disk)
    _create_a_fsync_dir(disk)
    disk.mkdir("e")
    choice = data.draw(disk.crash_choice_strategy(model))
    assert disk.crash(model, choice) in _images(disk, model)


# -- behaviours found by the calibration against the kernel (reports/calibration.md) ----------


def _old_b(disk_size: int = 3000) -> tuple[SimDisk, bytes]:
    old = bytes(range(1, 251)) * (disk_size // 250)
    return SimDisk.from_image(DiskImage({"A/old": old, "B/old": b"x" * 100}, ["A", "B"])), old


def test_ext4_commits_a_grown_size_before_its_data_as_a_zero_tail() -> None:
    # Kernel: append 100 B to a 3000-byte file, fsync of its directory: 3100 bytes ending in
    # 100 zeros (the size was journalled at once, the data never written).
    disk, old = _old_b()
    fd = disk.open("A/old", os.O_WRONLY | os.O_APPEND)
    disk.write(fd, b"n" * 100)
    disk.fsync_dir("A")
    contents = {img["A/old"] for img in _images(disk, EXT4)}
    assert old + bytes(100) in contents
    assert all(c.startswith(old) for c in contents)  # the synced data is never lost


def test_a_zero_tail_stops_at_the_end_of_the_last_allocated_block() -> None:
    # Kernel: write 5000 B past a 3000-byte file: 4096 bytes, zeros from 3000.
    disk, old = _old_b()
    fd = disk.open("A/old", os.O_WRONLY | os.O_APPEND)
    disk.write(fd, b"n" * 5000)
    contents = {img["A/old"] for img in _images(disk, EXT4)}
    assert old + bytes(1096) in contents
    assert old + bytes(5000) not in contents


def test_a_truncate_that_grows_a_file_may_be_durable_before_its_data() -> None:
    # Kernel: a new file written 4096 B, truncated up to 7096 B: 7096 zeros after a commit.
    disk, _ = _old_b()
    fd = disk.open("B/f", CREATE)
    disk.write(fd, b"n" * 4096)
    disk.ftruncate(fd, 7096)
    disk.fsync_dir("B")
    assert bytes(7096) in {img.get("B/f") for img in _images(disk, EXT4)}


def test_a_crash_during_an_fsync_after_a_truncate_may_show_the_zeroed_block_tail() -> None:
    # Kernel, a crash inside fsync(A/old) after truncating 6000 B to 3000 B: the old size, the
    # truncated block's tail zeroed in place, the freed block after it still holding old data.
    disk, _ = _old_b(6000)
    old = disk.crash(EXT4)["A/old"]
    fd = disk.open("A/old", os.O_WRONLY)
    disk.ftruncate(fd, 3000)
    for model in (EXT4, XFS):
        contents = {img["A/old"] for img in _images(disk, model)}
        assert old[:3000] + bytes(1096) + old[4096:] in contents


def test_an_overwrite_never_shortens_a_file_below_its_durable_size() -> None:
    disk, _ = _old_b(6000)
    fd = disk.open("A/old", os.O_WRONLY)
    disk.lseek(fd, 4108, os.SEEK_SET)
    disk.write(fd, b"z")
    assert {len(img["A/old"]) for img in _images(disk, EXT4)} == {6000}


def test_ext4_fsync_of_a_directory_commits_the_whole_journal_xfs_does_not() -> None:
    # Kernel: mkdir A/d; fsync_dir(B) keeps A/d on ext4 in every image; xfs may lose it.
    for model, kept_always in ((EXT4, True), (XFS, False)):
        disk, _ = _old_b()
        disk.mkdir("A/d")
        disk.fsync_dir("B")
        assert always(lambda img: "A/d" in img.dirs)(_images(disk, model)) is kept_always


def test_btrfs_fsync_dir_after_a_cross_directory_rename_may_keep_both_names() -> None:
    # Kernel: rename(A/old, B/f); fsync_dir(B): B/f is durable, and A/old may still be there.
    disk, old = _old_b()
    disk.rename("A/old", "B/f")
    disk.fsync_dir("B")
    images = _images(disk, BTRFS)
    assert always(lambda img: img.get("B/f") == old)(images)
    assert any("A/old" in img for img in images)
    disk.fsync_dir("A")
    assert always(lambda img: "A/old" not in img)(_images(disk, BTRFS))


def test_btrfs_fsync_of_a_clean_file_does_not_log_it() -> None:
    # Kernel: fdatasync(A/old) with nothing new, rename(A/old, A/g), fdatasync of another
    # clean file: the rename may be lost.
    disk, _ = _old_b()
    fd = disk.open("A/old", os.O_RDONLY)
    disk.fdatasync(fd)
    disk.close(fd)
    disk.rename("A/old", "A/g")
    fd = disk.open("B/old", os.O_RDONLY)
    disk.fdatasync(fd)
    assert any("A/old" in img for img in _images(disk, BTRFS))


def test_btrfs_fsync_of_a_renamed_file_logs_the_changes_of_its_new_directory() -> None:
    # Kernel: create A/f; rename(B/old, A/old); fsync(A/old) keeps A/f; a new file's fsync
    # does not (create A/f; create A/g; fsync(A/g) may lose A/f).
    disk, _ = _old_b()
    _write_new(disk, "A/f")
    disk.rename("B/old", "A/old")
    fd = disk.open("A/old", os.O_RDONLY)
    disk.fsync(fd)
    assert always(lambda img: "A/f" in img)(_images(disk, BTRFS))
    disk, _ = _old_b()
    _write_new(disk, "A/f")
    disk.fsync(_write_new(disk, "A/g"))
    assert any("A/f" not in img for img in _images(disk, BTRFS))


def test_btrfs_fsync_dir_logs_a_file_with_its_current_name() -> None:
    # Kernel: rename(B/old, A/g); rename(A/g, A/f); fsync_dir(B) keeps A/f.
    disk, _ = _old_b()
    disk.rename("B/old", "A/g")
    disk.rename("A/g", "A/f")
    disk.fsync_dir("B")
    assert always(lambda img: img.get("A/f") == b"x" * 100)(_images(disk, BTRFS))


def test_btrfs_both_names_only_while_the_source_directory_is_not_logged() -> None:
    # Kernel: rename(A/old, B/f); rename(B/old, A/old); fsync_dir(A): B/old is gone in every
    # image (B's change is logged with A's).
    disk, _ = _old_b()
    disk.rename("A/old", "B/f")
    disk.rename("B/old", "A/old")
    disk.fsync_dir("A")
    assert always(lambda img: "B/old" not in img)(_images(disk, BTRFS))


def test_a_journal_commit_makes_a_pending_truncate_durable_on_ext4_and_xfs() -> None:
    # Kernel: truncate B/old (3000 B) up to 6000 B, write A/g, fsync(A/g): B/old is 6000 B
    # (3000 old + zeros) in every image on ext4 and xfs; btrfs commits only A/g.
    for model, kept_always in ((EXT4, True), (XFS, True), (BTRFS, False)):
        disk, _ = _old_b()
        fd = disk.open("B/old", os.O_WRONLY)
        disk.ftruncate(fd, 6000)
        disk.fsync(_write_new(disk, "A/g", b"g"))
        contents = {img["B/old"] for img in _images(disk, model)}
        assert (contents == {b"x" * 100 + bytes(5900)}) is kept_always


def test_a_committed_shrinking_truncate_keeps_durable_data_on_xfs_and_its_block_on_ext4() -> None:
    # Kernel: truncate A/old to 1500 B, overwrite 100 B at 825, fdatasync of another dirty
    # file: xfs keeps the durable first 1500 B; ext4 the visible ones (the block is written
    # with the commit).
    disk, old = _old_b()
    fd = disk.open("A/old", os.O_WRONLY)
    disk.ftruncate(fd, 1500)
    disk.lseek(fd, 825, os.SEEK_SET)
    disk.write(fd, b"o" * 100)
    other = disk.open("B/old", os.O_WRONLY | os.O_APPEND)
    disk.write(other, b"+")
    disk.fdatasync(other)
    visible = old[:825] + b"o" * 100 + old[925:1500]
    # Never the old 3000 B again; the visible bytes may also have been written in place.
    assert {img["A/old"] for img in _images(disk, XFS)} == {old[:1500], visible}
    assert {img["A/old"] for img in _images(disk, EXT4)} == {visible}


def test_an_fsync_after_only_an_in_place_overwrite_may_commit_nothing_on_ext4_and_xfs() -> None:
    # Kernel: rename(A/old, A/g); unlink(A/g); overwrite 1 B of B/old; fsync(B/old) kept
    # A/old (B/old's mtime had not changed within the clock tick: nothing to commit); the
    # overwrite itself is durable.
    for model in (EXT4, XFS):
        disk, old = _old_b()
        disk.rename("A/old", "A/g")
        disk.unlink("A/g")
        fd = disk.open("B/old", os.O_WRONLY)
        disk.write(fd, b"y")
        disk.fsync(fd)
        images = _images(disk, model)
        assert any(img.get("A/old") == old for img in images)
        assert always(lambda img: img["B/old"] == b"y" + b"x" * 99)(images)
