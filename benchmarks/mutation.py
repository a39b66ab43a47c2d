"""Power of the default campaign: source mutants of reference/'s AOF paths, killed or not.

Mutants are made with a small AST operator set on the AOF functions that
``benchmarks/coverage.py`` counts (feed, flush, fsync, rewrite, load, check):

* ``off-by-one``: an integer constant +1 or -1, a slice bound +1 or -1, ``len(x)`` ->
  ``len(x) - 1``;
* ``drop``: a statement replaced by ``pass`` (not log calls, not docstrings);
* ``swap``: the first two positional arguments of a call exchanged;
* ``negate``: an ``if``/``while`` test negated, a comparison operator flipped (``<`` / ``<=``,
  ``==`` / ``!=``, ``in`` / ``not in``, ``is`` / ``is not``);
* ``constant``: ``True`` / ``False`` flipped, a non-zero integer set to 0.

Code guarded by a named defect or by the redis-3.0 profile is left alone (the default campaign
runs the safe reference without defects, so a mutant there is equivalent by construction, and
negating such a guard just switches a catalogued defect on).

Each mutant runs in its own subprocess on a temporary copy of the tree (the checkout is never
modified) through both default tools, one after the other and independently: ``aofcrash fuzz``
with default settings (three policies, every persistence model, seed 0) for ``--fuzz-budget``
seconds, and the explorer's default suite, stopping at its first violation, until
``--explore-budget`` seconds are spent (checked between its runs). A tool *kills* the mutant
when it reports a violation, a model divergence or an error (the harness does not say "no
violation"); the summary gives the kill rate of fuzz alone, explore alone and either. Budgets
count CPU seconds of the mutant's process by default (``--clock cpu``: a busy machine gives
each mutant the same work as an idle one, so the figure does not move with the load); ``--clock
wall`` counts wall seconds as a user's run does. Results are rewritten (temp + rename) to
``--json`` after every mutant, and ``--summary-of FILE`` prints the rates of such a file, also
of a run cut short. Survivors are printed with their line and whether the default campaign
executes it at all (from a coverage run), which separates missed reach from oracle gaps and
equivalent mutants.

The sample (``--sample N --seed S``) is the N mutants with the smallest seeded hash of what each
mutant is (file, function, operator, description; not its line or list position), so an edit
elsewhere in reference/ leaves the sample as it was and runs before and after a change compare
the same mutants. ``--only TEXT`` keeps mutants whose id contains TEXT (repeatable), e.g. to
re-run one survivor after a change to the reach; ``--list --diff`` shows what each one changes.

Usage::

    .venv/bin/python benchmarks/mutation.py [--sample 40] [--seed 0] [--workers 2]
        [--fuzz-budget 60] [--explore-budget 60] [--clock cpu|wall] [--json FILE]
        [--only TEXT] [--list [--diff]] [--summary-of FILE]
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("faults", "reference", "harness")


def _aof_functions() -> dict[str, list[tuple[str, list[str]]]]:
    # The list lives in benchmarks/coverage.py (one definition of "the AOF paths").
    spec = importlib.util.spec_from_file_location("aof_coverage_bench",
                                                  ROOT / "benchmarks" / "coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions: dict[str, list[tuple[str, list[str]]]] = module.AOF_FUNCTIONS
    return functions


# -- mutants ---------------------------------------------------------------------------------

_BY_DESIGN = ("D.", "defects", "_safe", "Profile.", "rollback_multi", "_apply_unfinished_multi",
              "zero_tail_truncated", "_relative_verbatim", "_split_set_expiry",
              "_hold_on_write_error", "_deferred_fsync", "use_hiredis", "_hiredis is None")
_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
         ast.IsNot: ast.Is}


@dataclass
class Mutant:
    ident: str
    file: str
    function: str
    path: str
    operator: str
    line: int
    description: str
    source: str = field(repr=False, default="")
    number: int = 0  # which site of the function (the order of ``_sites``)


def _by_design(node: ast.AST) -> bool:
    text = ast.unparse(node)
    return any(marker in text for marker in _BY_DESIGN)


def _is_log(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        return False
    func = stmt.value.func
    return isinstance(func, ast.Attribute) and func.attr in ("_log", "append") and (
        func.attr == "_log" or "log" in ast.unparse(func))


def _no_swap(call: ast.Call) -> bool:
    """Calls whose swapped arguments are a log message or a TypeError at once (not a bug)."""
    name = ast.unparse(call.func)
    return name.endswith("_log") or name in ("isinstance", "getattr", "setattr", "print")


def _find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    parts = qualname.split(".")
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in parts:
        node = next((n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef)
                     and n.name == part), None)
        if node is None:
            raise SystemExit(f"mutation: no {qualname}")
        body = node.body
    assert isinstance(node, ast.FunctionDef)
    return node


def _guarded(fn: ast.FunctionDef) -> set[int]:
    """ids of nodes inside a branch whose test is a defect or profile switch."""
    out: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.If) and _by_design(node.test):
            for child in [*node.body, *node.orelse, node.test]:
                for sub in ast.walk(child):
                    out.add(id(sub))
    return out


def _sites(fn: ast.FunctionDef) -> list[tuple[str, ast.AST, Any, str]]:
    """(operator, node, variant, description) for every mutation site of the function."""
    guarded = _guarded(fn)
    doc = fn.body[0] if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(
        getattr(fn.body[0], "value", None), ast.Constant) else None
    out: list[tuple[str, ast.AST, Any, str]] = []
    for node in ast.walk(fn):
        if id(node) in guarded or node is fn:
            continue
        if isinstance(node, ast.Constant) and type(node.value) is int:
            out.append(("off-by-one", node, +1, f"{node.value} -> {node.value + 1}"))
            out.append(("off-by-one", node, -1, f"{node.value} -> {node.value - 1}"))
            if node.value:
                out.append(("constant", node, 0, f"{node.value} -> 0"))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            out.append(("constant", node, not node.value, f"{node.value} -> {not node.value}"))
        elif isinstance(node, ast.Slice):
            for bound in ("lower", "upper"):
                if getattr(node, bound) is not None:
                    for d in (+1, -1):
                        out.append(("off-by-one", node, (bound, d),
                                    f"slice {bound} {ast.unparse(getattr(node, bound))} "
                                    f"{'+' if d > 0 else '-'} 1"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "len"):
            out.append(("off-by-one", node, -1, f"{ast.unparse(node)} - 1"))
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and not any(
                isinstance(a, ast.Starred) for a in node.args[:2]) and not _no_swap(node):
            if ast.unparse(node.args[0]) != ast.unparse(node.args[1]):
                out.append(("swap", node, None, f"swap arguments of {ast.unparse(node)[:60]}"))
        elif isinstance(node, ast.If | ast.While) and not _by_design(node.test):
            out.append(("negate", node, None, f"not ({ast.unparse(node.test)[:60]})"))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
            flipped = _FLIP[type(node.ops[0])]
            out.append(("negate", node, flipped,
                        f"{ast.unparse(node)[:60]}: {type(node.ops[0]).__name__} -> "
                        f"{flipped.__name__}"))
        if isinstance(node, ast.stmt) and node is not doc and not isinstance(
                node, ast.FunctionDef | ast.Pass) and not _is_log(node):
            out.append(("drop", node, None, f"drop `{ast.unparse(node).splitlines()[0][:60]}`"))
    return out


def _apply(node: ast.AST, operator: str, variant: Any) -> ast.AST | None:
    """The replacement for `node` (None: the mutation does not apply)."""
    if operator in ("off-by-one", "constant") and isinstance(node, ast.Constant):
        value = node.value + variant if operator == "off-by-one" else variant
        return ast.copy_location(ast.Constant(value), node)
    if operator == "off-by-one" and isinstance(node, ast.Slice):
        bound, delta = variant
        new = copy.deepcopy(node)
        old = getattr(new, bound)
        op = ast.Add() if delta > 0 else ast.Sub()
        setattr(new, bound, ast.BinOp(old, op, ast.Constant(1)))
        return new
    if operator == "off-by-one" and isinstance(node, ast.Call):
        return ast.copy_location(ast.BinOp(copy.deepcopy(node), ast.Sub(), ast.Constant(1)), node)
    if operator == "swap" and isinstance(node, ast.Call):
        call = copy.deepcopy(node)
        call.args[0], call.args[1] = call.args[1], call.args[0]
        return call
    if operator == "negate" and isinstance(node, ast.If | ast.While):
        branch = copy.deepcopy(node)
        branch.test = ast.UnaryOp(ast.Not(), branch.test)
        return branch
    if operator == "negate" and isinstance(node, ast.Compare):
        compare = copy.deepcopy(node)
        compare.ops = [variant()]
        return compare
    if operator == "drop" and isinstance(node, ast.stmt):
        return ast.copy_location(ast.Pass(), node)
    return None


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target = target
        self.replacement = replacement

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.replacement
        return super().generic_visit(node)


def make_mutants(base: Path) -> list[Mutant]:
    """Every mutation site of the AOF functions of the tree at `base`, not yet applied (one
    parse per function; ``materialize`` applies one and says whether it is a real mutant)."""
    out: list[Mutant] = []
    for path_name, groups in _aof_functions().items():
        for rel, functions in groups:
            tree = ast.parse((base / rel).read_text(encoding="utf-8"))
            for qualname in functions:
                for number, (operator, node, variant, description) in enumerate(
                        _sites(_find_function(tree, qualname))):
                    if _apply(node, operator, variant) is None:
                        continue
                    line = getattr(node, "lineno", 0)
                    ident = f"{rel}:{line}:{qualname}:{operator}:{number}"
                    out.append(Mutant(ident, rel, qualname, path_name, operator, line,
                                      description, number=number))
    return out


def materialize(base: Path, mutant: Mutant) -> bool:
    """Apply `mutant` to a fresh parse of its file (``mutant.source``); False when the result is
    the original program or does not compile (not a mutant)."""
    source = (base / mutant.file).read_text(encoding="utf-8")
    original = ast.unparse(ast.parse(source))
    tree = ast.parse(source)
    operator, node, variant, _ = _sites(_find_function(tree, mutant.function))[mutant.number]
    replacement = _apply(node, operator, variant)
    if replacement is None:
        return False
    mutated = _Replace(node, replacement).visit(tree)
    ast.fix_missing_locations(mutated)
    text = ast.unparse(mutated)
    if text == original:
        return False
    try:
        compile(text, mutant.file, "exec")
    except SyntaxError:
        return False
    mutant.source = text
    return True


def stable_sample(mutants: list[Mutant], size: int, *, seed: int,
                  valid: Callable[[Mutant], bool] = lambda _m: True) -> list[Mutant]:
    """`size` mutants chosen by a seeded hash of what each mutant is (file, function, operator,
    description, and which of identical ones), not of its line or position in the list: an
    edit elsewhere in the code (a line added, a mutant more) leaves the rest of the sample as
    it was, so runs before and after a change compare the same mutants. Candidates are taken
    in hash order and kept when `valid` (0: every one)."""
    seen: dict[tuple[str, str, str, str], int] = {}

    def rank(m: Mutant) -> bytes:
        what = (m.file, m.function, m.operator, m.description)
        seen[what] = seen.get(what, 0) + 1
        key = f"{seed}|{'|'.join(what)}|{seen[what]}"
        return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()

    kept: list[int] = []
    for _, i in sorted((rank(m), i) for i, m in enumerate(mutants)):
        if size and len(kept) >= size:
            break
        if valid(mutants[i]):
            kept.append(i)
    return [mutants[i] for i in sorted(kept)]


# -- running ---------------------------------------------------------------------------------

_RUNNER = r"""
import json, sys, time
fuzz_budget, explore_budget, clock = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if clock == "cpu":
    # Budgets in CPU seconds of this process (the campaign reads time.monotonic): on a busy
    # machine a mutant gets the same work as on an idle one, and the verdicts do not move.
    time.monotonic = time.process_time


