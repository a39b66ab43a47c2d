"""AOF loading (AofLoader, Server.start) and check_aof / fix_aof."""

from __future__ import annotations

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
    LoadError,
    Profile,
    Server,
    ServerConfig,
    check_aof,
    encode_command,
    fix_aof,
)

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
