"""Kernel crash images per second, with and without a real server's recovery on each.

Run (root, /dev/fuse, loop devices): ``.venv/bin/python benchmarks/kernel_images.py
[--fs ext4,xfs,btrfs] [--server 7.0] [--sets 30] [--rewrite] [--workers 2] [--repeats 3]
[--mkfs-option=--mixed]``

Per filesystem and run: a ``faults.kernel.BlockRecorder``; redis-server (``--server``, with
``appendfsync always``) on ``recorder.root``; ``--sets`` SETs from one client with a marker after
each reply (``--rewrite``: a BGREWRITEAOF after half of them, waited for at the end); SIGKILL.
Then every distinct crash image (markers and flushes, bounded in-flight
subsets) is (a) mounted read-only and its tree read, and (b) mounted read-write with the same
server recovering on it (start, wait for PING, DBSIZE, SIGKILL) on ``--workers`` processes.
Prints images/s for both (min/median/max over ``--repeats`` runs), and for (b) how many images
lost an acknowledged SET (DBSIZE below the count of replies before the crash point) or refused
to start; the check is the one of issue 21's direct measurement, not the full oracle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.kernel import (
    BlockRecorder,
    KernelFilesystem,
    PointKind,
    iter_unique,
    kernel_unavailable_reason,
)
from harness.targets import RedisProcess, ServerBinary, find_server


def _recover(binary: ServerBinary, log_dir: str) -> Callable[[str], int | str]:
    def recover(path: str) -> int | str:
        log = os.path.join(log_dir, f"recover-{os.getpid()}.log")
        server = RedisProcess(binary, os.path.join(path, "data"), log_path=log)
        try:
            server.start()
        except Exception as exc:  # a refusal to start is a result, not a crash of the bench
            return f"refused: {str(exc).splitlines()[0]}"
        try:
            return cast(int, server.client.dbsize())
        finally:
            server.kill()

    return recover


def _one_run(fs: KernelFilesystem, args: argparse.Namespace) -> dict[str, float]:
    binary = find_server(args.server)
    recorder = BlockRecorder(fs, mkfs_options=tuple(args.mkfs_option))
    with tempfile.TemporaryDirectory(prefix="aofcrash-kimg-") as logs, recorder as rec:
        os.mkdir(os.path.join(rec.root, "data"))
        rec.checkpoint()
        server = RedisProcess(binary, os.path.join(rec.root, "data"),
                              log_path=os.path.join(logs, "server.log")).start()
        try:
            rec.marker("0")
            for i in range(args.sets):
                server.client.set(f"k{i}", b"v" * 100)
                rec.marker(str(i + 1))  # the reply has been received
                if args.rewrite and i + 1 == args.sets // 2:
                    server.client.bgrewriteaof()
                    rec.marker(str(i + 1))
            while args.rewrite and _rewriting(server):
                time.sleep(0.01)
            rec.marker(str(args.sets))
        finally:
            server.kill()
        # From the first marker on (the flushes of the checkpoint before it are setup).
        points = [p for p in rec.crash_points()
                  if p.kind is PointKind.MARKER or p.marker_before >= 0]
        # Acknowledged SETs at each state: the replies before its point (the strictest point).
        acked: dict[tuple[int, int, tuple[int, ...]], int] = {}
        labels = {p.ordinal: p.label for p in points if p.kind is PointKind.MARKER}
        for point in points:
            marker = point.ordinal if point.kind is PointKind.MARKER else point.marker_before
            before = int(labels.get(marker, "0"))
            for state in point.states:
                # An image that is a crash state at several points must hold what the latest
                # of them had acknowledged.
                acked[state.key] = max(acked.get(state.key, before), before)
        states = list(iter_unique(points))
        mounter = rec.mounter()
        try:
            started = time.perf_counter()
            for _ in mounter.iter_images(states, workers=args.workers):
                pass
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            results = list(mounter.map_mounted(
                _recover(binary, logs), states, workers=args.workers))
            recover_s = time.perf_counter() - started
        finally:
            mounter.close()
    lost = sum(1 for s, r, _ in results if isinstance(r, int) and r < acked[s.key])
    refused = sum(1 for _, r, e in results if e is not None or isinstance(r, str))
    for s, r, e in results:
        if e is not None or isinstance(r, str):
            print(f"  {fs.value}: {s}: {e or r}", file=sys.stderr)
    return {"images": len(states), "read_per_s": len(states) / read_s,
            "recover_per_s": len(states) / recover_s, "recover_s": recover_s, "lost": lost,
            "refused": refused}


def _rewriting(server: RedisProcess) -> bool:
    info = server.client.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fs", default="ext4,xfs,btrfs")
    parser.add_argument("--server", default="7.0")
    parser.add_argument("--sets", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rewrite", action="store_true",
                        help="BGREWRITEAOF after half of the SETs (and wait for it at the end)")
    parser.add_argument("--mkfs-option", action="append", default=[],
                        help="extra mkfs argument (repeatable), e.g. --mkfs-option=--mixed")
    args = parser.parse_args()
    try:
        filesystems = [KernelFilesystem(name) for name in args.fs.split(",")]
    except ValueError:
        print(f"kernel_images: --fs: unknown filesystem in {args.fs!r}", file=sys.stderr)
        return 2
    for fs in filesystems:
        reason = kernel_unavailable_reason(fs)
        if reason is not None:
            print(f"kernel_images: {fs.value}: {reason}", file=sys.stderr)
            return 2
    for fs in filesystems:
        runs = [_one_run(fs, args) for _ in range(args.repeats)]

        def spread(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{min(values):.1f}/{statistics.median(values):.1f}/{max(values):.1f}"

        print(f"{fs.value}: images per run {[int(r['images']) for r in runs]}; images/s "
              f"(min/median/max) read {spread('read_per_s')}, with {args.server} recovery "
              f"{spread('recover_per_s')} (all images in {spread('recover_s')} s); "
              f"lost an acknowledged SET "
              f"{sum(int(r['lost']) for r in runs)}, refused to start "
              f"{sum(int(r['refused']) for r in runs)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
