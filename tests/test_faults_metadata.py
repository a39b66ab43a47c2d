"""Metadata models: the ext4 journal (``power-ext4``) against POSIX-strict per-directory metadata
(``power-posix-metadata``): what an fsync of a directory settles, what an image may drop, the
one dependency, enumeration bounds, draws and the JSON form of choices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import (
    CrashChoice,
    CrashChoiceError,
    DiskImage,
    ImageLimits,
    PersistenceModel,
    SimDisk,
)

POWER = PersistenceModel.POWER
POSIX = PersistenceModel.POWER_POSIX_METADATA
CREATE = os.O_CREAT | os.O_WRONLY


def _create(disk: SimDisk, path: str, data: bytes = b"") -> None:
    """Create `path` with `data`, the data synced (so only metadata can be lost)."""
    fd = disk.open(path, CREATE)
    if data:
        disk.write(fd, data)
    disk.fsync(fd)
    disk.close(fd)


def _images(disk: SimDisk, model: PersistenceModel, **limits: Any) -> list[DiskImage]:
    return [disk.crash(model, c)
            for c in disk.crash_choices(model, limits=ImageLimits(**limits))]


def _dirs_ab() -> SimDisk:
    disk = SimDisk()
    disk.mkdir("A")
    disk.mkdir("B")
    disk.fsync_dir("")
    return disk


# -- what an fsync of a directory settles -------------------------------------------------------


def test_fsync_of_one_directory_makes_an_earlier_create_elsewhere_durable_only_in_the_journal(
) -> None:
    disk = _dirs_ab()
    _create(disk, "B/tmp", b"new")
    disk.fsync_dir("B")
    _create(disk, "A/f")
    disk.rename("B/tmp", "B/aof")
    disk.fsync_dir("B")
    ordered = _images(disk, POWER)
    assert all("A/f" in img for img in ordered)  # the journal wrote it before the rename
    posix = _images(disk, POSIX)
    assert {("A/f" in img) for img in posix} == {True, False}  # A was never fsynced
    assert all(img.files.get("B/aof") == b"new" and "B/tmp" not in img for img in posix)
    assert disk.pending_metadata == 0 and disk.pending_posix_metadata == 1


def test_every_pending_operation_survives_or_not_independently_across_directories() -> None:
    disk = _dirs_ab()
    _create(disk, "A/a")
    _create(disk, "B/b")
    # ext4: each fsync of the new file committed the journal, its create with it.
    assert {tuple(sorted(img.files)) for img in _images(disk, POWER)} == {("A/a", "B/b")}
    posix = {tuple(sorted(img.files)) for img in _images(disk, POSIX)}
    assert posix == {(), ("A/a",), ("B/b",), ("A/a", "B/b")}


def test_a_rename_across_directories_is_settled_only_by_fsyncing_both_parents() -> None:
    disk = _dirs_ab()
    _create(disk, "A/x", b"data")
    disk.fsync_dir("A")
    disk.rename("A/x", "B/x")
    disk.fsync_dir("B")
    assert {tuple(img.files) for img in _images(disk, POWER)} == {("B/x",)}
    # Atomic: under one name or the other, never both, never neither.
    assert {tuple(img.files) for img in _images(disk, POSIX)} == {("A/x",), ("B/x",)}
    disk.fsync_dir("A")
    assert {tuple(img.files) for img in _images(disk, POSIX)} == {("B/x",)}


def test_fsync_of_a_directory_fd_settles_like_fsync_dir() -> None:
    disk = _dirs_ab()
    _create(disk, "A/f")
    fd = disk.open("A", os.O_RDONLY)
    disk.fsync(fd)
    disk.close(fd)
    assert disk.pending_posix_metadata == 0
    assert _images(disk, POSIX) == [DiskImage({"A/f": b""}, ["A", "B"])]


def test_a_file_settled_in_a_directory_whose_mkdir_is_not_is_lost_with_the_directory() -> None:
    disk = SimDisk()
    disk.mkdir("appendonlydir")  # the parent is never fsynced
    _create(disk, "appendonlydir/incr", b"data")
    disk.fsync_dir("appendonlydir")
    assert {tuple(img.files) for img in _images(disk, POWER)} == {("appendonlydir/incr",)}
    posix = _images(disk, POSIX)
    assert sorted((sorted(img.files), sorted(img.dirs)) for img in posix) == [
        ([], []), (["appendonlydir/incr"], ["appendonlydir"])]


def test_the_contents_of_a_renamed_directory_follow_it() -> None:
    disk = SimDisk()
    disk.mkdir("d")
    disk.fsync_dir("")
    disk.rename("d", "e")  # not settled: the root is not fsynced again
    _create(disk, "e/f", b"x")
    disk.fsync_dir("e")  # settles the create inside the directory, wherever it ends up
    images = {(tuple(img.files), tuple(img.dirs)) for img in _images(disk, POSIX)}
    assert images == {(("d/f",), ("d",)), (("e/f",), ("e",))}


# -- the one dependency -------------------------------------------------------------------------


def _create_then_rename() -> SimDisk:
    disk = SimDisk()
    _create(disk, "aof", b"old")
    disk.fsync_dir("")
    _create(disk, "tmp", b"new")
    disk.rename("tmp", "aof")
    return disk


def test_a_rename_survives_only_with_the_create_that_put_the_file_in_its_source() -> None:
    disk = _create_then_rename()
    kept = [c.metadata_ops or tuple(range(c.metadata_kept)) for c in disk.metadata_choices(POSIX)]
    assert kept == [(), (0,), (0, 1)]  # never the rename alone: "new" would have two names
    with pytest.raises(CrashChoiceError, match=r"metadata_ops: keeps pending operation 1"):
        disk.crash(POSIX, CrashChoice(POSIX, 1, (), (1,)))
    contents = {(img.get("aof"), img.get("tmp")) for img in _images(disk, POSIX)}
    assert contents == {(b"old", None), (b"old", b"new"), (b"new", None)}


def test_a_later_create_can_take_a_name_an_unkept_rename_freed() -> None:
    disk = SimDisk()
    _create(disk, "tmp", b"first")
    disk.fsync_dir("")
    disk.rename("tmp", "aof")
    _create(disk, "tmp", b"second")
    # The create does not depend on the rename: the entry "tmp" shows its last surviving write.
    image = disk.crash(POSIX, CrashChoice(POSIX, 1, (), (1,)))
    assert image.files == {"tmp": b"second"}
    assert {frozenset(img.files.items()) for img in _images(disk, POSIX)} == {
        frozenset({("tmp", b"first")}), frozenset({("aof", b"first")}),
        frozenset({("tmp", b"second")}), frozenset({("aof", b"first"), ("tmp", b"second")})}


def test_a_pending_operation_never_overwrites_a_later_settled_one() -> None:
    disk = _dirs_ab()
    _create(disk, "B/x", b"v")
    disk.fsync_dir("B")
    disk.rename("B/x", "A/f")  # B is never fsynced again: the rename stays pending
    disk.unlink("A/f")
    disk.fsync_dir("A")  # settles the unlink (it does not depend on the rename)
    images = _images(disk, POSIX)
    assert all("A/f" not in img for img in images)
    assert {tuple(img.files) for img in images} == {("B/x",), ()}


def test_directories_that_surviving_renames_put_inside_each_other_are_unreachable() -> None:
    disk = SimDisk()
    disk.mkdir("a")
    disk.mkdir("b")
    _create(disk, "a/f", b"in a")
    disk.fsync_dir("")
    disk.fsync_dir("a")
    disk.rename("a", "b/a")
    disk.rename("b/a", "x")
    disk.rename("b", "x/b")
    # The first and last renames survive, the middle one not: a inside b inside a.
    image = disk.crash(POSIX, CrashChoice(POSIX, 2, (), (0, 2)))
    assert image == DiskImage({}, [])
    assert disk.crash(POSIX, CrashChoice(POSIX, 3, ())) == disk.visible_image() == DiskImage(
        {"x/f": b"in a"}, ["x", "x/b"])


def test_an_fsync_that_settles_a_rename_settles_the_rename_it_depends_on() -> None:
    disk = SimDisk()
    for d in ("A", "B", "C"):
        disk.mkdir(d)
    disk.fsync_dir("")
    _create(disk, "C/y", b"v")
    disk.fsync_dir("C")
    disk.rename("C/y", "B/x")
    disk.rename("B/x", "A/z")
    disk.fsync_dir("B")
    disk.fsync_dir("A")
    # C was not fsynced after the first rename, but "v" must not keep two names.
    assert disk.pending_posix_metadata == 0
    assert {tuple(img.files) for img in _images(disk, POSIX)} == {("A/z",)}


# -- choices: default, enumeration bounds, draws, JSON ------------------------------------------


def test_the_default_posix_image_is_the_settled_state_only() -> None:
    disk = _create_then_rename()
    assert disk.crash(POSIX) == disk.crash(POSIX, CrashChoice(POSIX, 0, ())) == DiskImage(
        {"aof": b"old"})


def _rewrites(count: int) -> SimDisk:
    """`count` rewrites that never fsync the directory (2 pending operations each)."""
    disk = SimDisk()
    for i in range(count):
        _create(disk, "tmp", b"v%d" % i)
        disk.rename("tmp", "aof")
    return disk


def test_enumeration_takes_prefixes_first_and_counts_the_metadata_sets_it_leaves_out() -> None:
    disk = _rewrites(4)
    assert disk.pending_posix_metadata == 8
    full = disk.crash_choices(POSIX)
    assert full.cut_by_metadata == 0 and full.total == len(list(full)) == 3**4
    limits = ImageLimits(max_metadata_subsets=10)
    capped = disk.crash_choices(POSIX, limits=limits)
    assert len(list(capped)) == capped.total == 10 and capped.cut_by_metadata == 3**4 - 10
    metadata = disk.metadata_choices(POSIX, limits=limits)
    assert [c.metadata_kept for c in metadata[:9]] == list(range(9))
    assert all(c.metadata_ops is None for c in metadata[:9])
    assert metadata[9].metadata_ops is not None


def test_an_enumeration_bound_of_one_leaves_only_the_settled_state() -> None:
    disk = _rewrites(2)
    limits = ImageLimits(max_metadata_subsets=1)
    enum = disk.crash_choices(POSIX, limits=limits)
    assert list(enum) == [CrashChoice(POSIX, 0, ())]
    assert enum.cut_by_metadata == 3**2 - 1


def test_a_non_positive_metadata_bound_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_metadata_subsets"):
        ImageLimits(max_metadata_subsets=0)


def test_drawn_posix_choices_are_deterministic_legal_and_varied() -> None:
    disk = _rewrites(3)
    draws = [disk.draw_crash_choice(POSIX, seed) for seed in range(40)]
    assert draws == [disk.draw_crash_choice(POSIX, seed) for seed in range(40)]
    assert len({c.metadata_ops for c in draws}) > 5
    for choice in draws:
        disk.crash(POSIX, choice)
        assert choice.metadata_ops is None or choice.metadata_ops != tuple(
            range(choice.metadata_kept))  # prefixes are written as None


def test_posix_choices_round_trip_through_json_and_other_choices_keep_their_json() -> None:
    disk = _rewrites(2)
    for choice in disk.crash_choices(POSIX):
        assert CrashChoice.from_json(choice.to_json()) == choice
    assert "metadata_ops" not in CrashChoice(POWER, 1, ()).to_json()
    explicit = CrashChoice(POSIX, 2, (), (0, 2))
    assert CrashChoice.from_json(explicit.to_json()) == explicit
    assert '"metadata_ops": [0, 2]' in explicit.to_json()


@pytest.mark.parametrize(("data", "message"), [
    ({"model": "power", "metadata_kept": 1, "metadata_ops": [0]},
     "metadata_ops: only 'power-posix-metadata'"),
    ({"model": "power-posix-metadata", "metadata_kept": 2, "metadata_ops": [1, 0]},
     "strictly increasing"),
    ({"model": "power-posix-metadata", "metadata_kept": 2, "metadata_ops": [3]},
     r"metadata_kept: must be len\(metadata_ops\) = 1"),
    ({"model": "power-posix-metadata", "metadata_kept": 0, "metadata_ops": "0"},
     "expected null or a list"),
    ({"model": "power-posix-metadata", "metadata_kept": 1, "metadata_ops": [True]},
     "integers >= 0"),
])
def test_malformed_metadata_ops_are_rejected_with_the_field_named(
    data: dict[str, Any], message: str,
) -> None:
    with pytest.raises(CrashChoiceError, match=message):
        CrashChoice.from_dict(data)


def test_a_choice_naming_operations_that_are_not_pending_is_rejected() -> None:
    disk = _create_then_rename()
    with pytest.raises(CrashChoiceError, match=r"positions in 0\.\.1"):
        disk.crash(POSIX, CrashChoice(POSIX, 1, (), (5,)))
    with pytest.raises(CrashChoiceError, match="metadata_ops: only"):
        disk.crash(POWER, CrashChoice(POWER, 1, (), (0,)))
    with pytest.raises(CrashChoiceError, match=r"metadata_kept: must be in 0\.\.2"):
        disk.crash(POSIX, CrashChoice(POSIX, 3, ()))


# -- properties ---------------------------------------------------------------------------------

DIRS = ("", "A", "B")
NAMES = ("x", "y")
FILES = tuple(f"{d}/{n}" if d else n for d in DIRS for n in NAMES)
file_ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(FILES), st.binary(max_size=3)),
        st.tuples(st.just("rename"), st.sampled_from(FILES), st.sampled_from(FILES)),
        st.tuples(st.just("unlink"), st.sampled_from(FILES)),
        st.tuples(st.just("fsync_dir"), st.sampled_from(DIRS)),
    ),
    max_size=14,
)


class _Settled:
    """The test's own account of what POSIX promises for files in fixed directories: the last
    write of an entry is settled once every directory that write's operation changed has been
    fsynced after it (a necessary condition only; the model may settle more)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int | None, set[str]]] = {}  # path -> (object, unsynced dirs)
        self.ino_of: dict[str, int] = {}

    def write(self, path: str, obj: int | None, dirs: set[str]) -> None:
        self.last[path] = (obj, set(dirs))

    def fsync_dir(self, d: str) -> None:
        for _, unsynced in self.last.values():
            unsynced.discard(d)

    def promised(self) -> Iterator[tuple[str, int | None]]:
        for path, (obj, unsynced) in self.last.items():
            if not unsynced:
                yield path, obj


