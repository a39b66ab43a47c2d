"""What a crash image lacks or resurrects against what the server wrote (violation mechanisms)."""

from __future__ import annotations

import os

from faults import PersistenceModel, SimDisk
from harness.verify._mechanism import (
    PAGE_BYTES,
    cause_text,
    describe_effects,
    image_effects,
    normalise_name,
    same_mechanism_part,
    server_reason_kind,
    zero_holes,
)


def test_a_file_whose_create_was_not_durable_is_lacking() -> None:
    assert image_effects({"appendonly.aof": b"*1\r\n"}, {}) == ("lacks appendonly.aof",)


def test_a_renamed_over_file_that_comes_back_is_older_and_temp_files_do_not_count() -> None:
    visible = {"appendonly.aof": b"NEW rewritten contents + later writes"}
    image = {"appendonly.aof": b"OLD contents", "temp-rewriteaof-bg-77.aof": b"NEW"}
    assert image_effects(visible, image) == ("has an older appendonly.aof",)
    assert image_effects({}, {"d/old.aof": b"x"}) == ("resurrects d/old.aof",)


def test_a_variant_is_the_same_violation_only_with_a_part_of_the_trials_effects() -> None:
    both = (("has zeros in incr", "lacks incr"), "")
    assert same_mechanism_part((("has zeros in incr",), ""), both)
    assert same_mechanism_part((("lacks incr",), ""), both)
    # The same writes lost another way (the old file instead of none) is another violation.
    assert not same_mechanism_part((("lacks aof",), ""), (("has an older aof",), ""))
    assert not same_mechanism_part(((), ""), both)
    assert same_mechanism_part(((), ""), ((), ""))  # the server's own doing, both times
    assert not same_mechanism_part(((), "Bad file format"), ((), ""))


def test_unsynced_appends_cut_a_file_short_or_empty_it() -> None:
    assert image_effects({"a": b"abcdef"}, {"a": b"abc"}) == ("has a cut short",)
    assert image_effects({"a": b"abcdef"}, {"a": b""}) == ("has a empty",)


def test_a_failed_fsyncs_range_reads_as_zeros() -> None:
    assert image_effects({"a": b"abcdef"}, {"a": b"ab\0\0ef"}) == ("has zeros in a",)


def test_a_durable_size_over_lost_data_reads_as_a_zero_filled_end() -> None:
    assert image_effects({"a": b"abcdef"}, {"a": b"abc\0\0\0"}) == ("has a zero-filled at its end",)
    assert image_effects({"a": b"abcdef"}, {"a": b"\0" * 6}) == ("has a zero-filled at its end",)


def test_a_loaded_zero_filled_end_is_the_cause_of_a_file_cut_short_a_refused_one_is_not() -> None:
    cut = "durability: the image has appendonly.aof cut short"
    assert cause_text("durability: the image has appendonly.aof empty") == cut
    assert cause_text("durability: the image has appendonly.aof zero-filled at its end") == cut
    # The server refused the zeros: they, not the lost appends, explain the violation.
    refused = ("availability: the image has appendonly.aof zero-filled at its end; the server: "
               "Bad file format reading the append only file")
    assert cause_text(refused) == refused
    # Zeros with data after them (a failed fsync's range) are another mechanism.
    zeros = "durability: the image has zeros in appendonly.aof"
    assert cause_text(zeros) == zeros


def test_an_image_equal_to_what_was_written_has_no_effect() -> None:
    assert image_effects({"a": b"x"}, {"a": b"x"}) == ()
    assert "its own doing" in describe_effects(())


def test_names_and_server_reasons_are_normalised_across_runs() -> None:
    assert normalise_name("appendonlydir/appendonly.aof.12.incr.aof") == \
        "appendonlydir/appendonly.aof.N.incr.aof"
    line = ("4242:M 07 Dec 2026 17:19:01.123 # Bad file format reading the append only file "
            "appendonly.aof.3.incr.aof")
    assert server_reason_kind(line) == ("Bad file format reading the append only file "
                                        "appendonly.aof.N.incr.aof")


def test_a_failed_fsync_over_a_page_boundary_leaves_a_zero_hole_ending_at_that_boundary() -> None:
    # Linux writes back pages: the appends after the failed fsync make the page they land in
    # dirty again, whole; the page before it, which nothing touched again, stays dropped.
    disk = SimDisk()
    fd = disk.open("appendonly.aof", os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"*" * 3000)
    disk.fsync(fd)
    disk.write(fd, b"a" * 2000)  # [3000, 5000): the rest of page 0 and part of page 1
    disk.fail_fsync(fd)
    disk.write(fd, b"b" * 5000)  # from page 1 on
    disk.fsync(fd)
    visible = disk.crash(PersistenceModel.PROCESS).files
    image = disk.crash(PersistenceModel.POWER).files
    assert zero_holes(visible["appendonly.aof"], image["appendonly.aof"]) == [(3000, PAGE_BYTES)]
    assert image_effects(visible, image) == ("has zeros in appendonly.aof",)


def test_a_failed_fsync_inside_one_page_leaves_no_hole_once_the_page_is_written_again() -> None:
    disk = SimDisk()
    fd = disk.open("appendonly.aof", os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    disk.fsync_dir("")
    disk.write(fd, b"*" * 100)
    disk.fsync(fd)
    disk.write(fd, b"a" * 2000)
    disk.fail_fsync(fd)
    disk.write(fd, b"b" * 5000)
    disk.fsync(fd)
    visible = disk.crash(PersistenceModel.PROCESS).files
    image = disk.crash(PersistenceModel.POWER).files
    assert zero_holes(visible["appendonly.aof"], image["appendonly.aof"]) == []
    assert image == visible


def test_zeros_the_server_wrote_and_a_zero_filled_end_are_no_hole() -> None:
    written = b"*1\r\n$3\r\n\0\0\0\r\n" + b"data" * 10
    assert zero_holes(written, written) == []
    assert zero_holes(written, written[:10] + bytes(len(written) - 10)) == []
    # The run of zeros starts at the zeros the server wrote itself.
    assert zero_holes(written, written[:10] + bytes(10) + written[20:]) == [(8, 20)]
