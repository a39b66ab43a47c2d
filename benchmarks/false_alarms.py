"""No false alarms: the safe reference under the default state machines, step by step.

For each fsync policy, runs the default fuzz state machine (every feature drawn by swarm, every
persistence model, the dev settings of ``aofcrash fuzz``) slice after slice (10 examples each,
seeds ``seed``, ``seed + 1``, ...) until ``--steps`` machine steps have run, and reports the
steps, examples, recoveries checked and time. Any violation is a false alarm of the harness (or
a bug of the safe reference) and is printed with its reproduction.

Each policy's slices are cut into ``--shards`` shards (shard i runs slices i, i + n, ... until
it has run its share of the steps), and every (policy, shard) pair is a job for the
``--workers`` processes: the steps of a policy are spread over the cores, and a run with the
same (steps, seed, shards) runs the same slices whatever the number of workers.

Usage::

    .venv/bin/python benchmarks/false_alarms.py [--steps 100000] [--seed 0] [--workers 2]
        [--shards 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_policy(policy: str, steps: int, seed: int, shard: tuple[int, int] = (0, 1)
               ) -> dict[str, Any]:
    from hypothesis import seed as hypothesis_seed
    from hypothesis import settings
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import run_state_machine_as_test

    from harness.machine import PROFILES, make_state_machine
    from harness.machine._driver import ContractViolation, ModelDivergence
    from harness.machine._steps import RunConfig, Step

    counts = {"steps": 0, "recoveries": 0}
    at_failure: dict[str, int] = {}

    def on_finding(_exc: BaseException) -> None:
        # Steps before the first failing example (shrinking runs more, which do not count).
        if not at_failure:
            at_failure.update(counts)

    base = make_state_machine(RunConfig(policy=policy), on_finding=on_finding)

    class Counting(base):  # type: ignore[misc, valid-type]
        def _run(self, step: Step) -> None:
            counts["steps"] += 1
            if step.kind == "recover":
                counts["recoveries"] += 1
            super()._run(step)

    started = time.monotonic()
    examples = 0
    index, count = shard
    slice_seed = seed + index
    finding: str | None = None
    while counts["steps"] < steps and finding is None:
        try:
            with with_reporter(lambda _text: None):
                run_state_machine_as_test(hypothesis_seed(slice_seed)(Counting),
                                          settings=settings(PROFILES["dev"], max_examples=10))
        except (ContractViolation, ModelDivergence) as exc:
            repro = getattr(exc, "reproduction", None)
            finding = f"{exc}\n{repro.to_json() if repro is not None else ''}"
        examples += 10
        slice_seed += count
    counts = at_failure or counts
    return {"policy": policy, "shard": f"{index}/{count}", "steps": counts["steps"],
            "recoveries": counts["recoveries"],
            "examples": examples, "elapsed_s": round(time.monotonic() - started, 1),
            "finding": finding}


def _job(job: tuple[str, int, int, tuple[int, int]]) -> dict[str, Any]:
    return run_policy(*job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2, help="shards per policy")
    parser.add_argument("--policy", action="append", choices=["always", "everysec", "no"])
    args = parser.parse_args()
    policies = args.policy or ["always", "everysec", "no"]
    shards = max(1, args.shards)
    jobs = [(p, -(-args.steps // shards), args.seed, (i, shards))
            for p in policies for i in range(shards)]
    totals: dict[str, dict[str, float]] = {}
    clean = True
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        for res in pool.map(_job, jobs):
            status = "no violation" if res["finding"] is None else "VIOLATION"
            print(f"{res['policy']:9} shard {res['shard']:5} {res['steps']:8} steps "
                  f"{res['examples']:6} examples {res['recoveries']:7} recoveries "
                  f"{res['elapsed_s']:8.1f} s  {status}", flush=True)
            total = totals.setdefault(res["policy"], {"steps": 0, "examples": 0,
                                                      "recoveries": 0, "violations": 0})
            for key in ("steps", "examples", "recoveries"):
                total[key] += res[key]
            if res["finding"] is not None:
                clean = False
                total["violations"] += 1
                print(res["finding"])
    for policy, total in totals.items():
        print(f"{policy:9} total {int(total['steps']):8} steps {int(total['examples']):6} "
              f"examples {int(total['recoveries']):7} recoveries  "
              f"{int(total['violations'])} violation(s)")
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
