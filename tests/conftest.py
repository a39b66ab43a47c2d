"""Shared pytest configuration: Hypothesis settings profiles, and the scratch directory of
the tests that start real servers and FUSE mounts.

Select one with HYPOTHESIS_PROFILE=dev|ci|nightly (default: dev).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from _real import mounts_under
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Trials and runs make their directories (and FUSE mounts) under this test's tmp_path;
    afterwards no process, mount or directory of ours may be left."""
    root = tmp_path / "scratch"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("AOFCRASH_TMPDIR", str(root))
    yield root
    assert psutil.Process().children(recursive=True) == [], "processes left behind"
    assert mounts_under(root) == [], "FUSE mounts left behind"
    assert list(root.iterdir()) == [], "directories left behind"
