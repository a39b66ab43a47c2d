"""``aofcrash explore``: the argparse wiring and the command (see ``harness.explore``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VIOLATION,
    MODEL_CHOICES,
    MODEL_HELP,
    UsageError,
    ViolationStop,
    availability_args,
    common_args,
    defect_warnings,
    did_you_mean,
    image_fault_args,
    one_line,
    parallel_args,
    positive_int,
    progress_bar,
    read_reproduction,
    reports_args,
    resolve_workers,
    warn,
)
from harness.cli._explore_kernel import (
    KERNEL_MODEL_CHOICES,
    KERNEL_MODEL_HELP,
    add_kernel_arguments,
    cmd_explore_kernel,
    kernel_models_asked,
)
from harness.cli._fuzz import (
    DAMAGE_HELP,
    TARGET_HELP,
    check_target_spec,
    damage_asked,
    inprocess_target_args,
    say_probed_refusals,
)
from harness.machine._steps import POLICIES

__all__ = ["add_parser", "cmd_explore"]

DEFAULT_OPS = 200  # write commands of a named workload run alone


def add_parser(sub: Any) -> None:
    from harness.explore._workloads import QUICK_PASS_OPS, WORKLOADS

    names = ", ".join(f"{w.name} ({w.description})" for w in WORKLOADS.values())
    p = sub.add_parser(
        "explore",
        help="enumerate every crash state of a workload and check each recovery",
        description="Run a workload once on the simulated disk, then crash it at every "
        "filesystem operation and inside every write, under each persistence model and every "
        "legal durable image (bounded by reported limits), recover with the reference (or "
        "--target: every distinct image recovered by a fresh target) and check "
        "the contract. Without --workload it runs the default suite: every workload under "
        "the policies it is meant for (always, everysec and no), first small (a quick pass of "
        f"{QUICK_PASS_OPS} writes each, so every workload's mechanisms are met early), then "
        "at full size; one "
        f"combined result (--policy keeps one policy's runs). Workloads: {names}.",
    )
    common_args(p, seed_help="seed of a named workload (default 0)")
    reports_args(p)
    p.add_argument("--workload", default=None, metavar="NAME|FILE",
                   help="a named workload or a reproduction JSON whose steps (up to its first "
                   "crash) are used (default: the default suite, every workload under the "
                   "policies it is meant for)")
    p.add_argument("--ops", type=positive_int, default=None,
                   help="write commands in a named workload (default 200; in the default "
                   f"suite: each workload's own size, after a quick pass of {QUICK_PASS_OPS}; "
                   "with --ops the suite runs each workload once at this size)")
    p.add_argument("--policy", choices=list(POLICIES), default=None,
                   help="appendfsync policy (default: everysec, or the file's; without "
                   "--workload: only the suite's runs under this policy)")
    p.add_argument("--model", action="append", choices=[*MODEL_CHOICES, *KERNEL_MODEL_CHOICES],
                   help="persistence model (repeatable; default: process and power-ext4): "
                   + MODEL_HELP + "; " + KERNEL_MODEL_HELP)
    inprocess_target_args(
        p, target_help=TARGET_HELP + " (default: the file's target, else the reference)",
        profile_default=None, profile_help="reference server profile (default: safe, or the "
        "file's)", defect_default=None)
    availability_args(p)
    p.add_argument("--no-appendfsync-on-rewrite", action="store_true")
    p.add_argument("--byte-granularity", action="store_true",
                   help="crash inside writes and cut power prefixes at every byte")
    p.add_argument("--sector-granularity", action="store_true",
                   help="inside writes only at sector boundaries, even for writes shorter "
                   "than a sector (default: every byte of those)")
    image_fault_args(
        p, torn_help="also torn last sectors (zeros, garbage) in power images",
        reorder_help="also reordered sectors (an earlier unsynced sector reads as zeros)",
        damage_help="each crash point's image also with a byte flipped and a byte zeroed at "
        f"10%%, 50%%, 90%% of its files: {DAMAGE_HELP}")
    p.add_argument("--damage-plan", metavar="FILE", default=None,
                   help="like --damage with this fault plan (JSON, Damage faults only)")
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
    parallel_args(p, workers_help="processes exploring crash points (default 0: every core)",
                  shard_help="explore only the crash points of shard I of N (0-based); N "
                  "shards together explore exactly what one run does (default 0/1)")
    from harness.cli._explore_server import add_server_arguments

    add_server_arguments(p)  # --server: a real binary (harness.cli._explore_server)
    add_kernel_arguments(p)  # --model ext4|xfs|btrfs with --server (harness.cli._explore_kernel)
    p.set_defaults(func=cmd_explore)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields the options set (the policy apart: a suite has one per run)."""
    changes: dict[str, Any] = {}
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
    return changes


