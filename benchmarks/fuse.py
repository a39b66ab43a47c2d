"""SET/s of redis-server 7.0 with appendfsync always: on a faults.fuse mount vs a plain temp dir.

Run: ``.venv/bin/python benchmarks/fuse.py [--sets N] [--repeats R]``. Each run starts a fresh
server, sends N sequential SETs from one client (each reply waits for write + fdatasync), and
reports SET/s; min/median/max over R runs per target, and the ratio of medians. Targets:

* ``plain``: a temp dir on the machine's own filesystem (the peer);
* ``fuse``: a SimDisk under a FaultyFileSystem (empty plan) mounted with direct_io — the way the
  harness runs real servers;
* ``fuse-cached``: the same without direct_io, to show what direct_io costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults import FaultyFileSystem, SimDisk
from faults.fuse import FuseMount
from harness.targets import RedisProcess, find_server


def _sets_per_second(data_dir: str, log_dir: str, sets: int) -> float:
    binary = find_server("7.0")
    server = RedisProcess(
        binary, data_dir, appendfsync="always", log_path=os.path.join(log_dir, "redis.log")
    ).start()
    try:
        client = server.client
        value = b"v" * 100
        started = time.perf_counter()
        for i in range(sets):
            client.set(b"key:%d" % i, value)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    return sets / elapsed


def _plain(sets: int) -> float:
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as logs:
        return _sets_per_second(data, logs, sets)


def _on_fuse(sets: int, *, direct_io: bool) -> float:
    with tempfile.TemporaryDirectory() as mnt, tempfile.TemporaryDirectory() as logs:
        fs = FaultyFileSystem(SimDisk())
        with FuseMount(fs, mnt, direct_io=direct_io):
            return _sets_per_second(mnt, logs, sets)


def _fs_type(path: str) -> str:
    out = subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=2000, help="SETs per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per target (default 3)")
    args = parser.parse_args()
    if args.sets < 1 or args.repeats < 1:
        parser.error("--sets and --repeats must be >= 1")

    targets: dict[str, Callable[[int], float]] = {
        "plain": _plain,
        "fuse": lambda n: _on_fuse(n, direct_io=True),
        "fuse-cached": lambda n: _on_fuse(n, direct_io=False),
    }
    print(
        f"redis-server {find_server('7.0').full_version}, appendfsync always, "
        f"{args.sets} sequential SETs of 100 B, {args.repeats} runs; "
        f"plain dir on {_fs_type(tempfile.gettempdir())}"
    )
    medians: dict[str, float] = {}
    for name, run in targets.items():
        rates = [run(args.sets) for _ in range(args.repeats)]
        medians[name] = statistics.median(rates)
        print(
            f"  {name:<12} SET/s  min {min(rates):>9,.0f}  median {medians[name]:>9,.0f}"
            f"  max {max(rates):>9,.0f}"
        )
    print(f"  ratio fuse / plain (medians):        {medians['fuse'] / medians['plain']:.3f}")
    print(f"  ratio fuse / fuse-cached (direct_io): {medians['fuse'] / medians['fuse-cached']:.3f}")


if __name__ == "__main__":
    main()
