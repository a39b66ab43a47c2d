"""The ``aofcrash verify`` subcommand: the workload, faults and oracle against real servers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VIOLATION,
    MODEL_HELP,
    UsageError,
    availability_args,
    common_args,
    nonnegative_int,
    parallel_args,
    positive_int,
    progress_bar,
    reports_args,
    resolve_workers,
)
from harness.cli._explore_kernel import KERNEL_MODEL_CHOICES, KERNEL_MODEL_HELP

__all__ = ["add_parser", "cmd_verify"]


def add_parser(sub: Any) -> None:
    from harness.targets import SERVER_TEMPLATE_FIELDS
    from harness.verify import FAULTS, IMAGES, MODELS, POLICIES, SERVERS

    p = sub.add_parser(
        "verify",
        help="run the workload, faults and oracle against real server processes",
        description="Start a real server (redis-server 6.0/6.2/7.0/8.2, Valkey 9.1, the reference "
        "as a process, any binary that takes redis-server's flags, or any command line), drive "
        "a seeded pipelined workload, SIGKILL it mid-flight (crashing the FUSE disk under power "
        "models), restart, and check recovery and stability.",
    )
    common_args(p)
    reports_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--server", type=_server_arg, metavar="PRESET|PATH",
                       help=f"a preset ({', '.join(SERVERS)}; valkey is Valkey 9.1) or a path "
                       "to a server binary, run with redis-server's flags (--port --dir "
                       "--appendonly --appendfsync ...)")
    which.add_argument("--server-cmd", metavar="TEMPLATE",
                       help="any command line that starts the server, with placeholders "
                       + ", ".join("{" + f + "}" for f in SERVER_TEMPLATE_FIELDS)
                       + " ({port} is required; {extra} expands to --name value pairs); it "
                       "runs in the data directory, its output is the log unless {logfile} "
                       "is given")
    p.add_argument("--aof-glob", metavar="GLOB", default=None,
                   help="the server's AOF files, relative to its directory, for fault "
                   "placement and the report (default *.aof; Redis 7+ / Valkey files are also "
                   "found through their manifest)")
    p.add_argument("--policy", choices=list(POLICIES), default="always",
                   help="appendfsync policy (default: always)")
    p.add_argument("--model", choices=list(MODELS), default="process",
                   help="what survives the crash (power models run on a FUSE SimDisk mount): "
                   + MODEL_HELP + "; " + KERNEL_MODEL_HELP + "; with them --fault is none or "
                   "fsync-error (a media error under the filesystem: the page of one write "
                   "fails at write-back)")
    p.add_argument("--trials", type=positive_int, default=5, help="trials (default 5)")
    p.add_argument("--first-trial", type=nonnegative_int, default=0,
                   help="index of the first trial (re-run trial N alone: --first-trial N "
                   "--trials 1)")
    p.add_argument("--ops", type=positive_int, default=200,
                   help="writes per trial (default 200)")
    p.add_argument("--fault", choices=list(FAULTS), default="none",
                   help="inject one seeded fault per trial through the FUSE mount, armed during "
                   "the workload on an operation it reaches (the report counts where it fired); "
                   "kill-child sends a BGREWRITEAOF and SIGKILLs its rewrite child; "
                   "incr-fsync-error also fails the fsync of the old incr file (redis#11713); "
                   "rewrite-completes waits for the rewrite and paces the writes after it")
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
    availability_args(p)
    parallel_args(p, workers_help="run trials in N processes (default 0: one per core)",
                  shard_help="run only the trials numbered I mod N (0-based): N shards, e.g. "
                  "the jobs of a CI matrix, run exactly the trials of one run (default 0/1)")
    p.add_argument("--no-attribution", dest="attribution", action="store_false",
                   help="do not re-check violating trials for their causes (by default each "
                   "one is re-run with the fault, strict metadata and the rewrite taken out in "
                   "turn, and the report says which of them it needs)")
    p.add_argument("--attribution-repeats", type=positive_int, default=3, metavar="N",
                   help="re-runs per variant when attributing causes: a variant counts as "
                   "violating at its first recurrence (default 3; outcomes can depend on "
                   "timing)")
    p.add_argument("--findings", type=Path, default=None, metavar="DIR",
                   help="also write each violating trial to DIR/<name>.json and .html "
                   "(e.g. reports/findings), with the command line that re-runs it")
    p.set_defaults(func=cmd_verify)


def _server_arg(text: str) -> str:
    """--server: a preset or a path (whether the path runs is checked later, in one line)."""
    from harness.cli._common import did_you_mean
    from harness.verify import SERVERS

    if text in SERVERS or "/" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a preset ({', '.join(SERVERS)}) nor a path to a server binary "
        f"(a path has a '/', e.g. ./{text}){did_you_mean(text, SERVERS)}"
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.cli._report import PartialReports, new_run_dir, write_report
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
            server=args.server or "command", server_cmd=args.server_cmd, aof_glob=args.aof_glob,
            policy=args.policy, model=args.model, trials=args.trials,
            ops=args.ops, fault=args.fault, rewrite=args.rewrite, seed=args.seed,
            first_trial=args.first_trial, margin_ms=args.margin_ms,
            batch_max=args.batch_max, allow_unavailable=args.allow_unavailable,
            image=args.image, duration_ms=args.duration_ms,
        )
        check_environment(config)
    except (ValueError, VerifyEnvironmentError) as exc:
        raise UsageError(str(exc)) from None
    # Absolute now: a FUSE mount's loop may change the working directory of this process.
    args.reports = args.reports.absolute()
    if args.findings is not None:
        args.findings = args.findings.absolute()
    # Before the trials: an unusable --reports is a usage error, not a lost run.
    run_dir = new_run_dir(args.reports, "verify", args.seed)
    mine = len(range(args.shard[0], config.trials, args.shard[1]))
    bar = progress_bar(args, total=mine, unit="trial")
    lines: list[str] = []

    def on_trial(done: int, trial: TrialResult) -> None:
        lines.append(trial.render())
        bad = sum(1 for line in lines if " VIOLATION " in line.split("\n", 1)[0])
        bar.update(done, f"trial {done}/{mine}  {trial.outcome:<11} violations {bad}")

    def on_attributing(done: int, total: int) -> None:
        # After the trials: each violating one re-runs with one ingredient out at a time.
        bar.update(mine, f"attributing causes: {done}/{total} violating trial(s) done")

    argv = ["aofcrash", *sys.argv[1:]] if sys.argv[1:2] == ["verify"] else []

    def build(result: Any) -> dict[str, Any]:
        report = verify_report(result, run_id=run_dir.name, argv=argv)
        report["run"]["shard"] = f"{args.shard[0]}/{args.shard[1]}"  # report --merge checks it
        who = f"{result.server_name} {result.server_version}"
        report["summary"] = (f"{config.trials} trial(s) against {config.server} "
                             f"({who}): policy {config.policy}, model "
                             f"{config.model}, fault {config.fault}"
                             f"{', with a rewrite' if config.rewrite else ''}, seed "
                             f"{config.seed}."
                             + (f" Partial: {len(result.trials)} trial(s) finished "
                                f"({result.interrupted})." if result.interrupted else ""))
        return report

    partial = PartialReports(run_dir)
    try:
        result = run_verify(config, progress=on_trial, workers=resolve_workers(args.workers),
                            attributing=on_attributing,
                            # A kernel model has no fault or model to take out.
                            attribution=args.attribution
                            and args.model not in KERNEL_MODEL_CHOICES,
                            attribution_repeats=args.attribution_repeats, shard=args.shard,
                            # Persisted as trials finish: a killed run leaves what finished.
                            partial=lambda so_far: partial.write(build(so_far)))
    except VerifyEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    report = build(result)
    who = f"{result.server_name} {result.server_version}"
    json_path, html_path = write_report(run_dir, report)
    if args.findings is not None:
        for path in _write_findings(args.findings, report):
            sys.stderr.write(f"finding: {path}\n")
    totals = report["totals"]
    if args.json:
        findings = [
            {key: v[key] for key in ("rule", "trial", "text", "reproduce", "cause")}
            for v in report["violations"]
        ]
        print(json.dumps({
            "status": ("interrupted" if result.interrupted
                       else "violation" if findings else "ok"),
            "interrupted": result.interrupted or None,
            "server": config.server, "server_name": result.server_name,
            "server_version": result.server_version,
            "report": str(json_path), "html": str(html_path),
            **totals,
            "trials_detail": report["configurations"],
            "findings": findings,
        }, default=str))
    else:
        for line in lines:
            print(line)
        fired = (f", fault fired in {totals['fault_fired_trials']}/"
                 f"{totals['fault_asked_trials']}" if totals["fault_asked_trials"] else "")
        print(
            f"verify {config.server} ({who}) policy={config.policy} "
            f"model={config.model} fault={config.fault}"
            f"{' rewrite' if config.rewrite else ''}: {totals['trials']} trial(s) in "
            f"{totals['elapsed_s']}s ({totals['trials_per_s']}/s, {result.workers} "
            f"worker(s)): {totals['consistent']} consistent, {totals['not_exercised']} not "
            f"exercised, {totals['unavailable']} unavailable, "
            f"{totals['violations']} violation(s){fired}"
        )
        for v in report["violations"]:
            print(f"reproduce: {v['reproduce']}")
            if v["cause"]:
                print(f"  cause: {v['cause']}")
        print(f"report: {html_path}")
    if result.interrupted:
        sys.stderr.write(f"aofcrash verify: interrupted: {result.interrupted}; the report "
                         f"holds the {len(result.trials)} trial(s) that finished: {html_path}\n")
        return EXIT_INTERRUPTED
    return EXIT_VIOLATION if report["violations"] else EXIT_OK


def _write_findings(
    directory: Path, report: dict[str, Any], *, name: str | None = None, first_only: bool = False
) -> list[Path]:
    """One finding file pair per violating trial: the report reduced to that trial. `name`
    (with `first_only`: one finding, e.g. one per cell of a findings matrix) replaces the name
    made of the run's settings, the trial and the rule."""
    from harness.cli._report import REPORT_FORMAT, render_html, slug, write_atomic

    run = report["run"]
    written: list[Path] = []
    rows = {row["trial"]: row for row in report["configurations"]}
    for v in report["violations"]:
        if first_only and written:
            break
        parts = [run["server"], run["policy"], run["model"], run["fault"],
                 *(["rewrite"] if run["rewrite"] else []), f"seed{run['seed']}",
                 f"trial{v['trial']}", v["rule"]]
        stem = name if name is not None and first_only else "-".join(
            slug(str(part)) for part in parts)
        finding = {
            "format": REPORT_FORMAT,
            "command": "verify",
            "run_id": f"finding {stem} (from {report['run_id']})",
            "run": {**run, "reproduce": v["reproduce"]},
            "totals": {"trials": 1, "violations": 1},
            "configurations": [rows[v["trial"]]],
            "violations": [v],
        }
        path = directory / f"{stem}.json"
        write_atomic(path, json.dumps(finding, indent=1, sort_keys=True, default=str) + "\n")
        write_atomic(directory / f"{stem}.html", render_html(finding))
        written.append(path)
    return written