def _with(config: Any, changes: dict[str, Any]) -> Any:
    from harness.machine._steps import ReproError, RunConfig

    data = {**config.to_dict(), **changes}
    try:
        return RunConfig.from_dict({**data, "defects": sorted(data["defects"])})
    except ReproError as exc:
        raise UsageError(str(exc)) from None


def _load(args: argparse.Namespace) -> tuple[Any, tuple[Any, ...], str]:
    from harness.explore import workload_from_reproduction
    from harness.explore._workloads import WORKLOADS, make_workload
    from harness.machine._steps import RunConfig

    if args.workload in WORKLOADS:
        ops = args.ops if args.ops is not None else DEFAULT_OPS
        config = RunConfig()
        steps = make_workload(args.workload, ops=ops, seed=args.seed)
        label = f"{args.workload} (ops={ops}, seed={args.seed})"
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
    changes = _changes(args)
    if args.policy is not None:
        changes["policy"] = args.policy
    config = _with(config, changes)
    if args.workload in WORKLOADS:
        steps = _fitted(config, [steps])[0]
    return config, steps, label


def _fitted(config: Any, workloads: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each workload's steps fitted to what the target accepts (``fit_workload``); what that
    changed is said once, in one line. (The target's spec is checked later, by the run.)"""
    from harness.explore._workloads import describe_fitting, fit_workload
    from harness.machine import target_accepts
    from harness.targets import TargetError

    if config.target is None:
        return workloads
    try:
        accept = target_accepts(config)
    except TargetError:
        return workloads
    total: Counter[str] = Counter()
    out = []
    for steps in workloads:
        fitted, changes = fit_workload(steps, accept)
        total.update(changes)
        out.append(fitted)
    if total:
        print(f"explore: {config.target} does not accept every command the workloads send; "
              f"sent instead: {describe_fitting(total)}", file=sys.stderr)
    return out


@dataclasses.dataclass
class _SuiteRun:
    """One run of the default suite: a workload under one policy."""

    workload: str
    ops: int
    config: Any
    steps: tuple[Any, ...]
    result: Any = None
    elapsed_s: float = 0.0
    # Why the run has no result: the workload cannot run on this target (``skipped``), or
    # the explorer itself failed on it (``failed``: a bug of aofcrash, or a runaway recovery).
    skipped: str | None = None
    failed: str | None = None

    @property
    def name(self) -> str:
        return f"{self.workload} ({self.config.policy}, ops={self.ops})"


def _suite(args: argparse.Namespace) -> list[_SuiteRun]:
    """The runs of the default suite (``DEFAULT_SUITE``: the quick pass, then the full pass;
    with --ops only the full pass at that size; with --policy only that policy's runs), each
    under ``suite_config`` on top of what the options set."""
    from harness.explore import DEFAULT_SUITE, WORKLOADS, make_workload, suite_config
    from harness.explore._workloads import FULL_PASS
    from harness.machine._steps import RunConfig

    base = _with(RunConfig(), _changes(args))
    runs = []
    for workload, policy, suite_ops in (DEFAULT_SUITE if args.ops is None else FULL_PASS):
        if args.policy is not None and policy != args.policy:
            continue
        ops = args.ops if args.ops is not None else suite_ops
        run = _SuiteRun(workload, ops, suite_config(workload, policy, base),
                        make_workload(workload, ops=ops, seed=args.seed))
        why = WORKLOADS[workload].reference_only
        if why is not None and base.target is not None:
            run.skipped = f"a workload for the bundled reference only: {why}"
        runs.append(run)
    if not runs:
        raise UsageError(f"--policy {args.policy}: the default suite has no run under it")
    live = [run for run in runs if run.skipped is None]
    for run, steps in zip(live, _fitted(base, [run.steps for run in live]), strict=True):
        run.steps = steps
    return runs


def _damage_plan(args: argparse.Namespace) -> Any:
    """The damage plan --damage or --damage-plan asks for (empty: none); UsageError in one
    line for a file that is not a plan of Damage faults."""
    from faults import Damage, FaultPlan, FaultPlanError
    from harness.explore import DEFAULT_DAMAGE

    if args.damage_plan is None:
        return DEFAULT_DAMAGE if damage_asked(args) else FaultPlan()
    try:
        plan = FaultPlan.from_json(Path(args.damage_plan).read_bytes())
    except OSError as exc:
        raise UsageError(f"--damage-plan {args.damage_plan}: {exc.strerror}") from None
    except FaultPlanError as exc:
        raise UsageError(f"--damage-plan {args.damage_plan}: {exc}") from None
    others = sorted({type(f).__name__ for f in plan if not isinstance(f, Damage)})
    if others or not plan.faults:
        raise UsageError(f"--damage-plan {args.damage_plan}: expected Damage faults only"
                         + (f", got {', '.join(others)}" if others else ", got none"))
    return plan


def _limits_dict(limits: Any) -> dict[str, Any]:
    """The limits as JSON (the damage plan as its faults)."""
    return {**dataclasses.asdict(limits), "damage": limits.damage.to_dict()["faults"]}


def _limits(args: argparse.Namespace) -> Any:
    from harness.explore import ExploreLimits

    return ExploreLimits(
        damage=_damage_plan(args),
        max_crash_points=args.max_crash_points,
        max_images_per_point=args.max_images_per_point,
        max_dirty_files=args.max_dirty_files,
        torn=args.torn,
        reorder=args.reorder,
        byte_granularity=args.byte_granularity,
        small_write_bytes=not args.sector_granularity,
        max_reproductions=args.max_reproductions,
    )


def _run_explore(config: Any, steps: tuple[Any, ...], models: tuple[Any, ...], limits: Any,
                 args: argparse.Namespace, on_progress: Any, on_partial: Any = None) -> Any:
    """One exploration; the errors a workload can cause are one line, exit 2."""
    from harness.explore import ExploreRunaway, explore
    from harness.machine._driver import ModelDivergence

    try:
        return explore(config, steps, models=models, limits=limits, naive=args.naive,
                       progress=on_progress, workers=resolve_workers(args.workers),
                       shard=args.shard, partial=on_partial)
    except ExploreRunaway as exc:
        raise ViolationStop(str(exc)) from None
    except ModelDivergence as exc:
        raise UsageError(f"the workload's own run diverged from the model: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:  # a step file that cannot run
        raise UsageError(f"the workload cannot be run: {one_line(exc)}") from None


def _coverage_and_progress(coverage: dict[str, Any], models: tuple[Any, ...],
                           series: list[list[float]]) -> dict[str, Any]:
    """The report sections an exploration and a suite of them share: coverage (and its matrix
    per model) and the crash states checked over time."""
    from harness.cli._report_violations import explore_coverage

    return {"coverage": coverage,
            "coverage_matrix": explore_coverage(coverage, [m.value for m in models]),
            "progress_series": {"title": "Crash states checked over time",
                                "xlabel": "seconds", "ylabel": "states", "points": series}}


def cmd_explore(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness.cli._report import PartialReports, new_run_dir
    from harness.cli._report_violations import (
        slim,
        terminal_lines,
    )

    if getattr(args, "server", None) is not None or getattr(args, "replay", None) is not None:
        from harness.cli._explore_server import cmd_explore_server

        if getattr(args, "replay", None) is None and kernel_models_asked(args):
            return cmd_explore_kernel(args)  # --model ext4|xfs|btrfs: the real kernel
        return cmd_explore_server(args)  # a real binary (its --replay names its server)
    if kernel_models_asked(args):
        raise UsageError(f"--model {kernel_models_asked(args)[0]}: the real kernel runs a real "
                         f"server: add --server (e.g. --server reference for the reference)")
    if args.max_reproductions < 0:
        raise UsageError(f"--max-reproductions: must be >= 0, got {args.max_reproductions}")
    if args.workload is None:
        return _cmd_suite(args)
    config, steps, label = _load(args)
    check_target_spec(config)  # one line, exit 2, for a target that cannot be used
    say_probed_refusals("explore", config)
    models = tuple(PersistenceModel(m) for m in (args.model or ["process", "power-ext4"]))
    warn("explore", defect_warnings(config.defects, policies=[config.policy],
                                    models=[m.value for m in models]))
    limits = _limits(args)
    run_dir = new_run_dir(args.reports, "explore", args.seed)
    bar = progress_bar(args, total=1, unit="points")

    series: list[list[float]] = [[0.0, 0]]

    def on_progress(done: int, total: int, states: int) -> None:
        series.append([round(time.perf_counter() - started, 3), states])
        bar.total = total
        bar.update(done, f"{done}/{total} crash points  {states} states")

    partial = PartialReports(run_dir)
    last_partial = [-1e9, 0.0]  # when the last partial report was written, what it took

    def on_partial(so_far: Any) -> None:
        # The walk so far, persisted (a killed run leaves it): counts and causes, without
        # the replays of reproductions; at most a tenth of the run's time goes to it.
        now = time.perf_counter()
        if now - last_partial[0] >= max(5.0, 10 * last_partial[1]):
            partial.write(build(so_far, now - started, "not finished when written: "
                                f"{so_far.points_explored} of {so_far.points_total} crash "
                                "point(s) explored (the run was still going, or was killed)",
                                max_reproductions=0))
            last_partial[:] = [time.perf_counter(), time.perf_counter() - now]

    def build(result: Any, elapsed: float, interrupted: str, *,
              max_reproductions: int = args.max_reproductions) -> dict[str, Any]:
        return _explore_report(args, result, config, steps, models, limits, label, run_dir,
                               series, elapsed, interrupted, max_reproductions)

    started = time.perf_counter()
    try:
        result = _run_explore(config, steps, models, limits, args, on_progress, on_partial)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    if result.damage_skipped:
        print(f"explore: damage skipped: {result.damage_skipped}", file=sys.stderr)
    report = build(result, elapsed, result.interrupted)
    violations, groups, bugs = report["violations"], report["groups"], report["harness_bugs"]
    totals, summary = report["totals"], report["explore"]
    json_path, html_path = partial.final(report)
    status = EXIT_VIOLATION if result.violation_total else EXIT_OK
    if result.interrupted.startswith("Ctrl-C"):
        status = EXIT_INTERRUPTED
    for line in _harness_bug_lines(bugs, run_dir):
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps({"status": ("interrupted" if status == EXIT_INTERRUPTED
                                     else "violation" if result.violation_total else "ok"),
                          "interrupted": result.interrupted or None,
                          "report": str(json_path), "html": str(html_path), **totals,
                          "harness_bugs": bugs,
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
        if result.violating_states:
            print(f"{result.violating_states} violating state(s): "
                  + ", ".join(f"{k} {n}" for k, n in summary["violations_by_rule"].items()))
            for line in terminal_lines(violations, groups, total=result.violating_states):
                print(line)
        else:
            print("no violation")
        print(f"report: {html_path}")
    if result.interrupted:
        print(f"explore: stopped early: {result.interrupted}; the report holds what finished",
              file=sys.stderr)
    return status


def _explore_report(args: argparse.Namespace, result: Any, config: Any, steps: Any,
                    models: Any, limits: Any, label: str, run_dir: Path,
                    series: list[list[float]], elapsed: float, interrupted: str,
                    max_reproductions: int) -> dict[str, Any]:
    """One exploration's report.json content (so far, when `interrupted` says it did not
    end); writes its reproductions beside it."""
    from harness.cli._report_violations import command_line, explore_violations
    from harness.machine._campaign import config_label

    violations, groups = explore_violations(result, config, steps, run_dir, config_label,
                                            max_reproductions=max_reproductions)
    bugs = _harness_bugs(result, run_dir)
    summary = result.to_dict()
    totals = {
        "states": result.states,
        "violating_states": result.violating_states,
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
                "shard": f"{args.shard[0]}/{args.shard[1]}",
                "target": config.target or "reference",
                "profile": config.profile, "defects": sorted(config.defects) or "none",
                "models": [m.value for m in models],
                "mode": summary["mode"],
                "recovery_time": "end of the workload (one recovery time for every state)",
                "limits": _limits_dict(limits), "command_line": command_line()},
        "totals": totals,
        **_coverage_and_progress(result.coverage(), models, series),
        "violations_note": (
            f"The explorer found {result.violating_states} violating state(s) "
            f"({', '.join(f'{k} {n}' for k, n in summary['violations_by_rule'].items())}); "
            f"they are grouped by cause (the mechanism: the rules broken and what the crash "
            f"image lacks or resurrects against what the server had written, under any model "
            f"and at any crash point), each counting all its states; {len(violations)} are "
            "kept in detail (the first of each cause among them), with one reproduction (the "
            "smallest) per cause." if result.violating_states else ""),
        "groups": groups,
        "configurations": [{"model": m, **counts}
                           for m, counts in summary["by_model"].items()],
        "events": {f"violations {k}": n for k, n in summary["violations_by_rule"].items()},
        "explore": summary,
        "violations": violations,
        "harness_bugs": bugs,
        "interrupted": interrupted or None,
    }
    report["summary"] = str(report["summary"]) + _bugs_sentence(bugs)
    return report


def _harness_bugs(result: Any, run_dir: Path, prefix: str = "") -> list[dict[str, Any]]:
    """The states where the explorer's fast path disagreed with the oracle (a bug of aofcrash,
    judged by the oracle instead), each with its reproduction written beside the report."""
    from harness.cli._report import write_atomic

    out = []
    for i, bug in enumerate(result.harness_bugs, 1):
        name = f"harness-bug-{i}.json"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / name, bug.reproduction.to_json())
        out.append({**bug.to_dict(), "reproduction": f"{prefix}{name}"})
    return out


def _bugs_sentence(bugs: list[dict[str, Any]]) -> str:
    if not bugs:
        return ""
    return (f" {len(bugs)} harness bug(s): the explorer's fast path disagreed with the oracle "
            "on those states, which the oracle judged instead (see harness_bugs, each with a "
            "reproduction).")


def _harness_bug_lines(bugs: list[dict[str, Any]], run_dir: Path) -> list[str]:
    if not bugs:
        return []
    return [f"{len(bugs)} harness bug(s): the explorer's fast path disagreed with the oracle "
            "(those states were judged by the oracle; please report this):",
            *(f"  {b['description']}; reproduction: {run_dir / b['reproduction']}"
              for b in bugs)]


def _sum_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add the numbers of `part` into `total`, nested dicts key by key."""
    for key, value in part.items():
        if isinstance(value, dict):
            _sum_into(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def _merged_coverage(runs: list[_SuiteRun]) -> dict[str, Any]:
    """Every run's coverage added up (crash points and states per model; fractions redone)."""
    out: dict[str, Any] = {}
    for run in runs:
        cov = {k: v for k, v in run.result.coverage().items() if k != "crash_points"}
        _sum_into(out, cov)
    for per_model in out.values():
        if isinstance(per_model, dict) and "states_checked" in per_model:
            legal = per_model.get("legal_states_at_explored_points", 0)
            per_model["fraction"] = (round(per_model["states_checked"] / legal, 6)
                                     if legal else 1.0)
    explored = sum(r.result.points_explored for r in runs)
    return {"crash_points": f"{explored}/{sum(r.result.points_total for r in runs)}", **out}


def _renumber(violations: list[dict[str, Any]], groups: list[dict[str, Any]], *,
              first_id: int, first_group: int, sub: str, run: _SuiteRun) -> None:
    """One run's violations and groups made unique in the suite's report: ids and group
    numbers shifted, reproductions named relative to the run directory, the run named."""
    ids = {v["id"]: f"v{first_id + i}" for i, v in enumerate(violations)}
    for v in violations:
        v["id"] = ids[v["id"]]
        v["workload"] = run.workload
        if "group" in v:
            v["group"] += first_group
        if v.get("reproduction"):
            v["reproduction"] = f"{sub}/{v['reproduction']}"
    for g in groups:
        g["group"] += first_group
        g["representative"] = ids.get(g["representative"], g["representative"])
        g["members"] = [ids.get(m, m) for m in g["members"]]
        g["workload"] = run.workload


def _merge_groups(groups: list[dict[str, Any]], found: list[dict[str, Any]],
                  violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`groups` with one more run's `found` added: a cause (signature: the mechanism) already
    seen in another run gains that run's states and members, so a suite reports each
    mechanism once; renumbered biggest first, every violation given its group's number."""
    by_signature = {g["signature"]: g for g in groups}
    for g in found:
        seen = by_signature.get(g["signature"])
        if seen is None:
            by_signature[g["signature"]] = g
            groups.append(g)
            continue
        seen["count"] += g["count"]
        seen["members"] = [*seen["members"], *g["members"]]
        models = dict.fromkeys(f"{seen.get('model') or ''}, {g.get('model') or ''}".split(", "))
        seen["model"] = ", ".join(m for m in models if m)
        workloads = dict.fromkeys(f"{seen.get('workload', '')}, {g.get('workload', '')}"
                                  .split(", "))
        seen["workload"] = ", ".join(w for w in workloads if w)
    groups.sort(key=lambda g: -int(g["count"]))
    number_of = {}
    for number, g in enumerate(groups, 1):
        g["group"] = number
        number_of[g["signature"]] = number
    for v in violations:
        if v.get("signature") in number_of:
            v["group"] = number_of[v["signature"]]
    return groups


def _cmd_suite(args: argparse.Namespace) -> int:
    """``aofcrash explore`` without --workload: every run of the default suite, one result."""
    from faults import PersistenceModel
    from harness.cli._report import PartialReports, new_run_dir
    from harness.explore import ExplorerError

    runs = _suite(args)
    for run in runs:
        check_target_spec(run.config)
    say_probed_refusals("explore", runs[0].config)
    models = tuple(PersistenceModel(m) for m in (args.model or ["process", "power-ext4"]))
    base = runs[0].config
    warn("explore", defect_warnings(base.defects,
                                    policies=sorted({r.config.policy for r in runs}),
                                    models=[m.value for m in models]))
    limits = _limits(args)
    run_dir = new_run_dir(args.reports, "explore", args.seed)
    bar = progress_bar(args, total=1, unit="points")
    series: list[list[float]] = [[0.0, 0]]
    states_before = 0
    damage_said = False
    started = time.perf_counter()
    partial = PartialReports(run_dir)
    interrupted = ""
    all_runs = list(runs)

    def build(reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return _suite_report(args, all_runs, models, limits, run_dir, series,
                             time.perf_counter() - started, reason)

    try:
        for number, run in enumerate(runs, 1):
            def on_progress(done: int, total: int, states: int, *, run: _SuiteRun = run,
                            number: int = number, before: int = states_before) -> None:
                series.append([round(time.perf_counter() - started, 3), before + states])
                bar.total = total
                bar.update(done, f"run {number}/{len(runs)} {run.name}: {done}/{total} crash "
                           f"points  {states} states")

            run_started = time.perf_counter()
            if run.skipped is not None:
                print(f"explore: skipped {run.name}: {run.skipped}", file=sys.stderr)
                continue
            try:
                run.result = _run_explore(run.config, run.steps, models, limits, args,
                                          on_progress)
            except UsageError as exc:  # this workload cannot run on this target
                run.skipped = str(exc)
            except ViolationStop as exc:  # a recovery that never finishes (a finding)
                run.failed = str(exc)
            except ExplorerError as exc:  # a bug of ours: the other runs still count
                run.failed = f"internal error of the explorer: {one_line(exc)}"
            run.elapsed_s = time.perf_counter() - run_started
            if run.result is not None and run.result.damage_skipped and not damage_said:
                damage_said = True  # the same reason for every run: said once
                print(f"explore: damage skipped: {run.result.damage_skipped}", file=sys.stderr)
            if run.result is not None:
                states_before += run.result.states
                if run.result.interrupted.startswith("Ctrl-C"):
                    interrupted = f"{run.result.interrupted} of run {number}/{len(runs)}"
                    break
                if number < len(runs):  # what ran so far, persisted (a kill leaves it)
                    partial.write(build(f"not finished when written: {number} of {len(runs)} "
                                        "run(s) done (the suite was still going, or was "
                                        "killed)")[0])
            else:
                print(f"explore: {'skipped' if run.skipped else 'failed'} {run.name}: "
                      f"{run.skipped or run.failed}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = "Ctrl-C (SIGINT) between two runs of the suite"
    finally:
        bar.close()
    if not any(r.result is not None for r in runs):
        if interrupted:
            raise KeyboardInterrupt
        raise UsageError("no workload of the default suite can run on this target (see the "
                         "lines above)")
    report, extra = build(interrupted)
    json_path, html_path = partial.final(report)
    return _suite_answer(args, report, extra, run_dir, json_path, html_path, interrupted)


def _suite_report(args: argparse.Namespace, all_runs: list[_SuiteRun], models: Any,
                  limits: Any, run_dir: Path, series: list[list[float]], elapsed: float,
                  interrupted: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The default suite's report (so far, when `interrupted` says it did not end) and what
    its terminal answer needs beside it."""
    from harness.cli._report import slug
    from harness.cli._report_violations import command_line, explore_violations
    from harness.machine._campaign import config_label

    not_run = [r for r in all_runs if r.result is None]
    runs = [r for r in all_runs if r.result is not None]
    base = all_runs[0].config
    violations: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    bugs: list[dict[str, Any]] = []
    for run in runs:
        left = args.max_reproductions - sum(1 for v in violations if v.get("reproduction"))
        sub = slug(f"{run.workload}-{run.config.policy}-ops{run.ops}")
        found, found_groups = explore_violations(run.result, run.config, run.steps,
                                                 run_dir / sub, config_label,
                                                 max_reproductions=max(0, left))
        _renumber(found, found_groups, first_id=len(violations) + 1, first_group=len(groups),
                  sub=sub, run=run)
        violations += found
        groups = _merge_groups(groups, found_groups, violations)
        bugs += [{**b, "workload": run.workload, "policy": run.config.policy}
                 for b in _harness_bugs(run.result, run_dir / sub, f"{sub}/")]
    violation_total = sum(r.result.violating_states for r in runs)
    failed = [r for r in not_run if r.failed]
    states = sum(r.result.states for r in runs)
    explored = sum(r.result.points_explored for r in runs)
    points = sum(r.result.points_total for r in runs)
    totals = {
        "runs": len(runs),
        "runs_with_violations": sum(1 for r in runs if r.result.violating_states),
        "states": states,
        "violating_states": violation_total,
        "crash_points": f"{explored}/{points}",
        "elapsed_s": round(elapsed, 2),
        "states_per_s": round(states / elapsed) if elapsed > 0 else None,
        "distinct_aof_contents": sum(r.result.distinct_contents for r in runs),
        "full_recoveries": sum(r.result.full_recoveries for r in runs),
        "causes": len(groups),
        "runs_not_run": len(not_run),
    }
    rows = []
    by_rule: dict[str, int] = {}
    for run in runs:
        summary = run.result.to_dict()
        for rule, n in summary["violations_by_rule"].items():
            by_rule[f"{run.workload}/{run.config.policy} {rule}"] = n
        rows.append({"workload": run.workload, "policy": run.config.policy, "ops": run.ops,
                     "states": run.result.states,
                     "crash_points": f"{run.result.points_explored}/{run.result.points_total}",
                     "violating_states": run.result.violating_states,
                     "elapsed_s": round(run.elapsed_s, 2),
                     "by_model": summary["by_model"],
                     "violations_by_rule": summary["violations_by_rule"]})
    coverage = _merged_coverage(runs)
    where = (f"target {base.target}" if base.target is not None else f"profile {base.profile}")
    policies = ", ".join(dict.fromkeys(r.config.policy for r in runs))
    report = {
        "command": "explore",
        "run_id": run_dir.name,
        "summary": (f"Every crash state of the default suite ({len(runs)} runs: each workload "
                    f"under its policies, {policies}) under "
                    f"{', '.join(m.value for m in models)}: {states} states at "
                    f"{explored}/{points} crash points in {elapsed:.1f} s ({where})."),
        "run": {"workload": "default suite", "seed": args.seed, "policies": policies,
                "shard": f"{args.shard[0]}/{args.shard[1]}",
                "suite": [f"{r.workload} {r.config.policy} ops={r.ops}" for r in runs],
                "target": base.target or "reference", "profile": base.profile,
                "defects": sorted(base.defects) or "none",
                "models": [m.value for m in models],
                "recovery_time": "end of each workload (one recovery time per run)",
                "limits": _limits_dict(limits), "command_line": command_line()},
        "totals": totals,
        **_coverage_and_progress(coverage, models, series),
        "violations_note": (
            f"The explorer found {violation_total} violating state(s) in "
            f"{totals['runs_with_violations']} run(s) "
            f"({', '.join(f'{k} {n}' for k, n in by_rule.items())}), grouped by cause (the "
            "mechanism: the rules broken and what the crash image lacks or resurrects, in any "
            "run, under any model, at any crash point), each counting all its states; the "
            "first of each cause in each run is kept in detail, with one reproduction (the "
            "smallest) per cause." if violation_total else ""),
        "groups": groups,
        "configurations": [{k: v for k, v in row.items()
                            if k not in ("by_model", "violations_by_rule")} for row in rows],
        "events": {f"violations {k}": n for k, n in by_rule.items()},
        "explore": {"suite": rows},
        "violations": violations,
        "harness_bugs": bugs,
        "runs_not_run": [{"workload": r.workload, "policy": r.config.policy, "ops": r.ops,
                          "skipped": r.skipped, "failed": r.failed} for r in not_run],
    }
    report["summary"] = str(report["summary"]) + _bugs_sentence(bugs) + "".join(
        f" {r.name} was {'skipped' if r.skipped else 'not finished'}: "
        f"{r.skipped or r.failed}." for r in not_run if r.skipped or r.failed)
    report["interrupted"] = interrupted or None
    extra = {"rows": rows, "by_rule": by_rule, "coverage": coverage, "not_run": not_run,
             "runs": runs, "policies": policies, "where": where, "failed": failed,
             "violation_total": violation_total, "explored": explored, "points": points,
             "states": states, "elapsed": elapsed}
    return report, extra


def _suite_answer(args: argparse.Namespace, report: dict[str, Any], extra: dict[str, Any],
                  run_dir: Path, json_path: Path, html_path: Path, interrupted: str) -> int:
    """The suite's answer: the exit status, its --json line or its text."""
    from harness.cli._report_violations import slim, terminal_lines

    rows, by_rule, not_run = extra["rows"], extra["by_rule"], extra["not_run"]
    violation_total, failed = extra["violation_total"], extra["failed"]
    totals, bugs = report["totals"], report["harness_bugs"]
    violations, groups = report["violations"], report["groups"]
    status = EXIT_VIOLATION if violation_total or failed else EXIT_OK
    if interrupted:
        status = EXIT_INTERRUPTED
    for line in _harness_bug_lines(bugs, run_dir):
        print(line, file=sys.stderr)
    if args.json:
        print(json.dumps({"status": ("interrupted" if interrupted else
                                     "violation" if violation_total or failed else "ok"),
                          "interrupted": interrupted or None,
                          "report": str(json_path), "html": str(html_path), **totals,
                          "harness_bugs": bugs,
                          "runs_not_run": report["runs_not_run"],
                          "suite": rows, "violations_by_rule": by_rule,
                          "coverage": extra["coverage"],
                          "findings": [slim(v) for v in violations],
                          "groups": groups}, default=str))
        return status
    print(f"explore: the default suite, {len(extra['runs'])} runs ({extra['policies']}"
          + (f"; {len(not_run)} more not run" if not_run else "")
          + f"), {extra['where']}, seed {args.seed}:")
    for row in rows:
        verdict = (f"{row['violating_states']} violating state(s): "
                   + ", ".join(f"{k} {n}" for k, n in row["violations_by_rule"].items())
                   if row["violating_states"] else "no violation")
        print(f"  {row['workload']} ({row['policy']}, ops={row['ops']}): {row['states']} "
              f"states at {row['crash_points']} crash points in {row['elapsed_s']:.1f}s: "
              f"{verdict}")
    for r in not_run:
        print(f"  {r.workload} ({r.config.policy}, ops={r.ops}): "
              + (f"{'skipped' if r.skipped else 'FAILED'}: {r.skipped or r.failed}"
                 if r.skipped or r.failed else "not run (interrupted)"))
    print(f"total: {extra['states']} states at {extra['explored']}/{extra['points']} crash "
          f"points in {extra['elapsed']:.1f}s")
    if violation_total:
        print(f"{violation_total} violating state(s) in {totals['runs_with_violations']} "
              f"run(s)")
        for line in terminal_lines(violations, groups, total=violation_total):
            print(line)
    else:
        print("no violation")
    print(f"report: {html_path}")
    if interrupted:
        print(f"explore: interrupted: {interrupted}; the report holds what finished",
              file=sys.stderr)
    return status
