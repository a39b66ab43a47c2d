"""``aofcrash check-aof FILE|MANIFEST|DIR [--fix [--yes]]``: verdicts with offsets (one per
file of a Redis 7 multi-part AOF), exit codes 0 / 1 / 2 (0 once --fix repaired the file), the
--fix hint, what a fix drops, and a question (or --yes) before dropping valid commands."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import _report, main
from reference import encode_command

SET_A = encode_command([b"SET", b"a", b"1"])
SET_B = encode_command([b"SET", b"b", b"2"])
VALID = encode_command([b"SELECT", b"0"]) + SET_A + SET_B
TORN = VALID + SET_A[:9]  # a crash in the middle of the last write
MID = VALID + b"garbage\r\n" + SET_A  # damage with a valid command after it


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check-aof", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_file_exits_0_and_prints_its_last_valid_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID)
    code, out, err = _check(capsys, str(aof))
    assert code == 0 and err == ""
    assert "AOF is valid" in out and f"last valid offset {len(VALID)} bytes" in out
    assert "3 commands" in out


def test_a_torn_file_exits_1_naming_the_last_valid_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)
    code, out, err = _check(capsys, str(aof))
    assert code == 1 and err == ""
    assert "not valid" in out and f"last valid offset {len(VALID)} bytes of {len(TORN)}" in out
    assert aof.read_bytes() == TORN  # without --fix nothing is touched
    assert not (tmp_path / "appendonly.aof.bak").exists()


def test_an_unfinished_multi_ends_the_valid_prefix_before_the_multi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID + encode_command([b"MULTI"]) + SET_A)
    code, out, _ = _check(capsys, str(aof))
    assert code == 1 and f"last valid offset {len(VALID)} bytes" in out and "MULTI" in out


def test_fix_truncates_keeps_a_backup_exits_0_and_a_second_check_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)
    code, out, _ = _check(capsys, str(aof), "--fix", "--yes")
    assert code == 0  # as redis-check-aof after "Successfully truncated AOF"
    assert (f"fixed: {aof} truncated from {len(TORN)} to {len(VALID)} bytes, dropping 9 bytes "
            "(the torn tail); the original is kept as appendonly.aof.bak") in out
    assert aof.read_bytes() == VALID
    assert (tmp_path / "appendonly.aof.bak").read_bytes() == TORN
    # Atomic: no temp file is left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonly.aof", "appendonly.aof.bak"]
    code, out, _ = _check(capsys, str(aof))
    assert code == 0 and "AOF is valid" in out


def test_a_torn_file_without_fix_suggests_fix_saying_what_it_would_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)
    code, out, _ = _check(capsys, str(aof))
    assert code == 1
    assert out.splitlines()[-1] == (f"use --fix to truncate {aof} from {len(TORN)} to "
                                    f"{len(VALID)} bytes, dropping 9 bytes (the torn tail)")


def test_a_torn_tail_is_fixed_without_a_terminal_and_without_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing valid is lost: no question (stdin is not a terminal under pytest).
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)
    code, out, err = _check(capsys, str(aof), "--fix")
    assert (code, err) == (0, "")
    assert "fixed:" in out and aof.read_bytes() == VALID


def test_an_unfinished_multi_at_the_end_is_a_torn_tail_naming_its_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID + encode_command([b"MULTI"]) + SET_A)
    code, out, _ = _check(capsys, str(aof), "--fix")
    assert code == 0
    assert "(the torn tail and the 2 complete command(s) of an unfinished MULTI)" in out
    assert aof.read_bytes() == VALID


def test_garbage_after_the_last_command_is_cut_without_asking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID + b"garbage\r\n")
    code, out, _ = _check(capsys, str(aof), "--fix")
    assert code == 0 and "dropping 9 bytes: 0 complete command(s);" in out
    assert aof.read_bytes() == VALID


def test_fix_on_a_valid_file_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID)
    code, _, _ = _check(capsys, str(aof), "--fix", "--yes")
    assert code == 0 and aof.read_bytes() == VALID
    assert not (tmp_path / "appendonly.aof.bak").exists()


def test_garbage_mid_file_is_fixed_with_yes_to_the_prefix_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(MID)
    code, out, _ = _check(capsys, "--json", "--fix", "--yes", str(aof))
    assert code == 0
    summary = json.loads(out)
    assert summary["valid"] is False  # the verdict is about the file as it was read
    assert summary["last_valid_offset_bytes"] == len(VALID)
    fixed = summary["fixed"]
    assert fixed["truncate_to_bytes"] == len(VALID)
    assert (fixed["dropped_commands"], fixed["commands_after_damage"]) == (1, 1)
    assert fixed["damage_offset_bytes"] == len(VALID) and fixed["confirm_first"] is True
    assert aof.read_bytes() == VALID


@pytest.mark.parametrize("kind", ["missing", "directory without a manifest"])
def test_an_unreadable_path_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "nope.aof" if kind == "missing" else tmp_path
    code, out, err = _check(capsys, str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_a_fix_that_cannot_be_written_exits_2_and_leaves_the_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(_report, "write_atomic_bytes", disk_full)
    code, out, err = _check(capsys, str(aof), "--fix", "--yes")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "cannot fix" in err and "No space left on device" in err
    assert aof.read_bytes() == TORN


def _installed_cli() -> str:
    script = Path(sys.executable).with_name("aofcrash")
    if script.exists():
        return str(script)
    found = shutil.which("aofcrash")
    if found is None:
        pytest.skip("the aofcrash console script is not installed (pip install -e .)")
    return found


def test_the_installed_console_script_gives_the_same_exit_codes(tmp_path: Path) -> None:
    cli = _installed_cli()
    valid, torn = tmp_path / "valid.aof", tmp_path / "torn.aof"
    valid.write_bytes(VALID)
    torn.write_bytes(TORN)
    results = {
        name: subprocess.run(
            [cli, "check-aof", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        for name, path in (("valid", valid), ("torn", torn), ("missing", tmp_path / "x"))
    }
    assert results["valid"].returncode == 0
    assert f"last valid offset {len(VALID)} bytes" in results["valid"].stdout
    assert results["torn"].returncode == 1
    assert f"last valid offset {len(VALID)} bytes of {len(TORN)}" in results["torn"].stdout
    missing = results["missing"]
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1 and "Traceback" not in missing.stderr


# -- --fix asks first --------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    (MID, f"dropping {len(MID) - len(VALID)} bytes: 1 complete command(s), 1 of them valid "
          f"command(s) after the damage at offset {len(VALID)}"),
    # A bulk length damaged into a bigger one reads like a torn tail, but is not one.
    (VALID.replace(b"$1\r\na", b"$9\r\na", 1) + SET_B, "valid command(s) after the damage"),
    (b"garbage" + VALID, f"from {len(VALID) + 7} to 0 bytes"),
    (b"garbage", "from 7 to 0 bytes, dropping 7 bytes: 0 complete command(s)"),
])
def test_fix_that_drops_valid_data_without_a_terminal_needs_yes_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, words: str,
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(content)
    code, out, err = _check(capsys, str(aof), "--fix")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--yes" in err and words in err
    assert aof.read_bytes() == content and not (tmp_path / "appendonly.aof.bak").exists()
    code, out, _ = _check(capsys, str(aof))
    assert code == 1 and words in out and "(it asks first: valid data would be lost)" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "fixed"), [("y\n", True), ("\n", False), ("no\n", False)])
def test_fix_on_a_terminal_asks_before_dropping_valid_commands_and_truncates_only_on_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    answer: str, fixed: bool,
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(MID)
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    code, _, err = _check(capsys, str(aof), "--fix")
    assert code == (0 if fixed else 1)
    assert "1 of them valid command(s) after the damage" in err and "[y/N]" in err
    assert aof.read_bytes() == (VALID if fixed else MID)
    assert (tmp_path / "appendonly.aof.bak").exists() is fixed


# -- Redis 7 multi-part AOFs -----------------------------------------------------------------


def _rdb(keys: dict[bytes, bytes]) -> bytes:
    """A minimal valid RDB (version 10, string keys, CRC64 footer)."""
    from reference._rdb import crc64_jones

    body = b"REDIS0010\xfe\x00"
    for k, v in keys.items():
        body += b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    body += b"\xff"
    return body + crc64_jones(body).to_bytes(8, "little")


def _appendonlydir(root: Path, incr: bytes, *, ts: bool = False) -> Path:
    d = root / "appendonlydir"
    d.mkdir()
    (d / "appendonly.aof.1.base.rdb").write_bytes(_rdb({b"a": b"1"}))
    body = (b"#TS:1700000000\r\n" if ts else b"") + incr
    (d / "appendonly.aof.1.incr.aof").write_bytes(body)
    (d / "appendonly.aof.manifest").write_bytes(
        b"file appendonly.aof.1.base.rdb seq 1 type b\n"
        b"file appendonly.aof.1.incr.aof seq 1 type i\n")
    return d


@pytest.mark.parametrize("what", ["dir", "manifest"])
def test_a_valid_appendonlydir_or_its_manifest_is_valid_file_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    d = _appendonlydir(tmp_path, VALID, ts=True)
    target = d if what == "dir" else d / "appendonly.aof.manifest"
    code, out, err = _check(capsys, str(target))
    assert code == 0 and err == "", out
    assert "base appendonly.aof.1.base.rdb: valid (RDB" in out
    assert "incr appendonly.aof.1.incr.aof: valid (3 commands" in out
    assert "all AOF files and the manifest are valid" in out


def test_a_torn_last_incr_file_is_the_fixable_case_with_its_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _appendonlydir(tmp_path, TORN)
    code, out, _ = _check(capsys, str(d))
    assert code == 1
    assert "incr appendonly.aof.1.incr.aof: not valid" in out
    assert f"last valid offset {len(VALID)} bytes of {len(TORN)}" in out
    code, out, _ = _check(capsys, "--json", "--fix", "--yes", str(d))
    summary = json.loads(out)
    assert summary["fixed"]["path"].endswith("appendonly.aof.1.incr.aof")
    assert (d / "appendonly.aof.1.incr.aof").read_bytes() == VALID
    assert (d / "appendonly.aof.1.incr.aof.bak").read_bytes() == TORN
    assert _check(capsys, str(d))[0] == 0


def test_a_damaged_base_rdb_is_not_fixable_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _appendonlydir(tmp_path, VALID)
    base = d / "appendonly.aof.1.base.rdb"
    data = bytearray(base.read_bytes())
    data[-1] ^= 0xFF  # the CRC64 no longer matches
    base.write_bytes(bytes(data))
    code, out, _ = _check(capsys, str(d), "--fix", "--yes")
    assert code == 1
    assert "base appendonly.aof.1.base.rdb: not valid" in out and "not fixed:" in out
    assert base.read_bytes() == bytes(data)
    assert sorted(p.name for p in d.iterdir() if p.name.endswith(".bak")) == []


@pytest.mark.real
@pytest.mark.skipif(not Path("/usr/bin/redis-server").exists(), reason="redis-server 7 missing")
def test_a_real_redis_7_appendonlydir_is_valid_and_a_torn_tail_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        ["/usr/bin/redis-server", "--port", "0", "--unixsocket", str(sock), "--dir",
         str(tmp_path), "--appendonly", "yes", "--save", "", "--aof-timestamp-enabled", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        for _ in range(100):
            try:
                client = redis.Redis(unix_socket_path=str(sock))
                client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                client = None
                time.sleep(0.05)
        assert client is not None, "redis-server did not start"
        client.set("a", "1")
        client.bgrewriteaof()
        for _ in range(100):
            if client.info("persistence")["aof_rewrite_in_progress"] == 0:
                break
            time.sleep(0.05)
        client.set("b", "2")
        client.rpush("l", "x", "y")
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    d = tmp_path / "appendonlydir"
    code, out, err = _check(capsys, str(d))
    assert code == 0, out + err
    assert "base appendonly.aof." in out and ".base.rdb: valid (RDB" in out
    assert "all AOF files and the manifest are valid" in out
    incr = next(d.glob("*.incr.aof"))
    incr.write_bytes(incr.read_bytes() + b"*3\r\n$3\r\nSET\r\n$1\r\nc")
    code, out, _ = _check(capsys, str(d))
    assert code == 1 and f"incr {incr.name}: not valid" in out


def test_an_unknown_manifest_field_is_a_note_naming_it_and_the_directory_is_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _appendonlydir(tmp_path, VALID)
    (d / "appendonly.aof.manifest").write_bytes(
        b"file appendonly.aof.1.base.rdb seq 1 type b\n"
        b"file appendonly.aof.1.incr.aof seq 1 type i startoffset 0 flavour mint\n")
    code, out, err = _check(capsys, str(d))
    assert code == 0 and err == "", out
    assert ("note: manifest line 2: unknown field 'flavour' (value 'mint') ignored, as Redis "
            "ignores it") in out
    assert "all AOF files and the manifest are valid" in out
    code, out, _ = _check(capsys, "--json", str(d))
    summary = json.loads(out)
    assert code == 0 and summary["valid"] is True
    assert [n.split(":")[0] for n in summary["manifest_notes"]] == ["manifest line 2"]
    assert summary["offsets"] == {"appendonly.aof.1.incr.aof": {"start": 0, "end": None}}


# -- real Redis 8.2 directories ---------------------------------------------------------------


def _redis_8_2() -> str:
    """The 8.2 binary's path; the test is skipped, with the reason, where it cannot run."""
    from harness.targets import ServerNotFound, find_server

    try:
        return find_server("8.2").path
    except ServerNotFound as exc:
        pytest.skip(str(exc))