def _run_file_ops(ops: list[tuple[Any, ...]]) -> tuple[SimDisk, _Settled]:
    disk = SimDisk()
    disk.mkdir("A")
    disk.mkdir("B")
    disk.fsync_dir("")
    account = _Settled()
    for op in ops:
        kind = op[0]
        try:
            if kind == "create":
                if disk.exists(op[1]):
                    continue
                _create(disk, op[1], op[2])
                ino = disk.inode_at(op[1])
                assert ino is not None
                account.write(op[1], ino.ino, {os.path.dirname(op[1])})
            elif kind == "rename":
                src, dst = op[1], op[2]
                node = disk.inode_at(src)
                disk.rename(src, dst)
                if src != dst and node is not None:
                    dirs = {os.path.dirname(src), os.path.dirname(dst)}
                    account.write(src, None, dirs)
                    account.write(dst, node.ino, dirs)
            elif kind == "unlink":
                disk.unlink(op[1])
                account.write(op[1], None, {os.path.dirname(op[1])})
            else:
                disk.fsync_dir(op[1])
                account.fsync_dir(op[1])
        except OSError:
            pass
    return disk, account


@given(file_ops)
def test_every_posix_image_keeps_what_fsyncs_settled_and_names_each_file_once(
    ops: list[tuple[Any, ...]],
) -> None:
    disk, account = _run_file_ops(ops)
    for choice in disk.crash_choices(POSIX):
        ns = disk.namespace_after(choice)
        assert len(set(ns.values())) == len(ns), choice  # no file under two names
        for path, obj in account.promised():
            assert ns.get(path) == obj, (path, choice)
        disk.crash(POSIX, choice)  # legal: materialises without a CrashChoiceError


