"""Helpers of the tests that start real servers and FUSE mounts (imported as ``_real``; the
``scratch_root`` fixture that uses them is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


def mounts_under(root: Path) -> list[str]:
    """The mount points below `root` (FUSE mounts of ours left behind, after a test)."""
    with open("/proc/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh]
    return [p for p in points if p.startswith(str(root))]


def needs_fuse() -> None:
    """Skip the test, with the reason, where FUSE cannot be mounted."""
    from faults.fuse import fuse_unavailable_reason

    reason = fuse_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def needs_server(server: str) -> None:
    """Skip the test, with the reason, where `server` (a preset, a path) cannot run."""
    from harness.verify import VerifyConfig, VerifyEnvironmentError, check_environment

    try:
        check_environment(VerifyConfig(server=server))
    except VerifyEnvironmentError as exc:
        pytest.skip(str(exc))
