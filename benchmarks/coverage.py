"""Reach of the default campaign: branch coverage of reference/'s AOF paths.

Runs, under coverage.py in branch mode, what ``aofcrash fuzz`` does with no option (60 s, the
three fsync policies, every persistence model, seed 0, the safe profile) and then the explorer's
default suite (``harness.explore._workloads.DEFAULT_SUITE``: every workload under its policies),
and prints the branch coverage of the reference's AOF functions, path by path, with the lines of
every branch not taken.

Which functions count (``AOF_FUNCTIONS``): the code that turns a write into AOF bytes (feed),
writes them (flush, with its error handling), makes them durable (fsync: always, everysec's
background jobs, the fsync-failure repair), rewrites the file (the child, the done handler, the
batch encoding), loads it (start-up, the incremental loader, torn and zero tails), and checks
it (redis-check-aof's single-file verdict and fix). Not counted: command semantics (the
keyspace), the event loop's client bookkeeping, INFO, SHUTDOWN, the TCP front end, manifests
and RDB preambles (Redis 7 formats the in-process server never writes).

Branches the default campaign cannot take *by design* are counted apart, each with its reason
(``_WHY``): an arm guarded by a named defect or by the ``redis-3.0`` profile (off by default), a
file format or record the reference never writes, an API misuse the harness never makes, a
configuration the default does not use, a fault the fault layer cannot inject. The goal (>= 95%)
is measured on the rest; every branch of the rest not taken is printed.

With ``--surface``: instead of branch coverage, the generators' reach of the reference's
command surface (``reference._surface.WRITE_SURFACE``: every write command with every option
and arity form it implements): the (command, form) pairs the default fuzz campaign sent within
the budget and the pairs the default explore suite's workloads send, with the pairs never
generated listed.

Usage::

    .venv/bin/python benchmarks/coverage.py [--budget 60] [--seed 0] [--no-fuzz] [--no-explore]
                                            [--json FILE] [--surface]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This script is named like the library it uses: keep its own directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

coverage: Any = importlib.import_module("coverage")

# Path -> (file, qualified function names as coverage.py's JSON report names them).
AOF_FUNCTIONS: dict[str, list[tuple[str, list[str]]]] = {
    "feed": [
        ("reference/_server.py", ["Server.propagate", "Server._translate_expiry",
                                  "Server.write_denied"]),
        ("reference/_commands.py", ["Executor.call", "Executor.run"]),
    ],
    "flush": [
        ("reference/_server.py", ["Server.run_iteration", "Server._server_cron",
                                  "Server._should_auto_rewrite", "Server._flush",
                                  "Server._fsync_written_part", "Server._write_failed"]),
    ],
    "fsync": [
        ("reference/_server.py", ["Server._fsync_in_progress", "Server._try_fsync",
                                  "Server._bg_fsync", "Server._complete_fsync_jobs",
                                  "Server._fsync_failed", "Server._write_keyspace",
                                  "Server._repair"]),
    ],
    "rewrite": [
        ("reference/_server.py", ["RewriteChild.__init__", "RewriteChild.step",
                                  "RewriteChild.kill", "RewriteChild._exit",
                                  "RewriteChild._close_quietly", "_write_all", "_unlink_quietly",
                                  "Server.bgrewriteaof", "Server._start_rewrite",
                                  "Server.kill_rewrite_child", "Server._rewrite_done",
                                  "Server._finish_rewrite", "Server._fsync_rewritten",
                                  "Server._swap_in"]),
        ("reference/_aof.py", ["_batches", "encode_rewrite_key"]),
    ],
    "load": [
        ("reference/_server.py", ["Server.start", "Server._load"]),
        ("reference/_aof.py", ["AofLoader.__init__", "AofLoader.valid_offset_bytes",
                               "AofLoader.feed", "AofLoader.result", "AofLoader.finish",
                               "AofLoader._apply_slow", "AofLoader._parse_pure",
                               "AofLoader._is_zero_tail", "AofLoader._feed_hiredis",
                               "AofLoader._run_hiredis", "AofLoader._offset_after",
                               "_zero_run_start"]),
    ],
    "check": [
        ("reference/_checkaof.py", ["check_aof", "fix_aof"]),
    ],
}

# Why a branch cannot be taken by the default campaign, by design. A branch counts as such when
# its condition (or an `if` around it) names a defect or profile switch, or when it matches one
# of the (function, condition fragment) pairs below. Everything else is "reachable".
_SWITCHES = ("D.", "in defects", "_defects", "_safe", "Profile.", "rollback_multi",
             "_apply_unfinished_multi", "_relative_verbatim", "_split_set_expiry",
             "_hold_on_write_error", "_deferred_fsync", "select_once", "rename_first",
             "late_fsync", "drop_expiry", "use_hiredis", "_hiredis is None")
_FORMATS = ("_annotations", "_annotation_end", "_preamble", "_rdb_bytes", "is_rdb_image",
            "rdb.", "data[pos] == _HASH")
_WHY = {
    "switch": "a named defect or the redis-3.0 profile (off in the default campaign)",
    "format": "a file format the reference never writes (Redis 7 annotations, RDB preambles)",
    "record": "a record the reference never writes (unknown command, bad arity, DISCARD, "
              "nested MULTI, EXEC outside MULTI): only hand-made or garbage files have them",
    "api": "a misuse of the Server/loader API the harness never makes (iterate a stopped or "
           "unstarted server, start twice, step a dead child, feed after an error)",
    "config": "a configuration the default campaign does not use (no-appendfsync-on-rewrite, "
              "aof-load-truncated no; auto-rewrite only in the explorer's auto-rewrite workload)",
    "fault": "a fault the fault layer cannot inject (ftruncate failing after a short write)",
    "size": "an AOF larger than one 8 MB read (a zero tail that spans reads)",
    "safe": "a state the safe profile never enters (its fsync failures never stop it)",
    "garbage": "garbage that is not a torn or zero tail (the reference never writes it; torn "
               "and reordered sectors are opt-in images), or hiredis's fallback on such input",
    "tool": "redis-check-aof's verdict: a separate tool the crash-recovery campaign never runs "
            "(tests/test_reference_checkaof.py and the check-aof CLI tests cover it)",
    "steps": "a transaction whose EXEC comes in a later event-loop iteration than its writes "
             "(the driver's Multi step submits MULTI...EXEC in one iteration)",
}
_NAMED: tuple[tuple[str, str, str], ...] = (
    ("Server.run_iteration", "self.stopped", "api"),
    ("Server.run_iteration", "not self.started", "api"),
    ("Server.start", "self.started", "api"),
    ("RewriteChild.step", "not self.alive", "api"),
    ("AofLoader.feed", "self._error is not None", "api"),
    ("Server._swap_in", "old is not None", "api"),
    ("Server._server_cron", "_should_auto_rewrite", "config"),
    ("Server._should_auto_rewrite", "auto_aof_rewrite", "config"),
    ("Server._try_fsync", "no_appendfsync_on_rewrite", "config"),
    ("Server._load", "aof_load_truncated", "config"),
    ("Server._write_failed", "can_log", "fault"),
    ("Server._write_failed", "nwritten > 0", "fault"),
    ("AofLoader.feed", "self._zero_tail is not None", "size"),
    ("AofLoader.feed", "_NONZERO.search(data) is None", "size"),
    ("Server._complete_fsync_jobs", "self.stopped", "safe"),
    ("AofLoader._apply_slow", "cmd is None", "record"),
    ("AofLoader._apply_slow", "arity_ok", "record"),
    ("AofLoader._apply_slow", "_DISCARD_COMMAND", "record"),
    ("AofLoader._apply_slow", "MULTI_COMMAND", "record"),
    ("AofLoader.finish", "queue", "switch"),  # the loop of the unfinished-MULTI defect
    ("AofLoader._parse_pure", "after is None", "format"),
    ("AofLoader._parse_pure", "_is_zero_tail", "garbage"),
    ("AofLoader._parse_pure", "local >= limit", "garbage"),
    ("AofLoader._is_zero_tail", "zeros == len(buf)", "garbage"),
    ("AofLoader._is_zero_tail", "parse_aof_command", "api"),  # "cannot happen" in its comment
    ("AofLoader._feed_hiredis", "failed_at", "garbage"),
    ("AofLoader._feed_hiredis", "_parse_pure", "garbage"),
    ("AofLoader._run_hiredis", "type(argv) is not list", "garbage"),
    ("AofLoader._run_hiredis", "cmd is None or not cmd.arity_ok", "garbage"),
    ("Executor.call", "cmd.proc is _exec", "steps"),
    ("check_aof", "", "tool"),
    ("fix_aof", "", "tool"),
)


def _guarded_lines(tree: ast.Module) -> set[int]:
    """Lines inside an `if` whose test is a defect or profile switch."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(m in ast.unparse(node.test) for m in _SWITCHES):
            for child in [*node.body, *node.orelse]:
                end = getattr(child, "end_lineno", child.lineno)
                out.update(range(child.lineno, end + 1))
    return out


