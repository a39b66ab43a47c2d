"""Writing files so that an interrupted run never leaves half of one behind (a temporary file
in the same directory, fsync, an atomic rename), and the file-safe names they are given.

At the bottom of ``harness.cli``: reports, reproductions and check-aof --fix all write
through it, and it imports nothing of the CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["slug", "write_atomic", "write_atomic_bytes"]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and an atomic rename."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def slug(text: str) -> str:
    """`text` as a file-name part: runs of anything but letters, digits, ``_.-`` as one dash."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "x"
