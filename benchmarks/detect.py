"""Time to detect each named defect of reference.defects with the state machines.

For every defect and every seed in a fixed range, a fuzz campaign (the defect's configuration from
``harness.machine._campaign.DEFECT_CONFIGS``: the fsync policy where it acts, strict availability
for the two that show as a refused start; every persistence model; the dev settings profile) runs
until its first violation. Printed
per defect: time to the first failing run (median and worst over the seeds), the time including
shrinking, and the size of the shrunk reproduction (steps). Goal: every defect detected, median
under 5 s and worst under 60 s on one core.

    python benchmarks/detect.py [--seeds 3] [--budget 90] [--defect NAME ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.machine._campaign import DEFECT_CONFIGS, Campaign, run_campaign
from harness.machine._steps import RunConfig
from reference import defects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per campaign")
    parser.add_argument("--shrink", type=float, default=20.0, help="shrink budget, seconds")
    parser.add_argument("--defect", action="append", default=[])
    args = parser.parse_args()
    names = args.defect or sorted(defects.DEFECTS)
    print(f"python {sys.version.split()[0]}, seeds 0..{args.seeds - 1}, "
          f"budget {args.budget:.0f} s per campaign, shrink budget {args.shrink:.0f} s")
    header = (f"{'defect':40s} {'found':>5s} {'first med':>9s} {'first max':>9s} "
              f"{'+shrink med':>11s} {'steps med':>9s} {'policy':>8s}")
    print(header)
    print("-" * len(header))
    all_first: list[float] = []
    missed = 0
    for name in names:
        firsts, totals, steps, policies = [], [], [], []
        for seed in range(args.seeds):
            policy, strict = DEFECT_CONFIGS[name]
            configs = (RunConfig(policy=policy, defects=frozenset([name]),
                                 allow_unavailable=not strict),)
            t0 = time.monotonic()
            result = run_campaign(Campaign(configs=configs, budget_s=args.budget, seed=seed,
                                           shrink_budget_s=args.shrink))
            elapsed = time.monotonic() - t0
            if not result.findings:
                firsts.append(float("inf"))
                totals.append(elapsed)
                continue
            f = result.findings[0]
            firsts.append(f.first_seen_s if f.first_seen_s is not None else f.elapsed_s)
            totals.append(f.elapsed_s)
            steps.append(f.steps or 0)
            policies.append(f.config.policy)
        found = sum(1 for x in firsts if x != float("inf"))
        missed += found < len(firsts)
        all_first.extend(firsts)
        med = statistics.median(firsts)
        print(f"{name:40s} {found}/{len(firsts):<3d} {med:9.1f} {max(firsts):9.1f} "
              f"{statistics.median(totals):11.1f} "
              f"{(statistics.median(steps) if steps else 0):9.0f} "
              f"{max(set(policies), key=policies.count) if policies else '-':>8s}",
              flush=True)
    finite = [x for x in all_first if x != float("inf")]
    overall_med = statistics.median(all_first)
    worst = max(all_first)
    print("-" * len(header))
    print(f"all defects: median first detection {overall_med:.1f} s, worst {worst:.1f} s "
          f"({len(finite)}/{len(all_first)} campaigns found their defect)")
    ok = missed == 0 and overall_med < 5 and worst < 60
    print(f"goal (every defect found, median < 5 s, worst < 60 s): {'MET' if ok else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
