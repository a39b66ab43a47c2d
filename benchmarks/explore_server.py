"""``aofcrash explore --server`` on a real binary: states, distinct images, recoveries/s, wall.

Run: ``.venv/bin/python benchmarks/explore_server.py [--server 7.0] [--policy always]
[--ops 200] [--runs 3] [--workers N] [--models process,power-ext4,power-eager-metadata]
[--no-rewrite]``.

Each run records the seeded workload (``ops`` writes, one BGREWRITEAOF before the middle write
unless ``--no-rewrite``) on the FUSE SimDisk with a different seed, enumerates every crash state
under the models, recovers each distinct image once with the real binary on ``workers``
processes (default: two per core, as the CLI: a recovery mostly waits) and checks every state.
Printed per run and as min/median/max over the runs: states, state groups, distinct images,
real recoveries (of which for rule 3), real recoveries per second of the recovery phase, the
time of each phase and the wall time.
The machine may be shared: the wall-clock figures then measure the neighbours too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.verify._explore_server import ServerExploreConfig, explore_server


def _line(name: str, values: list[float], fmt: str = "{:.2f}") -> str:
    return (f"  {name:<22} min {fmt.format(min(values)):>9}  median "
            f"{fmt.format(statistics.median(values)):>9}  max {fmt.format(max(values)):>9}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="7.0")
    parser.add_argument("--policy", default="always", choices=["always", "everysec", "no"])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="0: two per core")
    parser.add_argument("--models", default="process,power-ext4,power-eager-metadata")
    parser.add_argument("--no-rewrite", action="store_true")
    args = parser.parse_args()
    workers = args.workers or 2 * (os.cpu_count() or 1)
    models = tuple(m for m in args.models.split(",") if m)
    rows: dict[str, list[float]] = {}
    print(f"explore --server {args.server}: policy {args.policy}, {args.ops} writes, "
          f"{'no rewrite' if args.no_rewrite else 'one BGREWRITEAOF'}, models "
          f"{', '.join(models)}, {workers} worker(s), {args.runs} run(s)")
    for run in range(args.runs):
        config = ServerExploreConfig(server=args.server, policy=args.policy, ops=args.ops,
                                     seed=run, models=models,
                                     rewrite_at=-1 if args.no_rewrite else None)
        result = explore_server(config, workers=workers)
        rate = result.recoveries_per_s or 0.0
        figures = {
            "states": result.states, "state groups": result.state_groups,
            "crash points": result.points_explored, "distinct images": result.distinct_contents,
            "real recoveries": result.real_recoveries,
            "  for stability": result.stability_recoveries,
            "recoveries/s": rate, "record s": result.record_s,
            "enumerate s": result.enumerate_s, "recover s": result.recover_s,
            "check s": result.check_s, "wall s": result.elapsed_s,
            "violating states": result.violating_states,
        }
        for name, value in figures.items():
            rows.setdefault(name, []).append(float(value))
        print(f"run {run} (seed {run}): {result.states} states at {result.points_explored} "
              f"crash points, {result.distinct_contents} distinct images, "
              f"{result.real_recoveries} real recoveries at {rate:.1f}/s, wall "
              f"{result.elapsed_s:.1f} s, {result.violating_states} violating state(s)")
    print("over the runs:")
    for name, values in rows.items():
        fmt = "{:.2f}" if name.endswith(" s") or name == "recoveries/s" else "{:.0f}"
        print(_line(name, values, fmt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
