"""An in-memory filesystem for segstore's tests that can lose power.

Each file is an inode with its current bytes and the bytes an fsync made durable; each directory
entry is durable once its directory was fsynced. `crash()` returns the filesystem a restart
would see: durable entries pointing at durable bytes.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, field


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass
class _Stat:
    size_bytes: int
    is_dir: bool


def _error(code: int, path: str = "") -> OSError:
    return OSError(code, os.strerror(code), path)


class MemFS:
    def __init__(self) -> None:
        self._inodes: dict[int, _Inode] = {}
        self._entries: dict[str, int] = {}
        self._durable_entries: dict[str, int] = {}
        self._dirs: set[str] = {""}
        self._durable_dirs: set[str] = {""}
        self._fds: dict[int, list[int]] = {}  # fd -> [inode, position]
        self._next = 1
        self.calls: list[tuple[str, str]] = []
        self.fail_syncs = False

    def _new_id(self) -> int:
        self._next += 1
        return self._next

    def _log(self, verb: str, path: str) -> None:
        self.calls.append((verb, path))

    def _inode(self, fd: int) -> _Inode:
        if fd not in self._fds:
            raise _error(errno.EBADF)
        return self._inodes[self._fds[fd][0]]

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        self._log("open", path)
        if path not in self._entries:
            if not flags & os.O_CREAT:
                raise _error(errno.ENOENT, path)
            if posixpath.dirname(path) not in self._dirs:
                raise _error(errno.ENOENT, path)
            inode_id = self._new_id()
            self._inodes[inode_id] = _Inode()
            self._entries[path] = inode_id
        inode_id = self._entries[path]
        if flags & os.O_TRUNC:
            self._inodes[inode_id].data = bytearray()
        fd = self._new_id()
        self._fds[fd] = [inode_id, 0]
        return fd

    def write(self, fd: int, data: bytes) -> int:
        inode = self._inode(fd)
        position = self._fds[fd][1]
        if position > len(inode.data):
            inode.data.extend(bytes(position - len(inode.data)))
        inode.data[position : position + len(data)] = data
        self._fds[fd][1] = position + len(data)
        self._log("write", str(fd))
        return len(data)

    def read(self, fd: int, size: int) -> bytes:
        inode = self._inode(fd)
        position = self._fds[fd][1]
        chunk = bytes(inode.data[position : position + size])
        self._fds[fd][1] = position + len(chunk)
        return chunk

    def lseek(self, fd: int, position: int, how: int) -> int:
        inode = self._inode(fd)
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._fds[fd][1], os.SEEK_END: len(inode.data)}
        self._fds[fd][1] = base[how] + position
        return self._fds[fd][1]

    def fsync(self, fd: int) -> None:
        self._log("fsync", str(fd))
        if self.fail_syncs:
            raise _error(errno.EIO)
        inode = self._inode(fd)
        inode.durable = bytes(inode.data)

    def fdatasync(self, fd: int) -> None:
        self.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        inode = self._inode(fd)
        del inode.data[size:]

    def close(self, fd: int) -> None:
        self._inode(fd)
        del self._fds[fd]

    def rename(self, src: str, dst: str) -> None:
        self._log("rename", f"{src} {dst}")
        if src not in self._entries:
            raise _error(errno.ENOENT, src)
        self._entries[dst] = self._entries.pop(src)

    def unlink(self, path: str) -> None:
        self._log("unlink", path)
        if path not in self._entries:
            raise _error(errno.ENOENT, path)
        del self._entries[path]

    def mkdir(self, path: str) -> None:
        if path in self._dirs:
            raise _error(errno.EEXIST, path)
        self._dirs.add(path)

    def listdir(self, path: str) -> list[str]:
        if path not in self._dirs:
            raise _error(errno.ENOENT, path)
        names = [p for p in self._entries if posixpath.dirname(p) == path]
        names += [d for d in self._dirs if d and posixpath.dirname(d) == path]
        return sorted(posixpath.basename(name) for name in names)

    def stat(self, path: str) -> _Stat:
        if path in self._dirs:
            return _Stat(0, True)
        if path not in self._entries:
            raise _error(errno.ENOENT, path)
        return _Stat(len(self._inodes[self._entries[path]].data), False)

    def exists(self, path: str) -> bool:
        return path in self._dirs or path in self._entries

    def fsync_dir(self, path: str) -> None:
        self._log("fsync_dir", path)
        if self.fail_syncs:
            raise _error(errno.EIO)
        for name in [p for p in self._durable_entries if posixpath.dirname(p) == path]:
            del self._durable_entries[name]
        for name, inode_id in self._entries.items():
            if posixpath.dirname(name) == path:
                self._durable_entries[name] = inode_id
        self._durable_dirs = {d for d in self._durable_dirs if posixpath.dirname(d) != path}
        self._durable_dirs |= {d for d in self._dirs if d and posixpath.dirname(d) == path}
        self._durable_dirs.add("")

    def crash(self) -> MemFS:
        """The filesystem after a power loss: only what was fsynced is there."""
        after = MemFS()
        after._dirs = set(self._durable_dirs)
        after._durable_dirs = set(self._durable_dirs)
        for name, inode_id in self._durable_entries.items():
            if posixpath.dirname(name) not in after._dirs:
                continue
            durable = self._inodes[inode_id].durable
            after._inodes[inode_id] = _Inode(bytearray(durable), durable)
            after._entries[name] = inode_id
        after._durable_entries = dict(after._entries)
        after._next = self._next
        return after

    def file_bytes(self, path: str) -> bytes:
        return bytes(self._inodes[self._entries[path]].data)

    def poke(self, path: str, data: bytes, *, at: int | None = None) -> None:
        """Change a file's bytes, current and durable (damage, a torn tail)."""
        inode = self._inodes[self._entries[path]]
        if at is None:
            inode.data.extend(data)
        else:
            inode.data[at : at + len(data)] = data
        inode.durable = bytes(inode.data)
