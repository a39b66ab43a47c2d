"""``aofcrash verify`` throughput and fault placement against a real server.

Run: ``.venv/bin/python benchmarks/verify.py [--server 7.0] [--trials 30] [--repeats 3]
[--ops 1000] [--fire-trials 20] [--fire-policies always,everysec,no] [--skip-fire]``.

1. Throughput: process-crash trials (``appendfsync always``, model ``process``, no fault, ``ops``
   writes per trial) with 1 worker and with one worker per core; each run is ``trials`` trials,
   repeated ``repeats`` times; trials/s min/median/max. Also the CPU one trial costs (this
   process and its workers, plus the servers), and what that CPU allows on every core of an
   otherwise idle machine (cores / CPU per trial): the machine may be shared, the wall-clock
   rate then measures the neighbours too. The server's own start-up is included (three starts
   per trial: the run, the recovery and the stability check).
2. Fault placement: for each fault and policy, ``fire-trials`` trials (model ``process``, 200
   writes); in how many the fault fired, and the outcomes (under everysec: how many were
   ``not-exercised``, i.e. no entry had to survive).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.verify import FAULTS, VerifyConfig, run_verify


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers and servers, once reaped
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _throughput(server: str, ops: int, trials: int, repeats: int, workers: int) -> None:
    rates: list[float] = []
    cpu_per_trial: list[float] = []
    for repeat in range(repeats):
        config = VerifyConfig(server=server, policy="always", model="process", trials=trials,
                              ops=ops, seed=repeat)
        cpu_before, started = _cpu_s(), time.monotonic()
        result = run_verify(config, workers=workers)
        elapsed = time.monotonic() - started
        cpu_per_trial.append((_cpu_s() - cpu_before) / trials)
        if not result.ok:
            print(f"  warning: {result.count('violation')} violation(s) in repeat {repeat}")
        rates.append(trials / elapsed)
    cores = os.cpu_count() or 1
    cpu = statistics.median(cpu_per_trial)
    print(f"  workers={workers}: trials/s  min {min(rates):6.2f}  median "
          f"{statistics.median(rates):6.2f}  max {max(rates):6.2f}   CPU/trial median "
          f"{cpu * 1000:5.1f} ms (min {min(cpu_per_trial) * 1000:.1f}, max "
          f"{max(cpu_per_trial) * 1000:.1f}) -> {cores / cpu:5.1f} trials/s on {cores} idle "
          "core(s)")


def _fire(server: str, policies: list[str], trials: int, workers: int) -> None:
    for policy in policies:
        for fault in FAULTS:
            config = VerifyConfig(server=server, policy=policy, fault=fault, trials=trials,
                                  ops=200, seed=0)
            started = time.monotonic()
            result = run_verify(config, workers=workers)
            outcomes = Counter(t.outcome for t in result.trials)
            fired = (f"fired {result.fault_fired:>2}/{trials} "
                     f"({100 * result.fault_fired / trials:5.1f}%)" if fault != "none"
                     else "fired   -            ")
            print(f"  {policy:<8} {fault:<11} {fired}  "
                  + ", ".join(f"{n} {name}" for name, n in sorted(outcomes.items()))
                  + f"  ({time.monotonic() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="7.0", help="a preset or a path (default 7.0)")
    parser.add_argument("--ops", type=int, default=1000, help="writes per trial (default 1000)")
    parser.add_argument("--trials", type=int, default=30, help="trials per run (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument("--fire-trials", type=int, default=20,
                        help="trials per fault and policy (default 20)")
    parser.add_argument("--fire-policies", default="always,everysec,no",
                        help="policies for the fault-placement part (default always,everysec,no)")
    parser.add_argument("--skip-fire", action="store_true", help="throughput only")
    args = parser.parse_args()
    if min(args.ops, args.trials, args.repeats, args.fire_trials) < 1:
        parser.error("--ops, --trials, --repeats and --fire-trials must be >= 1")
    cores = os.cpu_count() or 1
    probe = run_verify(VerifyConfig(server=args.server, trials=1, ops=10))
    print(f"{probe.server_name} {probe.server_version}; {cores} core(s); load average "
          f"{os.getloadavg()[0]:.2f} at the start")
    print(f"throughput: always, process crash, {args.ops} writes/trial, {args.trials} trials "
          f"x {args.repeats} runs")
    for workers in sorted({1, cores}):
        _throughput(args.server, args.ops, args.trials, args.repeats, workers)
    if not args.skip_fire:
        print(f"fault placement: {args.fire_trials} trials per fault, process model, 200 "
              f"writes, {cores} worker(s)")
        _fire(args.server, [p for p in args.fire_policies.split(",") if p], args.fire_trials,
              cores)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
