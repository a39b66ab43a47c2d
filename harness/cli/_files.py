"""The file commands of ``aofcrash``: ``replay`` (a reproduction), ``check-aof`` (an AOF) and
``report`` (a run's report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli._common import EXIT_OK, EXIT_VIOLATION, UsageError, common_args


def add_parsers(sub: Any) -> None:
    rp = sub.add_parser("replay", help="re-run a reproduction file deterministically")
    common_args(rp)
    rp.add_argument("file", type=Path)
    rp.set_defaults(func=cmd_replay)

    ca = sub.add_parser("check-aof", help="check (and optionally fix) an AOF file")
    common_args(ca)
    ca.add_argument("file", type=Path)
    ca.add_argument("--fix", action="store_true",
                    help="truncate to the last valid command (original kept as FILE.bak)")
    ca.set_defaults(func=cmd_check_aof)

    rpt = sub.add_parser("report", help="re-render and summarise a run's report")
    common_args(rpt)
    rpt.add_argument("path", type=Path, help="a reports/<run-id> directory or its report.json")
    rpt.set_defaults(func=cmd_report)



def cmd_replay(args: argparse.Namespace) -> int:
    from harness.machine._driver import ContractViolation, ModelDivergence, replay
    from harness.machine._steps import Reproduction, ReproError

    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        repro = Reproduction.from_json(text)
    except ReproError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    outcome, rules, message = "consistent", [], "no violation"
    try:
        driver = replay(repro)
        if driver.unavailable:
            outcome, message = "unavailable", f"server refused to start: {driver.unavailable}"
    except ContractViolation as exc:
        outcome = "violation"
        rules = sorted({v.rule.value for v in exc.verdict.violations})
        message = str(exc)
    except ModelDivergence as exc:
        outcome, rules, message = "divergence", ["model-divergence"], str(exc)
    except ValueError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    expected = repro.expected.get("outcome")
    matches = expected is None or expected == outcome
    if args.json:
        print(json.dumps({"status": outcome, "rules": rules, "expected": expected,
                          "matches_expected": matches, "text": message}))
    else:
        print(message)
        if expected is not None:
            print(f"recorded outcome: {expected}; now: {outcome}"
                  + ("" if matches else "  (DIFFERENT)"))
    return EXIT_VIOLATION if outcome in ("violation", "divergence") else EXIT_OK


# -- check-aof -----------------------------------------------------------------------------


def cmd_check_aof(args: argparse.Namespace) -> int:
    from harness.cli._report import write_atomic_bytes
    from reference import check_aof, fix_aof

    path: Path = args.file
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    result = check_aof(data)
    fixed_to: int | None = None
    if args.fix and not result.valid:
        backup = path.with_name(path.name + ".bak")
        try:
            write_atomic_bytes(backup, data)
            write_atomic_bytes(path, fix_aof(data))
        except OSError as exc:
            raise UsageError(f"cannot fix {path}: {exc.strerror}") from None
        fixed_to = result.last_valid_offset_bytes
    if args.json:
        print(json.dumps({"file": str(path), "valid": result.valid,
                          "size_bytes": len(data),
                          "last_valid_offset_bytes": result.last_valid_offset_bytes,
                          "commands": result.commands, "reason": result.reason,
                          "fixed_to_bytes": fixed_to}))
    else:
        if result.valid:
            print(f"{path}: AOF is valid ({result.commands} commands, last valid offset "
                  f"{result.last_valid_offset_bytes} bytes of {len(data)})")
        else:
            print(f"{path}: AOF is not valid: {result.reason}; last valid offset "
                  f"{result.last_valid_offset_bytes} bytes of {len(data)} "
                  f"({result.commands} complete commands before it)")
            if fixed_to is not None:
                print(f"fixed: truncated to {fixed_to} bytes; original kept as "
                      f"{path.name}.bak")
    return EXIT_OK if result.valid else EXIT_VIOLATION


# -- report --------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from harness.cli._report import ReportError, load_report, write_atomic
    from harness.cli._report import render_html as render

    try:
        report = load_report(args.path)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    run_dir = args.path if args.path.is_dir() else args.path.parent
    html_path = run_dir / "report.html"
    write_atomic(html_path, render(report))
    violations = report.get("violations", [])
    if args.json:
        print(json.dumps({"status": "violation" if violations else "ok",
                          "html": str(html_path), "violations": len(violations),
                          **report.get("totals", {})}))
    else:
        print(f"{report.get('command')} {report.get('run_id')}: "
              + ("no violation" if not violations else f"{len(violations)} violation(s)"))
        for key, value in report.get("totals", {}).items():
            print(f"  {key}: {value}")
        print(f"html: {html_path}")
    return EXIT_VIOLATION if violations else EXIT_OK
