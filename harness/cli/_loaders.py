"""``aofcrash loaders``: differential fuzzing of AOF loaders and check tools.

Generates AOF files with Hypothesis, loads each with every tool (real redis 6.0/6.2/7.0/8.2
and Valkey 9.1 with aof-load-truncated yes and no, the reference's profiles, every check tool),
shrinks each distinct disagreement to its smallest file and writes ``<out>.md`` and
``<out>.json`` (and, with ``--regressions DIR``, one regression case per finding). Exit code 1
when there is a finding, 0 when every tool agreed on every file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    UsageError,
    common_args,
    parse_budget,
    positive_int,
    progress_bar,
)

__all__ = ["add_parser", "cmd_loaders"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("loaders", help="differential fuzzing of AOF loaders and check tools")
    p.set_defaults(func=cmd_loaders)
    common_args(p)
    p.add_argument("--examples", type=positive_int, default=200,
                   help="files Hypothesis generates (after a fixed corpus; default 200)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                   help="processes running tools (default: every core)")
    p.add_argument("--budget", type=parse_budget, default=None,
                   help="wall-clock limit, shrinking included (e.g. 10m)")
    p.add_argument("--shrink-evals", type=positive_int, default=200,
                   help="predicate runs per finding while shrinking (default 200)")
    p.add_argument("--no-shrink", action="store_true", help="report unshrunk files")
    p.add_argument("--family", action="append", default=None, metavar="NAME",
                   help="only these generator families (repeatable)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds before a tool run counts as hung (default 10)")
    p.add_argument("--out", type=Path, default=Path("reports/findings-loaders"),
                   help="report path without extension (default reports/findings-loaders)")
    p.add_argument("--regressions", type=Path, default=None, metavar="DIR",
                   help="also write one regression case per finding into DIR")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")


def _command_line(args: argparse.Namespace) -> str:
    parts = ["aofcrash", "loaders", "--examples", str(args.examples), "--seed", str(args.seed),
             "--shrink-evals", str(args.shrink_evals)]
    if args.no_shrink:
        parts.append("--no-shrink")
    for family in args.family or ():
        parts += ["--family", family]
    parts += ["--out", str(args.out)]
    if args.regressions is not None:
        parts += ["--regressions", str(args.regressions)]
    return shlex.join(parts)


def cmd_loaders(args: argparse.Namespace) -> int:
    from harness.loaders import (
        FAMILIES,
        REAL_SERVERS,
        generate_cases,
        report_json,
        run_campaign,
        server_paths,
        settings_for,
        write_regressions,
        write_report,
    )
    from harness.targets import find_server

    for family in args.family or ():
        if family not in FAMILIES:
            raise UsageError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    paths, missing = server_paths()
    if not paths:
        raise UsageError("no real server found (" + "; ".join(missing.values()) + ")")
    versions = {name: find_server(preset).full_version for name, preset in REAL_SERVERS.items()
                if name in paths}
    cases = generate_cases(args.examples, seed=args.seed, families=args.family)
    bar = progress_bar(args, total=1.0, unit="files")

    def progress(phase: str, done: int, total: int) -> None:
        bar.total = total
        bar.update(done, f"{phase} {done}/{total}")

    settings = settings_for(paths, timeout_s=args.timeout)
    try:
        result = run_campaign(cases, settings, workers=args.workers, shrink=not args.no_shrink,
                              shrink_evals=args.shrink_evals, budget_s=args.budget,
                              progress=progress)
    finally:
        bar.close()
    report = report_json(result, command=_command_line(args), versions=versions,
                         missing=missing)
    out: Path = args.out
    write_report(report, md_path=out.with_suffix(".md"), json_path=out.with_suffix(".json"))
    cases_written = []
    if args.regressions is not None:
        cases_written = write_regressions(result.findings, args.regressions)
    summary = {"files": result.files, "findings": len(result.findings),
               "counts": report["counts"], "report": str(out.with_suffix(".md")),
               "regressions": len(cases_written), "matrix_seconds": report["matrix_seconds"],
               "shrink_seconds": report["shrink_seconds"]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{result.files} files, {result.loader_runs} loader runs, {result.check_runs} "
              f"check runs in {report['matrix_seconds']} s; {len(result.findings)} distinct "
              f"disagreement(s): " + ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
        print(f"report: {out.with_suffix('.md')} and {out.with_suffix('.json')}")
        if missing:
            print("missing: " + "; ".join(missing.values()), file=sys.stderr)
    return EXIT_VIOLATION if result.findings else EXIT_OK