def classify(function: str, condition: str, line: int, guarded: set[int]) -> str | None:
    """Why the default campaign cannot take this branch (a key of ``_WHY``), or None."""
    if any(m in condition for m in _SWITCHES) or line in guarded:
        return "switch"
    if any(m in condition for m in _FORMATS):
        return "format"
    for fn, fragment, why in _NAMED:
        if fn == function and fragment in condition:
            return why
    return None


def run_default_campaign(budget_s: float, seed: int, *, fuzz: bool, explore: bool,
                         log: Any) -> dict[str, Any]:
    """The default fuzz campaign, then the default explore suite (what the CLI runs)."""
    from faults import PersistenceModel
    from harness.explore import explore as explore_run
    from harness.explore import make_workload
    from harness.explore._workloads import DEFAULT_SUITE, suite_config
    from harness.machine._campaign import Campaign, run_campaign
    from harness.machine._steps import RunConfig

    out: dict[str, Any] = {}
    if fuzz:
        started = time.monotonic()
        configs = tuple(RunConfig(policy=p) for p in ("always", "everysec", "no"))
        result = run_campaign(Campaign(configs=configs, models=tuple(PersistenceModel),
                                       budget_s=budget_s, seed=seed))
        out["fuzz"] = {"examples": result.examples, "elapsed_s": round(result.elapsed_s, 1),
                       "findings": [f.text.splitlines()[0] for f in result.findings]}
        log(f"fuzz: {result.examples} examples in {time.monotonic() - started:.1f} s, "
            f"{len(result.findings)} finding(s)")
    if explore:
        started = time.monotonic()
        states = violations = 0
        for workload, policy, ops in DEFAULT_SUITE:
            res = explore_run(suite_config(workload, policy),
                              make_workload(workload, ops=ops, seed=seed))
            states += res.states
            violations += res.violation_total
        out["explore"] = {"states": states, "violating_states": violations,
                          "elapsed_s": round(time.monotonic() - started, 1)}
        log(f"explore: {len(DEFAULT_SUITE)} runs, {states} states, {violations} violating, "
            f"{time.monotonic() - started:.1f} s")
    return out