def _redis_check_aof_8_2(binary: str, where: Path, target: Path) -> tuple[int, str]:
    """redis-check-aof 8.2: the server binary run under that name (how it dispatches)."""
    tool = where / "redis-check-aof"
    if not tool.exists():
        tool.symlink_to(binary)
    done = subprocess.run([str(tool), str(target)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    return done.returncode, done.stdout + done.stderr


def _wait_for_rewrite(client: object) -> None:
    for _ in range(600):
        info = client.info("persistence")  # type: ignore[attr-defined]
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        time.sleep(0.01)
    raise AssertionError("the rewrite did not finish")


@pytest.mark.real
def test_a_real_redis_8_2_dir_after_rewrites_and_a_clean_shutdown_is_valid_with_its_offsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.targets import RedisProcess

    binary = _redis_8_2()
    data = tmp_path / "data"
    data.mkdir()
    with RedisProcess(binary, data, appendfsync="always") as server:
        for round_ in range(3):
            server.client.set(f"k{round_}", "v")
            server.client.incr("n")
            server.client.bgrewriteaof()
            _wait_for_rewrite(server.client)
        server.client.rpush("l", "x", "y")
    # stop() was SHUTDOWN NOSAVE: 8.2 then closes the incr file with an endoffset.
    d = data / "appendonlydir"
    manifest = (d / "appendonly.aof.manifest").read_text()
    assert " startoffset " in manifest and " endoffset " in manifest, manifest
    code, out, err = _check(capsys, "--json", str(d))
    summary = json.loads(out)
    assert code == 0 and summary["valid"] is True and summary["manifest_notes"] == [], out + err
    (incr,) = [name for name in summary["offsets"]]
    offsets = summary["offsets"][incr]
    assert offsets["end"] is not None and offsets["end"] >= offsets["start"]
    real_code, real_out = _redis_check_aof_8_2(binary, tmp_path, d / "appendonly.aof.manifest")
    assert real_code == 0 and "All AOF files and manifest are valid" in real_out, real_out


@pytest.mark.real
def test_a_real_redis_8_2_dir_with_a_torn_incr_is_cut_where_redis_check_aof_8_2_cuts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.targets import RedisProcess

    binary = _redis_8_2()
    data = tmp_path / "data"
    data.mkdir()
    server = RedisProcess(binary, data, appendfsync="always")
    with server:
        server.client.set("a", "1")
        # A rewrite that is still running at the crash: the manifest lists two incr files.
        server.client.config_set("rdb-key-save-delay", "1000000")
        server.client.bgrewriteaof()
        server.client.set("b", "2")
        server.kill()
    d = data / "appendonlydir"
    manifest = (d / "appendonly.aof.manifest").read_text()
    assert manifest.count(" type i startoffset ") == 2, manifest
    last = d / manifest.splitlines()[-1].split()[1]
    whole = last.stat().st_size
    with open(last, "ab") as fh:
        fh.write(b"*3\r\n$3\r\nSET\r\n$1\r\nc")  # the crash tore the next write
    code, out, _ = _check(capsys, "--json", str(d))
    summary = json.loads(out)
    assert code == 1 and summary["fix"]["path"] == str(last)
    assert summary["last_valid_offset_bytes"] == whole
    real_code, real_out = _redis_check_aof_8_2(binary, tmp_path, d / "appendonly.aof.manifest")
    assert real_code == 1 and f"ok_up_to={whole}," in real_out, real_out
    code, _, _ = _check(capsys, "--fix", "--yes", str(d))
    assert last.stat().st_size == whole and _check(capsys, str(d))[0] == 0
    with RedisProcess(binary, data, aof_load_truncated=False) as again:
        assert again.client.mget("a", "b", "c") == [b"1", b"2", None]