def verdict(killed, t0, detail):
    return {"killed": killed, "first_failure_s": time.monotonic() - t0 if killed else None,
            "detail": detail}


def run_fuzz():
    from faults import PersistenceModel
    from harness.machine._campaign import Campaign, run_campaign
    from harness.machine._steps import RunConfig
    configs = tuple(RunConfig(policy=p) for p in ("always", "everysec", "no"))
    t0 = time.monotonic()
    r = run_campaign(Campaign(configs=configs, models=tuple(PersistenceModel),
                              budget_s=fuzz_budget, seed=0, shrink_budget_s=0.0))
    if not r.findings:
        return verdict(False, t0, f"{r.examples} examples")
    f = r.findings[0]
    out = verdict(True, t0, f"{f.kind} {', '.join(f.rules)} ({f.config.policy})"
                  + (f": {f.text[:50]}" if f.kind == "divergence" else ""))
    out["first_failure_s"] = f.first_failure_s
    return out


def run_explore():
    from harness.explore import ExploreLimits, explore, make_workload
    from harness.explore._workloads import DEFAULT_SUITE, suite_config
    limits = ExploreLimits(stop_at_first_violation=True, confirm_reproductions=0)
    t0 = time.monotonic()
    for i, (workload, policy, ops) in enumerate(DEFAULT_SUITE):
        res = explore(suite_config(workload, policy), make_workload(workload, ops=ops, seed=0),
                      limits=limits)
        if not res.ok:
            return verdict(True, t0, f"{', '.join(res.violations[0].rules)} ({workload}, "
                                     f"{policy})")
        if time.monotonic() - t0 > explore_budget and i + 1 < len(DEFAULT_SUITE):
            return verdict(False, t0, f"budget spent after {i + 1} of {len(DEFAULT_SUITE)} runs")
    return verdict(False, t0, "whole suite clean")