def _source_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _condition_text(lines: list[str], tree: ast.Module, line: int) -> str:
    """The text of the statement that starts at `line` (an if/while/for/elif header)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.While | ast.For | ast.IfExp | ast.BoolOp) and getattr(
            node, "lineno", None
        ) == line:
            test = getattr(node, "test", None) or getattr(node, "iter", None) or node
            return ast.unparse(test)
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def measure(report: dict[str, Any]) -> dict[str, Any]:
    """Per path and function: branches total/covered, missing branches with their condition and
    whether the default campaign can take them at all."""
    out: dict[str, Any] = {"paths": {}, "functions": []}
    files = {Path(name).as_posix(): data for name, data in report["files"].items()}
    for path_name, groups in AOF_FUNCTIONS.items():
        totals: dict[str, Any] = {"branches": 0, "covered": 0, "by_design": 0, "missing": []}
        for rel, functions in groups:
            data = next((d for name, d in files.items() if name.endswith(rel)), None)
            if data is None:
                raise SystemExit(f"coverage: {rel} was not measured")
            source = ROOT / rel
            lines = _source_lines(source)
            tree = ast.parse(source.read_text(encoding="utf-8"))
            guarded = _guarded_lines(tree)
            for fn in functions:
                info = data["functions"].get(fn)
                if info is None:
                    print(f"coverage: no function {fn} in {rel} (renamed?)", file=sys.stderr)
                    continue
                summary = info["summary"]
                missing = []
                for src, dst in info["missing_branches"]:
                    cond = _condition_text(lines, tree, src)
                    why = classify(fn, cond, src, guarded)
                    missing.append({"from": src, "to": dst, "condition": cond,
                                    "by_design": why is not None, "why": why})
                n_design = sum(m["by_design"] for m in missing)
                row = {"path": path_name, "file": rel, "function": fn,
                       "branches": summary["num_branches"],
                       "covered": summary["covered_branches"], "by_design": n_design,
                       "missing": missing, "missing_lines": info["missing_lines"]}
                out["functions"].append(row)
                totals["branches"] += row["branches"]
                totals["covered"] += row["covered"]
                totals["by_design"] += n_design
                totals["missing"] += [(rel, fn, m) for m in missing if not m["by_design"]]
        out["paths"][path_name] = totals
    return out


def _pct(covered: int, total: int) -> str:
    return f"{100.0 * covered / total:5.1f}%" if total else "  n/a "


def print_report(measured: dict[str, Any], *, verbose: bool) -> tuple[int, int, int]:
    print("\nAOF functions counted (path: file: functions)")
    for path_name, groups in AOF_FUNCTIONS.items():
        for rel, functions in groups:
            print(f"  {path_name}: {rel}: {', '.join(functions)}")
    print(f"\n{'path':8} {'branches':>8} {'covered':>8} {'raw':>7} {'by design':>9} "
          f"{'reachable':>9} {'of reachable':>12}")
    grand = [0, 0, 0]
    for path_name, t in measured["paths"].items():
        reachable = t["branches"] - t["by_design"]
        print(f"{path_name:8} {t['branches']:8} {t['covered']:8} "
              f"{_pct(t['covered'], t['branches']):>7} {t['by_design']:9} {reachable:9} "
              f"{_pct(t['covered'], reachable):>12}")
        grand[0] += t["branches"]
        grand[1] += t["covered"]
        grand[2] += t["by_design"]
    reachable = grand[0] - grand[2]
    print(f"{'total':8} {grand[0]:8} {grand[1]:8} {_pct(grand[1], grand[0]):>7} {grand[2]:9} "
          f"{reachable:9} {_pct(grand[1], reachable):>12}")
    print("\nBranches not taken that the default campaign could take (line -> line: "
          "condition):")
    for path_name, t in measured["paths"].items():
        for rel, fn, m in t["missing"]:
            print(f"  [{path_name}] {rel}:{m['from']}->{m['to']} {fn}: {m['condition']}")
    by_why: dict[str, list[str]] = {}
    for row in measured["functions"]:
        for m in row["missing"]:
            if m["by_design"]:
                by_why.setdefault(m["why"], []).append(
                    f"{row['file']}:{m['from']}->{m['to']} {row['function']}: {m['condition']}")
    print("\nBranches the default campaign cannot take, by design:")
    for why, rows in sorted(by_why.items()):
        print(f"  {len(rows):3} {_WHY[why]}")
        if verbose:
            for text in rows:
                print(f"        {text}")
    return grand[0], grand[1], grand[2]


def surface(budget_s: float, seed: int, *, fuzz: bool, explore: bool,
            log: Any) -> dict[str, Any]:
    """(command, form) pairs of the reference's surface generated by the default fuzz
    campaign (every command the driver submits, spied) and by the explore suite's workloads."""
    from harness.explore import make_workload
    from harness.explore._workloads import DEFAULT_SUITE
    from harness.machine._driver import Driver
    from harness.machine._steps import Multi, Write
    from reference._surface import command_forms, surface_pairs

    implemented = surface_pairs()
    generated: dict[str, set[tuple[str, str]]] = {"fuzz": set(), "explore": set()}
    if fuzz:
        original = Driver._submit
        seen = generated["fuzz"]

        def spy(self: Any, argv: tuple[bytes, ...], client: int, **kwargs: Any) -> None:
            seen.update(command_forms(argv))
            original(self, argv, client, **kwargs)

        Driver._submit = spy  # type: ignore[method-assign]
        try:
            run_default_campaign(budget_s, seed, fuzz=True, explore=False, log=log)
        finally:
            Driver._submit = original  # type: ignore[method-assign]
    if explore:
        for workload, _policy, ops in DEFAULT_SUITE:
            for step in make_workload(workload, ops=ops, seed=seed):
                if isinstance(step, Write):
                    generated["explore"].update(command_forms(step.argv))
                elif isinstance(step, Multi):
                    generated["explore"].update(command_forms((b"EXEC",)))
                    for argv in step.commands:
                        generated["explore"].update(command_forms(argv))
    out: dict[str, Any] = {"implemented": len(implemented)}
    for tool, pairs in (*generated.items(), ("either", generated["fuzz"] | generated["explore"])):
        if (tool == "fuzz" and not fuzz) or (tool == "explore" and not explore):
            continue
        got = pairs & implemented
        out[tool] = {"generated": len(got),
                     "percent": round(100.0 * len(got) / len(implemented), 1),
                     "never": sorted(f"{c} {f}" for c, f in implemented - got)}
    return out


