"""Benchmarks of the reference server (prints figures; not a timed test).

1. SET throughput with appendfsync always on SimDisk: pipelined (many submits per event-loop
   iteration) and one command per iteration.
2. Loading a 1,000,000-command AOF: AofLoader (hiredis and pure-Python paths) and Server.start
   on a real directory, against redis-server 7.0 (/usr/bin/redis-server) loading the same file
   (time to +PONG minus the time to +PONG on an empty dir).

Usage: .venv/bin/python benchmarks/reference.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# This file is named like the package it measures: keep its own directory off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]

from faults import Clock, OSFileSystem, SimDisk  # noqa: E402
from reference import (  # noqa: E402
    HIREDIS_AVAILABLE,
    AofLoader,
    AppendFsync,
    Server,
    ServerConfig,
)

REDIS_7 = "/usr/bin/redis-server"
SET_GOAL_PER_S = 150_000


def _stats(samples: list[float]) -> str:
    return (f"min {min(samples):,.0f}  median {statistics.median(samples):,.0f}  "
            f"max {max(samples):,.0f}")


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_set(n: int, batch: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        server = Server(SimDisk(), Clock(), ServerConfig(appendfsync=AppendFsync.ALWAYS))
        server.start()
        commands = [[b"SET", b"key:%d" % (i % 10_000), b"value-%d" % i] for i in range(n)]

        def run(server: Server = server, commands: list[list[bytes]] = commands) -> None:
            submit, iterate, pop = server.submit, server.run_iteration, server.pop_reply
            for start in range(0, n, batch):
                tickets = [submit(argv) for argv in commands[start : start + batch]]
                iterate()
                for ticket in tickets:
                    pop(ticket)

        rates.append(n / _timed(run))
    return rates


def make_aof(n: int) -> bytes:
    parts = [b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"]
    for i in range(n):
        key, value = b"key:%d" % (i % 100_000), b"value-%d" % i
        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                     % (len(key), key, len(value), value))
    return b"".join(parts)


def bench_loader(data: bytes, use_hiredis: bool, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        def load() -> None:
            loader = AofLoader(use_hiredis=use_hiredis)
            for off in range(0, len(data), 8 << 20):
                loader.feed(data[off : off + (8 << 20)])
            assert not loader.finish().truncated
        times.append(_timed(load))
    return times


def bench_server_start(directory: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        server = Server(OSFileSystem(directory), Clock())
        times.append(_timed(server.start))
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_time_to_pong(directory: str) -> float:
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [REDIS_7, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--appendonly", "yes", "--appendfilename", "appendonly.aof", "--save", "",
         "--logfile", os.path.join(directory, "redis.log"), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.002)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def bench_redis(data: bytes, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as full:
            base = _redis_time_to_pong(empty)
            with open(os.path.join(full, "appendonly.aof"), "wb") as fh:
                fh.write(data)  # legacy single file: 7.0 migrates it into appendonlydir/
            times.append(_redis_time_to_pong(full) - base)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    n_set = 50_000 if args.quick else 200_000
    n_load = 200_000 if args.quick else 1_000_000
    repeats = 3 if args.quick else 5

    print(f"== SET throughput, appendfsync always, SimDisk ({n_set:,} commands) ==")
    pipelined = bench_set(n_set, 1_000, repeats)
    met = statistics.median(pipelined) >= SET_GOAL_PER_S
    print(f"pipelined (1,000 per iteration): {_stats(pipelined)} cmd/s  "
          f"goal >= {SET_GOAL_PER_S:,}: {'met' if met else 'NOT met'}")
    single = bench_set(n_set // 5, 1, repeats)
    print(f"1 command per iteration:        {_stats(single)} cmd/s")

    print(f"\n== Loading a {n_load:,}-command AOF ==")
    data = make_aof(n_load)
    print(f"file size {len(data) / 1e6:.1f} MB")
    load_repeats = 3
    if HIREDIS_AVAILABLE:
        hi = bench_loader(data, True, load_repeats)
        print(f"AofLoader (hiredis):     {_stats([n_load / t for t in hi])} cmd/s  "
              f"median {statistics.median(hi):.2f} s")
    pure = bench_loader(data, False, load_repeats)
    print(f"AofLoader (pure Python): {_stats([n_load / t for t in pure])} cmd/s  "
          f"median {statistics.median(pure):.2f} s")
    directory = tempfile.mkdtemp()
    try:
        with open(os.path.join(directory, "appendonly.aof"), "wb") as fh:
            fh.write(data)
        ours = bench_server_start(directory, load_repeats)
    finally:
        shutil.rmtree(directory)
    print(f"Server.start (OSFileSystem): min {min(ours):.2f} s  median "
          f"{statistics.median(ours):.2f} s  max {max(ours):.2f} s")
    if os.path.exists(REDIS_7):
        theirs = bench_redis(data, load_repeats)
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"redis-server 7.0 load:       min {min(theirs):.2f} s  median "
              f"{statistics.median(theirs):.2f} s  max {max(theirs):.2f} s")
        print(f"ratio redis/reference (median): {ratio:.2f}  goal >= 1.0: "
              f"{'met' if ratio >= 1.0 else 'NOT met'}")
    else:
        print(f"redis-server 7.0 not found at {REDIS_7}: comparison skipped")


if __name__ == "__main__":
    main()
