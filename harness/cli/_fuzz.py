"""``aofcrash fuzz``: the state machines against the in-process reference (see
``harness.machine``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    Progress,
    UsageError,
    common_args,
    parse_budget,
    progress_enabled,
    reports_args,
    stamp,
)


def add_parser(sub: Any) -> None:
    fz = sub.add_parser("fuzz", help="run the state machines against the in-process reference",
                        description="Run Hypothesis state machines (writes, faults, crashes, "
                        "recoveries) against the in-process reference and check the contract.")
    common_args(fz)
    reports_args(fz)
    fz.add_argument("--policy", action="append", choices=["always", "everysec", "no"],
                    help="appendfsync policy (repeatable; default: all three)")
    fz.add_argument("--model", action="append",
                    choices=["process", "power", "power-eager-metadata"],
                    help="persistence model crashes use (repeatable; default: all)")
    fz.add_argument("--profile", choices=["safe", "redis-3.0"], default="safe",
                    help="reference server profile (default: safe)")
    fz.add_argument("--defect", action="append", default=[], metavar="NAME",
                    help="switch on a named defect of reference.defects (repeatable)")
    fz.add_argument("--settings", choices=["dev", "ci", "nightly"], default="dev",
                    help="Hypothesis settings profile (default: dev)")
    fz.add_argument("--budget", type=parse_budget, default=60.0,
                    help="time budget, e.g. 60s, 5m (default 60s)")
    fz.add_argument("--shrink-budget", type=parse_budget, default=90.0,
                    help="time to shrink a finding to a small reproduction (default 90s)")
    fz.add_argument("--no-appendfsync-on-rewrite", action="store_true")
    fz.add_argument("--strict-availability", action="store_true",
                    help="treat refusing to start as a violation")
    fz.add_argument("--torn", action="store_true",
                    help="power crashes may also tear the last sector (zeros or garbage)")
    fz.add_argument("--reorder", action="store_true",
                    help="power crashes may also lose an earlier sector of the unsynced tail")
    fz.add_argument("--keep-going", action="store_true",
                    help="do not stop at the first violation")
    fz.set_defaults(func=cmd_fuzz)



def cmd_fuzz(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness.cli._report import new_run_dir, slug, write_atomic, write_report
    from harness.machine._campaign import Campaign, config_label, run_campaign
    from harness.machine._steps import RunConfig
    from reference import defects as defect_catalogue

    known = set(defect_catalogue.DEFECTS)
    unknown = [d for d in args.defect if d not in known]
    if unknown:
        raise UsageError(
            f"unknown defect {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    policies = args.policy or ["always", "everysec", "no"]
    models = tuple(PersistenceModel(m) for m in (args.model or [m.value for m in PersistenceModel]))
    configs = tuple(
        RunConfig(
            policy=p,
            profile=args.profile,
            defects=frozenset(args.defect),
            no_appendfsync_on_rewrite=args.no_appendfsync_on_rewrite,
            strict_availability=args.strict_availability,
            torn_sectors=args.torn,
            reordered_sectors=args.reorder,
        )
        for p in policies
    )
    campaign = Campaign(configs=configs, models=models, settings_profile=args.settings,
                        budget_s=args.budget, seed=args.seed,
                        stop_on_first=not args.keep_going, shrink_budget_s=args.shrink_budget)
    run_dir = new_run_dir(args.reports, "fuzz", args.seed, stamp())
    bar = Progress(enabled=progress_enabled(args.progress), total=args.budget, unit="s")

    def on_progress(elapsed: float, result: Any, label: str) -> None:
        bar.update(elapsed, f"{elapsed:5.0f}/{args.budget:.0f}s  {label:<24} "
                            f"examples {result.examples}  findings {len(result.findings)}")

    try:
        result = run_campaign(campaign, progress=on_progress)
    finally:
        bar.close()
    violations: list[dict[str, Any]] = []
    for i, f in enumerate(result.findings, 1):
        repro_name = None
        if f.reproduction is not None:
            repro_name = f"repro-{i}-{slug(config_label(f.config))}.json"
            write_atomic(run_dir / repro_name, f.reproduction.to_json())
        violations.append({"rule": ", ".join(f.rules), "kind": f.kind,
                           "configuration": config_label(f.config), "seed": f.seed,
                           "text": f.text, "reproduction": repro_name,
                           "found_after_s": round(f.elapsed_s, 2)})
    totals = {"examples": result.examples, "slices": result.slices,
              "elapsed_s": round(result.elapsed_s, 2), "violations": len(violations)}
    report: dict[str, Any] = {
        "command": "fuzz",
        "run_id": run_dir.name,
        "run": {"seed": args.seed, "budget_s": args.budget, "settings": args.settings,
                "profile": args.profile, "defects": ", ".join(args.defect) or "none",
                "policies": ", ".join(policies),
                "models": ", ".join(m.value for m in models)},
        "totals": totals,
        "configurations": list(result.per_config.values()),
        "events": dict(result.events),
        "violations": violations,
    }
    json_path, html_path = write_report(run_dir, report)
    status = EXIT_VIOLATION if violations else EXIT_OK
    if args.json:
        print(json.dumps({"status": "violation" if violations else "ok",
                          "report": str(json_path), "html": str(html_path),
                          **totals, "findings": violations}, default=str))
    else:
        print(f"fuzz: {result.examples} examples in {result.elapsed_s:.1f}s over "
              f"{len(configs)} configuration(s): "
              + ("no violation" if not violations else f"{len(violations)} violation(s)"))
        for v in violations:
            print(f"\n{v['text']}\nreproduction: {run_dir / v['reproduction']}"
                  if v["reproduction"] else v["text"])
        print(f"report: {html_path}")
    return status
