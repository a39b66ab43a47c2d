"""AOF loading (AofLoader, Server.start) and check_aof / fix_aof."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from faults import (
    Clock,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    ImageKind,
    IOFault,
    PersistenceModel,
    SimDisk,
)
from reference import (
    HIREDIS_AVAILABLE,
    AofLoader,
    AppendFsync,
    KeyspaceDump,
    LoadError,
    Profile,
    Server,
    ServerConfig,
    check_aof,
    encode_command,
    fix_aof,
)
from reference._aof import _load_rdb, _lzf_decompress
from reference._rdb import RdbCheckResult, crc64_jones

AOF = "appendonly.aof"


def rec(*args: str) -> bytes:
    return encode_command([a.encode() for a in args])


def disk_with(data: bytes) -> SimDisk:
    disk = SimDisk()
    fd = disk.open(AOF, 0o1 | 0o100)  # O_WRONLY | O_CREAT
    disk.write(fd, data)
    disk.close(fd)
    return disk


def start(data: bytes, **kw: object) -> tuple[Server, SimDisk]:
    disk = disk_with(data)
    server = Server(disk, Clock(), ServerConfig(**kw))  # type: ignore[arg-type]
    server.start()
    return server, disk


BASE = rec("SELECT", "0") + rec("SET", "a", "1") + rec("RPUSH", "l", "x", "y")


def test_missing_or_empty_aof_is_an_empty_keyspace() -> None:
    server = Server(SimDisk(), Clock())
    server.start()
    assert server.dump() == {}
    empty, _ = start(b"")
    assert empty.dump() == {}


def test_torn_tail_is_truncated_on_disk_with_a_warning_naming_the_offset() -> None:
    torn = rec("SET", "b", "2")[:-3]
    server, disk = start(BASE + torn)
    assert server.dump() == {0: {b"a": ("string", b"1", None), b"l": ("list", [b"x", b"y"], None)}}
    assert disk.visible_image().files[AOF] == BASE
    assert any(f"Truncating the AOF at offset {len(BASE)}" in line for line in server.log)


def test_torn_tail_refuses_to_start_without_aof_load_truncated() -> None:
    disk = disk_with(BASE + b"*3\r\n$3\r\nSE")
    server = Server(disk, Clock(), ServerConfig(aof_load_truncated=False))
    with pytest.raises(LoadError) as info:
        server.start()
    assert info.value.offset_bytes == len(BASE)
    assert info.value.reason == "Unexpected end of file"
    assert server.stopped


def test_unfinished_multi_at_the_tail_is_rolled_back_and_truncated_before_multi() -> None:
    data = BASE + rec("MULTI") + rec("SET", "a", "2") + rec("INCR", "n")
    server, disk = start(data)
    assert server.dump()[0][b"a"] == ("string", b"1", None)
    assert b"n" not in server.dump()[0]
    assert disk.visible_image().files[AOF] == BASE
    assert any("Revert incomplete MULTI/EXEC transaction" in line for line in server.log)


def test_redis_3_0_truncates_an_unfinished_multi_after_its_last_complete_command() -> None:
    data = BASE + rec("MULTI") + rec("SET", "a", "2") + rec("INCR", "n")[:-2]
    server, disk = start(data, profile=Profile.REDIS_3_0)
    assert server.dump()[0][b"a"] == ("string", b"1", None)
    assert disk.visible_image().files[AOF] == BASE + rec("MULTI") + rec("SET", "a", "2")


def test_complete_multi_exec_is_applied() -> None:
    server, _ = start(BASE + rec("MULTI") + rec("SET", "a", "2") + rec("EXEC"))
    assert server.dump()[0][b"a"] == ("string", b"2", None)


@pytest.mark.parametrize("use_hiredis", [False, True] if HIREDIS_AVAILABLE else [False])
def test_garbage_refuses_to_start_naming_the_byte_offset(use_hiredis: bool) -> None:
    data = BASE + b"\x00" * 600 + rec("SET", "z", "1") * 20_000
    loader = AofLoader(use_hiredis=use_hiredis)
    with pytest.raises(LoadError) as info:
        loader.feed(data)
    assert info.value.offset_bytes == len(BASE)
    assert "Bad file format" in info.value.reason
    disk = disk_with(data)
    with pytest.raises(LoadError) as started:
        Server(disk, Clock()).start()
    assert started.value.offset_bytes == len(BASE)


def test_unknown_command_refuses_to_start() -> None:
    with pytest.raises(LoadError) as info:
        start(BASE + rec("FROB", "x"))
    assert info.value.offset_bytes == len(BASE)
    assert "Unknown command 'FROB'" in info.value.reason


def test_loaded_expiry_in_the_past_is_absent_but_kept_until_touched() -> None:
    data = rec("SET", "k", "v", "PXAT", "100") + rec("SET", "j", "v")
    disk = disk_with(data)
    server = Server(disk, Clock(200))
    server.start()
    assert server.dump() == {0: {b"j": ("string", b"v", None)}}


def _aof(n: int) -> bytes:
    parts = [rec("SELECT", "0")]
    for i in range(n):
        key = f"k{i % 97}"
        if i % 11 == 0:
            parts.append(rec("MULTI") + rec("INCR", "ctr") + rec("SADD", "s", key) + rec("EXEC"))
        elif i % 7 == 0:
            parts.append(rec("RPUSH", "l", "a\r\n*b", str(i)))
        else:
            parts.append(rec("SET", key, "v" * (i % 50)))
    return b"".join(parts)


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
def test_hiredis_and_pure_paths_agree_on_a_large_file_with_a_torn_open_multi() -> None:
    data = _aof(30_000) + rec("MULTI") + rec("SET", "k1", "changed") + b"*3\r\n$3"
    results = []
    for use in (True, False):
        loader = AofLoader(use_hiredis=use)
        loader.feed(data)
        results.append((loader.result(), loader.commands_applied, loader.dump(0)))
    assert results[0] == results[1]
    assert results[0][0].valid_offset_bytes == len(_aof(30_000))
    assert results[0][0].multi_open


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
def test_hiredis_path_with_large_chunks_cut_mid_command_matches_pure() -> None:
    data = _aof(120_000)  # several hiredis pieces per feed
    chunk = 1_000_003  # cuts land inside arrays, between elements and inside bulks
    loaders = [AofLoader(use_hiredis=True), AofLoader(use_hiredis=False)]
    for loader in loaders:
        for off in range(0, len(data), chunk):
            loader.feed(data[off : off + chunk])
    assert loaders[0].result() == loaders[1].result()
    assert loaders[0].result().valid_offset_bytes == len(data)
    assert loaders[0].dump(0) == loaders[1].dump(0)


@given(st.lists(st.integers(min_value=1, max_value=70_000), max_size=6), st.integers(0, 5))
def test_incremental_feeding_matches_one_shot_loading(cuts: list[int], tail: int) -> None:
    data = _aof(3_000) + rec("MULTI") + rec("SET", "x", "1")[: tail * 3]
    whole = AofLoader()
    whole.feed(data)
    parts = AofLoader()
    last = 0
    for cut in [*sorted(set(c % len(data) for c in cuts)), len(data)]:
        parts.feed(data[last:cut])
        last = cut
    assert parts.result() == whole.result()
    assert parts.dump(0) == whole.dump(0)


def test_incremental_feeding_byte_by_byte_across_a_multi_boundary() -> None:
    data = rec("SET", "a", "1") + rec("MULTI") + rec("SET", "a", "2") + rec("EXEC")
    loader = AofLoader()
    offsets = []
    for i in range(len(data)):
        loader.feed(data[i : i + 1])
        offsets.append(loader.valid_offset_bytes)
    first = len(rec("SET", "a", "1"))
    assert offsets[first - 1] == first
    assert offsets[-2] == first  # EXEC not complete yet: the MULTI is still open
    assert offsets[-1] == len(data)
    assert loader.dump(0) == {0: {b"a": ("string", b"2", None)}}


def test_check_aof_valid_and_fix() -> None:
    good = BASE + rec("MULTI") + rec("SET", "a", "2") + rec("EXEC")
    result = check_aof(good)
    assert result.valid and result.reason is None and result.commands == 6
    assert result.last_valid_offset_bytes == len(good)
    bad = good + rec("MULTI") + rec("SET", "b", "1")
    result = check_aof(bad)
    assert not result.valid and result.last_valid_offset_bytes == len(good)
    assert result.reason is not None and "EXEC for MULTI" in result.reason
    assert fix_aof(bad) == good
    torn = good + b"*2\r\n$3\r\nDEL\r\n$1"
    assert fix_aof(torn) == good and "end of file" in (check_aof(torn).reason or "")
    garbage = good + b"$3\r\nfoo\r\n" + good
    assert fix_aof(garbage) == good and check_aof(garbage).diff_bytes == len(garbage) - len(good)
    assert not check_aof(rec("EXEC")).valid


def test_check_aof_requires_crlf_after_bulks() -> None:
    data = rec("SET", "a", "1") + b"*2\r\n$3\r\nDEL\r\n$1\r\nkXX"
    result = check_aof(data)
    assert not result.valid and "expected \\r\\n" in (result.reason or "")
    assert result.last_valid_offset_bytes == len(rec("SET", "a", "1"))


@given(st.binary(max_size=200))
def test_check_aof_never_raises_and_fix_is_idempotent(junk: bytes) -> None:
    fixed = fix_aof(BASE + junk)
    assert fixed.startswith(BASE)
    assert check_aof(fixed).valid
    assert fix_aof(fixed) == fixed


def test_check_aof_example_of_junk_that_looks_like_a_command_start() -> None:
    data = BASE + b"*1\r\n$"
    assert fix_aof(data) == BASE


def _outcome(data: bytes, use_hiredis: bool) -> object:
    loader = AofLoader(use_hiredis=use_hiredis)
    try:
        loader.feed(data)
        result = loader.finish()
    except LoadError as exc:
        return ("refused", exc.offset_bytes)
    return (result, loader.dump(0))


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
@given(st.integers(0, 10**9), st.binary(max_size=64))
def test_hiredis_and_pure_paths_agree_on_torn_and_garbage_tails(cut: int, junk: bytes) -> None:
    # '+' is excluded: hiredis accepts simple strings as array elements (documented difference).
    assume(b"+" not in junk)
    good = _aof(2_500)
    data = good[: cut % (len(good) + 1)] + junk
    assert _outcome(data, True) == _outcome(data, False)


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
@pytest.mark.parametrize(
    "junk",
    [b"", b"\x00" * 40, b"\x00" * 2000, b"\x00" * 40 + b"*", b":1\r\n", b"*1\r\n:5\r\n",
     b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nx\r\n", b"$3\r\nSET\r\n", b"*-1\r\n",
     b"*1\r\n$4\r\nEXEC\r\n", b"*1\r\n$5\r\nMULTI\r\n"],
)
def test_hiredis_and_pure_paths_agree_on_junk_examples(junk: bytes) -> None:
    good = _aof(2_500)
    for cut in (len(good), len(good) - 7):
        data = good[:cut] + junk
        assert _outcome(data, True) == _outcome(data, False)


# -- all-zero tails: a torn tail in `safe`, garbage in `redis-3.0` --------------------------------

ZEROS = b"\x00" * 40
BASE_DUMP = {0: {b"a": ("string", b"1", None), b"l": ("list", [b"x", b"y"], None)}}


def _refused(data: bytes, **kw: object) -> LoadError:
    server = Server(disk_with(data), Clock(), ServerConfig(**kw))  # type: ignore[arg-type]
    with pytest.raises(LoadError) as info:
        server.start()
    assert server.stopped
    return info.value


def test_all_zero_tail_after_valid_commands_is_truncated_with_a_log_line() -> None:
    server, disk = start(BASE + ZEROS)
    assert server.dump() == BASE_DUMP
    assert disk.visible_image().files[AOF] == BASE
    assert any(f"ends in 40 zero bytes from offset {len(BASE)}" in line for line in server.log)
    assert any(f"Truncating the AOF at offset {len(BASE)}" in line for line in server.log)


def test_redis_3_0_refuses_an_all_zero_tail_like_redis() -> None:
    error = _refused(BASE + ZEROS, profile=Profile.REDIS_3_0)
    assert error.offset_bytes == len(BASE) and "Bad file format" in error.reason


def test_zeros_from_byte_0_are_an_empty_aof_in_safe_and_refused_by_redis_3_0() -> None:
    server, disk = start(ZEROS)
    assert server.dump() == {}
    assert disk.visible_image().files[AOF] == b""
    assert any("ends in 40 zero bytes from offset 0" in line for line in server.log)
    error = _refused(ZEROS, profile=Profile.REDIS_3_0)
    assert error.offset_bytes == 0 and "expected '*'" in error.reason


def test_a_single_zero_byte_is_an_empty_aof_in_safe_and_refused_by_redis_3_0() -> None:
    server, disk = start(b"\x00")
    assert server.dump() == {}
    assert disk.visible_image().files[AOF] == b""
    _refused(b"\x00", profile=Profile.REDIS_3_0)
    server, disk = start(BASE + b"\x00")
    assert server.dump() == BASE_DUMP and disk.visible_image().files[AOF] == BASE


@pytest.mark.parametrize("profile", list(Profile))
def test_zeros_followed_by_data_are_refused_by_both_profiles(profile: Profile) -> None:
    for data in (BASE + ZEROS + rec("SET", "z", "1"), ZEROS + b"x", BASE + ZEROS + b"\x01"):
        error = _refused(data, profile=profile)
        assert error.offset_bytes == (len(BASE) if data.startswith(BASE) else 0)
        assert "Bad file format" in error.reason


def _hole_to_page_end(prefix: bytes) -> bytes:
    return bytes(-len(prefix) % 4096)


def test_a_zero_hole_ending_at_a_page_boundary_is_cut_at_the_zeros_in_safe() -> None:
    # What Linux leaves when an fsync fails and later pages are written back: the pages it
    # dropped read as zeros, the data after them is there.
    after = rec("SET", "late", "x") * 3
    data = BASE + _hole_to_page_end(BASE) + after
    server, disk = start(data)
    assert server.dump() == BASE_DUMP
    assert disk.visible_image().files[AOF] == BASE
    assert any(f"zero bytes from offset {len(BASE)} to 4096" in line and
               f"then {len(after)} bytes" in line for line in server.log)
    error = _refused(data, profile=Profile.REDIS_3_0)
    assert error.offset_bytes == len(BASE) and "Bad file format" in error.reason


def test_zeros_ending_off_a_page_boundary_or_starting_inside_a_command_are_refused() -> None:
    partial = rec("SET", "b", "hello")[:9]
    for data in (BASE + _hole_to_page_end(BASE)[:-1] + rec("SET", "z", "1"),
                 BASE + partial + _hole_to_page_end(BASE + partial) + rec("SET", "z", "1")):
        error = _refused(data)
        assert error.offset_bytes == len(BASE) and "Bad file format" in error.reason


@pytest.mark.parametrize("use_hiredis", [False, True] if HIREDIS_AVAILABLE else [False])
@pytest.mark.parametrize("piece_bytes", [1, 500, 4096, 100_000])
def test_a_zero_hole_fed_in_pieces_is_cut_where_the_zeros_begin(use_hiredis: bool,
                                                                piece_bytes: int) -> None:
    big = _aof(2_000)  # long enough for the hiredis path
    data = big + _hole_to_page_end(big) + big
    loader = AofLoader(use_hiredis=use_hiredis)
    for start_byte in range(0, len(data), piece_bytes):
        loader.feed(data[start_byte:start_byte + piece_bytes])
    result = loader.finish()
    assert result.valid_offset_bytes == result.zero_tail_offset_bytes == len(big)
    assert result.zero_hole_end_offset_bytes == -(-len(big) // 4096) * 4096
    assert loader.dump(0) == _loaded(big)


def test_the_start_of_a_command_followed_by_zeros_is_a_torn_tail() -> None:
    partial = rec("SET", "b", "hello")
    for cut in (1, 4, 9, 15, len(partial) - 9):  # inside the header, a bulk, a length line
        server, disk = start(BASE + partial[:cut] + ZEROS)
        assert server.dump() == BASE_DUMP, cut
        assert disk.visible_image().files[AOF] == BASE


def test_a_command_completed_by_zero_bytes_is_refused() -> None:
    # The zeros stand for the CRLF after the last bulk: the lax loader would apply a command
    # with a value the server never wrote, so this is garbage, not a torn tail.
    for cut in (2, 6):  # the CRLF, or the end of the value and the CRLF
        error = _refused(BASE + rec("SET", "b", "hello")[:-cut] + ZEROS)
        assert "Bad file format" in error.reason


def test_zeros_inside_an_open_multi_roll_the_transaction_back() -> None:
    server, disk = start(BASE + rec("MULTI") + rec("SET", "a", "2") + ZEROS)
    assert server.dump() == BASE_DUMP
    assert disk.visible_image().files[AOF] == BASE


def test_all_zero_tail_refuses_to_start_without_aof_load_truncated() -> None:
    error = _refused(BASE + ZEROS, aof_load_truncated=False)
    assert error.offset_bytes == len(BASE) and error.reason == "Unexpected end of file"


@pytest.mark.parametrize("use_hiredis", [False, True] if HIREDIS_AVAILABLE else [False])
def test_zero_tail_fed_in_pieces_is_accepted_until_data_follows(use_hiredis: bool) -> None:
    big = _aof(2_000)  # long enough for the hiredis path
    loader = AofLoader(use_hiredis=use_hiredis)
    for piece in (big, b"\x00" * 3000, b"\x00" * 5):
        loader.feed(piece)
    result = loader.finish()
    assert result.valid_offset_bytes == len(big) and result.zero_tail_offset_bytes == len(big)
    assert result.size_bytes == len(big) + 3005
    assert loader.dump(0) == _loaded(big)
    with pytest.raises(LoadError) as info:
        loader.feed(b"\x00\x00*")
    assert info.value.offset_bytes == len(big) and "Bad file format" in info.value.reason
    refusing = AofLoader(use_hiredis=use_hiredis, zero_tail_truncated=False)
    with pytest.raises(LoadError):
        refusing.feed(big + b"\x00" * 3000)


def _loaded(data: bytes) -> object:
    loader = AofLoader(use_hiredis=False)
    loader.feed(data)
    return loader.dump(0)


@given(st.integers(0, 10**9), st.integers(1, 2_000))
def test_a_zero_tail_never_loads_more_than_the_torn_file_it_replaces(cut: int, zeros: int) -> None:
    good = _aof(300)
    prefix = good[: cut % (len(good) + 1)]
    torn = AofLoader()
    torn.feed(prefix)
    loader = AofLoader()
    try:
        loader.feed(prefix + b"\x00" * zeros)
        result = loader.finish()
    except LoadError:
        # Only a command the zeros completed (its CRLF or its end inside the zeros) is refused.
        assert torn.result().truncated
        return
    assert result.valid_offset_bytes == torn.result().valid_offset_bytes
    assert loader.dump(0) == torn.dump(0)


def test_a_zero_tail_at_a_command_boundary_example() -> None:
    good = _aof(300)
    loader = AofLoader()
    loader.feed(good + b"\x00")
    assert loader.finish().valid_offset_bytes == len(good)
    assert loader.dump(0) == _loaded(good)


def test_a_last_command_whose_crlf_is_the_zero_tail_is_refused_at_the_end_of_file() -> None:
    # The lax loader completes the command with the two zero bytes; only EOF tells it that they
    # were the zero tail. `redis-3.0` keeps Redis's laxness and applies it.
    data = BASE + rec("SET", "b", "hello")[:-2] + b"\x00\x00"
    loader = AofLoader()
    loader.feed(data)
    with pytest.raises(LoadError) as info:
        loader.finish()
    assert info.value.offset_bytes == len(data) - 2
    _refused(data)
    lax, _ = start(data, profile=Profile.REDIS_3_0)
    assert lax.dump()[0][b"b"] == ("string", b"hello", None)


@pytest.mark.parametrize("profile", list(Profile))
def test_failed_fsync_then_power_loss_keeping_the_length_of_zeros(profile: Profile) -> None:
    # Found by `aofcrash fuzz --strict-availability --seed 11`: always, the first fdatasync fails
    # (Linux semantics: the range is dropped), FLUSHDB is never acknowledged, and the power loss
    # keeps the file's 40-byte length but not its data. `profile` is the one that restarts.
    disk = SimDisk()
    plan = FaultPlan((IOFault(op=FaultOp.FDATASYNC, path_glob=AOF),))
    server = Server(FaultyFileSystem(disk, plan), Clock(),
                    ServerConfig(appendfsync=AppendFsync.ALWAYS))
    server.start()
    ticket = server.submit([b"FLUSHDB"])
    server.run_iteration()
    assert server.stopped and not server.released(ticket)
    choices = [c for c in disk.crash_choices(PersistenceModel.POWER) if c.files]
    assert [c.files[0].kind for c in choices] == [ImageKind.PREFIX]
    assert choices[0].files[0].length_bytes == 40
    image = disk.crash(PersistenceModel.POWER, choices[0])
    assert image.files[AOF] == ZEROS
    restarted = Server(SimDisk.from_image(image), Clock(), ServerConfig(profile=profile))
    if profile is Profile.SAFE:
        restarted.start()
        assert restarted.dump() == {}
        assert restarted.execute([b"SET", b"k", b"v"]) == "OK"
    else:
        with pytest.raises(LoadError, match="expected '\\*'"):
            restarted.start()


# -- header lines as every real loader reads them (issue 14) ---------------------------------------

SET_B = rec("SET", "b", "2")
B_DUMP = {0: {b"b": ("string", b"2", None)}}
PATHS = [False, True] if HIREDIS_AVAILABLE else [False]


def _both_paths(data: bytes, **kw: object) -> Any:
    """The outcome of loading ``data`` on the pure path, checked equal on the hiredis path."""
    outcomes: list[Any] = []
    for use_hiredis in PATHS:
        loader = AofLoader(use_hiredis=use_hiredis, **kw)  # type: ignore[arg-type]
        try:
            loader.feed(data)
            result = loader.finish()
            outcomes.append((result.valid_offset_bytes, result.size_bytes, loader.dump(0)))
        except LoadError as exc:
            outcomes.append(("refused", exc.offset_bytes))
    assert all(o == outcomes[0] for o in outcomes), outcomes
    return outcomes[0]


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("data", [
    b"*3\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n",  # a '*' line without its CR
    b"*3\r\n$3\nSET\r\n$1\nb\r\n$1\n2\r\n",  # '$' lines without their CR
    b"*+3\r\n$+3\r\nSET\r\n$+1\r\nb\r\n$1\r\n2\r\n",  # signs
    b"* 3\r\n$ 3\r\nSET\r\n$\t1\r\nb\r\n$\r1\r\n2\r\n",  # blanks before the digits
    b"*3x\r\n$3 junk\r\nSET\r\n$1\x00\x00\r\nb\r\n$01\r\n2\r\n",  # junk after the digits
])
def test_header_lines_are_read_like_fgets_and_strtol_by_both_profiles(
        profile: Profile, data: bytes) -> None:
    server, disk = start(data, profile=profile)
    assert server.dump() == B_DUMP
    assert disk.visible_image().files[AOF] == data  # whole: nothing truncated
    assert _both_paths(BASE + data, rollback_multi=profile is Profile.SAFE)[2] == {
        0: {**BASE_DUMP[0], **B_DUMP[0]}}


def test_check_aof_calls_lf_only_and_junk_after_digits_invalid_but_signs_and_blanks_valid() -> None:
    # Like redis-check-aof: strtol, then "\r\n" right after the number.
    for data in (b"*3\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n",
                 b"*3\r\n$3\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n",
                 b"*3x\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n"):
        result = check_aof(BASE + data)
        assert not result.valid and result.last_valid_offset_bytes == len(BASE), data
    for data in (b"*+3\r\n$+3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n",
                 b"* 3\r\n$ 3\r\nSET\r\n$\t1\r\nb\r\n$+1\r\n2\r\n"):
        result = check_aof(BASE + data)
        assert result.valid and result.commands == 4, data


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("junk", [b"*0\r\n", b"*-1\r\n", b"*\r\n", b"*x\r\n",
                                  b"*1\r\n$-1\r\n", b"*1\r\n$\r\n\r\n", b"*1\r\n$-\r\n"])
def test_zero_negative_and_digitless_lengths_are_still_refused(profile: Profile,
                                                               junk: bytes) -> None:
    error = _refused(BASE + junk + SET_B, profile=profile)
    assert error.offset_bytes == len(BASE) and "Bad file format" in error.reason
    assert not check_aof(BASE + junk + SET_B).valid


def test_a_header_line_without_its_line_end_in_32_bytes_is_garbage_not_a_torn_tail() -> None:
    # No server writes a longer one: a longer window would take garbage for a torn tail.
    assert _both_paths(BASE + b"*3" + b" " * 29)[:2] == (len(BASE), len(BASE) + 31)  # torn
    assert _both_paths(BASE + b"*3" + b" " * 30) == ("refused", len(BASE))


_HEADER_STYLES = st.sampled_from([
    b"%d\r\n", b"%d\n", b"+%d\r\n", b" %d\r\n", b"\t+%d\n", b"%dx\r\n", b"0%d\r\n", b"%d \x00\r\n",
])


@given(st.lists(st.tuples(st.sampled_from(["SET", "RPUSH", "SADD", "HSET"]),
                          st.binary(min_size=1, max_size=3), st.binary(max_size=40)),
                min_size=1, max_size=12),
       st.data())
def test_any_mix_of_lax_header_lines_loads_like_the_crlf_file(
        commands: list[tuple[str, bytes, bytes]], data: st.DataObject) -> None:
    crlf, lax = [], []
    for name, key, value in commands:
        argv = [name.encode(), key] + ([b"f", value] if name == "HSET" else [value])
        crlf.append(encode_command(argv))
        parts = [b"*" + data.draw(_HEADER_STYLES) % len(argv)]
        for arg in argv:
            parts.append(b"$" + data.draw(_HEADER_STYLES) % len(arg) + arg + b"\r\n")
        lax.append(b"".join(parts))
    expected = _both_paths(b"".join(crlf))
    size = len(b"".join(lax))
    assert _both_paths(b"".join(lax)) == (size, size, expected[2])


# -- '#' annotations: skipped by `safe` (Redis 7.0+), refused by `redis-3.0` ---------------------

TS = b"#TS:1700000000\r\n"


def test_safe_skips_annotation_lines_wherever_a_command_may_start() -> None:
    data = TS + BASE + b"#TS:1700000001\n" + rec("MULTI") + TS + SET_B + rec("EXEC") + TS
    server, disk = start(data)
    assert server.dump() == {0: {**BASE_DUMP[0], **B_DUMP[0]}}
    assert disk.visible_image().files[AOF] == data  # a file ending in an annotation is whole
    assert check_aof(data).valid


def test_redis_3_0_refuses_an_annotation_like_redis_6() -> None:
    error = _refused(BASE + TS + SET_B, profile=Profile.REDIS_3_0)
    assert error.offset_bytes == len(BASE) and "expected '*', got b'#'" in error.reason


def test_an_annotation_line_of_more_than_1023_bytes_is_refused() -> None:
    fits = b"#" + b"x" * 1021 + b"\n"  # 1023 bytes with its newline: Redis 7.0's fgets buffer
    server, _ = start(BASE + fits + SET_B)
    assert server.dump() == {0: {**BASE_DUMP[0], **B_DUMP[0]}}
    error = _refused(BASE + b"#" + b"x" * 1022 + b"\n" + SET_B)
    assert error.offset_bytes == len(BASE) and "longer than 1023 bytes" in error.reason


def test_a_torn_annotation_is_a_torn_tail_in_safe_truncated_or_refused() -> None:
    # 7.0 and Valkey load "#TS:17" as it is; the next command appended would be glued onto it.
    server, disk = start(BASE + b"#TS:17")
    assert server.dump() == BASE_DUMP
    assert disk.visible_image().files[AOF] == BASE
    error = _refused(BASE + b"#TS:17", aof_load_truncated=False)
    assert error.offset_bytes == len(BASE) and error.reason == "Unexpected end of file"
    _refused(BASE + b"#TS:17", profile=Profile.REDIS_3_0)


def test_a_torn_command_after_annotations_is_cut_where_7_0_cuts_it() -> None:
    # Redis 7.0 truncates at the end of the last complete command, before the annotations.
    server, disk = start(BASE + TS + TS + SET_B[:9])
    assert server.dump() == BASE_DUMP
    assert disk.visible_image().files[AOF] == BASE


def test_annotations_then_zeros_are_a_torn_tail_in_safe() -> None:
    server, disk = start(BASE + TS + b"*3\r\n$3" + ZEROS)
    assert server.dump() == BASE_DUMP and disk.visible_image().files[AOF] == BASE
    server, disk = start(BASE + b"#TS:1" + b"\x00" * 2000)
    assert server.dump() == BASE_DUMP and disk.visible_image().files[AOF] == BASE


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
def test_hiredis_resumes_after_annotations_and_lax_headers_and_agrees_with_pure() -> None:
    pieces = []
    for i in range(40):
        pieces.append(_aof(400))
        pieces.append(TS if i % 2 else b"*3\n$3\r\nSET\r\n$1\r\nq\r\n$2\r\n%02d\r\n" % i)
    data = b"".join(pieces) + rec("MULTI") + TS + SET_B
    results = []
    for use in (True, False):
        loader = AofLoader(use_hiredis=use)
        for off in range(0, len(data), 300_007):
            loader.feed(data[off : off + 300_007])
        results.append((loader.result(), loader.commands_applied, loader.dump(0)))
    assert results[0] == results[1]
    assert results[0][0].multi_open and results[0][2][0][b"q"] == ("string", b"38", None)


@pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not importable")
@given(st.integers(0, 10**9), st.binary(max_size=64),
       st.sampled_from([b"", TS, b"#", b"\n", b"*2\n", b"$+1\r\n", b"* 3\r\n"]))
def test_hiredis_and_pure_paths_agree_on_annotations_and_lax_lines(
        cut: int, junk: bytes, marker: bytes) -> None:
    assume(b"+" not in junk)
    good = _aof(2_500)
    at = cut % (len(good) + 1)
    data = good[:at] + marker + junk + good[at:]
    assert _outcome(data, True) == _outcome(data, False)


def test_hiredis_and_pure_paths_agree_on_an_annotation_in_the_middle_example() -> None:
    good = _aof(2_500)
    data = good + TS + good
    assert _outcome(data, True) == _outcome(data, False)


# -- RDB preambles: loaded by `safe` (Redis 4.0+), refused by `redis-3.0` -------------------------


def rlen(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    return b"\x80" + n.to_bytes(4, "big")


def rstr(data: bytes) -> bytes:
    return rlen(len(data)) + data


def lzf_compress(data: bytes) -> bytes:
    """A greedy LZF compressor (literal runs and back references of 3 to 264 bytes)."""
    out, literal = bytearray(), bytearray()
    seen: dict[bytes, int] = {}

    def flush() -> None:
        while literal:
            out.append(min(len(literal), 32) - 1)
            out.extend(literal[:32])
            del literal[:32]

    i = 0
    while i < len(data):
        key = data[i : i + 3]
        ref = seen.get(key) if len(key) == 3 else None
        if len(key) == 3:
            seen[key] = i
        if ref is None or i - ref - 1 >= 8192:
            literal.append(data[i])
            i += 1
            continue
        length = 3
        while length < min(len(data) - i, 264) and data[ref + length] == data[i + length]:
            length += 1
        flush()
        offset, code = i - ref - 1, length - 2
        if code < 7:
            out.append((code << 5) | (offset >> 8))
        else:
            out += bytes([(7 << 5) | (offset >> 8), code - 7])
        out.append(offset & 0xFF)
        i += length
    flush()
    return bytes(out)


def rlzf(data: bytes) -> bytes:
    compressed = lzf_compress(data)
    return b"\xc3" + rlen(len(compressed)) + rlen(len(data)) + compressed


def _int_entry(value: int, sizes: tuple[tuple[int, int], ...]) -> bytes:
    for code, width in sizes:
        if -(1 << (8 * width - 1)) <= value < 1 << (8 * width - 1):
            return bytes([code]) + value.to_bytes(width, "little", signed=True)
    raise ValueError(value)


def ziplist(entries: list[bytes | int]) -> bytes:
    body, prev, last = b"", 0, 10
    for e in entries:
        head = bytes([prev]) if prev < 254 else b"\xfe" + prev.to_bytes(4, "little")
        if isinstance(e, int):
            enc = (bytes([0xF1 + e]) if 0 <= e <= 12 else
                   _int_entry(e, ((0xFE, 1), (0xC0, 2), (0xF0, 3), (0xD0, 4), (0xE0, 8))))
        elif len(e) < 64:
            enc = bytes([len(e)]) + e
        elif len(e) < 16384:
            enc = bytes([0x40 | (len(e) >> 8), len(e) & 0xFF]) + e
        else:
            enc = b"\x80" + len(e).to_bytes(4, "big") + e
        last = 10 + len(body)
        body += head + enc
        prev = len(head + enc)
    total = 10 + len(body) + 1
    return (total.to_bytes(4, "little") + last.to_bytes(4, "little")
            + len(entries).to_bytes(2, "little") + body + b"\xff")


def listpack(entries: list[bytes | int]) -> bytes:
    body = b""
    for e in entries:
        if isinstance(e, int):
            if 0 <= e < 128:
                enc = bytes([e])
            elif -4096 <= e < 4096:
                enc = bytes([0xC0 | ((e & 0x1FFF) >> 8), e & 0xFF])
            else:
                enc = _int_entry(e, ((0xF1, 2), (0xF2, 3), (0xF3, 4), (0xF4, 8)))
        elif len(e) < 64:
            enc = bytes([0x80 | len(e)]) + e
        elif len(e) < 4096:
            enc = bytes([0xE0 | (len(e) >> 8), len(e) & 0xFF]) + e
        else:
            enc = b"\xf0" + len(e).to_bytes(4, "little") + e
        n = len(enc)
        back = (bytes([n]) if n <= 127 else bytes([n >> 7, (n & 127) | 128]) if n < 16383
                else bytes([n >> 14, ((n >> 7) & 127) | 128, (n & 127) | 128]))
        body += enc + back
    total = 6 + len(body) + 1
    return total.to_bytes(4, "little") + len(entries).to_bytes(2, "little") + body + b"\xff"


def intset(members: list[int], width: int = 2) -> bytes:
    return (width.to_bytes(4, "little") + len(members).to_bytes(4, "little")
            + b"".join(m.to_bytes(width, "little", signed=True) for m in sorted(members)))


def zipmap(pairs: list[tuple[bytes, bytes]], free: int = 0) -> bytes:
    out = bytes([len(pairs)])
    for key, value in pairs:
        out += rstr(key) + bytes([len(value), free]) + value + b"\x00" * free
    return out + b"\xff"


def rdb(body: bytes, *, version: int = 9, checksum: bool = True) -> bytes:
    image = b"REDIS%04d" % version + body + b"\xff"
    return image + (crc64_jones(image) if checksum else 0).to_bytes(8, "little")


def record(rdb_type: int, key: bytes, value: bytes) -> bytes:
    return bytes([rdb_type]) + rstr(key) + value


EXPIRE_MS = 2_000_000_000_000
BIG = b"abcdefgh" * 300 + b"tail"
EVERY_ENCODING = (
    b"\xfa" + rstr(b"redis-ver") + rstr(b"6.2.14") + b"\xfa" + rstr(b"aof-preamble") + b"\xc0\x01"
    + b"\xfe\x00" + b"\xfb" + rlen(19) + rlen(1)
    + record(0, b"raw", rstr(b"hello"))
    + record(0, b"i8", b"\xc0\xf9") + record(0, b"i16", b"\xc1\x39\x30")
    + record(0, b"i32", b"\xc2" + (-123456789).to_bytes(4, "little", signed=True))
    + record(0, b"lzf", rlzf(BIG))
    + b"\xfc" + EXPIRE_MS.to_bytes(8, "little") + record(0, b"ms", rstr(b"v"))
    + b"\xfd" + (2_000_000_000).to_bytes(4, "little") + record(0, b"s", rstr(b"v"))
    + record(1, b"list", rlen(2) + rstr(b"a") + rlzf(BIG))
    + record(2, b"set", rlen(2) + rstr(b"m") + b"\xc0\x07")
    + record(3, b"zset", rlen(4) + rstr(b"a") + b"\x031.5" + rstr(b"b") + b"\xfe"
             + rstr(b"c") + b"\xff" + rstr(b"d") + b"\x02-2")
    + record(4, b"hash", rlen(1) + rstr(b"f") + rstr(b"v"))
    + record(5, b"zset2", rlen(1) + rstr(b"a") + struct.pack("<d", 0.25))
    + record(9, b"zipmap", rstr(zipmap([(b"f", b"v"), (b"g", b"w")], free=2)))
    + record(10, b"zl-list", rstr(ziplist([b"a", 7, -300, 70000, 1 << 40, b"x" * 70])))
    + record(11, b"intset", rstr(intset([3, -1, 70000], width=4)))
    + record(12, b"zl-zset", rstr(ziplist([b"a", 1, b"b", b"2.5", b"c", b"-inf"])))
    + b"\xfe\x03"
    + record(13, b"zl-hash", rstr(ziplist([b"f", b"v", b"n", 5])))
    + record(14, b"quicklist", rlen(2) + rstr(ziplist([b"a", 1])) + rstr(ziplist([b"b"])))
    + record(16, b"lp-hash", rstr(listpack([b"f", b"v", b"n", -5000, b"x" * 100, 1 << 33])))
    + record(17, b"lp-zset", rstr(listpack([b"a", 2, b"b", b"0.5"])))
    + record(18, b"quicklist2", rlen(2) + rlen(2) + rstr(listpack([b"a", 1]))
             + rlen(1) + rstr(b"plain" * 10))
    + record(20, b"lp-set", rstr(listpack([b"m", 12, 100000])))
    + b"\xf8" + rlen(7) + b"\xf9\x03" + record(0, b"after-lru", rstr(b"x"))
    + record(1, b"empty-list", rlen(0))  # an empty collection: skipped, as Redis skips it
)


EVERY_ENCODING_DUMP: KeyspaceDump = {
    0: {
        b"raw": ("string", b"hello", None), b"i8": ("string", b"-7", None),
        b"i16": ("string", b"12345", None), b"i32": ("string", b"-123456789", None),
        b"lzf": ("string", BIG, None), b"ms": ("string", b"v", EXPIRE_MS),
        b"s": ("string", b"v", 2_000_000_000_000),
        b"list": ("list", [b"a", BIG], None), b"set": ("set", {b"m", b"7"}, None),
        b"zset": ("zset", {b"a": 1.5, b"b": float("inf"), b"c": float("-inf"), b"d": -2.0},
                  None),
        b"hash": ("hash", {b"f": b"v"}, None), b"zset2": ("zset", {b"a": 0.25}, None),
        b"zipmap": ("hash", {b"f": b"v", b"g": b"w"}, None),
        b"zl-list": ("list", [b"a", b"7", b"-300", b"70000", b"%d" % (1 << 40), b"x" * 70],
                     None),
        b"intset": ("set", {b"3", b"-1", b"70000"}, None),
        b"zl-zset": ("zset", {b"a": 1.0, b"b": 2.5, b"c": float("-inf")}, None),
    },
    3: {
        b"zl-hash": ("hash", {b"f": b"v", b"n": b"5"}, None),
        b"quicklist": ("list", [b"a", b"1", b"b"], None),
        b"lp-hash": ("hash", {b"f": b"v", b"n": b"-5000", b"x" * 100: b"%d" % (1 << 33)}, None),
        b"lp-zset": ("zset", {b"a": 2.0, b"b": 0.5}, None),
        b"quicklist2": ("list", [b"a", b"1", b"plain" * 10], None),
        b"lp-set": ("set", {b"m", b"12", b"100000"}, None),
        b"after-lru": ("string", b"x", None),
    },
}


def test_the_test_lzf_compressor_really_uses_back_references() -> None:
    assert len(lzf_compress(BIG)) < len(BIG) // 10
    for data in (b"", b"a", b"a" * 500, b"ab" * 9, bytes(range(256)) * 3):
        assert _lzf_decompress(lzf_compress(data), len(data)) == data


def test_safe_loads_an_rdb_preamble_of_every_encoding_then_the_commands_after_it() -> None:
    preamble = rdb(EVERY_ENCODING)
    data = preamble + rec("SELECT", "0") + rec("SET", "raw", "changed") + rec("DEL", "i8")
    server, disk = start(data)
    expected = {db: dict(keys) for db, keys in EVERY_ENCODING_DUMP.items()}
    expected[0][b"raw"] = ("string", b"changed", None)
    del expected[0][b"i8"]
    assert server.dump() == expected
    assert disk.visible_image().files[AOF] == data
    result = _both_paths(data)
    assert isinstance(result, tuple) and result[0] == len(data)
    assert check_aof(data).valid


def test_an_rdb_preamble_fed_byte_by_byte_loads_like_one_feed() -> None:
    data = rdb(EVERY_ENCODING) + SET_B
    whole = AofLoader()
    whole.feed(data)
    parts = AofLoader()
    for i in range(len(data)):
        parts.feed(data[i : i + 1])
    assert parts.finish() == whole.finish()
    assert whole.result().rdb_preamble_bytes == len(data) - len(SET_B)
    assert whole.result().rdb_keys == 23
    assert parts.dump(0) == whole.dump(0)


def test_a_torn_tail_after_the_preamble_is_cut_at_the_last_command_or_the_preamble() -> None:
    preamble = rdb(EVERY_ENCODING)
    server, disk = start(preamble + SET_B + SET_B[:5])
    assert disk.visible_image().files[AOF] == preamble + SET_B
    assert server.dump()[0][b"b"] == ("string", b"2", None)
    server, disk = start(preamble + SET_B[:5])
    assert disk.visible_image().files[AOF] == preamble
    server, disk = start(preamble + ZEROS)  # a zero tail right after the RDB
    assert disk.visible_image().files[AOF] == preamble


def test_a_preamble_without_checksum_ending_in_zeros_is_whole() -> None:
    preamble = rdb(record(0, b"k", rstr(b"v")), checksum=False)  # 8 zero bytes at its end
    server, disk = start(preamble)
    assert server.dump() == {0: {b"k": ("string", b"v", None)}}
    assert disk.visible_image().files[AOF] == preamble


@pytest.mark.parametrize("truncated", [True, False])
def test_a_torn_or_damaged_preamble_is_refused_whatever_aof_load_truncated_says(
        truncated: bool) -> None:
    preamble = rdb(EVERY_ENCODING)
    for data in (preamble[: len(preamble) // 2], preamble[:7], preamble[:-1]):
        error = _refused(data, aof_load_truncated=truncated)
        assert error.offset_bytes == 0 and "RDB preamble" in error.reason
        assert "truncated" in error.reason
    damaged = bytearray(preamble + SET_B)
    damaged[damaged.index(b"hello")] ^= 1
    error = _refused(bytes(damaged), aof_load_truncated=truncated)
    assert error.offset_bytes == 0 and "checksum mismatch" in error.reason


@pytest.mark.parametrize(("body", "named"), [
    (record(15, b"st", b""), "stream"),
    (record(7, b"mod", rlen(1234)), "module"),
    (b"\xf5" + rstr(b"#!lua name=lib\n"), "function library"),
    (record(24, b"hfe", b""), "hash with field expiry"),
])
def test_a_value_the_reference_has_no_type_for_is_refused_naming_it(body: bytes,
                                                                   named: str) -> None:
    # The walker of check_rdb needs whole values; the decoder stops at the type byte.
    check = RdbCheckResult(valid=True, magic="REDIS", version=12, end_offset_bytes=None, keys=1,
                           expires=0, checksum="ok", reason=None, error_offset_bytes=None,
                           truncated=False)
    with pytest.raises(LoadError, match=f"holds (a )?{named}.*cannot load") as info:
        _load_rdb(b"REDIS0012" + record(0, b"k", rstr(b"v")) + body + b"\xff", check,
                  AofLoader().keyspace)
    assert info.value.offset_bytes == 0


def test_a_real_shaped_stream_in_a_preamble_refuses_the_start_naming_it() -> None:
    stream = (rlen(1) + rstr(b"\x00" * 16) + rstr(b"lp") + rlen(2) + rlen(5) + rlen(0)
              + rlen(1) + rlen(0) + rlen(0) + rlen(0) + rlen(2) + rlen(0))
    error = _refused(rdb(record(0, b"k", rstr(b"v")) + record(19, b"st", stream), version=10))
    assert error.offset_bytes == 0 and "stream" in error.reason and "cannot load" in error.reason


@pytest.mark.parametrize(("body", "problem"), [
    (record(10, b"zl", rstr(b"\x00" * 11)), "ziplist"),
    (record(16, b"lp", rstr(listpack([b"a"])[:-1] + b"\xfe")), "listpack"),
    (record(11, b"is", rstr(b"\x03\x00\x00\x00\x00\x00\x00\x00")), "intset"),
    (record(0, b"lz", b"\xc3" + rlen(2) + rlen(9) + b"\x05a"), "LZF"),
    (record(3, b"z", rlen(1) + rstr(b"a") + b"\xfd"), "NaN"),
    (record(0, b"k", rstr(b"v")) + record(0, b"k", rstr(b"w")), "duplicate key"),
    (b"\xfe" + rlen(16), "SELECTDB 16"),
])
def test_a_preamble_whose_checksum_is_fine_but_whose_values_are_not_is_refused(
        body: bytes, problem: str) -> None:
    error = _refused(rdb(body))
    assert error.offset_bytes == 0 and problem in error.reason


def test_redis_3_0_refuses_an_rdb_preamble() -> None:
    error = _refused(rdb(EVERY_ENCODING) + SET_B, profile=Profile.REDIS_3_0)
    assert error.offset_bytes == 0 and "expected '*', got b'R'" in error.reason


def test_a_file_starting_like_the_rdb_magic_but_shorter_is_a_bad_format() -> None:
    for data in (b"RED", b"REDIS", b"VALKE"):
        error = _refused(data)
        assert error.offset_bytes == 0, data


def test_an_empty_preamble_and_a_valkey_magic_load() -> None:
    server, _ = start(rdb(b"") + SET_B)
    assert server.dump() == B_DUMP
    image = b"VALKEY080" + record(0, b"k", rstr(b"v")) + b"\xff"
    server, _ = start(image + crc64_jones(image).to_bytes(8, "little"))
    assert server.dump() == {0: {b"k": ("string", b"v", None)}}
