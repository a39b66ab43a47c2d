"""Benchmark: campaigns on one worker vs every core, and the example database's cost.

Prints (min / median / max over --runs):
* fuzz: examples/s of the safe reference over every policy with ``max_examples`` fixed, with 1
  worker and with every core, and the ratio (goal on this 2-core machine: >= 1.8x);
* explore: states/s with 1 worker vs every core, and its own peer: `cores` independent whole
  explorations at once vs one alone (the most this machine gives this work; the ratio of the
  two says how much the split itself loses);
* the machine's own ceiling, the peer for both ratios: a pure-Python loop and an allocation
  loop run once alone and ``cores`` times at once (the explorer is allocation-bound);
* the example database: seconds per example with a directory database vs none, one worker.

Usage: .venv/bin/python benchmarks/scaling.py [--examples 200] [--runs 3] [--only explore ...]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import PersistenceModel
from harness.explore import ExploreLimits, explore, make_workload
from harness.machine._campaign import Campaign, run_campaign
from harness.machine._steps import RunConfig

MODELS = (PersistenceModel.PROCESS, PersistenceModel.POWER,
          PersistenceModel.POWER_EAGER_METADATA)


def _fuzz_rate(examples: int, workers: int, database: str | None) -> float:
    configs = tuple(RunConfig(policy=p) for p in ("always", "everysec", "no"))
    campaign = Campaign(configs=configs, models=MODELS, budget_s=3600, seed=5,
                        max_examples=examples, workers=workers, database=database)
    started = time.monotonic()
    result = run_campaign(campaign)
    elapsed = time.monotonic() - started
    if result.findings:
        raise SystemExit(f"unexpected finding: {result.findings[0].text}")
    return result.examples / elapsed


def _spin(_: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def _allocate(_: int) -> float:
    started = time.perf_counter()
    table = {i: bytes(64) for i in range(2_000_000)}
    del table
    return time.perf_counter() - started


def _together(job: Callable[[int], float], cores: int) -> float:
    """How much faster `cores` runs of `job` go at once than one after another: `cores` x the
    time of one alone over the time of `cores` at once (fresh forked processes both times)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        alone = pool.map(job, [0])[0]
    with context.Pool(cores) as pool:
        started = time.perf_counter()
        pool.map(job, range(cores))
        together = time.perf_counter() - started
    return cores * alone / together


def _machine_ceiling(cores: int) -> None:
    """The peer: what `cores` processes gain here on plain Python work, CPU-bound and
    allocation-bound (a shared VM can give far less than `cores` x)."""
    for name, job in (("pure-Python loop", _spin), ("allocation loop", _allocate)):
        print(f"machine ceiling, {name:17} {_together(job, cores):8.2f}x  "
              f"({cores} jobs at once vs one)")


_STEPS: tuple[object, ...] = ()


def _explore_whole(_: int) -> float:
    started = time.perf_counter()
    explore(RunConfig(policy="always"), _STEPS)  # type: ignore[arg-type]
    return time.perf_counter() - started


def _explore_ceiling(steps: tuple[object, ...], cores: int, runs: int) -> float:
    """The peer for the explorer's ratio: `cores` independent whole explorations at once vs
    one alone (no splitting, no merging), median over `runs`."""
    global _STEPS
    _STEPS = steps
    return statistics.median(_together(_explore_whole, cores) for _ in range(runs))


def _stats(values: list[float]) -> str:
    return (f"{min(values):8.1f} / {statistics.median(values):8.1f} / {max(values):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200,
                        help="examples per configuration (3 configurations)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=300, help="explore workload size")
    parser.add_argument("--only", nargs="+", choices=("fuzz", "explore", "database"),
                        default=("fuzz", "explore", "database"), help="parts to measure")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; {args.runs} runs each; min / median / max")
    _machine_ceiling(cores)

    if "fuzz" in args.only:
        one = [_fuzz_rate(args.examples, 1, None) for _ in range(args.runs)]
        every = [_fuzz_rate(args.examples, cores, None) for _ in range(args.runs)]
        print(f"fuzz examples/s, 1 worker        {_stats(one)}")
        print(f"fuzz examples/s, {cores} workers       {_stats(every)}")
        ratio = statistics.median(every) / statistics.median(one)
        print(f"fuzz speed-up (median)           {ratio:8.2f}x  (goal >= 1.8x)")

    if "explore" in args.only:
        steps = tuple(make_workload("mixed", ops=args.ops, seed=1))
        rates: dict[int, list[float]] = {1: [], cores: []}
        for _ in range(args.runs):  # interleaved: a noisy neighbour hits both alike
            for workers in (1, cores):
                started = time.monotonic()
                result = explore(RunConfig(policy="always"), steps, limits=ExploreLimits(),
                                 workers=workers)
                rates[workers].append(result.states / (time.monotonic() - started))
        print(f"explore states/s, 1 worker       {_stats(rates[1])}")
        print(f"explore states/s, {cores} workers      {_stats(rates[cores])}")
        speed_up = statistics.median(rates[cores]) / statistics.median(rates[1])
        print(f"explore speed-up (median)        {speed_up:8.2f}x  (goal >= 1.8x)")
        ceiling = _explore_ceiling(steps, cores, args.runs)
        print(f"explore ceiling (median)         {ceiling:8.2f}x  ({cores} whole explorations "
              f"at once vs one: what this machine gives this work)")
        print(f"explore speed-up / ceiling       {speed_up / ceiling:8.2f}")

    if "database" not in args.only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        none = [1 / _fuzz_rate(args.examples, 1, None) for _ in range(args.runs)]
        directory = [1 / _fuzz_rate(args.examples, 1, str(Path(tmp) / f"db{i}"))
                     for i in range(args.runs)]
    overhead_ms = (statistics.median(directory) - statistics.median(none)) * 1000
    print(f"ms/example, no database          {_stats([x * 1000 for x in none])}")
    print(f"ms/example, directory database   {_stats([x * 1000 for x in directory])}")
    print(f"database overhead per example    {overhead_ms:8.2f} ms (median difference)")


if __name__ == "__main__":
    main()
