"""Bounded syscall workloads in the style of ACE, for calibrating persistence models.

A ``Workload`` is a setup (directories and files that exist and are durable before it starts)
and one to three core operations drawn from create, write, append, overwrite, truncate, fsync,
fdatasync, rename, unlink, mkdir and an fsync of a directory, over a few files in two
directories (``A`` and ``B``). ``Workload.run(fs, marker)`` makes the operations' syscalls on any
``FileSystem`` and calls ``marker(label)`` after each one, so the same program runs on a
``SimDisk`` and, through ``OSFileSystem``, on a kernel filesystem. The exact syscall sequences of
a Redis 6 rewrite and a Redis 7 manifest update are workloads too (``redis_workloads``).
"""

from __future__ import annotations

import enum
import functools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from faults._fs import FileSystem
from faults._image import DiskImage

__all__: list[str] = []

_SIZES_BYTES: Final = (1, 100, 4096, 5000, 10000)
_DIRS: Final = ("A", "B")
_FILES: Final = ("A/f", "A/g", "A/old", "B/f", "B/old", "A/d/f")
_SETUP: Final = {"A/old": 6000, "B/old": 3000}


class WorkloadOpKind(enum.Enum):
    CREATE = "create"
    WRITE = "write"  # pwrite at the end of the file (extends it)
    APPEND = "append"  # write through O_APPEND
    OVERWRITE = "overwrite"  # pwrite inside the existing data
    TRUNCATE = "truncate"
    FSYNC = "fsync"
    FDATASYNC = "fdatasync"
    RENAME = "rename"
    UNLINK = "unlink"
    MKDIR = "mkdir"
    FSYNC_DIR = "fsync-dir"


@dataclass(frozen=True, slots=True)
class WorkloadOp:
    kind: WorkloadOpKind
    path: str
    target: str = ""  # rename's destination
    offset_bytes: int = 0
    size_bytes: int = 0
    tag: str = ""  # makes the written bytes of this op distinct from every other op's
    create_flags: int = 0  # extra open flags (O_TRUNC for a temp file that is rewritten)

    def describe(self) -> str:
        extra = {
            WorkloadOpKind.RENAME: f" -> {self.target}",
            WorkloadOpKind.WRITE: f" {self.size_bytes} B",
            WorkloadOpKind.APPEND: f" {self.size_bytes} B",
            WorkloadOpKind.OVERWRITE: f" {self.size_bytes} B at {self.offset_bytes}",
            WorkloadOpKind.TRUNCATE: f" to {self.size_bytes} B",
        }.get(self.kind, "")
        return f"{self.kind.value} {self.path}{extra}"


