"""The FileSystem protocol and its real implementation, OSFileSystem.

The protocol copies the `os` verbs a persistence layer uses. Paths are relative to the
filesystem's root ("appendonly.aof", "sub/dir/file"); "" is the root itself. Every failure is a
real ``OSError(errno, os.strerror(errno), path)`` so code under test handles injected faults with
the same ``except OSError`` it uses in production.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat as stat_module
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["FileStat", "FileSystem", "OSFileSystem", "check_relative_path", "os_error"]


def os_error(code: int, path: str | None = None) -> OSError:
    """Build the OSError `os` itself would raise for `code` (subclass chosen by errno)."""
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


def check_relative_path(path: str) -> str:
    """Normalise a root-relative path; reject absolute paths and escapes with EINVAL."""
    if not isinstance(path, str):
        raise TypeError(f"path must be str, not {type(path).__name__}")
    if path.startswith("/"):
        raise os_error(errno.EINVAL, path)
    norm = posixpath.normpath(path) if path else ""
    if norm == ".":
        norm = ""
    if norm == ".." or norm.startswith("../"):
        raise os_error(errno.EINVAL, path)
    return norm


@dataclass(frozen=True, slots=True)
class FileStat:
    """The part of ``os.stat_result`` persistence code needs."""

    size_bytes: int
    is_dir: bool


@runtime_checkable
class FileSystem(Protocol):
    """What a persistence layer may do to its directory. Mirrors `os`; paths are root-relative.

    ``write`` may be short (return fewer bytes than given); callers must check the count.
    ``fsync_dir(path)`` makes the entries of directory `path` (creations, renames, unlinks)
    durable, like ``fsync`` on a directory file descriptor.
    """

    def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def read(self, fd: int, size: int) -> bytes: ...

    def lseek(self, fd: int, position: int, how: int) -> int: ...

    def fsync(self, fd: int) -> None: ...

    def fdatasync(self, fd: int) -> None: ...

    def ftruncate(self, fd: int, size: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def mkdir(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def stat(self, path: str) -> FileStat: ...

    def exists(self, path: str) -> bool: ...

    def fsync_dir(self, path: str) -> None: ...


class OSFileSystem:
    """FileSystem over a real directory through plain `os` calls."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    def __repr__(self) -> str:
        return f"OSFileSystem({self.root!r})"

    def _real(self, path: str) -> str:
        rel = check_relative_path(path)
        return os.path.join(self.root, rel) if rel else self.root

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(self._real(path), flags | getattr(os, "O_CLOEXEC", 0), mode)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def lseek(self, fd: int, position: int, how: int) -> int:
        return os.lseek(fd, position, how)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._real(src), self._real(dst))

    def unlink(self, path: str) -> None:
        os.unlink(self._real(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(self._real(path))

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._real(path)))

    def stat(self, path: str) -> FileStat:
        st = os.stat(self._real(path))
        return FileStat(size_bytes=st.st_size, is_dir=stat_module.S_ISDIR(st.st_mode))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._real(path))

    def fsync_dir(self, path: str) -> None:
        fd = os.open(self._real(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