def test_a_settled_create_then_a_pending_rename_away_keeps_the_file_under_one_name() -> None:
    disk, account = _run_file_ops([("create", "A/x", b"1"), ("fsync_dir", "A"),
                                   ("rename", "A/x", "B/y"), ("fsync_dir", "B")])
    names = {tuple(disk.namespace_after(c)) for c in disk.crash_choices(POSIX)}
    assert names == {("A/x",), ("B/y",)}
    assert dict(account.promised()) == {}  # neither entry is promised: A is not fsynced again


general_ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(["a", "d/a", "d/b", "e/a", "b"])),
        st.tuples(st.just("mkdir"), st.sampled_from(["d", "e", "d/f"])),
        st.tuples(st.just("rename"), st.sampled_from(["a", "b", "d", "e", "d/a", "d/f"]),
                  st.sampled_from(["a", "b", "d", "e", "e/a", "d/b", "e/f"])),
        st.tuples(st.just("unlink"), st.sampled_from(["a", "b", "d/a", "e/a"])),
        st.tuples(st.just("fsync_dir"), st.sampled_from(["", "d", "e", "d/f", "e/f"])),
    ),
    max_size=16,
)


def _run_general(ops: list[tuple[str, ...]]) -> SimDisk:
    disk = SimDisk()
    for op in ops:
        try:
            if op[0] == "create":
                _create(disk, op[1], b"c")
            else:
                getattr(disk, op[0])(*op[1:])
        except OSError:
            pass
    return disk


