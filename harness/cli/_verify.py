"""The ``aofcrash verify`` subcommand: the workload, faults and oracle against real servers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    Progress,
    UsageError,
    common_args,
    nonnegative_int,
    positive_int,
    progress_enabled,
    reports_args,
    stamp,
)

__all__ = ["add_parser", "cmd_verify"]


def add_parser(sub: Any) -> None:
    from harness.verify import FAULTS, IMAGES, MODELS, POLICIES, SERVERS

    p = sub.add_parser(
        "verify",
        help="run the workload, faults and oracle against real server processes",
        description="Start a real server (redis-server 6.0/6.2/7.0 or the reference as a "
        "process), drive a seeded pipelined workload, SIGKILL it mid-flight (crashing the "
        "FUSE disk under power models), restart, and check recovery and stability.",
    )
    common_args(p)
    reports_args(p)
    p.add_argument("--server", required=True, choices=list(SERVERS),
                   help="which server to verify")
    p.add_argument("--policy", choices=list(POLICIES), default="always",
                   help="appendfsync policy (default: always)")
    p.add_argument("--model", choices=list(MODELS), default="process",
                   help="what survives the crash (power models run on a FUSE SimDisk mount)")
    p.add_argument("--trials", type=positive_int, default=5, help="trials (default 5)")
    p.add_argument("--first-trial", type=nonnegative_int, default=0,
                   help="index of the first trial (re-run trial N alone: --first-trial N "
                   "--trials 1)")
    p.add_argument("--ops", type=positive_int, default=200,
                   help="writes per trial (default 200)")
    p.add_argument("--fault", choices=list(FAULTS), default="none",
                   help="inject one seeded fault per trial through the FUSE mount")
    p.add_argument("--rewrite", action="store_true", help="BGREWRITEAOF during each trial")
    p.add_argument("--margin-ms", type=nonnegative_int, default=500,
                   help="added to the 2000 ms everysec window for scheduling noise (default 500)")
    p.add_argument("--batch-max", type=positive_int, default=6,
                   help="largest pipelined batch of writes (default 6)")
    p.add_argument("--image", choices=list(IMAGES), default="drawn",
                   help="power-model crash images: drawn from the legal images (sector "
                   "prefixes), drawn also with torn/reordered sectors, or durable state only; "
                   "drawn kinds use durable-only in a quarter of the trials (default: drawn)")
    p.add_argument("--duration-ms", type=nonnegative_int, default=None,
                   help="spread each trial's writes over this long (default: 6000 for "
                   "everysec, else 0)")
    p.add_argument("--strict-availability", action="store_true",
                   help="treat refusing to start as a violation")
    p.add_argument("--findings", type=Path, default=None, metavar="DIR",
                   help="also write each violating trial to DIR/<name>.json and .html "
                   "(e.g. reports/findings), with the command line that re-runs it")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.cli._report import new_run_dir, write_report
    from harness.verify import (
        TrialResult,
        VerifyConfig,
        VerifyEnvironmentError,
        check_environment,
        run_verify,
        verify_report,
    )

    try:
        config = VerifyConfig(
            server=args.server, policy=args.policy, model=args.model, trials=args.trials,
            ops=args.ops, fault=args.fault, rewrite=args.rewrite, seed=args.seed,
            first_trial=args.first_trial, margin_ms=args.margin_ms,
            batch_max=args.batch_max, strict_availability=args.strict_availability,
            image=args.image, duration_ms=args.duration_ms,
        )
        check_environment(config)
    except (ValueError, VerifyEnvironmentError) as exc:
        raise UsageError(str(exc)) from None
    # Absolute now: a FUSE mount's loop may change the working directory of this process.
    args.reports = args.reports.absolute()
    if args.findings is not None:
        args.findings = args.findings.absolute()
    bar = Progress(enabled=progress_enabled(args.progress), total=config.trials, unit="trial")
    lines: list[str] = []

    def on_trial(done: int, trial: TrialResult) -> None:
        lines.append(trial.render())
        bad = sum(1 for line in lines if " VIOLATION " in line.split("\n", 1)[0])
        bar.update(done, f"trial {done}/{config.trials}  {trial.outcome:<11} violations {bad}")

    try:
        result = run_verify(config, progress=on_trial)
    except VerifyEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    run_dir = new_run_dir(args.reports, "verify", args.seed, stamp())
    argv = ["aofcrash", *sys.argv[1:]] if sys.argv[1:2] == ["verify"] else []
    report = verify_report(result, run_id=run_dir.name, argv=argv)
    json_path, html_path = write_report(run_dir, report)
    if args.findings is not None:
        for path in _write_findings(args.findings, report):
            sys.stderr.write(f"finding: {path}\n")
    totals = report["totals"]
    if args.json:
        findings = [
            {key: v[key] for key in ("rule", "trial", "text", "reproduce")}
            for v in report["violations"]
        ]
        print(json.dumps({
            "status": "violation" if findings else "ok",
            "server": config.server, "server_version": result.server_version,
            "report": str(json_path), "html": str(html_path),
            **totals,
            "trials_detail": report["configurations"],
            "findings": findings,
        }, default=str))
    else:
        for line in lines:
            print(line)
        print(
            f"verify {config.server} ({result.server_version}) policy={config.policy} "
            f"model={config.model} fault={config.fault}"
            f"{' rewrite' if config.rewrite else ''}: {totals['trials']} trial(s) in "
            f"{totals['elapsed_s']}s ({totals['trials_per_s']}/s): "
            f"{totals['consistent']} consistent, {totals['unavailable']} unavailable, "
            f"{totals['violations']} violation(s)"
        )
        for v in report["violations"]:
            print(f"reproduce: {v['reproduce']}")
        print(f"report: {html_path}")
    return EXIT_VIOLATION if report["violations"] else EXIT_OK


def _write_findings(directory: Path, report: dict[str, Any]) -> list[Path]:
    """One finding file pair per violating trial: the report reduced to that trial."""
    from harness.cli._report import REPORT_FORMAT, render_html, slug, write_atomic

    run = report["run"]
    written = []
    rows = {row["trial"]: row for row in report["configurations"]}
    for v in report["violations"]:
        parts = [run["server"], run["policy"], run["model"], run["fault"],
                 *(["rewrite"] if run["rewrite"] else []), f"seed{run['seed']}",
                 f"trial{v['trial']}", v["rule"]]
        name = "-".join(slug(str(part)) for part in parts)
        finding = {
            "format": REPORT_FORMAT,
            "command": "verify",
            "run_id": f"finding {name} (from {report['run_id']})",
            "run": {**run, "reproduce": v["reproduce"]},
            "totals": {"trials": 1, "violations": 1},
            "configurations": [rows[v["trial"]]],
            "violations": [v],
        }
        path = directory / f"{name}.json"
        write_atomic(path, json.dumps(finding, indent=1, sort_keys=True, default=str) + "\n")
        write_atomic(directory / f"{name}.html", render_html(finding))
        written.append(path)
    return written
