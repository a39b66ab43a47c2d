"""The FUSE daemon of ``faults.kernel``'s block recorder (run as a script, in its own process).

It serves a directory holding two files, single-threaded, through mfusepy:

* ``disk``: the backing file of a loop device. Reads come from a sparse file; every write is
  applied to it and appended to the log (an all-zero, 4 KiB-aligned write punches a hole and is
  logged without its bytes); every fsync (how a block-layer flush reaches a loop device's backing
  file) is logged as a flush and returns 0.
* ``control``: a write of ``M<label>`` logs a marker; ``B`` copies the backing file to the next
  baseline file (``baseline.<n>``) and logs it; ``E<pattern>`` makes every later block write
  whose bytes contain ``pattern`` fail with EIO (not applied: it never reached the disk; logged
  as a failed write), ``e<pattern>`` only the first such write, ``E`` alone stops it. Served
  by the same single thread, so writes, flushes, markers and baselines are in one order. A
  failing write is a media error under the filesystem: the
  loop device fails the bio and the filesystem reports it (a data page's to the fsync that
  wrote it back); aimed by content, it hits the pages of the data written with that pattern
  and never the journal or metadata blocks.

Log records: ``struct _RECORD`` (kind, offset, length) then the payload: the bytes of a write
(``W``), nothing for a zero write (``Z``) or a flush (``F``), the label of a marker (``M``),
nothing for a baseline (``B``; offset = baseline number), nothing for a write that failed
(``X``: its offset and length). Each record is written with one
``write`` before the FUSE reply, so a record is in the log once the caller's call returned.

Usage: ``python _blockdaemon.py MOUNTPOINT DATA_DIR SIZE_BYTES``. It imports only the standard
library and mfusepy (not the ``faults`` package), so it starts quickly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import sys
from typing import Any, Final

RECORD: Final = struct.Struct("<cQI")
_BLOCK: Final = 4096
_FALLOC_PUNCH: Final = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
_DISK_FH: Final = 1
_CONTROL_FH: Final = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate [offset, offset+length) of a file (reads as zeros afterwards)."""
    if _libc.fallocate(fd, _FALLOC_PUNCH, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def copy_sparse(src_fd: int, dst_fd: int, size_bytes: int) -> None:
    """Copy the data extents of `src_fd` into `dst_fd` (holes stay holes); sets the size."""
    os.ftruncate(dst_fd, size_bytes)
    offset = 0
    while offset < size_bytes:
        try:
            start = os.lseek(src_fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset
                return
            raise
        end = os.lseek(src_fd, start, os.SEEK_HOLE)
        position = start
        while position < end:
            copied = os.copy_file_range(src_fd, dst_fd, end - position, position, position)
            if copied <= 0:
                break
            position += copied
        offset = end


def is_zero(data: bytes) -> bool:
    return not data.strip(b"\0")


class BlockDaemonOps:
    """The mfusepy operations (duck-typed; only FUSE calls are attributes named like one)."""

    use_ns = True

    def __init__(self, data_dir: str, size_bytes: int) -> None:
        self._data_dir = data_dir
        self._size = size_bytes
        self._disk = os.open(os.path.join(data_dir, "backing"), os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._disk, size_bytes)
        self._log = os.open(
            os.path.join(data_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        self._baselines = 0
        self._fail_pattern = b""  # block writes containing it fail with EIO ("E" control)
        self._fail_once = False  # "e": only the first such write fails

    def _record(self, kind: bytes, offset: int, payload: bytes = b"", length: int = -1) -> None:
        size = len(payload) if length < 0 else length
        data = RECORD.pack(kind, offset, size) + payload
        written = os.write(self._log, data)
        if written != len(data):  # tmpfs full: the log would lie, so fail the I/O instead
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path == "/disk":
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": self._size}
        if path == "/control":
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0}
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", "disk", "control"]

    def open(self, path: str, flags: int) -> int:
        if path == "/disk":
            return _DISK_FH
        if path == "/control":
            return _CONTROL_FH
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        if path != "/disk":
            return b""
        return os.pread(self._disk, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if path == "/control":
            return self._control(bytes(data))
        if path != "/disk" or offset + len(data) > self._size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data = bytes(data)
        if self._fail_pattern and self._fail_pattern in data:
            self._record(b"X", offset, length=len(data))
            if self._fail_once:
                self._fail_pattern = b""
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        if is_zero(data) and offset % _BLOCK == 0 and len(data) % _BLOCK == 0:
            self._record(b"Z", offset, length=len(data))
            punch_hole(self._disk, offset, len(data))
        else:
            self._record(b"W", offset, data)
            os.pwrite(self._disk, data, offset)
        return len(data)

    def _control(self, data: bytes) -> int:
        if data[:1] == b"M":
            self._record(b"M", 0, data[1:])
        elif data[:1] == b"B":
            number = self._baselines
            self._baselines += 1
            path = os.path.join(self._data_dir, f"baseline.{number}")
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                copy_sparse(self._disk, out, self._size)
            finally:
                os.close(out)
            self._record(b"B", number)
        elif data[:1] in (b"E", b"e"):
            self._fail_pattern = data[1:]
            self._fail_once = data[:1] == b"e"
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return len(data)

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        # Returning 0 matters: an error (ENOSYS) makes the kernel stop sending flushes at all.
        if path == "/disk":
            self._record(b"F", 0)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": _BLOCK, "f_frsize": _BLOCK, "f_blocks": 0, "f_namemax": 255}


def main(argv: list[str]) -> int:
    import mfusepy

    mountpoint, data_dir, size = argv[1], argv[2], int(argv[3])
    ops = BlockDaemonOps(data_dir, size)
    mfusepy.FUSE(
        ops,
        mountpoint,
        foreground=True,
        nothreads=True,  # one thread: one total order of writes, flushes and markers
        direct_io=True,  # no page cache in between: every write reaches us when it is issued
        fsname="aofcrash-block",
        subtype="aofcrash-block",
        attr_timeout=0,
        entry_timeout=0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
