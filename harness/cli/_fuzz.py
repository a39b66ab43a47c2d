"""``aofcrash fuzz``: the state machines against the in-process reference, or any in-process
target with ``--target MODULE:FACTORY`` (see ``harness.machine`` and ``harness.targets``).

``check_target_spec`` is shared with ``explore`` and ``replay``: the current directory is
importable (last on the path, so it shadows nothing) and an unusable spec is one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness.cli._common import (
    ALL_MODELS,
    DEFAULT_DATABASE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VIOLATION,
    MODEL_CHOICES,
    MODEL_HELP,
    availability_args,
    common_args,
    database_spec,
    defect_arg,
    defect_help,
    defect_warnings,
    image_fault_args,
    parallel_args,
    parse_budget,
    positive_int,
    progress_bar,
    reports_args,
    resolve_workers,
    warn,
)
from harness.machine._campaign import SHRINK_FLOOR_S
from harness.machine._steps import POLICIES, PROFILES

TARGET_HELP = ("an in-process implementation of harness.targets.Target to run instead of the "
               "bundled reference, as MODULE:FACTORY (e.g. tinyaof:make_target); the current "
               "directory is importable")


def inprocess_target_args(p: argparse.ArgumentParser, *, target_help: str,
                          profile_default: str | None, profile_help: str,
                          defect_default: list[str] | None) -> None:
    """--target, --profile and --defect: which in-process target runs, and the options of the
    bundled reference (``fuzz`` and ``explore``; their defaults differ)."""
    p.add_argument("--target", metavar="MODULE:FACTORY", default=None, help=target_help)
    p.add_argument("--profile", choices=list(PROFILES), default=profile_default,
                   help=profile_help)
    p.add_argument("--defect", action="append", default=defect_default, metavar="NAME",
                   type=defect_arg, help=defect_help())


def importable_cwd() -> None:
    """Let ``MODULE:FACTORY`` name a module in the current directory (appended to sys.path,
    so it shadows nothing installed)."""
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def check_target_spec(config: Any) -> dict[str, str]:
    """The features `config`'s target cannot run (see ``unsupported_features``); UsageError in
    one line when its ``MODULE:FACTORY`` does not resolve or does not build a Target."""
    from harness.cli._common import UsageError
    from harness.machine._features import unsupported_features
    from harness.targets import TargetError

    importable_cwd()
    try:
        return unsupported_features(config)
    except TargetError as exc:
        hint = (" (run from the directory that holds it, or put that directory on PYTHONPATH)"
                if "cannot import" in str(exc) else "")
        raise UsageError(f"{exc}{hint}") from None


def say_probed_refusals(command: str, config: Any) -> None:
    """One line on stderr naming the forms the target refused in the probe before the run
    without declaring them (``harness.machine._probe``): they are still sent, and a lost reply
    of one counts as possibly refused."""
    from harness.machine._probe import probe_refusals

    if config.target is None:
        return
    refused = sorted(probe_refusals(config))
    if refused:
        forms = ", ".join(f"{name} {form}" for name, form in refused)
        print(f"{command}: {config.target} refused forms it does not declare (a probe before "
              f"the run): {forms}; a lost reply of one counts as possibly refused (declare "
              f"them in `shapes` and they are not sent)", file=sys.stderr)


def damage_asked(args: argparse.Namespace) -> bool:
    """--damage / --no-damage; by default on for a target that declares itself checksummed
    (that declaration is its author's opt-in to the damage rule: a checksum is tested only by
    damaged synced bytes), off otherwise."""
    if args.damage is not None:
        return bool(args.damage)
    if getattr(args, "target", None) is None:
        return False  # the reference's AOF has no checksums
    from harness.machine._features import declares_checksums
    from harness.machine._steps import RunConfig

    importable_cwd()
    return declares_checksums(RunConfig(target=args.target))


DAMAGE_HELP = ("damaged synced bytes of the target's own files (a media error), judged by the "
               "damage rule (default: on for a target that declares itself checksummed, off "
               "otherwise; --damage on another target: skipped, one line says why)")


def add_parser(sub: Any) -> None:
    fz = sub.add_parser("fuzz", help="run the state machines against the in-process reference",
                        description="Run Hypothesis state machines (writes, faults, crashes, "
                        "recoveries) against the in-process reference (or --target) and check "
                        "the contract.")
    common_args(fz)
    reports_args(fz)
    fz.add_argument("--policy", action="append", choices=list(POLICIES),
                    help="appendfsync policy (repeatable; default: all three)")
    fz.add_argument("--model", action="append", choices=MODEL_CHOICES,
                    help="persistence model crashes use (repeatable; default: every "
                    "model, each crash drawing one): " + MODEL_HELP)
    inprocess_target_args(fz, target_help=TARGET_HELP, profile_default="safe",
                          profile_help="reference server profile (default: safe)",
                          defect_default=[])
    fz.add_argument("--settings", choices=["dev", "ci", "nightly"], default="dev",
                    help="Hypothesis settings profile (default: dev)")
    fz.add_argument("--budget", type=parse_budget, default=60.0,
                    help="wall-clock limit on the whole run, shrinking included, e.g. 60s, 5m "
                    f"(default 60s; a finding is still shrunk for at least "
                    f"{SHRINK_FLOOR_S:.0f}s)")
    fz.add_argument("--shrink-budget", type=parse_budget, default=90.0,
                    help="the most one finding is shrunk for (default 90s)")
    fz.add_argument("--max-examples", type=positive_int, default=None, metavar="N",
                    help="examples per configuration, then stop (deterministic: the same "
                    "report whatever --workers is); default: until the budget")
    parallel_args(fz, workers_help="processes running examples (default 0: every core)",
                  shard_help="run only shard I of N (0-based) of the campaign's slices: N "
                  "shards together run exactly what one run does (default 0/1)")
    fz.add_argument("--database", default=DEFAULT_DATABASE, metavar="DIR|redis://HOST:PORT/N",
                    help="Hypothesis example database: failures found before are replayed "
                    f"first (default: {DEFAULT_DATABASE}; 'none' switches it off; redis:// "
                    "shares it between machines)")
    fz.add_argument("--no-appendfsync-on-rewrite", action="store_true")
    availability_args(fz)
    image_fault_args(
        fz, torn_help="power crashes may also tear the last sector (zeros or garbage)",
        reorder_help="power crashes may also lose an earlier sector of the unsynced tail",
        damage_help=f"recoveries may also see {DAMAGE_HELP}")
    fz.add_argument("--keep-going", action="store_true",
                    help="do not stop at the first violation")
    fz.set_defaults(func=cmd_fuzz)



def cmd_fuzz(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness.cli._report import PartialReports, new_run_dir
    from harness.cli._report_violations import (
        fuzz_violations,
        slim,
        terminal_lines,
    )
    from harness.machine._campaign import Campaign, config_label, run_campaign
    from harness.machine._steps import RunConfig

    policies = args.policy or list(POLICIES)
    # Every persistence model by default, as the campaign is documented (and as
    # harness.machine.Campaign does): each crash draws its model, so a model costs no time.
    models = tuple(dict.fromkeys(PersistenceModel(m) for m in (args.model or ALL_MODELS)))
    warn("fuzz", defect_warnings(args.defect, policies=policies,
                                 models=[m.value for m in models]))
    damage = damage_asked(args)
    configs = tuple(
        RunConfig(
            policy=p,
            profile=args.profile,
            defects=frozenset(args.defect),
            no_appendfsync_on_rewrite=args.no_appendfsync_on_rewrite,
            allow_unavailable=args.allow_unavailable,
            torn_sectors=args.torn,
            reordered_sectors=args.reorder,
            target=args.target,
            damage=damage,
        )
        for p in policies
    )
    switched_off = check_target_spec(configs[0])
    say_probed_refusals("fuzz", configs[0])
    target_name = args.target or "the in-process reference"
    campaign = Campaign(configs=configs, models=models, settings_profile=args.settings,
                        budget_s=args.budget, seed=args.seed,
                        stop_on_first=not args.keep_going, shrink_budget_s=args.shrink_budget,
                        max_examples=args.max_examples, workers=resolve_workers(args.workers),
                        shard=args.shard, database=database_spec(args.database))
    run_dir = new_run_dir(args.reports, "fuzz", args.seed)
    bar = progress_bar(args, total=args.budget, unit="s")

    series: list[list[float]] = [[0.0, 0, 0]]
    per_label: dict[str, Counter[str]] = {}
    seen: Counter[str] = Counter()

    partial = PartialReports(run_dir)
    written = {"at": -1e9, "findings": 0}

    def on_progress(elapsed: float, result: Any, label: str) -> None:
        # The campaign counts events for all configurations together: the difference since
        # the last slice belongs to this slice's configuration (the coverage picture).
        per_label.setdefault(label, Counter()).update(result.events - seen)
        seen.clear()
        seen.update(result.events)
        series.append([round(elapsed, 2), result.examples, len(result.findings)])
        bar.update(elapsed, f"{label:<24} examples {result.examples}  "
                            f"findings {len(result.findings)}")
        # What ran so far, persisted (a new finding at once, else every few seconds): a
        # killed campaign leaves it, marked as not finished.
        if len(result.findings) != written["findings"] or elapsed - written["at"] >= 2.0:
            written.update(at=elapsed, findings=len(result.findings))
            partial.write(build(result, f"not finished when written: {elapsed:.0f} s of the "
                                        f"{args.budget:g} s budget, {result.slices} slice(s) "
                                        "done (the run was still going, or was killed)"))

    def build(result: Any, interrupted: str) -> dict[str, Any]:
        violations, groups = fuzz_violations(list(result.findings), run_dir, config_label)
        return _fuzz_report(args, result, campaign, configs, models, run_dir, violations,
                            groups, per_label, series, target_name, interrupted)

    started = time.monotonic()

    def on_shrinking(label: str, shrunk_s: float, allowed_s: float, steps: int) -> None:
        # Shrinking may take minutes after the last unit's line: say it is under way.
        bar.update(time.monotonic() - started,
                   f"{label:<24} shrinking a finding: {shrunk_s:.0f} of at most "
                   f"{allowed_s:.0f} s, smallest failing program {steps} step(s)")

    try:
        result = run_campaign(campaign, progress=on_progress, shrinking=on_shrinking)
    finally:
        bar.close()
    report = build(result, result.interrupted)
    violations, groups = report["violations"], report["groups"]
    totals = report["totals"]
    json_path, html_path = partial.final(report)
    status = EXIT_VIOLATION if violations else EXIT_OK
    if args.json:
        print(json.dumps({"status": ("interrupted" if result.interrupted
                                     else "violation" if violations else "ok"),
                          "interrupted": result.interrupted or None,
                          "report": str(json_path), "html": str(html_path),
                          **totals, "target": args.target or "reference",
                          "switched_off": switched_off,
                          "findings": [slim(v) for v in violations],
                          "groups": groups}, default=str))
    else:
        if switched_off:
            # Said once: these rules never ran against this target.
            by_reason: dict[str, list[str]] = {}
            for feature, why in switched_off.items():
                by_reason.setdefault(why, []).append(feature)
            print(f"fuzz: rules switched off, {target_name} cannot run them: "
                  + "; ".join(f"{', '.join(fs)} ({why})" for why, fs in by_reason.items()))
        print(f"fuzz: {result.examples} examples in {result.elapsed_s:.1f}s over "
              f"{len(configs)} configuration(s): "
              + ("no violation" if not violations else f"{len(violations)} violation(s)"))
        for line in terminal_lines(violations, groups):
            print(line)
        print(f"report: {html_path}")
    if result.interrupted:
        sys.stderr.write(f"aofcrash fuzz: interrupted: {result.interrupted}; the report holds "
                         f"what finished: {html_path}\n")
        return EXIT_INTERRUPTED
    return status


def _fuzz_report(args: argparse.Namespace, result: Any, campaign: Any, configs: Any,
                 models: Any, run_dir: Path, violations: list[dict[str, Any]],
                 groups: list[dict[str, Any]], per_label: dict[str, Counter[str]],
                 series: list[list[float]], target_name: str, interrupted: str
                 ) -> dict[str, Any]:
    """The campaign's report.json content (so far, when `interrupted` says it did not end)."""
    from harness.cli._report_violations import command_line, fuzz_coverage
    from harness.machine._campaign import config_label

    totals = {"examples": result.examples, "slices": result.slices,
              "elapsed_s": round(result.elapsed_s, 2), "violations": len(violations),
              "causes": len(groups),
              "first_failure_s": (None if result.first_failure_s is None
                                  else round(result.first_failure_s, 2)),
              "time_s": {"examples": round(result.time_s["examples"], 2),
                         "shrinking": round(result.time_s["shrinking"], 2),
                         "workers": campaign.workers},
              "stopped_by": result.stopped_by}
    labels = [config_label(c) for c in configs]
    report: dict[str, Any] = {
        "command": "fuzz",
        "run_id": run_dir.name,
        "summary": (f"Hypothesis state machines against {target_name}: "
                    f"{result.examples} examples in {result.elapsed_s:.1f} s over "
                    f"{len(configs)} configuration(s) ({', '.join(labels)}), seed {args.seed}."),
        "run": {"seed": args.seed, "budget_s": args.budget, "settings": args.settings,
                "max_examples": args.max_examples, "shard": f"{args.shard[0]}/{args.shard[1]}",
                "units": result.units,
                "target": args.target or "reference",
                "switched_off": ({f: why for f, why in result.switched_off.items()}
                                 or "none"),
                "profile": args.profile, "defects": list(args.defect) or "none",
                "policies": [c.policy for c in configs], "models": [m.value for m in models],
                "command_line": command_line()},
        "totals": totals,
        "configurations": list(result.per_config.values()),
        "events": dict(result.events),
        "coverage_matrix": fuzz_coverage(per_label, labels, [m.value for m in models]),
        "progress_series": {"title": "Examples run over time", "xlabel": "seconds",
                            "ylabel": "examples", "points": [p[:2] for p in series],
                            "marks": [[round(f.elapsed_s, 1), f"violation {i}"]
                                      for i, f in enumerate(result.findings, 1)]},
        "groups": groups,
        "violations": violations,
        "interrupted": interrupted or None,
    }
    return report
