"""The file commands of ``aofcrash``: ``replay`` (a reproduction), ``check-aof`` (an AOF, a
Redis 7 manifest or appendonlydir) and ``report`` (a run's report).

None of them has randomness, so none takes ``--seed``. Every bad input is one line on stderr
and exit 2; a file that is not what it should be (random bytes, not UTF-8, not JSON, a field
of the wrong type) is bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    UsageError,
    common_args,
    one_line,
    read_reproduction,
    warn,
)

__all__ = ["add_parsers", "cmd_check_aof", "cmd_replay", "cmd_report"]


def add_parsers(sub: Any) -> None:
    rp = sub.add_parser(
        "replay", help="re-run a reproduction file deterministically",
        description="Re-run a reproduction (*.aofrepro.json) step by step, print the program, "
        "every crash epoch and the verdict, and compare with the outcome the file recorded. "
        "With --expect the file's expected outcome is rewritten (atomically), which turns a "
        "found violation into a regression test: the pytest plugin replays every "
        "*.aofrepro.json and fails when the recorded outcome changes.")
    common_args(rp, seed=False)
    rp.add_argument("file", type=Path)
    rp.add_argument("--expect", choices=["fixed", "current"], default=None,
                    help="fixed: the bug is fixed; only if the replay now keeps the contract, "
                    "record that as the expected outcome (a regression test from then on). "
                    "current: record whatever the replay shows now")
    rp.set_defaults(func=cmd_replay)

    ca = sub.add_parser(
        "check-aof", help="check (and optionally fix) an AOF, a manifest or an appendonlydir",
        description="Check an append-only file like redis-check-aof: a single AOF (RESP, or "
        "with an RDB preamble), or a Redis 7+ multi-part AOF given as its manifest or its "
        "appendonlydir (every file it lists, in order, each with its verdict and offset; "
        "Redis 8's startoffset/endoffset are read, an unknown manifest field is noted). "
        "Exit 0 valid (or fixed by --fix), 1 not valid, 2 unreadable or --fix refused.")
    common_args(ca, seed=False)
    ca.add_argument("file", type=Path, metavar="FILE|MANIFEST|DIR")
    ca.add_argument("--fix", action="store_true",
                    help="truncate the last file to its last valid offset, saying how many "
                    "bytes and commands that drops (exit 0 once fixed; the original is kept as "
                    "FILE.bak). A torn tail is cut at once; damage in the middle (valid "
                    "commands after it) or garbage from offset 0 would lose valid data: asked "
                    "first on a terminal, refused without one unless --yes")
    ca.add_argument("--yes", action="store_true",
                    help="with --fix: drop valid commands after the damage without asking")
    ca.set_defaults(func=cmd_check_aof)

    rpt = sub.add_parser("report", help="re-render and summarise a run's report, or merge "
                         "the reports of a campaign's shards")
    common_args(rpt, seed=False)
    rpt.add_argument("path", type=Path, nargs="+",
                     help="a reports/<run-id> directory or its report.json (several with "
                     "--merge), or a finding NAME.json (rendered to NAME.html beside it)")
    rpt.add_argument("--merge", action="store_true",
                     help="merge the reports of a campaign's shards into a new run directory: "
                     "they must be of one campaign (same command, target, seed and "
                     "configuration), each shard at most once; a missing shard is a warning; "
                     "exit 1 if any of them holds a violation")
    rpt.add_argument("--allow-mixed", action="store_true",
                     help="with --merge: merge reports of different targets, seeds or "
                     "configurations anyway (the merged report says which fields are mixed)")
    rpt.add_argument("--reports", type=Path, default=Path("reports"),
                     help="where the merged run directory goes (default: reports/)")
    rpt.set_defaults(func=cmd_report)


# -- replay --------------------------------------------------------------------------------


def _outcome_words(outcome: Any, rules: Any) -> str:
    rules = [str(r) for r in rules] if isinstance(rules, list) else []
    return f"{outcome} [{', '.join(rules)}]" if rules else str(outcome)


def _is_server_reproduction(path: Path) -> bool:
    """True when `path` is a JSON reproduction written by ``explore --server`` on the SimDisk."""
    from harness.verify._explore_server import REPRO_FORMAT

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == REPRO_FORMAT


def cmd_replay(args: argparse.Namespace) -> int:
    from harness.cli._report import write_atomic
    from harness.cli._report_replay import program_lines, study
    from harness.cli._report_violations import REPRO_SUFFIX, epoch_line

    path: Path = args.file
    from harness.verify._explore_kernel import is_kernel_reproduction

    if is_kernel_reproduction(path) or _is_server_reproduction(path):
        # explore --server (on the SimDisk, or --model ext4|xfs|btrfs) wrote it
        if getattr(args, "expect", None) is not None:
            raise UsageError(f"{path}: --expect: not for an explore --server reproduction")
        from harness.cli._explore_server import _replay

        args.replay, args.server = path, None
        return _replay(args)
    repro = read_reproduction(path)
    if repro.config.target is not None:
        from harness.targets import make_importable

        # The directory its module came from, found near the file (or here): no PYTHONPATH.
        make_importable(repro.target_source, near=[path.absolute().parent, Path.cwd()])
        # Replayed against the target it recorded: one line, exit 2, if that cannot be used.
        from harness.cli._fuzz import check_target_spec

        try:
            check_target_spec(repro.config)
        except UsageError as exc:
            raise UsageError(f"{path}: cannot replay it: {exc}") from None
    try:
        seen = study(repro)
    except Exception as exc:  # a reproduction is user input: it may describe an impossible run
        raise UsageError(f"{path}: cannot replay it: {type(exc).__name__}: {one_line(exc)}"
                         ) from None
    outcome, rules = seen["outcome"], seen["rules"]
    expected = repro.expected.get("outcome")
    expected_rules = repro.expected.get("rules")
    matches = expected is None or (expected == outcome and (
        expected_rules is None or sorted(map(str, expected_rules)) == rules))
    recorded: str | None = None
    if args.expect is not None:
        if args.expect == "fixed" and outcome in _FINDINGS:
            sys.stderr.write(f"aofcrash replay: {path} still shows "
                             f"{_outcome_words(outcome, rules)}: not recorded as fixed\n")
        else:
            new_expected: dict[str, Any] = {"outcome": outcome, "rules": rules}
            if expected is not None and expected != outcome:
                new_expected["found"] = {k: v for k, v in repro.expected.items()
                                         if k != "found"}
            updated = dataclasses.replace(repro, expected=new_expected)
            try:
                write_atomic(path, updated.to_json())
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror}") from None
            recorded = outcome
    if args.json:
        print(json.dumps({"status": outcome, "rules": rules, "expected": expected,
                          "matches_expected": matches, "recorded": recorded,
                          "text": seen["text"], "judged": seen["judged"],
                          "program": seen["program"],
                          "epochs": [{k: v for k, v in e.items() if k != "entries"}
                                     for e in seen["epochs"]]}, default=str))
    else:
        print(seen["text"])
        print(f"judged: {', '.join(seen['judged'])}")
        print(f"program ({len(seen['program'])} step(s)):")
        for line in program_lines(seen["program"]):
            print(line)
        if seen["epochs"]:
            print("crash epochs:")
            for e in seen["epochs"]:
                print("  " + epoch_line(e))
        if expected is not None:
            print(f"recorded outcome: {_outcome_words(expected, expected_rules)}; now: "
                  f"{_outcome_words(outcome, rules)}" + ("" if matches else "  (DIFFERENT)"))
        if recorded is not None:
            print(f"recorded in {path}: expected outcome is now {recorded!r}; pytest (the "
                  "aofcrash plugin) fails if a replay ever shows something else")
            if not path.name.endswith(REPRO_SUFFIX):
                print(f"note: pytest collects only *{REPRO_SUFFIX} files: rename it to "
                      f"{path.name.removesuffix('.json')}{REPRO_SUFFIX}")
    if args.expect == "fixed" and recorded is None:
        return EXIT_VIOLATION
    return EXIT_VIOLATION if outcome in _FINDINGS else EXIT_OK


# What a replay can show that is a finding (exit 1): the data rules, a read the model refutes,
# and the campaign's own rules (check-aof against the loader, liveness).
_FINDINGS = ("violation", "divergence", "check-aof", "liveness")


# -- check-aof -----------------------------------------------------------------------------


def _confirm(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


def _dropped_words(plan: Any) -> str:
    """'dropping 36 bytes: 2 complete command(s), 1 of them after the damage at offset 84'."""
    dropped = plan.dropped_commands
    words = f"dropping {plan.removed_bytes} bytes"
    if plan.torn_tail:
        return words + (f" (the torn tail and the {dropped} complete command(s) of an "
                        "unfinished MULTI)" if dropped else " (the torn tail)")
    words += f": {dropped} complete command(s)"
    if plan.commands_after_damage:
        words += (f", {plan.commands_after_damage} of them valid command(s) after the damage "
                  f"at offset {plan.damage_offset_bytes}")
    return words


def _cut(plan: Any) -> str:
    return f"from {plan.size_bytes} to {plan.truncate_to_bytes} bytes, {_dropped_words(plan)}"


def cmd_check_aof(args: argparse.Namespace) -> int:
    from harness.cli._report import write_atomic_bytes
    from reference import AofInputError, AofNotFixableError, check_aof_path, plan_fix

    path: Path = args.file
    try:
        check = check_aof_path(path)
    except AofInputError as exc:
        raise UsageError(one_line(exc)) from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename or path}: {exc.strerror}") from None
    fix: dict[str, Any] | None = None
    not_fixable: str | None = None
    plan = None
    if not check.valid:
        try:
            plan = plan_fix(check)
        except AofNotFixableError as exc:
            not_fixable = exc.reason
    if args.fix and plan is not None:
        target = Path(plan.path)
        if plan.confirm_first and not args.yes:
            # More than a torn tail: valid commands (or a whole file) would go.
            what = (f"--fix would truncate {target} {_cut(plan)}; the original is kept as "
                    f"{target.name}.bak")
            if not sys.stdin.isatty():
                raise UsageError(f"{what}: add --yes to drop them (no terminal to ask on)")
            if not _confirm(f"{what[0].upper()}{what[1:]}. Truncate?"):
                sys.stderr.write("aofcrash check-aof: not fixed\n")
                return EXIT_VIOLATION
        try:
            data = target.read_bytes()
            if len(data) != plan.size_bytes:
                raise UsageError(f"{target} changed while it was checked ({len(data)} bytes, "
                                 f"{plan.size_bytes} checked): check it again")
            write_atomic_bytes(target.with_name(target.name + ".bak"), data)
            write_atomic_bytes(target, data[: plan.truncate_to_bytes])
        except OSError as exc:
            raise UsageError(f"cannot fix {target}: {exc.strerror}") from None
        fix = {**plan.to_dict(), "backup": str(target.with_name(target.name + ".bak"))}
    if args.json:
        print(json.dumps({**_check_summary(check), "fixed": fix,
                          "not_fixable_reason": not_fixable}, default=str))
    else:
        for line in check.describe():
            print(line)
        if check.layout == "single":
            print("AOF is valid" if check.valid else f"AOF is not valid: {check.reason}")
        if fix is not None:
            print(f"fixed: {fix['path']} truncated {_cut(plan)}; the original is kept as "
                  f"{Path(fix['path']).name}.bak")
        elif not_fixable is not None:
            print(f"not fixed: {not_fixable}" if args.fix
                  else f"--fix cannot repair it: {not_fixable}")
        elif plan is not None:
            # As redis-check-aof: say what would repair it.
            print(f"use --fix to truncate {plan.path} {_cut(plan)}"
                  + (" (it asks first: valid data would be lost)" if plan.confirm_first
                     else ""))
    # As redis-check-aof: 0 once the file is repaired.
    return EXIT_OK if check.valid or fix is not None else EXIT_VIOLATION


def _check_summary(check: Any) -> dict[str, Any]:
    """check-aof's --json: the whole verdict, plus the single-file fields at the top level
    (valid, last_valid_offset_bytes, commands, reason, size_bytes) for scripts."""
    out: dict[str, Any] = dict(check.to_dict())
    bad = check.verdict_result
    if bad is not None:
        out.update({"last_valid_offset_bytes": bad.last_valid_offset_bytes,
                    "commands": bad.commands, "size_bytes": bad.size_bytes})
    out["file"] = str(check.path)
    return out


# -- report --------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from harness.cli._report import ReportError, load_report, write_atomic
    from harness.cli._report import render_html as render

    paths: list[Path] = args.path
    if len(paths) > 1 and not args.merge:
        raise UsageError("several reports given: add --merge to combine them")
    if args.allow_mixed and not args.merge:
        raise UsageError("--allow-mixed is for --merge")
    try:
        loaded = [(p if p.is_dir() else p.parent, load_report(p)) for p in paths]
    except ReportError as exc:
        raise UsageError(one_line(exc)) from None
    if args.merge:
        from harness.cli._merge import MergeError, merge_reports
        from harness.cli._report import new_run_dir

        try:
            merged = merge_reports(loaded, allow_mixed=args.allow_mixed)
        except MergeError as exc:
            raise UsageError(str(exc)) from None
        warn("report", merged.warnings)
        report, violation, warnings = merged.report, merged.violation, list(merged.warnings)
        run_dir = new_run_dir(args.reports, "merged", 0)
        report["run_id"] = run_dir.name
        write_atomic(run_dir / "report.json", json.dumps(report, indent=1, default=str))
        html_path = run_dir / "report.html"
    else:
        run_dir, report = loaded[0]
        # A finding (reports/findings/<cell>.json) renders beside itself as <cell>.html.
        given = paths[0]
        named = not given.is_dir() and given.suffix == ".json" and given.name != "report.json"
        html_path = given.with_suffix(".html") if named else run_dir / "report.html"
        violation, warnings = bool(report.get("violations")), []
    try:
        page = render(report)
    except Exception as exc:  # a hand-edited report.json may hold anything
        raise UsageError(f"{args.path}: cannot render it: {type(exc).__name__}: "
                         f"{one_line(exc)}") from None
    try:
        write_atomic(html_path, page)
    except OSError as exc:
        raise UsageError(f"cannot write {html_path}: {exc.strerror}") from None
    violations = report.get("violations", [])
    raw_totals = report.get("totals")
    totals: dict[str, Any] = raw_totals if isinstance(raw_totals, dict) else {}
    if args.json:
        print(json.dumps({"status": "violation" if violation else "ok",
                          "html": str(html_path), "violations": len(violations),
                          **totals, **({"warnings": warnings} if args.merge else {})},
                         default=str))
    else:
        from harness.cli._report_summary import totals_lines

        print(f"{report.get('command')} {report.get('run_id')}: "
              + ("no violation" if not violations else f"{len(violations)} violation(s)"))
        if args.merge:
            run = report.get("run") or {}
            print(f"  merged: {len(paths)} reports, shards {run.get('shard')}")
        for line in totals_lines(totals):
            print(line)
        print(f"html: {html_path}")
    return EXIT_VIOLATION if violation else EXIT_OK
