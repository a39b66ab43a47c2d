"""The file commands of ``aofcrash``: ``replay`` (a reproduction), ``check-aof`` (an AOF, a
Redis 7 manifest or appendonlydir) and ``report`` (a run's report).

None of them has randomness, so none takes ``--seed``. Every bad input is one line on stderr
and exit 2; a file that is not what it should be (random bytes, not UTF-8, not JSON, a field
of the wrong type) is bad input, never a traceback.
"""

from __future__ import annotations

import argparse
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
        "Exit 0 valid, 1 not valid, 2 unreadable.")
    common_args(ca, seed=False)
    ca.add_argument("file", type=Path, metavar="FILE|MANIFEST|DIR")
    ca.add_argument("--fix", action="store_true",
                    help="truncate the last file to its last valid command (the only case "
                    "truncation repairs); asks first on a terminal, needs --yes otherwise; the "
                    "original is kept as FILE.bak")
    ca.add_argument("--yes", action="store_true", help="--fix without asking")
    ca.set_defaults(func=cmd_check_aof)

    rpt = sub.add_parser("report", help="re-render and summarise a run's report, or merge "
                         "the reports of a campaign's shards")
    common_args(rpt, seed=False)
    rpt.add_argument("path", type=Path, nargs="+",
                     help="a reports/<run-id> directory or its report.json (several with "
                     "--merge), or a finding NAME.json (rendered to NAME.html beside it)")
    rpt.add_argument("--merge", action="store_true",
                     help="merge the reports of a campaign's shards into a new run directory")
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
            updated = type(repro)(config=repro.config, steps=repro.steps,
                                  expected=new_expected, note=repro.note)
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
    if args.fix and not check.valid:
        try:
            plan = plan_fix(check)
        except AofNotFixableError as exc:
            plan, not_fixable = None, exc.reason
        if plan is not None:
            target = Path(plan.path)
            question = (f"truncate {target} from {plan.size_bytes} to {plan.truncate_to_bytes} "
                        f"bytes (removing {plan.removed_bytes}; the original is kept as "
                        f"{target.name}.bak)?")
            if not args.yes:
                if not sys.stdin.isatty():
                    raise UsageError(f"--fix would {question[:-1]}: add --yes to do it "
                                     "without a terminal to ask on")
                if not _confirm(question[0].upper() + question[1:]):
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
            print(f"fixed: {fix['path']} truncated to {fix['truncate_to_bytes']} bytes; "
                  f"original kept as {Path(fix['path']).name}.bak")
        elif not_fixable is not None:
            print(f"not fixed: {not_fixable}")
    return EXIT_OK if check.valid else EXIT_VIOLATION


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
    try:
        loaded = [(p if p.is_dir() else p.parent, load_report(p)) for p in paths]
    except ReportError as exc:
        raise UsageError(one_line(exc)) from None
    if args.merge:
        from harness.cli._merge import MergeError, merge_reports
        from harness.cli._report import new_run_dir

        try:
            report = merge_reports(loaded)
        except MergeError as exc:
            raise UsageError(str(exc)) from None
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
        print(json.dumps({"status": "violation" if violations else "ok",
                          "html": str(html_path), "violations": len(violations),
                          **totals}, default=str))
    else:
        print(f"{report.get('command')} {report.get('run_id')}: "
              + ("no violation" if not violations else f"{len(violations)} violation(s)"))
        for key, value in totals.items():
            print(f"  {key}: {value}")
        print(f"html: {html_path}")
    return EXIT_VIOLATION if violations else EXIT_OK
