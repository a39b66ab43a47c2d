"""``aofcrash --version``: one line for bug reports, from the package metadata, else from the
source tree's declared version."""

from __future__ import annotations

import importlib.metadata
import platform
import tomllib
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli._version import SOURCE_VERSION

ROOT = Path(__file__).resolve().parent.parent


def _version_output(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_version_prints_one_line_with_aofcrash_python_and_hypothesis_versions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hypothesis

    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "9.8.7" if name == "aofcrash" else "?")
    out = _version_output(capsys)
    assert out == (f"aofcrash 9.8.7 (Python {platform.python_version()}, "
                   f"Hypothesis {hypothesis.__version__})\n")


def test_version_falls_back_to_the_source_version_when_aofcrash_is_not_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert _version_output(capsys).startswith(f"aofcrash {SOURCE_VERSION} (Python ")


def test_the_source_version_is_the_version_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert declared == SOURCE_VERSION