def print_surface(figures: dict[str, Any]) -> None:
    total = figures["implemented"]
    print(f"\ncommand surface of the reference: {total} (command, form) pairs")
    for tool in ("fuzz", "explore", "either"):
        row = figures.get(tool)
        if row is None:
            continue
        print(f"  {tool:8} generated {row['generated']:3}/{total} ({row['percent']}%)")
        if row["never"]:
            print(f"           never: {', '.join(row['never'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="fuzz budget, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fuzz", action="store_true")
    parser.add_argument("--no-explore", action="store_true")
    parser.add_argument("--verbose", action="store_true",
                        help="also list the branches not taken by design")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--surface", action="store_true",
                        help="the (command, form) pairs generated, not branch coverage")
    args = parser.parse_args()
    if args.surface:
        figures = surface(args.budget, args.seed, fuzz=not args.no_fuzz,
                          explore=not args.no_explore,
                          log=lambda text: print(text, file=sys.stderr, flush=True))
        print_surface(figures)
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
        return 0

    cov = coverage.Coverage(branch=True, source=["reference"], data_file=None)
    cov.start()
    try:
        runs = run_default_campaign(args.budget, args.seed, fuzz=not args.no_fuzz,
                                    explore=not args.no_explore,
                                    log=lambda text: print(text, file=sys.stderr, flush=True))
    finally:
        cov.stop()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        report = json.loads(out.read_text(encoding="utf-8"))
    measured = measure(report)
    total, covered, design = print_report(measured, verbose=args.verbose)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, **measured,
                                         "total": {"branches": total, "covered": covered,
                                                   "by_design": design}},
                                        indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