out = {}
for tool, run in (("fuzz", run_fuzz), ("explore", run_explore)):
    t0 = time.monotonic()
    try:
        out[tool] = run()
    except BaseException as exc:  # the harness failed: not a silent "no violation"
        out[tool] = verdict(True, t0, f"error: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    out[tool]["spent_s"] = time.monotonic() - t0
print("MUTANT-RESULT " + json.dumps(out), flush=True)
"""


def _copy_tree(source: Path, dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(source / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def run_mutant(mutant: Mutant, base: Path, *, fuzz_budget: float, explore_budget: float,
               clock: str, python: str) -> dict[str, Any]:
    """Both tools on one mutant, each within its budget (seconds of `clock`: ``cpu`` or
    ``wall``); a tool kills it with a violation, a divergence or an error."""
    with tempfile.TemporaryDirectory(prefix="aofcrash-mutant-") as tmp:
        tree = Path(tmp)
        _copy_tree(base, tree)
        (tree / mutant.file).write_text(mutant.source + "\n", encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONWARNINGS": "ignore"}
        started = time.monotonic()
        # A wall-clock backstop only (a mutant that hangs outside any budget check).
        backstop_s = (fuzz_budget + explore_budget) * (30 if clock == "cpu" else 1) + 120
        try:
            proc = subprocess.run([python, "-c", _RUNNER, str(fuzz_budget), str(explore_budget),
                                   clock], cwd=tree, env=env, capture_output=True, text=True,
                                  timeout=backstop_s)
        except subprocess.TimeoutExpired:
            hung = {"killed": False, "first_failure_s": None,
                    "detail": f"no verdict within {backstop_s:.0f} s of wall time"}
            return {"fuzz": hung, "explore": hung, "wall_s": time.monotonic() - started}
        wall = time.monotonic() - started
        line = next((x for x in proc.stdout.splitlines() if x.startswith("MUTANT-RESULT ")), None)
        if line is None:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            died = {"killed": True, "first_failure_s": None,
                    "detail": f"runner died: {tail[:200]}"}
            return {"fuzz": died, "explore": died, "wall_s": wall}
        result: dict[str, Any] = json.loads(line[len("MUTANT-RESULT "):])
        result["wall_s"] = wall
        return result


def _executed_lines(coverage_json: Path | None) -> dict[str, set[int]] | None:
    if coverage_json is None or not coverage_json.exists():
        return None
    data = json.loads(coverage_json.read_text(encoding="utf-8"))
    out: dict[str, set[int]] = {}
    for row in data.get("functions", []):
        missing = set(row.get("missing_lines", []))
        out.setdefault(row["file"], set())
        out[row["file"]] |= {-x for x in missing}  # negative: known not executed
    return out


def _summary(results: Sequence[tuple[object, dict[str, Any]]], budgets: str) -> list[str]:
    """Kill rates: fuzz alone, explore alone, either; then the survivors."""
    total = max(1, len(results))
    lines = [f"{len(results)} mutants, {budgets}"]
    for label, tools in (("fuzz alone", ("fuzz",)), ("explore alone", ("explore",)),
                         ("either", ("fuzz", "explore"))):
        killed = [r for _, r in results if any(r[t]["killed"] for t in tools)]
        lines.append(f"  killed by {label:13} {len(killed):4}/{len(results)} "
                     f"({100.0 * len(killed) / total:.1f}%)")
    errors = sum(any(r[t]["detail"].startswith(("error", "runner died")) for t in ("fuzz",
                                                                                 "explore"))
                 for _, r in results)
    lines.append(f"  (of which a harness error or a dead runner: {errors})")
    for tool in ("fuzz", "explore"):
        times = [r[tool]["first_failure_s"] for _, r in results
                 if r[tool]["killed"] and r[tool].get("first_failure_s") is not None]
        if times:
            lines.append(f"  {tool} time to first failure: min {min(times):.1f} s, median "
                         f"{statistics.median(times):.1f} s, max {max(times):.1f} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=40, help="mutants to run (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fuzz-budget", type=float, default=60.0,
                        help="seconds of fuzzing per mutant (the default campaign's budget)")
    parser.add_argument("--explore-budget", type=float, default=60.0,
                        help="seconds of the explorer's default suite per mutant (checked "
                        "between its runs)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="what the budgets count: CPU seconds of the mutant's process "
                        "(default: the same work on a busy machine) or wall seconds")
    parser.add_argument("--coverage-json", type=Path, default=None,
                        help="benchmarks/coverage.py --json output: marks survivors whose line "
                        "the default campaign never executes")
    parser.add_argument("--only", action="append", default=[],
                        help="run only mutants whose id contains this (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--diff", action="store_true",
                        help="with --list: show each mutant as a diff of the normalised source")
    parser.add_argument("--json", type=Path, default=None,
                        help="results, rewritten (temp + rename) after every mutant")
    parser.add_argument("--summary-of", type=Path, default=None, metavar="JSON",
                        help="print the kill rates of a --json file (a run cut short too) and "
                        "stop")
    args = parser.parse_args()
    if args.summary_of is not None:
        data = json.loads(args.summary_of.read_text(encoding="utf-8"))
        done = [(None, r) for r in data["results"]]
        for line in _summary(done, f"{data['budgets']}; {len(done)} of a sample of "
                             f"{data['sample']} done"):
            print(line)
        return 0

    # One snapshot of the tree for the whole run: mutants and their runs see the same code.
    snapshot = tempfile.TemporaryDirectory(prefix="aofcrash-mutation-base-")
    base = Path(snapshot.name)
    _copy_tree(ROOT, base)
    mutants = make_mutants(base)
    by_operator: dict[str, int] = {}
    for m in mutants:
        by_operator[m.operator] = by_operator.get(m.operator, 0) + 1
    counts = ", ".join(f"{k} {v}" for k, v in sorted(by_operator.items()))
    print(f"{len(mutants)} mutation sites ({counts})", flush=True)
    chosen = [m for m in mutants if not args.only or any(o in m.ident for o in args.only)]
    chosen = stable_sample(chosen, args.sample, seed=args.seed,
                           valid=lambda m: materialize(base, m))
    if args.list:
        for m in chosen:
            print(f"  {m.ident}  {m.description}")
            if args.diff:
                original = ast.unparse(ast.parse((base / m.file).read_text(encoding="utf-8")))
                for row in difflib.unified_diff(original.splitlines(), m.source.splitlines(),
                                                n=2, lineterm=""):
                    if not row.startswith(("---", "+++")):
                        print(f"      {row}")
        snapshot.cleanup()
        return 0
    not_executed = _executed_lines(args.coverage_json)
    python = sys.executable
    budgets = (f"fuzz {args.fuzz_budget:g} s + explore {args.explore_budget:g} s per mutant "
               f"({args.clock} time)")
    results: list[tuple[Mutant, dict[str, Any]]] = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(run_mutant, m, base, fuzz_budget=args.fuzz_budget,
                               explore_budget=args.explore_budget, clock=args.clock,
                               python=python): m for m in chosen}
        for n, future in enumerate(concurrent.futures.as_completed(futures), 1):
            m = futures[future]
            res = future.result()
            if not_executed is not None:
                res["line_executed"] = -m.line not in not_executed.get(m.file, set())
            results.append((m, res))
            cells = []
            for tool in ("fuzz", "explore"):
                r = res[tool]
                t = r.get("first_failure_s")
                cells.append(f"{tool} " + (f"KILLED {t:5.1f}s" if r["killed"] and t is not None
                                           else "KILLED" if r["killed"] else "survived"))
            print(f"[{n}/{len(chosen)} {time.monotonic() - started:6.0f}s] {' | '.join(cells)}  "
                  f"{m.ident}  {m.description}  [{res['fuzz']['detail']}; "
                  f"{res['explore']['detail']}]", flush=True)
            if args.json is not None:
                tmp = args.json.with_name(args.json.name + ".tmp")
                tmp.write_text(json.dumps({"budgets": budgets, "sample": len(chosen),
                                           "results": [{**asdict(x), "source": None, **r}
                                                       for x, r in results]},
                                          indent=1, default=str), encoding="utf-8")
                tmp.replace(args.json)
    print()
    for line in _summary(results, budgets):
        print(line)
    print(f"wall time {time.monotonic() - started:.0f} s with {args.workers} worker(s)")
    survived = [(m, r) for m, r in results
                if not r["fuzz"]["killed"] and not r["explore"]["killed"]]
    if survived:
        print("\nsurvivors (of both tools):")
        for m, r in sorted(survived, key=lambda x: x[0].ident):
            reach = ""
            if "line_executed" in r:
                reach = " [line executed by the default campaign]" if r["line_executed"] else \
                    " [line NOT executed by the default campaign: reach]"
            print(f"  {m.ident}  {m.description}{reach}")
    snapshot.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
