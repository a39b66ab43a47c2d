"""SimDisk benchmarks: append throughput (trace on) and crash-image enumeration speed.

Run: .venv/bin/python benchmarks/simdisk.py [--repeats 5] [--writes 200000] [--ops 10000]

Prints min/median/max over the repeats, the goal beside each figure and whether it was met,
and the ratio to a peer measured in the same run (OSFileSystem on tmpfs /dev/shm for appends).
Wall-clock timing is fine here: this is a script, not part of faults/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faults import ImageLimits, OSFileSystem, PersistenceModel, ReplayCursor, SimDisk

RECORD = b"*3\r\n$3\r\nSET\r\n$8\r\nkey:0001\r\n$66\r\n" + b"v" * 66 + b"\r\n"
assert len(RECORD) == 100
APPEND = os.O_CREAT | os.O_WRONLY | os.O_APPEND
# The whole image space, torn and reordered sectors included (they are opt-in elsewhere).
FULL = ImageLimits(torn=True, reorder=True)


def _appends(fs: SimDisk | OSFileSystem, writes: int) -> float:
    fd = fs.open("appendonly.aof", APPEND | os.O_TRUNC)
    write = fs.write
    record = RECORD
    start = time.perf_counter()
    for _ in range(writes):
        write(fd, record)
    elapsed = time.perf_counter() - start
    fs.close(fd)
    return writes / elapsed


def _build_trace(ops: int) -> SimDisk:
    """An AOF-like workload: appends, an fsync every 8 writes, a rewrite swap every 2,000 ops."""
    disk = SimDisk()
    fd = disk.open("appendonly.aof", APPEND)
    disk.fsync_dir("")
    n = 0
    while len(disk.trace) < ops:
        disk.write(fd, RECORD)
        n += 1
        if n % 8 == 0:
            disk.fsync(fd)
        if n % 1500 == 0:
            tmp = disk.open("temp-rewrite.aof", APPEND | os.O_TRUNC)
            disk.write(tmp, RECORD * 20)
            disk.fsync(tmp)
            disk.close(tmp)
            disk.rename("temp-rewrite.aof", "appendonly.aof")
            disk.close(fd)
            fd = disk.open("appendonly.aof", APPEND)
            disk.fsync_dir("")
    return disk


def _enumerate(disk: SimDisk, model: PersistenceModel) -> tuple[float, int, int]:
    """Replay the trace and enumerate the crash choices at every position (and inside every
    write at sector boundaries). Returns (images/s, images, crash points)."""
    start = time.perf_counter()
    cursor = ReplayCursor(disk.trace)
    images = points = 0
    while True:
        for _ in cursor.disk.crash_choices(model, limits=FULL):
            images += 1
        points += 1
        for k in cursor.torn_write_offsets():
            with cursor.inside_write(k) as torn:
                for _ in torn.crash_choices(model, limits=FULL):
                    images += 1
                points += 1
        if cursor.step() is None:
            break
    elapsed = time.perf_counter() - start
    return images / elapsed, images, points


def _materialise(disk: SimDisk, model: PersistenceModel, stride: int) -> float:
    """Informational: build and hash the DiskImage of every choice at every `stride`-th
    position (what an explorer pays per image it actually checks)."""
    cursor = ReplayCursor(disk.trace)
    images = 0
    start = time.perf_counter()
    while True:
        if cursor.position % stride == 0:
            for choice in cursor.disk.crash_choices(model, limits=FULL):
                cursor.disk.crash(model, choice).digest()
                images += 1
        if cursor.step() is None:
            break
    return images / (time.perf_counter() - start)


def _stats(name: str, runs: list[float], goal: float | None, unit: str) -> float:
    med = statistics.median(runs)
    line = (f"{name:<52} min {min(runs):>12,.0f}  median {med:>12,.0f}  max {max(runs):>12,.0f}"
            f" {unit}")
    if goal is not None:
        line += f"   goal >= {goal:,.0f}: {'MET' if med >= goal else 'NOT MET'}"
    print(line)
    return med


def _repeat(repeats: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(repeats)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--writes", type=int, default=200_000)
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.repeats} repeats, "
          f"{args.writes:,} appends of {len(RECORD)} B, trace of {args.ops:,} operations")

    sim = _stats("SimDisk appends, trace on", _repeat(
        args.repeats, lambda: _appends(SimDisk(trace=True), args.writes)), 500_000, "writes/s")
    _stats("SimDisk appends, trace off", _repeat(
        args.repeats, lambda: _appends(SimDisk(trace=False), args.writes)), None, "writes/s")
    if os.path.isdir("/dev/shm"):
        root = tempfile.mkdtemp(prefix="simdisk-bench-", dir="/dev/shm")
        try:
            peer = _stats("peer: OSFileSystem on tmpfs /dev/shm", _repeat(
                args.repeats, lambda: _appends(OSFileSystem(root), args.writes)), None, "writes/s")
        finally:
            shutil.rmtree(root)
        print(f"{'ratio SimDisk (trace on) / OSFileSystem on tmpfs':<52} {sim / peer:.2f}x")

    disk = _build_trace(args.ops)
    for model in (PersistenceModel.POWER, PersistenceModel.PROCESS):
        counts: list[tuple[int, int]] = []

        def run(model: PersistenceModel = model, counts: list[tuple[int, int]] = counts) -> float:
            rate, images, points = _enumerate(disk, model)
            counts.append((images, points))
            return rate

        _stats(f"crash images, replay + enumerate, {model.value}",
               _repeat(args.repeats, run), 100_000, "images/s")
        images, points = counts[0]
        print(f"{'':<52} ({images:,} images at {points:,} crash points per pass)")
    _stats("info: crash() + digest of each image (every 50th pos)", _repeat(
        args.repeats, lambda: _materialise(disk, PersistenceModel.POWER, 50)), None, "images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
