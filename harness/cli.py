"""The ``aofcrash`` command line.

Exit codes: 0 no violation, 1 violation found (or an invalid AOF for check-aof), 2 usage or
environment error — always one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input or environment: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming what is wrong (argparse would print the whole usage first).
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def parse_budget(text: str) -> float:
    """'90' or '90s' -> 90.0, '2m' -> 120.0, '1h' -> 3600.0."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    factor = 1.0
    if raw and raw[-1] in units:
        factor = units[raw[-1]]
        raw = raw[:-1]
    try:
        value = float(raw) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid budget {text!r}: use seconds like 60, 60s, 2m or 1h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid budget {text!r}: must be positive")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


nonnegative_int = int_at_least(0)
positive_int = int_at_least(1)


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, unless forced)."""

    def __init__(self, *, enabled: bool, total: float, unit: str) -> None:
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self._last = ""

    def update(self, done: float, detail: str) -> None:
        if not self.enabled:
            return
        frac = 0.0 if self.total <= 0 else min(1.0, done / self.total)
        width = 28
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = f"\r[{bar}] {frac * 100:5.1f}%  {detail}"
        pad = max(0, len(self._last) - len(line))
        sys.stderr.write(line + " " * pad)
        sys.stderr.flush()
        self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")


def _reports_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", type=Path, default=Path("reports"),
                   help="where run directories go (default: reports/)")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aofcrash", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    fz = sub.add_parser("fuzz", help="run the state machines against the in-process reference",
                        description="Run Hypothesis state machines (writes, faults, crashes, "
                        "recoveries) against the in-process reference and check the contract.")
    _common(fz)
    _reports_args(fz)
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

    rp = sub.add_parser("replay", help="re-run a reproduction file deterministically")
    _common(rp)
    rp.add_argument("file", type=Path)
    rp.set_defaults(func=cmd_replay)

    ca = sub.add_parser("check-aof", help="check (and optionally fix) an AOF file")
    _common(ca)
    ca.add_argument("file", type=Path)
    ca.add_argument("--fix", action="store_true",
                    help="truncate to the last valid command (original kept as FILE.bak)")
    ca.set_defaults(func=cmd_check_aof)

    rpt = sub.add_parser("report", help="re-render and summarise a run's report")
    _common(rpt)
    rpt.add_argument("path", type=Path, help="a reports/<run-id> directory or its report.json")
    rpt.set_defaults(func=cmd_report)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: Any) -> None:
    """Commands implemented in their own modules (explore, verify)."""
    from harness import _cli_explore, _cli_verify

    _cli_explore.add_parser(sub, _common, _reports_args)
    _cli_verify.add_parser(sub, _common, _reports_args)


# -- fuzz ----------------------------------------------------------------------------------


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime())


def _progress_enabled(mode: str) -> bool:
    return mode == "always" or (mode == "auto" and sys.stderr.isatty())


def cmd_fuzz(args: argparse.Namespace) -> int:
    from faults import PersistenceModel
    from harness._campaign import Campaign, config_label, run_campaign
    from harness._report import new_run_dir, slug, write_atomic, write_report
    from harness._steps import RunConfig
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
    run_dir = new_run_dir(args.reports, "fuzz", args.seed, _stamp())
    bar = Progress(enabled=_progress_enabled(args.progress), total=args.budget, unit="s")

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


# -- replay --------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from harness._driver import ContractViolation, ModelDivergence, replay
    from harness._steps import Reproduction, ReproError

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
    from harness._report import write_atomic_bytes
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
    from harness._report import ReportError, load_report, write_atomic
    from harness._report import render_html as render

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


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        sys.stderr.write(f"aofcrash {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"aofcrash {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
