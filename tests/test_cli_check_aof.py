"""``aofcrash check-aof FILE [--fix]``: verdict, last valid offset, exit codes 0 / 1 / 2."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import _report, main
from reference import encode_command

SET_A = encode_command([b"SET", b"a", b"1"])
SET_B = encode_command([b"SET", b"b", b"2"])
VALID = encode_command([b"SELECT", b"0"]) + SET_A + SET_B
TORN = VALID + SET_A[:9]  # a crash in the middle of the last write


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


def test_fix_truncates_keeps_a_backup_and_a_second_check_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(TORN)
    code, out, _ = _check(capsys, str(aof), "--fix")
    assert code == 1  # the verdict is about the file as it was read
    assert f"truncated to {len(VALID)} bytes" in out
    assert aof.read_bytes() == VALID
    assert (tmp_path / "appendonly.aof.bak").read_bytes() == TORN
    # Atomic: no temp file is left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appendonly.aof", "appendonly.aof.bak"]
    code, out, _ = _check(capsys, str(aof))
    assert code == 0 and "AOF is valid" in out


def test_fix_on_a_valid_file_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID)
    code, _, _ = _check(capsys, str(aof), "--fix")
    assert code == 0 and aof.read_bytes() == VALID
    assert not (tmp_path / "appendonly.aof.bak").exists()


def test_garbage_mid_file_is_fixed_to_the_prefix_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aof = tmp_path / "appendonly.aof"
    aof.write_bytes(VALID + b"garbage\r\n" + SET_A)
    code, out, _ = _check(capsys, "--json", "--fix", str(aof))
    assert code == 1
    summary = json.loads(out)
    assert summary["valid"] is False
    assert summary["last_valid_offset_bytes"] == len(VALID)
    assert summary["fixed_to_bytes"] == len(VALID)
    assert aof.read_bytes() == VALID


@pytest.mark.parametrize("kind", ["missing", "directory"])
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
    code, out, err = _check(capsys, str(aof), "--fix")
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
