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
    common_args,
    positive_int,
    progress_enabled,
    reports_args,
    stamp,
)

__all__ = ["add_parser", "cmd_explore"]


def add_parser(sub: Any) -> None:
    from harness.explore._workloads import WORKLOADS

    names = ", ".join(f"{w.name} ({w.description})" for w in WORKLOADS.values())
    p = sub.add_parser(
        "explore",
        help="enumerate every crash state of a workload and check each recovery",
        description="Run a workload once on the simulated disk, then crash it at every "
        "filesystem operation and inside every write, under each persistence model and every "
        "legal durable image (bounded by reported limits), recover with the reference and check "
        f"the contract. Workloads: {names}.",
    )
    common_args(p)
    reports_args(p)
    p.add_argument("--workload", default="rewrite", metavar="NAME|FILE",
                   help="a named workload or a reproduction JSON whose steps (up to its first "
                   "crash) are used (default: rewrite)")
    p.add_argument("--ops", type=positive_int, default=200,
                   help="write commands in a named workload (default 200)")
    p.add_argument("--policy", choices=["always", "everysec", "no"], default=None,
                   help="appendfsync policy (default: everysec, or the file's)")
    p.add_argument("--model", action="append",
                   choices=["process", "power", "power-eager-metadata"],
                   help="persistence model (repeatable; default: process and power)")
    p.add_argument("--profile", choices=["safe", "redis-3.0"], default=None,
                   help="reference server profile (default: safe, or the file's)")
    p.add_argument("--defect", action="append", default=None, metavar="NAME",
                   help="switch on a named defect of reference.defects (repeatable)")
    p.add_argument("--strict-availability", action="store_true",
                   help="treat refusing to start as a violation")
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
    p.set_defaults(func=cmd_explore)


def _load(args: argparse.Namespace) -> tuple[Any, tuple[Any, ...], str]:
    from harness.explore import workload_from_reproduction
    from harness.explore._workloads import WORKLOADS, make_workload
    from harness.machine._steps import Reproduction, ReproError, RunConfig

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
            )
        try:
            repro = Reproduction.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        except ReproError as exc:
            raise UsageError(f"{path}: {exc}") from None
        config, steps = workload_from_reproduction(repro)
        label = f"{path} ({len(steps)} steps before its first crash)"
    changes: dict[str, Any] = {}
    if args.policy is not None:
        changes["policy"] = args.policy
    if args.profile is not None:
        changes["profile"] = args.profile
    if args.defect is not None:
        changes["defects"] = frozenset(args.defect)
    if args.strict_availability:
        changes["strict_availability"] = True
    if args.no_appendfsync_on_rewrite:
        changes["no_appendfsync_on_rewrite"] = True
    data = {**config.to_dict(), **changes}
    try:
        config = RunConfig.from_dict({**data, "defects": sorted(data["defects"])})
    except ReproError as exc:
        raise UsageError(str(exc)) from None
    return config, steps, label


def cmd_explore(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness.cli._report import new_run_dir, slug, write_atomic, write_report
    from harness.explore import ExploreLimits, explore
    from harness.machine._driver import ModelDivergence
    from reference import defects as catalogue

    unknown = [d for d in (args.defect or []) if d not in catalogue.DEFECTS]
    if unknown:
        raise UsageError(
            f"unknown defect {unknown[0]!r} (known: {', '.join(sorted(catalogue.DEFECTS))})"
        )
    if args.max_reproductions < 0:
        raise UsageError(f"--max-reproductions: must be >= 0, got {args.max_reproductions}")
    config, steps, label = _load(args)
    models = tuple(PersistenceModel(m) for m in (args.model or ["process", "power"]))
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

    def on_progress(done: int, total: int, states: int) -> None:
        bar.total = total
        bar.update(done, f"{done}/{total} crash points  {states} states")

    started = time.perf_counter()
    try:
        result = explore(config, steps, models=models, limits=limits, naive=args.naive,
                         progress=on_progress)
    except ModelDivergence as exc:
        raise UsageError(f"the workload's own run diverged from the model: {exc}") from None
    except ValueError as exc:  # e.g. a step file whose steps cannot run in order
        raise UsageError(f"the workload cannot be run: {exc}") from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    violations: list[dict[str, Any]] = []
    for i, v in enumerate(result.violations, 1):
        name = None
        if v.reproduction is not None:
            name = f"repro-{i}-{slug('-'.join(v.rules))}-{v.model.value}.json"
            write_atomic(run_dir / name, v.reproduction.to_json())
        violations.append({"rule": ", ".join(v.rules), "model": v.model.value,
                           "trace_index": v.point.trace_index,
                           "torn_bytes": v.point.torn_bytes,
                           "confirmed_by_replay": v.confirmed,
                           "text": v.describe(), "reproduction": name})
    summary = result.to_dict()
    totals = {
        "states": result.states,
        "violating_states": result.violation_total,
        "crash_points": f"{result.points_explored}/{result.points_total}",
        "elapsed_s": round(elapsed, 2),
        "states_per_s": round(result.states / elapsed) if elapsed > 0 else None,
        "distinct_aof_contents": result.distinct_contents,
        "full_recoveries": result.full_recoveries,
    }
    report = {
        "command": "explore",
        "run_id": run_dir.name,
        "run": {"workload": label, "seed": args.seed, "policy": config.policy,
                "profile": config.profile, "defects": ", ".join(sorted(config.defects)) or "none",
                "models": ", ".join(m.value for m in models),
                "mode": "naive" if args.naive else "fast",
                "recovery_time": "end of the workload (one recovery time for every state)",
                "limits": json.dumps(dataclasses.asdict(limits), sort_keys=True)},
        "totals": totals,
        "coverage": {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
                     for k, v in result.coverage().items()},
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
                          "findings": violations}, default=str))
    else:
        print(f"explore: {label}, policy {config.policy}, profile {config.profile}: "
              f"{result.states} states at {result.points_explored}/{result.points_total} crash "
              f"points in {elapsed:.1f}s")
        for m, counts in summary["by_model"].items():
            print(f"  {m}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        if result.violation_total:
            print(f"{result.violation_total} violating state(s): "
                  + ", ".join(f"{k} {n}" for k, n in summary["violations_by_rule"].items()))
            for row in violations[:3]:
                print(f"\n{row['text']}")
                if row["reproduction"]:
                    print(f"reproduction: {run_dir / row['reproduction']}")
        else:
            print("no violation")
        print(f"report: {html_path}")
    return status
