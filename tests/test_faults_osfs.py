"""OSFileSystem: hermetic tests under pyfakefs (including ENOSPC) and one against a real dir."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from faults import FaultOp, FaultPlan, FaultyFileSystem, IOFault, OSFileSystem, ShortWrite

APPEND = os.O_CREAT | os.O_WRONLY | os.O_APPEND


def test_enospc_from_a_disk_usage_limit_surfaces_as_oserror_enospc(fs: FakeFilesystem) -> None:
    fs.create_dir("/data")
    fs.set_disk_usage(1000, path="/data")
    osfs = OSFileSystem("/data")
    fd = osfs.open("appendonly.aof", APPEND)
    try:
        assert osfs.write(fd, b"x" * 600) == 600
        with pytest.raises(OSError) as info:
            osfs.write(fd, b"y" * 600)
        assert info.value.errno == errno.ENOSPC
    finally:
        osfs.close(fd)
    assert osfs.stat("appendonly.aof").size_bytes <= 1000


def test_os_filesystem_maps_verbs_to_os_under_pyfakefs(fs: FakeFilesystem) -> None:
    fs.create_dir("/data")
    osfs = OSFileSystem("/data")
    osfs.mkdir("sub")
    fd = osfs.open("sub/tmp", os.O_CREAT | os.O_RDWR)
    osfs.write(fd, b"hello")
    osfs.fsync(fd)
    osfs.lseek(fd, 0, os.SEEK_SET)
    assert osfs.read(fd, 10) == b"hello"
    osfs.close(fd)
    osfs.rename("sub/tmp", "sub/aof")
    assert osfs.listdir("sub") == ["aof"]
    assert osfs.stat("sub").is_dir and osfs.stat("sub/aof").size_bytes == 5
    with pytest.raises(OSError) as info:
        osfs.unlink("missing")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(OSError) as info:
        osfs.open("/etc/passwd", os.O_RDONLY)
    assert info.value.errno == errno.EINVAL


def test_os_filesystem_on_a_real_directory_with_faults(tmp_path: Path) -> None:
    osfs = OSFileSystem(tmp_path)
    fs = FaultyFileSystem(osfs, FaultPlan((ShortWrite(written_bytes=3, nth=2),
                                           IOFault(op=FaultOp.FSYNC_DIR))))
    fd = fs.open("appendonly.aof", APPEND)
    try:
        assert fs.write(fd, b"first") == 5
        assert fs.write(fd, b"second") == 3
        fs.fsync(fd)
        fs.fdatasync(fd)
        fs.ftruncate(fd, 4)
    finally:
        fs.close(fd)
    with pytest.raises(OSError) as info:
        fs.fsync_dir("")
    assert info.value.errno == errno.EIO
    fs.fsync_dir("")
    assert (tmp_path / "appendonly.aof").read_bytes() == b"firs"
    assert fs.exists("appendonly.aof") and not fs.exists("other")
    assert [f.fault_index for f in fs.fired] == [0, 1]
    assert [f.trace_index for f in fs.fired] == [None, None]  # a real dir has no trace
