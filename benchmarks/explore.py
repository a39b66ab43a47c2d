"""Benchmark of the crash-state explorer (prints figures; not a timed test).

Workload: ``rewrite`` with 10,000 write commands (BGREWRITEAOF in the middle, the child stepping
while writes go on), policy everysec, models process + power, sector granularity (inside writes
only at sector boundaries), the whole image space (no per-point cap, every dirty file varies,
torn and reordered sectors included; one more run with sector prefixes only, the default).

Figures:
* fast path: wall time, states, states/s (min/median/max of --runs), and the rate of distinct
  (crash point, AOF image) groups the walk actually evaluates (states sharing an AOF image are
  counted together: they differ only in files recovery never reads);
* naive path (every state materialised, recovered from byte 0, checked by the oracle with the
  point's history): states/s on a sample of crash points spread over the run (every state of
  the whole space would take hours), and the fast/naive ratio.

Usage: .venv/bin/python benchmarks/explore.py [--ops 10000] [--runs 3] [--naive-points 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import PersistenceModel
from harness.explore import ExploreLimits, explore, make_workload
from harness.machine._steps import RunConfig

MODELS = (PersistenceModel.PROCESS, PersistenceModel.POWER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--naive-points", type=int, default=12,
                        help="crash points sampled for the naive figure")
    parser.add_argument("--naive-images", type=int, default=25,
                        help="images per sampled point and model for the naive figure")
    args = parser.parse_args()

    config = RunConfig(policy="everysec")
    steps = make_workload("rewrite", ops=args.ops, seed=0)
    whole = ExploreLimits(small_write_bytes=False, max_images_per_point=10**15,
                          max_dirty_files=64, torn=True, reorder=True)
    print(f"workload: rewrite, {args.ops} write commands, {len(steps)} steps, policy everysec, "
          f"models process+power, sector granularity, whole image space (prefixes, torn and "
          f"reordered sectors, strict metadata)")

    times: list[float] = []
    rates: list[float] = []
    groups_rates: list[float] = []
    result = None
    for run in range(args.runs):
        started = time.perf_counter()
        result = explore(config, steps, models=MODELS, limits=whole, keep_states=True)
        elapsed = time.perf_counter() - started
        assert result.states_log is not None
        times.append(elapsed)
        rates.append(result.states / elapsed)
        groups_rates.append(len(result.states_log) / elapsed)
        print(f"  fast run {run + 1}: {elapsed:6.2f} s  {result.states:,} states  "
              f"{len(result.states_log):,} (point, AOF image) groups", flush=True)
    assert result is not None
    cov = result.coverage()
    print(f"crash points: {cov['crash_points']}; trace ops: {result.trace_ops}")
    for m in MODELS:
        c = cov[m.value]
        print(f"  {m.value}: {c['states_checked']:,} states checked of "
              f"{c['legal_states_at_explored_points']:,} legal (cut {c['cut_by_max_images']}"
              f" + {c['cut_by_dirty_files']}); by kind {c['by_kind']}")
    print(f"  outcomes: {dict(sorted(result.outcomes.items()))}")
    print(f"  violations by rule: {dict(result.violation_counts)}")
    print(f"  distinct AOF contents {result.distinct_contents:,}, full recoveries "
          f"{result.full_recoveries} (of which audits {result.audits}), commands fed "
          f"incrementally {result.commands_fed:,}")
    print(f"fast: whole space in {min(times):.1f} / {statistics.median(times):.1f} / "
          f"{max(times):.1f} s (min/median/max)")
    print(f"fast: states/s min {min(rates):,.0f}  median {statistics.median(rates):,.0f}  "
          f"max {max(rates):,.0f}")
    print(f"fast: (point, AOF image) groups/s min {min(groups_rates):,.0f}  median "
          f"{statistics.median(groups_rates):,.0f}  max {max(groups_rates):,.0f}")

    prefix_only = ExploreLimits(small_write_bytes=False, max_images_per_point=10**15,
                                max_dirty_files=64)
    started = time.perf_counter()
    plain = explore(config, steps, models=MODELS, limits=prefix_only)
    plain_s = time.perf_counter() - started
    print(f"fast, sector prefixes only (default image kinds): {plain.states:,} states in "
          f"{plain_s:.1f} s = {plain.states / plain_s:,.0f} states/s; violations "
          f"{plain.violation_total}")

    stride = max(1, result.points_total // max(1, args.naive_points))
    sample = ExploreLimits(small_write_bytes=False, max_images_per_point=args.naive_images,
                           point_stride=stride, confirm_reproductions=0, torn=True,
                           reorder=True)
    started = time.perf_counter()
    naive = explore(config, steps, models=MODELS, limits=sample, naive=True)
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    same = explore(config, steps, models=MODELS, limits=sample)
    same_s = time.perf_counter() - started
    naive_rate = naive.states / naive_s
    print(f"naive (full replay per state): {naive.states} states at {naive.points_explored} "
          f"sampled points in {naive_s:.1f} s = {naive_rate:,.1f} states/s "
          f"(fast on the same sample: {same.states / same_s:,.0f} states/s, same outcomes: "
          f"{same.outcomes == naive.outcomes})")
    print(f"ratio fast/naive (median states/s): {statistics.median(rates) / naive_rate:,.0f}x")


if __name__ == "__main__":
    main()