def content(tag: str, size_bytes: int) -> bytes:
    """The bytes an op writes: never zeros, different for every tag."""
    unit = f"<{tag}>".encode()
    return (unit * (size_bytes // len(unit) + 1))[:size_bytes]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    setup_dirs: tuple[str, ...]
    setup_files: tuple[tuple[str, int], ...]  # (path, size): durable before the ops
    ops: tuple[WorkloadOp, ...]

    def describe(self) -> str:
        return "; ".join(op.describe() for op in self.ops)

    def setup_image(self) -> DiskImage:
        return DiskImage(
            {p: content(f"setup:{p}", n) for p, n in self.setup_files}, self.setup_dirs)

    def make_setup(self, fs: FileSystem) -> None:
        """Create the setup on `fs` and make it durable (data and directory entries)."""
        for d in self.setup_dirs:
            fs.mkdir(d)
        for path, size in self.setup_files:
            fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            fs.write(fd, content(f"setup:{path}", size))
            fs.fsync(fd)
            fs.close(fd)
        for d in ("", *self.setup_dirs):
            fs.fsync_dir(d)

    def run(self, fs: FileSystem, marker: Callable[[str], None]) -> None:
        """Make the ops' syscalls on `fs`, calling `marker(label)` after each one."""
        for i, op in enumerate(self.ops):
            _run_op(fs, op, functools.partial(_prefixed, marker, f"{i}:"))


def _prefixed(marker: Callable[[str], None], prefix: str, label: str) -> None:
    marker(prefix + label)


def _run_op(fs: FileSystem, op: WorkloadOp, marker: Callable[[str], None]) -> None:
    kind = op.kind
    if kind is WorkloadOpKind.RENAME:
        fs.rename(op.path, op.target)
        marker("rename")
    elif kind is WorkloadOpKind.UNLINK:
        fs.unlink(op.path)
        marker("unlink")
    elif kind is WorkloadOpKind.MKDIR:
        fs.mkdir(op.path)
        marker("mkdir")
    elif kind is WorkloadOpKind.FSYNC_DIR:
        fs.fsync_dir(op.path)
        marker("fsync-dir")
    else:
        flags = os.O_WRONLY
        if kind is WorkloadOpKind.CREATE:
            flags |= os.O_CREAT | os.O_EXCL
        elif kind is WorkloadOpKind.APPEND:
            flags |= os.O_APPEND
        elif kind is WorkloadOpKind.WRITE:
            flags |= os.O_CREAT
        fd = fs.open(op.path, flags | op.create_flags)
        marker("open")
        if kind in (WorkloadOpKind.WRITE, WorkloadOpKind.OVERWRITE):
            if kind is WorkloadOpKind.WRITE:
                fs.lseek(fd, 0, os.SEEK_END)
            else:
                fs.lseek(fd, op.offset_bytes, os.SEEK_SET)
            fs.write(fd, content(op.tag, op.size_bytes))
            marker("write")
        elif kind is WorkloadOpKind.APPEND:
            fs.write(fd, content(op.tag, op.size_bytes))
            marker("write")
        elif kind is WorkloadOpKind.TRUNCATE:
            fs.ftruncate(fd, op.size_bytes)
            marker("truncate")
        elif kind is WorkloadOpKind.FSYNC:
            fs.fsync(fd)
            marker("fsync")
        elif kind is WorkloadOpKind.FDATASYNC:
            fs.fdatasync(fd)
            marker("fdatasync")
        fs.close(fd)
        marker("close")


class _Namespace:
    """The visible namespace while generating, so every drawn op succeeds."""

    def __init__(self) -> None:
        self.files: dict[str, int] = dict(_SETUP)
        self.dirs: set[str] = set(_DIRS)

    def parent_ok(self, path: str) -> bool:
        parent = os.path.dirname(path)
        return parent == "" or parent in self.dirs


def generate_workloads(count: int, *, seed: int = 0) -> list[Workload]:
    """`count` workloads (ACE style, 1-3 core ops), deterministic in `seed`; the Redis ones
    first (``redis_workloads``), then generated ones."""
    out = list(redis_workloads())[:count]
    index = 0
    while len(out) < count:
        out.append(_generate(random.Random(f"ace:{seed}:{index}"), f"ace-{seed}-{index}"))
        index += 1
    return out


def _generate(rng: random.Random, name: str) -> Workload:
    ns = _Namespace()
    ops: list[WorkloadOp] = []
    for i in range(rng.randint(1, 3)):
        op = _draw_op(rng, ns, f"{name}:{i}")
        ops.append(op)
    # ACE puts a persistence point after the last op most of the time.
    if rng.random() < 0.6:
        ops.append(_draw_persist(rng, ns, ops[-1]))
    return Workload(name, _DIRS, tuple(_SETUP.items()), tuple(ops))


def _draw_persist(rng: random.Random, ns: _Namespace, last: WorkloadOp) -> WorkloadOp:
    files = sorted(ns.files)
    touched = last.target or last.path
    choice = rng.choice(("fsync", "fdatasync", "fsync-dir", "fsync-other"))
    if choice == "fsync-dir" or not files:
        return WorkloadOp(WorkloadOpKind.FSYNC_DIR, os.path.dirname(touched))
    if choice == "fsync-other" or touched not in ns.files:
        return WorkloadOp(WorkloadOpKind.FSYNC, rng.choice(files))
    kind = WorkloadOpKind.FSYNC if choice == "fsync" else WorkloadOpKind.FDATASYNC
    return WorkloadOp(kind, touched)


# Data and namespace operations twice as often as persistence operations.
_CORE_KINDS: Final = (
    *[k for k in WorkloadOpKind
      if k not in (WorkloadOpKind.FSYNC, WorkloadOpKind.FDATASYNC, WorkloadOpKind.FSYNC_DIR)] * 2,
    WorkloadOpKind.FSYNC, WorkloadOpKind.FDATASYNC, WorkloadOpKind.FSYNC_DIR,
)


def _draw_op(rng: random.Random, ns: _Namespace, tag: str) -> WorkloadOp:
    K = WorkloadOpKind
    for _ in range(100):
        kind = rng.choice(_CORE_KINDS)
        files = sorted(ns.files)
        absent = [p for p in _FILES if p not in ns.files and ns.parent_ok(p)]
        if kind is K.CREATE and absent:
            path = rng.choice(absent)
            ns.files[path] = 0
            return WorkloadOp(kind, path)
        if kind in (K.WRITE, K.APPEND) and (files or absent):
            path = rng.choice(files + absent) if kind is K.WRITE else rng.choice(files or [""])
            if not path:
                continue
            size = rng.choice(_SIZES_BYTES)
            ns.files[path] = ns.files.get(path, 0) + size
            return WorkloadOp(kind, path, size_bytes=size, tag=tag)
        if kind is K.OVERWRITE and any(ns.files[p] for p in files):
            path = rng.choice([p for p in files if ns.files[p]])
            offset = rng.randrange(ns.files[path])
            size = rng.choice(_SIZES_BYTES)
            ns.files[path] = max(ns.files[path], offset + size)
            return WorkloadOp(kind, path, offset_bytes=offset, size_bytes=size, tag=tag)
        if kind is K.TRUNCATE and files:
            path = rng.choice(files)
            size = rng.choice((0, ns.files[path] // 2, ns.files[path] + 3000))
            ns.files[path] = size
            return WorkloadOp(kind, path, size_bytes=size)
        if kind in (K.FSYNC, K.FDATASYNC) and files:
            return WorkloadOp(kind, rng.choice(files))
        if kind is K.FSYNC_DIR:
            return WorkloadOp(kind, rng.choice(sorted(ns.dirs)))
        if kind is K.RENAME and files:
            src = rng.choice(files)
            targets = [p for p in _FILES if p != src and ns.parent_ok(p)]
            dst = rng.choice(targets)
            ns.files[dst] = ns.files.pop(src)
            return WorkloadOp(kind, src, target=dst)
        if kind is K.UNLINK and files:
            path = rng.choice(files)
            del ns.files[path]
            return WorkloadOp(kind, path)
        if kind is K.MKDIR and "A/d" not in ns.dirs:
            ns.dirs.add("A/d")
            return WorkloadOp(kind, "A/d")
    raise AssertionError("no operation could be drawn")  # pragma: no cover


def redis_workloads() -> tuple[Workload, ...]:
    """The exact syscall sequences of a Redis 6 rewrite and a Redis 7 manifest update."""
    K = WorkloadOpKind
    trunc = os.O_CREAT | os.O_TRUNC
    redis6 = Workload(
        "redis6-rewrite", ("A",), (("A/appendonly.aof", 6000),),
        (
            # The child writes and fsyncs its temp file; the parent renames it over the AOF
            # (no directory fsync) and the next acknowledged write is appended and fdatasynced.
            WorkloadOp(K.WRITE, "A/temp-rewriteaof-bg-7.aof", size_bytes=5000, tag="r6:base",
                       create_flags=trunc),
            WorkloadOp(K.FSYNC, "A/temp-rewriteaof-bg-7.aof"),
            WorkloadOp(K.RENAME, "A/temp-rewriteaof-bg-7.aof", target="A/appendonly.aof"),
            WorkloadOp(K.APPEND, "A/appendonly.aof", size_bytes=100, tag="r6:set"),
            WorkloadOp(K.FDATASYNC, "A/appendonly.aof"),
        ),
    )
    manifest = "B/appendonly.aof.manifest"
    redis7 = Workload(
        "redis7-manifest", ("A", "B"),
        (("B/appendonly.aof.1.base.rdb", 3000), ("B/appendonly.aof.1.incr.aof", 6000),
         (manifest, 120)),
        (
            WorkloadOp(K.WRITE, "A/temp-rewriteaof-bg-9.aof", size_bytes=5000, tag="r7:base",
                       create_flags=trunc),
            WorkloadOp(K.FSYNC, "A/temp-rewriteaof-bg-9.aof"),
            WorkloadOp(K.RENAME, "A/temp-rewriteaof-bg-9.aof",
                       target="B/appendonly.aof.2.base.rdb"),
            # Manifest update: temp manifest O_TRUNC, write, fdatasync, rename, fsync the dir.
            WorkloadOp(K.WRITE, "B/temp-appendonly.aof.manifest", size_bytes=130,
                       tag="r7:manifest", create_flags=trunc),
            WorkloadOp(K.FDATASYNC, "B/temp-appendonly.aof.manifest"),
            WorkloadOp(K.RENAME, "B/temp-appendonly.aof.manifest", target=manifest),
            WorkloadOp(K.FSYNC_DIR, "B"),
            WorkloadOp(K.APPEND, "B/appendonly.aof.2.incr.aof", size_bytes=100, tag="r7:set",
                       create_flags=os.O_CREAT),
            WorkloadOp(K.FDATASYNC, "B/appendonly.aof.2.incr.aof"),
        ),
    )
    return (redis6, redis7)
