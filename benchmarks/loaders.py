"""Loader runs per second of the real binaries, as ``aofcrash loaders`` runs them.

Run: ``.venv/bin/python benchmarks/loaders.py [--runs N] [--workers W]``. A *loader run* is one
start of a server on a small AOF (three commands, a torn tail), waiting for it to load,
dumping its keyspace over RESP and stopping it (SIGKILL) — ``load:<server>:yes`` without the
restart. Reports, per server, runs/s on one process, then the mixed workload (every server in
turn) on a process pool of W workers (default: every core), as runs/s in total and per core.
Also: check-tool runs/s, and whole files/s for the full matrix (every loader with its restart,
every checker, the reference) on the pool. The goal in issue 14 is >= 30 runs/s per core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.loaders import RunSettings, encode, run_matrix, run_tool, server_paths, tool_ids
from harness.loaders._campaign import scratch_dir

DATA = encode("SELECT", "0") + encode("SET", "a", "1") + encode("RPUSH", "l", "x", "y") + \
    encode("SET", "b", "2")[:-3]


def _settings(paths: dict[str, str]) -> RunSettings:
    return RunSettings(paths=paths, workdir=scratch_dir(), restart=False)


def _runs(args: tuple[list[str], int, dict[str, str]]) -> int:
    tools, runs, paths = args
    settings = _settings(paths)
    for i in range(runs):
        run_tool(tools[i % len(tools)], DATA, settings)
    return runs


def _files(args: tuple[int, dict[str, str]]) -> int:
    count, paths = args
    settings = RunSettings(paths=paths, workdir=scratch_dir())
    for _ in range(count):
        run_matrix(DATA, tool_ids(), settings)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="runs per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--files", type=int, default=6, help="files for the full-matrix figure")
    args = parser.parse_args()
    paths, missing = server_paths()
    for name, why in missing.items():
        print(f"skipping {name}: {why}")
    servers = sorted(paths)
    print(f"small file: {len(DATA)} bytes; scratch dir: {scratch_dir()}")
    for server in servers:
        tool = f"load:{server}:yes"
        _runs(([tool], 3, paths))  # warm-up
        start = time.perf_counter()
        _runs(([tool], args.runs, paths))
        rate = args.runs / (time.perf_counter() - start)
        print(f"{tool:24} 1 process: {rate:6.1f} runs/s ({1000 / rate:5.1f} ms/run)")
    for server in servers:
        tool = f"check:{server}"
        start = time.perf_counter()
        _runs(([tool], args.runs, paths))
        rate = args.runs / (time.perf_counter() - start)
        print(f"{tool:24} 1 process: {rate:6.1f} runs/s")
    loaders = [f"load:{s}:yes" for s in servers]
    per_worker = max(len(loaders), args.runs // args.workers)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(_runs, [(loaders, 2, paths)] * args.workers))  # warm-up
        start = time.perf_counter()
        total = sum(pool.map(_runs, [(loaders, per_worker, paths)] * args.workers))
        elapsed = time.perf_counter() - start
        rate = total / elapsed
        print(f"mixed loaders ({', '.join(servers)}), {args.workers} workers: {rate:6.1f} "
              f"runs/s = {rate / args.workers:5.1f} runs/s per core (goal >= 30)")
        files = max(1, args.files // args.workers)
        start = time.perf_counter()
        done = sum(pool.map(_files, [(files, paths)] * args.workers))
        elapsed = time.perf_counter() - start
        print(f"full matrix ({len(tool_ids())} tools, restarts included), {args.workers} "
              f"workers: {done / elapsed:5.2f} files/s")


if __name__ == "__main__":
    main()