@given(general_ops)
def test_posix_images_include_every_journal_image_and_keeping_all_is_the_visible_state(
    ops: list[tuple[str, ...]],
) -> None:
    disk = _run_general(ops)
    limits = ImageLimits(max_metadata_subsets=10**6)
    posix = disk.crash_choices(POSIX, limits=limits)
    posix_images = {disk.crash(POSIX, c) for c in posix}
    assert posix.cut_by_metadata == 0
    assert {disk.crash(POWER, c) for c in disk.crash_choices(POWER)} <= posix_images
    everything = CrashChoice(POSIX, disk.pending_posix_metadata, ())
    assert disk.crash(POSIX, everything).files == disk.crash(POWER, CrashChoice(
        POWER, disk.pending_metadata, ())).files == disk.visible_image().files
    assert disk.crash(POSIX, everything).dirs == disk.visible_image().dirs
    for choice in posix:
        ns = disk.namespace_after(choice)
        assert len(set(ns.values())) == len(ns)


def test_keeping_every_pending_operation_after_directory_renames_is_the_visible_state() -> None:
    disk = _run_general([("mkdir", "d"), ("create", "d/a"), ("fsync_dir", ""),
                         ("mkdir", "e"), ("rename", "d", "e"), ("create", "e/b"),
                         ("fsync_dir", "e")])
    everything = CrashChoice(POSIX, disk.pending_posix_metadata, ())
    assert disk.crash(POSIX, everything) == disk.visible_image() == DiskImage(
        {"e/a": b"c", "e/b": b"c"}, ["e"])


@given(general_ops, st.data())
def test_strategy_posix_choices_are_legal_and_survive_a_json_round_trip(
    ops: list[tuple[str, ...]], data: st.DataObject,
) -> None:
    disk = _run_general(ops)
    choice = data.draw(disk.crash_choice_strategy(POSIX))
    disk.crash(POSIX, choice)
    assert CrashChoice.from_json(choice.to_json()) == choice


def test_the_strategy_shrinks_to_the_settled_state() -> None:
    disk = _rewrites(2)
    choose = disk.crash_choice_strategy(POSIX)
    from hypothesis import find

    smallest = find(choose, lambda c: True)
    assert smallest == CrashChoice(POSIX, 0, ())


@given(general_ops)
def test_replay_rebuilds_the_same_posix_choices_and_images(ops: list[tuple[str, ...]]) -> None:
    original = _run_general(ops)
    *_, replayed = SimDisk.replay(original.trace)
    choices = list(original.crash_choices(POSIX))
    assert list(replayed.crash_choices(POSIX)) == choices
    assert [replayed.crash(POSIX, c) for c in choices] == [original.crash(POSIX, c)
                                                          for c in choices]
