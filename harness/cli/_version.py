"""``aofcrash --version``: the installed distribution's version (package metadata), else the
version this source tree declares (a checkout run with PYTHONPATH, never installed), with the
Python and Hypothesis versions a bug report needs."""

from __future__ import annotations

import platform

__all__ = ["SOURCE_VERSION", "version_line"]

# Kept equal to pyproject.toml's [project] version (tests/test_cli_version.py checks it).
SOURCE_VERSION = "0.1.0"


def aofcrash_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aofcrash")
    except PackageNotFoundError:
        return SOURCE_VERSION


def version_line() -> str:
    """'aofcrash 0.1.0 (Python 3.11.7, Hypothesis 6.150.2)'."""
    import hypothesis

    return (f"aofcrash {aofcrash_version()} (Python {platform.python_version()}, "
            f"Hypothesis {hypothesis.__version__})")
