"""No false alarms: the safe reference under the default state machines, step by step.

For each fsync policy, runs the default fuzz state machine (every feature drawn by swarm, every
persistence model, the dev settings of ``aofcrash fuzz``) slice after slice (10 examples each,
seeds ``seed``, ``seed + 1``, ...) until ``--steps`` machine steps have run, and reports the
steps, examples, recoveries checked and time. Any violation is a false alarm of the harness (or
a bug of the safe reference) and is printed with its reproduction. Policies run in parallel
(``--workers``, default 2).

Usage::

    .venv/bin/python benchmarks/false_alarms.py [--steps 100000] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_policy(policy: str, steps: int, seed: int) -> dict[str, Any]:
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
    slice_seed = seed
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
        slice_seed += 1
    counts = at_failure or counts
    return {"policy": policy, "steps": counts["steps"], "recoveries": counts["recoveries"],
            "examples": examples, "elapsed_s": round(time.monotonic() - started, 1),
            "finding": finding}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--policy", action="append", choices=["always", "everysec", "no"])
    args = parser.parse_args()
    policies = args.policy or ["always", "everysec", "no"]
    clean = True
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        for res in pool.map(run_policy, policies, [args.steps] * len(policies),
                            [args.seed] * len(policies)):
            status = "no violation" if res["finding"] is None else "VIOLATION"
            print(f"{res['policy']:9} {res['steps']:8} steps {res['examples']:6} examples "
                  f"{res['recoveries']:7} recoveries {res['elapsed_s']:8.1f} s  {status}",
                  flush=True)
            if res["finding"] is not None:
                clean = False
                print(res["finding"])
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
