"""``aofcrash explore``: the argparse wiring and the command (see ``harness.explore``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    Progress,
    UsageError,
    availability_args,
    common_args,
    defect_arg,
    defect_help,
    defect_warnings,
    did_you_mean,
    one_line,
    positive_int,
    progress_enabled,
    read_reproduction,
    reports_args,
    resolve_workers,
    shard_arg,
    stamp,
    warn,
    workers_arg,
)
from harness.cli._fuzz import TARGET_HELP, check_target_spec

__all__ = ["add_parser", "cmd_explore"]


def add_parser(sub: Any) -> None:
    from harness.explore._workloads import WORKLOADS

    names = ", ".join(f"{w.name} ({w.description})" for w in WORKLOADS.values())
    p = sub.add_parser(
        "explore",
        help="enumerate every crash state of a workload and check each recovery",
        description="Run a workload once on the simulated disk, then crash it at every "
        "filesystem operation and inside every write, under each persistence model and every "
        "legal durable image (bounded by reported limits), recover with the reference (or "
        "--target: every distinct image recovered by a fresh target) and check "
        f"the contract. Workloads: {names}.",
    )
    common_args(p, seed_help="seed of a named workload (default 0)")
    reports_args(p)
    p.add_argument("--workload", default="rewrite", metavar="NAME|FILE",
                   help="a named workload or a reproduction JSON whose steps (up to its first "
                   "crash) are used (default: rewrite)")
    p.add_argument("--ops", type=positive_int, default=200,
                   help="write commands in a named workload (default 200)")
    p.add_argument("--policy", choices=["always", "everysec", "no"], default=None,
                   help="appendfsync policy (default: everysec, or the file's)")
    p.add_argument("--model", action="append",
                   choices=["process", "power", "power-eager-metadata", "power-posix-metadata"],
                   help="persistence model (repeatable; default: process and power)")
    p.add_argument("--target", metavar="MODULE:FACTORY", default=None,
                   help=TARGET_HELP + " (default: the file's target, else the reference)")
    p.add_argument("--profile", choices=["safe", "redis-3.0"], default=None,
                   help="reference server profile (default: safe, or the file's)")
    p.add_argument("--defect", action="append", default=None, metavar="NAME", type=defect_arg,
                   help=defect_help())
    availability_args(p)
    p.add_argument("--no-appendfsync-on-rewrite", action="store_true")
    p.add_argument("--byte-granularity", action="store_true",
                   help="crash inside writes and cut power prefixes at every byte")
    p.add_argument("--sector-granularity", action="store_true",
                   help="inside writes only at sector boundaries, even for writes shorter "
                   "than a sector (default: every byte of those)")
    p.add_argument("--torn", action="store_true",
                   help="also torn last sectors (zeros, garbage) in power images")
    p.add_argument("--reorder", action="store_true",
                   help="also reordered sectors (an earlier unsynced sector reads as zeros)")
    p.add_argument("--max-images-per-point", type=positive_int, default=4096,
                   help="legal images per crash point and model (default 4096)")
    p.add_argument("--max-dirty-files", type=positive_int, default=4,
                   help="dirty files whose images vary (default 4)")
    p.add_argument("--max-crash-points", type=positive_int, default=None,
                   help="explore at most this many crash points (default: all)")
    p.add_argument("--max-reproductions", type=int, default=20,
                   help="violations written as reproduction files (default 20)")
    p.add_argument("--naive", action="store_true",
                   help="recover every state from byte 0 (slow; the cross-check baseline)")
    p.add_argument("--workers", type=workers_arg, default=0, metavar="N",
                   help="processes exploring crash points (default 0: every core)")
    p.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="I/N",
                   help="explore only the crash points of shard I of N (0-based); N shards "
                   "together explore exactly what one run does (default 0/1)")
    p.set_defaults(func=cmd_explore)


def _load(args: argparse.Namespace) -> tuple[Any, tuple[Any, ...], str]:
    from harness.explore import workload_from_reproduction
    from harness.explore._workloads import WORKLOADS, make_workload
    from harness.machine._steps import ReproError, RunConfig

    if args.workload in WORKLOADS:
        config = RunConfig()
        steps = make_workload(args.workload, ops=args.ops, seed=args.seed)
        label = f"{args.workload} (ops={args.ops}, seed={args.seed})"
    else:
        path = Path(args.workload)
        if not path.exists():
            raise UsageError(
                f"--workload: {args.workload!r} is neither a workload name "
                f"({', '.join(WORKLOADS)}) nor an existing file"
                + did_you_mean(args.workload, WORKLOADS)
            )
        if args.seed:
            warn("explore", [f"--seed {args.seed} does nothing with a workload file (its "
                             "steps are fixed)"])
        repro = read_reproduction(path)
        config, steps = workload_from_reproduction(repro)
        label = f"{path} ({len(steps)} steps before its first crash)"
    changes: dict[str, Any] = {}
    if args.policy is not None:
        changes["policy"] = args.policy
    if args.profile is not None:
        changes["profile"] = args.profile
    if args.defect is not None:
        changes["defects"] = frozenset(args.defect)
    if args.allow_unavailable:
        changes["allow_unavailable"] = True
    if args.no_appendfsync_on_rewrite:
        changes["no_appendfsync_on_rewrite"] = True
    if args.target is not None:
        changes["target"] = args.target
    data = {**config.to_dict(), **changes}
    try:
        config = RunConfig.from_dict({**data, "defects": sorted(data["defects"])})
    except ReproError as exc:
        raise UsageError(str(exc)) from None
    return config, steps, label


def cmd_explore(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness.cli._report import new_run_dir, write_report
    from harness.cli._report_violations import (
        command_line,
        explore_coverage,
        explore_violations,
        slim,
        terminal_lines,
    )
    from harness.explore import ExploreLimits, explore
    from harness.machine._campaign import config_label
    from harness.machine._driver import ModelDivergence

    if args.max_reproductions < 0:
        raise UsageError(f"--max-reproductions: must be >= 0, got {args.max_reproductions}")
    config, steps, label = _load(args)
    check_target_spec(config)  # one line, exit 2, for a target that cannot be used
    models = tuple(PersistenceModel(m) for m in (args.model or ["process", "power"]))
    warn("explore", defect_warnings(config.defects, policies=[config.policy],
                                    models=[m.value for m in models]))
    limits = ExploreLimits(
        max_crash_points=args.max_crash_points,
        max_images_per_point=args.max_images_per_point,
        max_dirty_files=args.max_dirty_files,
        torn=args.torn,
        reorder=args.reorder,
        byte_granularity=args.byte_granularity,
        small_write_bytes=not args.sector_granularity,
        max_reproductions=args.max_reproductions,
    )
    run_dir = new_run_dir(args.reports, "explore", args.seed, stamp())
    bar = Progress(enabled=progress_enabled(args.progress), total=1, unit="points")

    series: list[list[float]] = [[0.0, 0]]

    def on_progress(done: int, total: int, states: int) -> None:
        series.append([round(time.perf_counter() - started, 3), states])
        bar.total = total
        bar.update(done, f"{done}/{total} crash points  {states} states")

    started = time.perf_counter()
    try:
        result = explore(config, steps, models=models, limits=limits, naive=args.naive,
                         progress=on_progress, workers=resolve_workers(args.workers),
                         shard=args.shard)
    except ModelDivergence as exc:
        raise UsageError(f"the workload's own run diverged from the model: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:  # a step file that cannot run
        raise UsageError(f"the workload cannot be run: {one_line(exc)}") from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    violations, groups = explore_violations(result, config, steps, run_dir, config_label,
                                            max_reproductions=args.max_reproductions)
    summary = result.to_dict()
    totals = {
        "states": result.states,
        "violating_states": result.violation_total,
        "crash_points": f"{result.points_explored}/{result.points_total}",
        "elapsed_s": round(elapsed, 2),
        "states_per_s": round(result.states / elapsed) if elapsed > 0 else None,
        "distinct_aof_contents": result.distinct_contents,
        "full_recoveries": result.full_recoveries,
        "causes": len(groups),
    }
    report = {
        "command": "explore",
        "run_id": run_dir.name,
        "summary": (f"Every crash state of the workload {label} under "
                    f"{', '.join(m.value for m in models)}: {result.states} states at "
                    f"{result.points_explored}/{result.points_total} crash points in "
                    f"{elapsed:.1f} s (policy {config.policy}, "
                    + (f"target {config.target})." if config.target is not None
                       else f"profile {config.profile}).")),
        "run": {"workload": label, "seed": args.seed, "policy": config.policy,
                "target": config.target or "reference",
                "profile": config.profile, "defects": sorted(config.defects) or "none",
                "models": [m.value for m in models],
                "mode": summary["mode"],
                "recovery_time": "end of the workload (one recovery time for every state)",
                "limits": dataclasses.asdict(limits), "command_line": command_line()},
        "totals": totals,
        "coverage": result.coverage(),
        "coverage_matrix": explore_coverage(result.coverage(), [m.value for m in models]),
        "progress_series": {"title": "Crash states checked over time", "xlabel": "seconds",
                            "ylabel": "states", "points": series},
        "violations_note": (
            f"The explorer found {result.violation_total} violating state(s) "
            f"({', '.join(f'{k} {n}' for k, n in summary['violations_by_rule'].items())}); "
            f"it keeps the first {len(violations)} in detail, grouped here by cause, with one "
            "reproduction (the smallest) per cause." if result.violation_total else ""),
        "groups": groups,
        "configurations": [{"model": m, **counts}
                           for m, counts in summary["by_model"].items()],
        "events": {f"violations {k}": n for k, n in summary["violations_by_rule"].items()},
        "explore": summary,
        "violations": violations,
    }
    json_path, html_path = write_report(run_dir, report)
    status = EXIT_VIOLATION if result.violation_total else EXIT_OK
    if args.json:
        print(json.dumps({"status": "violation" if result.violation_total else "ok",
                          "report": str(json_path), "html": str(html_path), **totals,
                          "by_model": summary["by_model"],
                          "violations_by_rule": summary["violations_by_rule"],
                          "coverage": result.coverage(),
                          "findings": [slim(v) for v in violations],
                          "groups": groups}, default=str))
    else:
        where = (f"target {config.target}" if config.target is not None
                 else f"profile {config.profile}")
        print(f"explore: {label}, policy {config.policy}, {where}: "
              f"{result.states} states at {result.points_explored}/{result.points_total} crash "
              f"points in {elapsed:.1f}s")
        for m, counts in summary["by_model"].items():
            print(f"  {m}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        if result.violation_total:
            print(f"{result.violation_total} violating state(s): "
                  + ", ".join(f"{k} {n}" for k, n in summary["violations_by_rule"].items()))
            for line in terminal_lines(violations, groups, total=result.violation_total):
                print(line)
        else:
            print("no violation")
        print(f"report: {html_path}")
    return status
