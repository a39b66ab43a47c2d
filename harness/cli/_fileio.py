"""The CLI's files on disk: read whole as UTF-8 text, with one line saying why when that
fails; written so that an interrupted run never leaves half of one behind (a temporary file in
the same directory, fsync, an atomic rename); and the file-safe names they are given.

At the bottom of ``harness.cli``: reports, reproductions and check-aof --fix read and write
through it, and it imports nothing of the CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["UnreadableFile", "read_text", "slug", "write_atomic", "write_atomic_bytes"]


class UnreadableFile(ValueError):
    """A file that cannot be read as text; the message is one line naming the file and why."""


def read_text(path: Path, what: str) -> str:
    """`path` whole, as UTF-8 text; UnreadableFile otherwise (`what` names what it should be,
    e.g. "a reproduction", for a file that is not text)."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise UnreadableFile(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path} is not {what}: not UTF-8 text (byte {exc.start})"
                             ) from None


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
