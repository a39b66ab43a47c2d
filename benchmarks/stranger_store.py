"""Issue 22's measurement: does aofcrash find segstore's planted bugs at default settings?

    nice -n 10 .venv/bin/python benchmarks/stranger_store.py --budget 60

(from the repository root; examples/segstore is put on the path here). For the correct store
and each planted bug (examples/segstore, a store written without knowledge of aofcrash), runs
``aofcrash fuzz --target ... --budget B --database none`` (a first run: no failure replayed
from an earlier run's example database; ``--tools fuzz-damage`` adds ``--damage``) and
``aofcrash explore --target ...`` at its defaults (``explore-damage``: ``--damage``), stopped
by Ctrl-C (SIGINT) after B seconds since explore has no time limit of its own.

Prints one row per variant and tool: found or not, the rules reported, the time to the first
finding (fuzz's ``first_failure_s``; explore reports no per-finding time), the wall time, and
whether the first finding's ``aofcrash replay`` (run from another directory without
PYTHONPATH) shows a violation again. Any finding on ``correct`` is a false alarm.
CPU-heavy: one tool run at a time; each takes about B seconds plus shrinking.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AOFCRASH = str(ROOT / ".venv" / "bin" / "aofcrash")
MODULE = "segstore.aofcrash_target"
VARIANTS = {
    "correct": "make_target",
    "reply-before-fsync": "make_reply_before_fsync_target",
    "skip-crc-on-load": "make_skip_crc_on_load_target",
    "load-skips-after-snapshot": "make_load_skips_after_snapshot_target",
    "group-ack-window": "make_group_ack_window_target",
    "compact-temp-not-fsynced": "make_compact_temp_not_fsynced_target",
    "ttl-relative-on-load": "make_ttl_relative_on_load_target",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "examples" / "segstore")])
    return env


def _replays(command: str | None) -> str:
    """'yes' when the replay, run from elsewhere without PYTHONPATH, shows a violation again."""
    if not command:
        return "-"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as elsewhere:
        done = subprocess.run([*shlex.split(command), "--json"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    try:
        summary = json.loads(done.stdout)
    except json.JSONDecodeError:
        return f"no (exit {done.returncode}: {done.stderr.strip()[-120:]})"
    return "yes" if summary.get("status") == "violation" else f"no ({summary.get('status')})"


def run_fuzz(factory: str, budget_s: int, reports: Path, *extra: str) -> dict[str, Any]:
    command = [AOFCRASH, "fuzz", "--target", f"{MODULE}:{factory}", "--budget", f"{budget_s}s",
               "--progress", "never", "--json", "--reports", str(reports),
               # A first run: no failures replayed from an earlier run's example database.
               "--database", "none", *extra]
    started = time.monotonic()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, check=False)
    wall_s = time.monotonic() - started
    try:
        summary = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"found": "error", "rules": done.stderr.strip()[-200:], "first_s": None,
                "wall_s": wall_s, "replay": "-", "examples": None}
    findings = summary.get("findings") or []
    rules = sorted({rule for finding in findings for rule in finding.get("rules", [])})
    return {"found": "yes" if findings else "no", "rules": ",".join(rules) or "-",
            "first_s": summary.get("first_failure_s"), "wall_s": wall_s,
            "replay": _replays(findings[0].get("replay")) if findings else "-",
            "examples": summary.get("examples")}


def run_explore(factory: str, budget_s: int, reports: Path, *extra: str) -> dict[str, Any]:
    command = [AOFCRASH, "explore", "--target", f"{MODULE}:{factory}", "--progress", "never",
               "--json", "--reports", str(reports), *extra]
    started = time.monotonic()
    # Its own process group, signalled whole: what Ctrl-C on a terminal does (explore's
    # workers get the SIGINT too). SIGINT back to its default first: a shell starts a
    # background job (`nohup ... &`) with SIGINT ignored, and the child would inherit that.
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        stdout, stderr = process.communicate(timeout=budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)  # explore writes its partial report on Ctrl-C
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
    wall_s = time.monotonic() - started
    try:
        summary = json.loads(stdout)
        report = json.loads(Path(summary["report"]).read_text())
    except (json.JSONDecodeError, KeyError, OSError):
        return {"found": "error", "rules": stderr.strip()[-200:], "first_s": None,
                "wall_s": wall_s, "replay": "-", "runs": None}
    violations = report.get("violations") or []
    rules = sorted({rule for v in violations for rule in v.get("rules", [v.get("rule")]) if rule})
    replay = None
    for violation in violations:
        path = violation.get("reproduction")
        if path:
            replay = f"{AOFCRASH} replay {Path(summary['report']).parent / path}"
            break
    runs = f"{summary.get('runs')}/{summary.get('runs', 0) + len(summary.get('runs_not_run', []))}"
    return {"found": "yes" if violations else "no", "rules": ",".join(rules) or "-",
            "first_s": None, "wall_s": wall_s, "replay": _replays(replay) if violations else "-",
            "runs": runs, "status": summary.get("status")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=60, help="seconds per tool run")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tools", nargs="*", default=["fuzz", "explore"],
                        choices=["fuzz", "fuzz-damage", "explore", "explore-damage"])
    parser.add_argument("--reports", default=None, help="where reports go (default: a temp dir)")
    args = parser.parse_args()
    reports = Path(args.reports or tempfile.mkdtemp(prefix="stranger-store-"))
    print(f"reports under {reports}; budget {args.budget} s per run", flush=True)
    header = f"{'variant':27} {'tool':15} {'found':6} {'rules':22} {'first':>7} {'wall':>6}  replay"
    print(header, flush=True)
    for variant in args.variants:
        factory = VARIANTS[variant]
        for tool in args.tools:
            if tool.startswith("fuzz"):
                extra = ("--damage",) if tool == "fuzz-damage" else ()
                row = run_fuzz(factory, args.budget, reports, *extra)
                note = f"{row['examples']} examples"
            else:
                extra = ("--damage",) if tool == "explore-damage" else ()
                row = run_explore(factory, args.budget, reports, *extra)
                note = f"{row['runs']} runs of the suite"
            first = "-" if row["first_s"] is None else f"{row['first_s']:.1f}s"
            print(f"{variant:27} {tool:15} {row['found']:6} {row['rules']:22} {first:>7} "
                  f"{row['wall_s']:5.0f}s  {row['replay']}  ({note})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
