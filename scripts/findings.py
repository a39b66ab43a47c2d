"""The findings matrix of real servers: reports/findings-redis.md and reports/findings-redis.json.

    .venv/bin/python scripts/findings.py [--trials N] [--out reports]
    .venv/bin/python scripts/findings.py --merge --models ext4,xfs,btrfs --faults none --trials 8
    .venv/bin/python scripts/findings.py --merge --cells S-P-M-F,... --trials 4

``--merge`` runs only the cells asked and puts them into the existing findings-redis.json (a
cell of the same key replaced, the others kept; the run is listed at the top of the page). The
kernel's filesystems (``ext4``, ``xfs``, ``btrfs``: root, /dev/fuse, loop devices) take no
SimDisk fault: their cells are fault ``none`` and ``fsync-error``, the latter a media error under
the filesystem (the page holding one write fails at write-back;
``harness.verify._verify_kernel``). A merged run records which of its cells
changed their verdict or mechanisms against the cells they replaced (``--why TEXT`` says why
they were re-run, e.g. a model fixed); the page lists them under "Changes made by re-run
cells".

Every cell is one ``aofcrash verify`` configuration: server (presets 6.0, 6.2, 7.0, 8.2, valkey) x
appendfsync (always, everysec) x model (process, power-ext4, power-posix-metadata,
power-eager-metadata) x fault (none, no-space, fsync-error, slow-sync, short-write,
kill-child), `--trials N` trials each (seed 0, trials 0..N-1: a trial is a function of (seed,
index), so every cell's trials are re-runnable one by one). All trials of all cells go to one
pool of forked workers (``harness.verify``'s workers: each dies with this process and takes its
servers and mounts along). When a cell has a violation, its first violating trial is
attributed (``harness.verify.attribute_trial``: re-run without the fault, with eager metadata,
without the rewrite) and written to ``<out>/findings/<cell>.json`` with the command line that
re-runs it (plus ``<cell>.html`` rendered from it, which git ignores: ``aofcrash report
<out>/findings/<cell>.json`` renders it again from the JSON). A server that is not
installed is skipped and the report says so.

Cell verdicts: "violation" (a rule broke: the rule, what it needs, the reproduction),
"unavailable" (the server acknowledged writes, then refused to start after a legal crash: the
availability rule), "holds" (at least one trial was exercised and none broke a rule: with the
number of trials and in how many the fault fired), "not exercised" (no trial checked more than
prefix consistency: every everysec trial had an empty frontier).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cli._report import write_atomic
from harness.verify import (
    TrialResult,
    VerifyConfig,
    VerifyEnvironmentError,
    VerifyResult,
    _environment,
    _runner,
    check_environment,
    verify_report,
)
from harness.verify._environment import KERNEL_FAULTS

SERVERS: Final = ("6.0", "6.2", "7.0", "8.2", "valkey")
POLICIES: Final = ("always", "everysec")
MODELS: Final = ("process", "power-ext4", "power-xfs", "power-btrfs", "power-posix-metadata",
                  "power-eager-metadata")
# The real kernel's filesystems (``verify --model ext4|xfs|btrfs``: root, /dev/fuse, loop
# devices). No SimDisk fault reaches them: their cells are faults none and fsync-error
# (a media error under the filesystem).
KERNEL_MODELS: Final = ("ext4", "xfs", "btrfs")
FAULTS: Final = ("none", "no-space", "fsync-error", "write-error", "slow-sync", "short-write",
                 "kill-child", "incr-fsync-error", "rewrite-completes")
FAULT_TITLES: Final = {
    "none": "no fault", "no-space": "ENOSPC", "fsync-error": "EIO on fsync, then success",
    "write-error": "EIO on write", "slow-sync": "slow fsync", "short-write": "short write",
    "kill-child": "killed rewrite child",
    "incr-fsync-error": "EIO on the old incr's fsync in a rewrite",
    "rewrite-completes": "a completed rewrite, paced writes after it",
}
COMMAND: Final = ".venv/bin/python scripts/findings.py"


@dataclass
class Cell:
    config: VerifyConfig
    trials: list[TrialResult] = field(default_factory=list)
    # The first violating trial of each mechanism, attributed; and its reproduction.
    attributed: dict[str, TrialResult] = field(default_factory=dict)
    reproductions: dict[str, str] = field(default_factory=dict)
    attribution_seconds: float = 0.0  # in workers, re-running its violating trials' variants

    @property
    def mechanisms(self) -> dict[str, list[TrialResult]]:
        """Violating trials by mechanism (what explains them), first trial first."""
        found: dict[str, list[TrialResult]] = {}
        for t in self.violating:
            found.setdefault(_mechanism(t), []).append(t)
        return found

    @property
    def name(self) -> str:
        c = self.config
        return f"{c.server}-{c.policy}-{c.model}-{c.fault}"

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.trials if t.outcome == outcome)

    @property
    def violating(self) -> list[TrialResult]:
        return sorted((t for t in self.trials if t.outcome == "violation"), key=lambda t: t.index)

    @property
    def rules(self) -> list[str]:
        found: Counter[str] = Counter()
        for t in self.violating:
            found.update({_case(t, v.rule.value) for v in t.violations})
        return [rule for rule, _ in found.most_common()]

    @property
    def verdict(self) -> str:
        if self.violating:
            return "unavailable" if self.rules == ["acknowledged, then unavailable"] \
                else "violation"
        if self.count("consistent") or self.count("unavailable"):
            return "holds"
        return "not exercised"

    @property
    def fired(self) -> int:
        return sum(1 for t in self.trials if t.fault_asked and t.fault_fired)

    def summary(self) -> dict[str, Any]:
        c = self.config
        mechanisms = []
        for mechanism, trials in self.mechanisms.items():
            first = self.attributed.get(mechanism, trials[0])
            att = first.attribution
            mechanisms.append({
                "mechanism": mechanism, "trials": [t.index for t in trials],
                "rules": sorted({_case(t, v.rule.value) for t in trials for v in t.violations}),
                "attributed_trial": first.index if att is not None else None,
                "cause": None if att is None else att.summary(),
                "minimal_sufficient_sets": None if att is None else [list(g) for g in att.minimal],
                "needs": None if att is None else att.needs,
                "attribution": None if att is None else att.to_dict(),
                "reproduction": self.reproductions.get(mechanism),
                "reproduce": c.command_line(trial=first.index),
                "server_reason": first.recovery.unavailable_reason,
                "lost": _lost(first),
            })
        head = mechanisms[0] if mechanisms else {}
        attribution = None
        return {
            "cell": self.name, "server": c.server, "policy": c.policy, "model": c.model,
            "fault": c.fault, "verdict": self.verdict, "trials": len(self.trials),
            "consistent": self.count("consistent"),
            "not_exercised": self.count("not-exercised"),
            "unavailable": self.count("unavailable"), "violations": len(self.violating),
            "fault_fired_trials": self.fired if c.fault != "none" else None,
            "rules": self.rules,
            "attributed_trial": head.get("attributed_trial"),
            "cause": head.get("cause"),
            "needs": head.get("needs"),
            "attribution": head.get("attribution", attribution),
            "reproduction": head.get("reproduction"),
            "reproduce": head.get("reproduce"),
            "mechanisms": mechanisms,
            "fault_notes": sorted({t.fault_note for t in self.trials if t.fault_note}),
            "violating_trials": [t.index for t in self.violating],
            "seconds": {"trials": round(sum(t.elapsed_s for t in self.trials), 1),
                        "attributions": round(self.attribution_seconds, 1)},
            "events": dict(sum((t.events for t in self.trials), Counter())),
        }


def _mechanism(trial: TrialResult) -> str:
    """The trial's mechanism, with "acknowledged, then unavailable" for that case."""
    text = trial.mechanism
    if trial.unavailable_after_ack:
        text = text.replace("availability:", "acknowledged, then unavailable:", 1)
    return text


def _lost(trial: TrialResult) -> str | None:
    """Which acknowledged entries the recovery lacks: "k of F" (None when no durability loss)."""
    v = trial.recovery
    if v.k is None or v.frontier is None or v.k >= v.frontier:
        return None
    return f"recovered S({v.k}), frontier F={v.frontier}: {v.frontier - v.k} entries lost"


def _case(trial: TrialResult, rule: str) -> str:
    return "acknowledged, then unavailable" if rule == "availability" \
        and trial.unavailable_after_ack else rule


def _timed_attribution(config: VerifyConfig, trial: TrialResult, repeats: int
                       ) -> tuple[TrialResult, float]:
    """A trial attributed in a worker, with how long that took there."""
    started = time.monotonic()
    return _runner.worker_attribution(config, trial, repeats), time.monotonic() - started


def _progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="trials per cell (default 8)")
    p.add_argument("--out", type=Path, default=Path("reports"),
                   help="where findings-redis.md/.json and findings/ go (default reports)")
    p.add_argument("--workers", type=int, default=6,
                   help="forked trial workers (default 6: everysec trials mostly wait)")
    p.add_argument("--ops", type=int, default=200, help="writes per trial (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3,
                   help="re-runs per attribution variant (default 3)")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--faults", default=",".join(FAULTS))
    p.add_argument("--merge", action="store_true",
                   help="run only the cells asked (e.g. --models ext4,xfs,btrfs) and merge them "
                   "into the existing findings-redis.json: its other cells are kept")
    p.add_argument("--cells", default="",
                   help="with --merge: only these cell keys (S-P-M-F, comma-separated), e.g. "
                   "the timing-dependent ones again with more trials")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite findings-redis.md from findings-redis.json (no trials)")
    p.add_argument("--previous", type=Path, default=None,
                   help="an earlier findings-redis.json: the page gets a table of the cells "
                   "whose verdict or cause changed")
    p.add_argument("--note", default="",
                   help="a sentence on the settings of this run (e.g. why fewer trials)")
    p.add_argument("--why", default="",
                   help="with --merge: why the cells are re-run (e.g. a model fixed); the page "
                   "lists each re-run cell whose verdict or mechanisms changed, with it")
    args = p.parse_args(argv)
    out: Path = args.out.absolute()  # a FUSE loop may change this process's cwd
    if args.render_only:
        data = json.loads((out / "findings-redis.json").read_text())
        if args.previous is not None:
            data["previous"] = _previous(args.previous)
        if args.note:
            data["settings_note"] = args.note
        write_atomic(out / "findings-redis.json", json.dumps(data, indent=1, default=str) + "\n")
        write_atomic(out / "findings-redis.md", render_markdown(data, _explore_doc(out)))
        return 0
    started = time.monotonic()
    only = {key for key in args.cells.split(",") if key}
    if only and not args.merge:
        p.error("--cells: only with --merge")
    if only:
        known = {f"{s}-{pol}-{m}-{f}" for s in args.servers.split(",")
                 for pol in args.policies.split(",") for m in (*MODELS, *KERNEL_MODELS)
                 for f in FAULTS}
        unknown = sorted(only - known)
        if unknown:
            p.error(f"--cells: not a cell key S-P-M-F: {unknown[0]}")
        args.models = ",".join((*MODELS, *KERNEL_MODELS))  # the cells pick

    servers: dict[str, dict[str, Any]] = {}
    cells: list[Cell] = []
    for server in args.servers.split(","):
        try:
            check_environment(VerifyConfig(server=server, model="power-ext4"))
            info = _environment.server_identity(VerifyConfig(server=server))
            servers[server] = {"name": info.name, "version": info.version}
        except VerifyEnvironmentError as exc:
            servers[server] = {"skipped": str(exc)}
            _progress(f"skipping server {server}: {exc}")
            continue
        for policy in args.policies.split(","):
            for model in args.models.split(","):
                for fault in args.faults.split(","):
                    if model in KERNEL_MODELS and fault not in KERNEL_FAULTS:
                        continue  # the other faults act on syscalls, through the SimDisk only
                    if only and f"{server}-{policy}-{model}-{fault}" not in only:
                        continue
                    cells.append(Cell(VerifyConfig(
                        server=server, policy=policy, model=model, fault=fault,
                        trials=args.trials, ops=args.ops, seed=args.seed)))

    # Longest first (everysec trials take seconds), so the pool ends together.
    jobs = [(cell, index) for cell in sorted(cells, key=lambda c: c.config.policy != "everysec")
            for index in range(args.trials)]
    total = len(jobs)
    pending: dict[Future[Any], tuple[Cell, bool]] = {}
    trials_done = attributions = 0
    trial_seconds = 0.0
    pool = _runner.worker_pool(args.workers)
    try:
        for cell, index in jobs:
            pending[pool.submit(_runner.worker_trial, cell.config, index)] = (cell, False)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                cell, is_attribution = pending.pop(future)
                if is_attribution:
                    trial, seconds = future.result()
                    cell.attribution_seconds += seconds
                    cell.attributed[_mechanism(trial)] = trial
                    attributions += 1
                    cause = trial.attribution.summary() if trial.attribution else "?"
                    _progress(f"[{time.monotonic() - started:6.0f}s] attributed {cell.name} "
                              f"trial {trial.index}: {cause}")
                    continue
                trial = future.result()
                cell.trials.append(trial)
                trials_done += 1
                trial_seconds += trial.elapsed_s
                if len(cell.trials) == args.trials:
                    line = f"{cell.name}: {cell.verdict}"
                    if cell.violating:
                        firsts = [trials[0] for trials in cell.mechanisms.values()]
                        line += (f" ({', '.join(cell.rules)}; attributing trial(s) "
                                 f"{', '.join(str(t.index) for t in firsts)})")
                        for first in firsts:
                            pending[pool.submit(_timed_attribution, cell.config, first,
                                                args.repeats)] = (cell, True)
                    _progress(f"[{time.monotonic() - started:6.0f}s] {trials_done}/{total} "
                              f"{line}")
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    trials_elapsed = time.monotonic() - started

    # One reproduction per violating cell, named by cell.
    findings_dir = out / "findings"
    findings_dir.mkdir(parents=True, exist_ok=True)
    from harness.cli._verify import _write_findings

    written_now: set[str] = set()
    for cell in cells:
        for number, (mechanism, trials) in enumerate(cell.mechanisms.items()):
            first = cell.attributed.get(mechanism, trials[0])
            # Each mechanism's reproduction file: the cell key, then -2, -3 for the others.
            stem = cell.name if number == 0 else f"{cell.name}-{number + 1}"
            found = servers[cell.config.server]
            result = VerifyResult(cell.config, found["version"], [first], 0.0,
                                  server_name=found["name"], workers=args.workers)
            report = verify_report(result, run_id=f"findings matrix {cell.name}")
            written = _write_findings(findings_dir, report, name=stem, first_only=True)
            if written:
                cell.reproductions[mechanism] = os.path.relpath(written[0], out.parent)
                written_now.add(written[0].name)
    # Reproductions of earlier runs of these cells that this run did not write again go.
    names = tuple(f"{cell.name}" for cell in cells)
    for old in findings_dir.glob("*.json"):
        if old.name not in written_now and old.stem.split("--")[0].startswith(names) \
                and not old.name.startswith("explore-"):
            old.unlink()
            old.with_suffix(".html").unlink(missing_ok=True)

    elapsed = time.monotonic() - started
    command = " ".join([COMMAND, "--trials", str(args.trials), "--out", str(args.out), *(
        f"--{name} {getattr(args, name)}" for name, default in (
            ("servers", ",".join(SERVERS)), ("policies", ",".join(POLICIES)),
            ("models", ",".join(MODELS)), ("faults", ",".join(FAULTS)),
            ("repeats", 3), ("ops", 200), ("seed", 0))
        if getattr(args, name) != default)])
    if only:
        command = command.replace(f" --models {args.models}", "") + f" --cells {args.cells}"
    if args.merge:
        data = _merge(json.loads((out / "findings-redis.json").read_text()), cells, servers, {
            "command": command + " --merge",
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cells": len(cells), "trials_per_cell": args.trials, "trials": trials_done,
            "attributions": attributions, "elapsed_s": round(elapsed, 1),
            "trials_elapsed_s": round(trials_elapsed, 1), "workers": args.workers,
            "trials_per_s": round(trials_done / trials_elapsed, 2) if trials_elapsed else None,
            "note": args.note, "why": args.why})
        write_atomic(out / "findings-redis.json", json.dumps(data, indent=1, default=str) + "\n")
        write_atomic(out / "findings-redis.md", render_markdown(data, _explore_doc(out)))
        _progress(f"{len(cells)} cells merged, {trials_done} trials + {attributions} "
                  f"attribution(s) in {elapsed:.0f}s: {out / 'findings-redis.md'}")
        return 0
    data = {
        "command": command,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seed": args.seed, "trials_per_cell": args.trials, "ops": args.ops,
        "workers": args.workers, "attribution_repeats": args.repeats,
        "servers": servers,
        "elapsed_s": round(elapsed, 1),
        "trials_elapsed_s": round(trials_elapsed, 1),
        "trials": trials_done, "attributions": attributions,
        "trials_per_s": round(trials_done / trials_elapsed, 2) if trials_elapsed else None,
        "trial_seconds_total": round(trial_seconds, 1),
        "summary": _summary(cells),
        "cells": [c.summary() for c in cells],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "findings-redis.json", json.dumps(data, indent=1, default=str) + "\n")
    write_atomic(out / "findings-redis.md", render_markdown(data, _explore_doc(out)))
    _progress(f"{len(cells)} cells, {trials_done} trials + {attributions} attribution(s) in "
              f"{elapsed:.0f}s: {out / 'findings-redis.md'}")
    return 0


def _merge(data: dict[str, Any], cells: list[Cell], servers: dict[str, dict[str, Any]],
           run: dict[str, Any]) -> dict[str, Any]:
    """`data` (an earlier findings-redis.json) with `cells` put in (a cell of the same key
    replaced), in matrix order, its summary counted again and `run` listed under "merged"."""
    by_key = {c["cell"]: c for c in data["cells"]}
    changed = []
    for cell in cells:
        new = cell.summary()
        old = by_key.get(cell.name)
        if old is not None and _outcome(old) != _outcome(new):
            changed.append({"cell": cell.name, "before": _outcome(old), "now": _outcome(new)})
        by_key[cell.name] = new
    run = {**run, "changed": changed}
    for server, info in servers.items():
        data["servers"].setdefault(server, info)
    order = {name: i for i, name in enumerate((*SERVERS, *POLICIES, *MODELS, *KERNEL_MODELS,
                                               *FAULTS))}
    data["cells"] = sorted(by_key.values(), key=lambda c: tuple(
        order.get(c[k], len(order)) for k in ("server", "policy", "model", "fault")))
    summary: dict[str, Counter[str]] = {}
    for c in data["cells"]:
        summary.setdefault(c["server"], Counter())[c["verdict"]] += 1
    data["summary"] = {server: dict(counts) for server, counts in summary.items()}
    data["merged"] = [m for m in data.get("merged", []) if m["command"] != run["command"]] \
        + [run]
    return data


def _outcome(cell: dict[str, Any]) -> dict[str, Any]:
    """What a re-run of a cell is compared on: its verdict and its mechanisms (each with the
    trials that showed it out of how many)."""
    return {"verdict": cell["verdict"], "trials": cell["trials"],
            "violations": cell.get("violations", 0),
            "mechanisms": sorted(m["mechanism"] for m in cell.get("mechanisms") or [])}


def _outcome_text(outcome: dict[str, Any]) -> str:
    head = f"{outcome['verdict']} ({outcome['violations']}/{outcome['trials']})" \
        if outcome["verdict"] in ("violation", "unavailable") \
        else f"{outcome['verdict']} ({outcome['trials']} trials)"
    return head + "".join(f"<br>- {m}" for m in outcome["mechanisms"])


def _merge_changes(run: dict[str, Any]) -> list[str]:
    """The table of a merged run's cells whose verdict or mechanisms changed, and why."""
    if "changed" not in run:
        return []  # merged before changes were recorded
    head = (f"The run merged in at {run['generated']} ({run['trials_per_cell']} trials per cell; "
            f"its command is at the top of the page): {len(run['changed'])} of "
            f"{run['cells']} cells changed their verdict or mechanisms"
            + (f". Why they were re-run: {run['why']}" if run.get("why") else "") + ".")
    rows = [f"| [`{c['cell']}`](#{c['cell']}) | {_outcome_text(c['before'])} | "
            f"{_outcome_text(c['now'])} | {_change_why(c['before'], c['now'])} |"
            for c in run.get("changed", [])]
    return [head, "", "| cell | before | now | what changed |", "|---|---|---|---|", *rows, ""] \
        if rows else [head, ""]


def _change_why(before: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between two outcomes of a cell, from its mechanisms: a zero hole gone or
    kept, a zero-filled end new, else which trials broke a rule (timing, run to run)."""
    def has(outcome: dict[str, Any], effect: str) -> bool:
        return any(effect in m for m in outcome["mechanisms"])

    why = []
    if has(before, "has zeros in") and not has(now, "has zeros in"):
        why.append("no zero hole any more (a later write made the page dirty again and Linux "
                   "writes it whole)")
    if has(now, "zero-filled at its end") and not has(before, "zero-filled at its end"):
        why.append("the file now ends in the dropped pages' zeros")
    if has(before, "has zeros in") and has(now, "has zeros in"):
        why.append("a zero hole still, now ending at a page boundary")
    if not why or (before["verdict"] in ("violation", "unavailable")) != (
            now["verdict"] in ("violation", "unavailable")):
        why.append(f"{before['violations']} -> {now['violations']} violating trials of "
                   f"{now['trials']}: the same seeded trials, their timing differs run to run")
    return "; ".join(why)


def _previous(path: Path) -> dict[str, Any]:
    """What the page compares against: an earlier findings-redis.json, reduced to its cells'
    verdicts and causes."""
    old = json.loads(path.read_text())
    return {"generated": old.get("generated"), "command": old.get("command"),
            "cells": {c["cell"]: {k: c.get(k) for k in ("server", "policy", "model", "fault",
                                                         "verdict", "rules", "cause", "trials",
                                                         "violations", "needs")}
                      for c in old["cells"]}}


def _summary(cells: list[Cell]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for cell in cells:
        out.setdefault(cell.config.server, Counter())[cell.verdict] += 1
    return {server: dict(counts) for server, counts in out.items()}


# -------------------------------------------------------------------------------------------
# The markdown page

_SHORT: Final = {"holds": "holds", "not exercised": "not exercised",
                 "unavailable": "**unavailable after ack**", "violation": "**violation**"}
MODEL_TITLES: Final = {
    "process": "process (the kernel survives)",
    "power-ext4": "power-ext4 (ext4's journal, calibrated)",
    "power-xfs": "power-xfs (xfs, calibrated)",
    "power-btrfs": "power-btrfs (btrfs's per-inode log, calibrated)",
    "power-posix-metadata": "power-posix-metadata (the POSIX minimum)",
    "power-eager-metadata": "power-eager-metadata (every directory operation durable at once)",
    "power": "power (before the calibration)",
    "ext4": "ext4 (the kernel's own ext4: the server on a recorded loop device, the crash "
            "image mounted by Linux)",
    "xfs": "xfs (the kernel's own xfs, as ext4)",
    "btrfs": "btrfs (the kernel's own btrfs, as ext4)",
}
ISSUE: Final = "https://github.com/redis/redis/issues/"
PULL: Final = "https://github.com/redis/redis/pull/"
UPSTREAM: Final = {
    "#10737": f"[redis#10737]({PULL}10737)", "#3487": f"[redis#3487]({ISSUE}3487)",
    "#8347": f"[redis#8347]({PULL}8347)", "#8111": f"[redis#8111]({ISSUE}8111)",
    "#8419": f"[redis#8419]({PULL}8419)", "#11713": f"[redis#11713]({PULL}11713)",
}


def _link(text: str) -> str:
    """`text` with every redis#N it names as a link."""
    for short, link in UPSTREAM.items():
        text = text.replace(f"redis{short}", link)
    return text


def _cell_text(cell: dict[str, Any]) -> str:
    verdict = cell["verdict"]
    if verdict in ("violation", "unavailable"):
        rules = "/".join(cell["rules"])
        more = f", {len(cell['mechanisms'])} mechanisms" if len(cell["mechanisms"]) > 1 else ""
        return f"[**{rules}**](#{cell['cell']}) ({cell['violations']}/{cell['trials']}{more})"
    text = _SHORT[verdict]
    if verdict == "holds":
        text += f" {cell['consistent'] + cell['unavailable']}/{cell['trials']}"
    if cell["fault_fired_trials"] is not None:
        text += f", fired {cell['fault_fired_trials']}/{cell['trials']}"
    return text


def _models_used(data: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c["model"] for c in data["cells"]))


def _explore_doc(out: Path) -> dict[str, Any] | None:
    """findings-explore.json beside the page (the crash-state evidence), if there is one."""
    try:
        doc: dict[str, Any] = json.loads((out / "findings-explore.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def render_markdown(data: dict[str, Any], explore: dict[str, Any] | None = None) -> str:
    servers = data["servers"]
    names = ", ".join(f"{i['name']} {i['version']}" for i in servers.values() if "name" in i)
    models = _models_used(data)
    lines = [
        f"# Findings: {names} under crashes and faults",
        "",
        f"Produced by one command: `{data['command']}`",
        "",
        f"Generated {data['generated']} on a shared 2-core machine: "
        f"{data['trials']} trials and {data['attributions']} cause attributions in "
        f"{data['elapsed_s']:.0f} s ({data['trials_per_s']} trials/s over "
        f"{data['workers']} workers), {data['trials_per_cell']} trials per cell, "
        f"{data['ops']} writes per trial, seed {data['seed']}, attribution variants re-run up "
        f"to {data['attribution_repeats']} times.",
        "",
    ]
    if data.get("settings_note"):
        lines += [data["settings_note"], ""]
    for run in data.get("merged", []):
        lines += [f"Cells merged in by `{run['command']}` (generated {run['generated']}): "
                  f"{run['cells']} cells, {run['trials']} trials and {run['attributions']} "
                  f"cause attributions in {run['elapsed_s']:.0f} s ({run['trials_per_s']} "
                  f"trials/s over {run['workers']} workers), {run['trials_per_cell']} trials "
                  "per cell." + (f" {run['note']}" if run.get("note") else "")
                  + (f" Cells whose verdict or mechanisms changed: {len(run['changed'])} "
                     "(see [Changes made by re-run cells](#changes-made-by-re-run-cells))."
                     if "changed" in run else ""), ""]
    lines += [
        "Each cell is `aofcrash verify --server S --policy P --model M --fault F --ops "
        f"{data['ops']} --seed {data['seed']} --trials {data['trials_per_cell']}` and its key "
        "`S-P-M-F` is its anchor on this page (stable from run to run). A trial is a seeded "
        "pipelined workload, SIGKILL mid-flight (under power models the FUSE SimDisk is "
        "crashed too), restart, check against the contract ([docs/contract.md]"
        "(../docs/contract.md)), second crash, check stability.",
        "",
        "- `holds n/N, fired f/N`: no rule broke; n trials checked more than prefix "
        "consistency, the fault fired in f trials.",
        "- `not exercised`: no trial had an entry that had to survive.",
        "- **rule** (v/N): v of N trials broke the rule; the link goes to the cell's "
        "mechanisms (what the crash image lacks or resurrects against what the server had "
        "written, and how it recovered), each with its cause (the minimal sets of ingredients "
        "that are enough for it: the fault, strict metadata against the next weaker calibrated "
        "model, the rewrite; every subset tried) and its reproduction.",
        "",
        "Faults: " + "; ".join(f"`{k}` = {v}" for k, v in FAULT_TITLES.items()) + ".",
        "",
        "Models: " + "; ".join(f"`{m}`: {MODEL_TITLES.get(m, m)}" for m in models) + ". "
        "Which filesystem each model stands for and how it was calibrated: "
        "[docs/contract.md](../docs/contract.md#persistence-models). A finding seen only "
        "under `power-posix-metadata` is one no filesystem measured here produces.",
        "",
        "Every crash state of each binary (recorded workloads, every crash point x every legal "
        "image, recovered by the binary itself: `aofcrash explore --server`) is in "
        "[findings-explore.md](findings-explore.md).",
        "",
        "A reproduction's page is rendered from its JSON, not committed: `aofcrash report "
        "reports/findings/<cell>.json` writes `reports/findings/<cell>.html` beside it.",
        "",
    ]
    lines += ["## In short, per server", ""]
    for server, info in servers.items():
        if "skipped" in info:
            lines.append(f"- `{server}`: not run: {info['skipped']}")
            continue
        lines.append(f"- **{info['name']} {info['version']}** (`{server}`): "
                     + _link(_server_summary(server, data["cells"]))
                     + _kernel_summary(server, data["cells"], explore))
    lines.append("")
    lines.append("## Summary (cells per verdict)")
    lines.append("")
    lines.append("| server | holds | violation | unavailable after ack | not exercised |")
    lines.append("|---|---|---|---|---|")
    for server, counts in data["summary"].items():
        lines.append(f"| {server} | {counts.get('holds', 0)} | {counts.get('violation', 0)} | "
                     f"{counts.get('unavailable', 0)} | {counts.get('not exercised', 0)} |")
    lines.append("")
    faults = list(dict.fromkeys(c["fault"] for c in data["cells"]))
    for server in servers:
        rows = [c for c in data["cells"] if c["server"] == server]
        if not rows:
            continue
        info = servers[server]
        lines.append(f"## {info['name']} {info['version']} (`{server}`)")
        lines.append("")
        lines.append("| policy | model | " + " | ".join(FAULT_TITLES.get(f, f) for f in faults)
                     + " |")
        lines.append("|---|---|" + "---|" * len(faults))
        keys = list(dict.fromkeys((c["policy"], c["model"]) for c in rows))
        for policy, model in keys:
            by_fault = {c["fault"]: c for c in rows
                        if c["policy"] == policy and c["model"] == model}
            cells = [_cell_text(by_fault[f]) if f in by_fault
                     else "n/a" if model in KERNEL_MODELS else "" for f in faults]
            lines.append(f"| {policy} | {model} | " + " | ".join(cells) + " |")
        lines.append("")
    violating = [c for c in data["cells"] if c["verdict"] in ("violation", "unavailable")]
    if violating:
        lines += ["## Violations, by cell and mechanism", ""]
        for cell in violating:
            lines.append(f'<a id="{cell["cell"]}"></a>')
            lines.append(f"### `{cell['cell']}`: {', '.join(cell['rules'])}")
            lines.append("")
            lines.append(f"{cell['violations']} of {cell['trials']} trials "
                         f"(trials {', '.join(map(str, cell['violating_trials']))})"
                         + (f"; the fault fired in {cell['fault_fired_trials']}"
                            if cell["fault_fired_trials"] is not None else "") + ".")
            lines.append("")
            for number, m in enumerate(cell["mechanisms"], 1):
                lines.append(f"{number}. **{m['mechanism']}** (trials "
                             f"{', '.join(map(str, m['trials']))})")
                if m.get("lost"):
                    lines.append(f"   - {m['lost']}")
                if m.get("cause"):
                    lines.append(f"   - cause (trial {m['attributed_trial']}): {m['cause']}")
                if m.get("reproduction"):
                    link = f"findings/{Path(m['reproduction']).name}"  # next to this page
                    lines.append(f"   - reproduction: [{m['reproduction']}]({link}); re-run: "
                                 f"`{m['reproduce']}`")
            for note in cell.get("fault_notes") or []:
                lines.append(f"- fault: {note}")
            if cell["model"] == "power-posix-metadata":
                lines.append(f"- {_posix_note(cell, data['cells'])}")
            lines.append("")
    lines += _predicted(data, explore)
    known = _known_upstream(data["cells"])
    if known:
        lines += ["## What explains them (upstream issues and fixes that match)", ""]
        lines += [f"- {_link(text)}" for text in known]
        lines.append("")
    if data.get("previous"):
        lines += _changes(data)
    merged_changes = [line for run in data.get("merged", []) for line in _merge_changes(run)]
    if merged_changes:
        lines += ["## Changes made by re-run cells", "", *merged_changes]
    lines += [
        "## Notes",
        "",
        "Only what was observed in this run is written here. A violation needs a rule of the "
        "contract to break in a real trial. A cause is a minimal set of ingredients with which "
        "the same trial broke the rule the same way again (what its image lacks or resurrects "
        "a part of the trial's); a violation that did not recur unchanged in its re-runs is "
        "\"timing-dependent\" and is not attributed.",
        "",
    ]
    return "\n".join(lines)


def _posix_note(cell: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """Whether a POSIX-minimum cell's violation is seen under another model of the same
    server, policy and fault, and what the kernel's filesystems gave (faults none and
    fsync-error)."""
    same = [c for c in cells if (c["server"], c["policy"], c["fault"]) == (
        cell["server"], cell["policy"], cell["fault"]) and c["model"] != cell["model"]]
    rules = set(cell["rules"])
    also = [c for c in same if c["verdict"] in ("violation", "unavailable")
            and rules & set(c["rules"])]
    kernel = [c for c in same if c["model"] in KERNEL_MODELS]
    if kernel:
        real = "the kernel's " + ", ".join(
            f"{c['model']} " + (f"**{'/'.join(c['rules'])}** ({c['violations']}/{c['trials']})"
                                if c in also else f"holds ({c['trials']} trials)")
            for c in kernel)
    elif cell["fault"] != "none":
        real = ("no kernel run (the kernel's filesystems take only fsync-error, as a media "
                "error), so observed on no real filesystem here")
    else:
        real = "no kernel column in this run"
    if not [c for c in also if c["model"] not in KERNEL_MODELS]:
        head = "**Seen only under the POSIX minimum** among the models (" + ", ".join(
            f"{c['model']} {_SHORT[c['verdict']].strip('*')}" for c in same
            if c["model"] not in KERNEL_MODELS) + ")"
    else:
        head = "Also under " + ", ".join(
            f"[`{c['cell']}`](#{c['cell']})" for c in also if c["model"] not in KERNEL_MODELS)
    return f"{head}; real filesystems: {real}."


def _violations(cells: list[dict[str, Any]], server: str) -> list[dict[str, Any]]:
    return [c for c in cells if c["server"] == server
            and c["verdict"] in ("violation", "unavailable")]


def _kernel_summary(server: str, cells: list[dict[str, Any]],
                    explore: dict[str, Any] | None) -> str:
    """What the kernel's own filesystems gave for `server`: its verify cells here and its
    crash states in findings-explore.md (computed from both, nothing curated)."""
    kernel = [c for c in cells if c["server"] == server and c["model"] in KERNEL_MODELS]
    out = []
    if kernel:
        bad = [c for c in kernel if c["verdict"] in ("violation", "unavailable")]
        out.append(f"On the kernel's own {', '.join(dict.fromkeys(c['model'] for c in kernel))}"
                   f" (verify, faults {', '.join(dict.fromkeys(c['fault'] for c in kernel))}): "
                   f"{len(kernel) - len(bad)} of {len(kernel)} cells hold"
                   f" ({sum(c['trials'] for c in kernel)} trials, one drawn crash image each)"
                   + ("; " + ", ".join(f"[`{c['cell']}`](#{c['cell']})" for c in bad)
                      if bad else "") + ".")
    rows = [r for r in (explore or {}).get("rows", []) if r["server"] == server]
    seen: dict[str, list[str]] = {}
    states: dict[str, int] = {}
    for r in rows:
        for fs in KERNEL_MODELS:
            cell = r["cells"].get(fs)
            if cell is None:
                continue
            states[fs] = states.get(fs, 0) + cell["states"]
            if cell["violations"]:
                seen.setdefault(fs, []).append(
                    f"[{r['key']}](findings-explore.md#{r['key'].replace('.', '')}): "
                    + ", ".join(sorted(cell["violations"])))
    if states:
        out.append("Every crash state on the kernel's filesystems (findings-explore.md): "
                   + "; ".join(f"{fs} " + (f"**violated** in {', '.join(seen[fs])}"
                                           if fs in seen else "holds")
                               + f" ({states[fs]} states)" for fs in states)
                   + (". The violations: a file at its new size over zeros after a power "
                      "loss inside an fsync, which the server refuses (\"Bad file format\")"
                      if any("availability" in x for v in seen.values() for x in v) else "")
                   + ".")
    zeros = [r["key"] for r in rows if "image_kinds" in r and any(
        m["model"] == "power-ext4" and "availability" in m["rules"] and "zeros" in m["mechanism"]
        for m in r["mechanisms"])]
    if zeros:
        out.append("The calibrated power-ext4 model, with its size-before-data images, refuses "
                   "the same way in " + ", ".join(
                       f"[{k}](findings-explore.md#{k.replace('.', '')})" for k in zeros)
                   + " (it allows every such crash point; one kernel recording shows some).")
    return (" " + " ".join(out)) if out else ""


def _server_summary(server: str, cells: list[dict[str, Any]]) -> str:
    """Why (the curated notes, checked against this run's cells), then the cells: what the
    server loses under the calibrated models, and how many cells under the POSIX minimum."""
    found = _violations(cells, server)
    if not found:
        return "no violation in any cell of this run."
    real: dict[str, set[str]] = {}
    posix = 0
    for c in found:
        if c["model"] == "power-posix-metadata":
            posix += 1
        else:
            real.setdefault(FAULT_TITLES.get(c["fault"], c["fault"]), set()).add(
                f"{c['model']} {c['policy']}")
    text = SERVER_NOTES.get(server, "")
    cells_text = ("Cells with a violation under the calibrated models and process: "
                  + ("; ".join(f"{fault} ({', '.join(sorted(where))})"
                               for fault, where in real.items()) if real else "none")
                  + f"; under the POSIX minimum: {posix} cell(s).")
    return (text + " " if text else "") + cells_text


# Why, per server, from the Redis source and the trackers (checked against the cells above
# when the page was last regenerated; each claim names what it rests on).
_POSIX_6X: Final = (
    "Under the POSIX minimum only, with or without faults: appendonly.aof is created, and a "
    "completed rewrite renames its new file over it, with no fsync of the directory, so the "
    "image lacks appendonly.aof or holds the old one without the writes acknowledged after "
    "the rename (that one needs the completed rewrite AND strict metadata; redis#3487). "
    "Under power-ext4 and power-btrfs the next fsync of the file makes the create or the "
    "rename durable (as the kernel's ext4, xfs and btrfs do: FACTS), and nothing is lost "
    "without a fault. 6.x never got the directory fsync that redis#10737 added in 7.0.")
_POSIX_7X: Final = (
    "Under the POSIX minimum only: appendonlydir is made and the base file moved into it "
    "with no fsync of the data directory, so the image lacks the base (the server refuses "
    "\"Unable to obtain the AOF file\", also on the next start) or the whole of "
    "appendonlydir (it starts empty). redis#10737 fsyncs appendonlydir after the manifest, "
    "not its parent. Under power-ext4 and power-btrfs nothing is lost without a fault.")
_EIO_ZEROS: Final = (
    "Linux marks the pages of a failed fsync clean and writes them again only when a later "
    "write lands in them (the EIO zero-fill of docs/contract.md), so after a power loss the "
    "pages no later write touched read as zeros, on every model")
SERVER_NOTES: dict[str, str] = {
    "6.0": _POSIX_6X + " EIO on fsync: 6.0.9 ignores it and keeps acknowledging (fixed in 6.2 "
    "by redis#8347 for always and redis#8419 for everysec). " + _EIO_ZEROS + ". Its next "
    "appends make the last dropped page dirty again, the pages before it stay dropped: under "
    "everysec a second of appends (several KiB) crosses a page boundary, and the image has a "
    "hole of zeros ending at a page boundary with acknowledged writes after it, which the "
    "next start refuses \"Bad file format\" (acknowledged, then unavailable; every everysec "
    "trial here). Under always a failed fsync covers one pipelined batch (hundreds of "
    "bytes): only a batch across a page boundary leaves that hole (3 of 16 further trials, "
    "`aofcrash verify --server 6.0 --model power-ext4 --fault fsync-error --trials 16 "
    "--first-trial 2`), otherwise a power loss before the next fsync cuts "
    "the file short and acknowledged writes are lost. Crash states (findings-explore.md): under "
    "`everysec`, every power model, a key comes back without its TTL (6.0 writes SET with an "
    "expiry as SET + PEXPIREAT, two commands; 6.2 writes one SET ... PXAT); under `always` "
    "with writes paced after a rewrite, 2 states under power-ext4 and power-btrfs lose an "
    "acknowledged write (6.0 renames the rewritten file over appendonly.aof before it fsyncs "
    "the tail the parent appended; the ext4 model leaves out ext4's auto_da_alloc, which "
    "flushes such a file at the next commit).",
    "6.2": _POSIX_6X + " EIO on fsync: under always 6.2.14 exits (redis#8347) and holds; "
    "under everysec it refuses writes (MISCONF, redis#8419; in the trials here until the "
    "crash, seconds later), but the writes it acknowledged before the failed fsync are in "
    "the dropped pages. " + _EIO_ZEROS + "; the refused writes land in none of them, and "
    "the file's length reaches the disk over them: the AOF ends in zeros, which the next "
    "start refuses \"Bad file format\" (acknowledged, then unavailable), or it is cut "
    "short (acknowledged writes lost). A hole with data after it would need appends into "
    "later pages, which the refused writes do not make.",
    "7.0": _POSIX_7X + " EIO on fsync under everysec: as 6.2 (the incr file ends in the "
    "zeros of the dropped pages): acknowledged writes lost or acknowledged, then unavailable. "
    "EIO on the old incr's fsync during a rewrite (everysec): 7.0.15 ignores it (no "
    "MISCONF, redis#11713, fixed in 7.2); nothing writes the old incr again, so its dropped "
    "pages stay zeros at its end and the next start refuses them (power-ext4 and "
    "power-btrfs). Crash states "
    "(findings-explore.md), `everysec`, every power model: after a rewrite the old incr file "
    "can be cut mid-command while the manifest lists a newer one: the server refuses \"the "
    "truncated file is not the last file\" for one start (the next one comes up).",
    "8.2": _POSIX_7X + " EIO on fsync under everysec: as 7.0. EIO on the old incr's fsync "
    "during a rewrite: 8.2.3 notices it (writes refused with MISCONF: it carries redis#11713) "
    "yet the old incr's dropped pages are never written again and stay zeros at its end: "
    "acknowledged, then unavailable (power-ext4 here; the power-btrfs cell held in its 2 "
    "trials), as 7.0. The \"not the "
    "last file\" refusal of 7.0 too (findings-explore.md; in a few states also on the next "
    "start).",
    "valkey": _POSIX_7X + " EIO on fsync under everysec: as 7.0. EIO on the old incr's fsync "
    "during a rewrite: Valkey 9.1.2 notices it (MISCONF: it carries the fix of redis#11713) "
    "and still ends acknowledged, then unavailable (power-ext4 and power-btrfs), as 8.2. "
    "The \"not the last file\" "
    "refusal of 7.0 too, for one start (findings-explore.md).",
}


# What the upstream trackers and the binaries say, matched against observed cells only. Each
# entry was checked: the pull requests and issues on the Redis tracker, the log messages by
# `strings` on the binaries run here.
_DIR_FSYNC: Final = (
    "the 6.x single-file AOF is created (and a rewrite renamed over it) without an fsync of "
    "its directory: the loss needs strict metadata and goes away under the next weaker "
    "calibrated model. redis#10737 (merged 2022-05, \"Fsync directory while persisting AOF "
    "manifest, RDB file, and config file\") added that fsync to the 7.0 multi-part AOF: its "
    "log message \"Fail to fsync AOF directory\" is in the 7.0.15, 8.2.3 and Valkey 9.1.2 "
    "binaries and in neither 6.0.9 nor 6.2.14. The open redis#3487 reports the same window "
    "for the rename that ends a rewrite. On the kernel's ext4, xfs and btrfs the next fsync "
    "of the AOF commits the create or the rename (FACTS: measured), so nothing acknowledged "
    "is lost there")
_ALWAYS_FSYNC: Final = (
    "redis 6.0.9 ignores a failed fsync (`always` and `everysec`) and still acknowledges; "
    "Linux writes the failed pages again only where a later append lands, so after a power "
    "loss the pages before the last one are a hole of zeros ending at a page boundary (the "
    "EIO zero-fill of docs/contract.md): the next start refuses, or, when the power fails "
    "before the next fsync, acknowledged writes are lost. redis#8347 "
    "(merged 2021-01, \"Redis exit for fsync error when the AOF fsync policy is 'always'\", "
    "after redis#8111) makes the server exit instead under `always`, redis#8419 handles the "
    "`everysec` case; the message \"Can't persist AOF for fsync error when the AOF fsync "
    "policy is 'always'\" is in the 6.2.14, 7.0.15, 8.2.3 and Valkey binaries and not in "
    "6.0.9")
_EVERYSEC_FSYNC: Final = (
    "`everysec` + a failed background fsync: redis#8419 (merged 2021-03, \"Handle remaining "
    "fsync errors\") makes a failed bio fsync set `aof_bio_fsync_status` (writes are refused "
    "with MISCONF), and a later successful fsync sets it back to OK (none came in the "
    "violating trials here: every write after the first error was refused until the "
    "crash); nothing writes again "
    "what the failed fsync dropped (Linux marks those pages clean, and the refused writes "
    "land in none of them), so acknowledged writes can be lost on power loss, or the zeros "
    "the file ends in make the next start refuse. Its log "
    "message \"Fail to fsync the AOF file\" is in the 6.2.14, 7.0.15, 8.2.3 and Valkey "
    "binaries, not in 6.0.9, which ignores the error")
_POSIX_7X_UPSTREAM: Final = (
    "7.0, 8.2 and Valkey under the POSIX minimum: `appendonlydir` is made, and the base "
    "file written in the data directory is renamed into it, with no fsync of the data "
    "directory (traced: mkdir appendonlydir, temp-rewriteaof-PID.aof fsynced and renamed to "
    "appendonlydir/appendonly.aof.1.base.aof, manifest renamed, fsync of appendonlydir only); "
    "the image lacks the base (\"Unable to obtain the AOF file\") or the whole directory. "
    "redis#10737's directory fsync is of appendonlydir, not of its parent. No filesystem "
    "measured here is that weak")
_INCR_FSYNC: Final = (
    "EIO on the fsync of the old incr file during a rewrite: Redis 7.0 hands the old incr to "
    "a background job that fsyncs and closes it and ignores the result (7.0.5-7.0.15); "
    "redis#11713 (in 7.2) makes that job set the fsync error status. A fix that only sets the "
    "status still does not write again what the failed fsync dropped: nothing appends to "
    "the old incr again, so its dropped pages stay zeros at its end")


def _known_upstream(cells: list[dict[str, Any]]) -> list[str]:
    def needs(cell: dict[str, Any], what: str) -> bool:
        return any(any(label.startswith(what) for group in (m.get("minimal_sufficient_sets")
                                                              or []) for label in group)
                   for m in cell.get("mechanisms", []))

    matches: dict[str, list[str]] = {_DIR_FSYNC: [], _POSIX_7X_UPSTREAM: [], _ALWAYS_FSYNC: [],
                                     _EVERYSEC_FSYNC: [], _INCR_FSYNC: []}
    for cell in cells:
        if cell["verdict"] not in ("violation", "unavailable"):
            continue
        ref = f"[`{cell['cell']}`](#{cell['cell']})"
        if needs(cell, "strict metadata") and cell["model"] == "power-posix-metadata":
            matches[_DIR_FSYNC if cell["server"] in ("6.0", "6.2")
                    else _POSIX_7X_UPSTREAM].append(ref)
        if cell["fault"] == "fsync-error" and needs(cell, "fault"):
            if cell["server"] == "6.0":
                matches[_ALWAYS_FSYNC].append(ref)
            elif cell["policy"] == "everysec":
                matches[_EVERYSEC_FSYNC].append(ref)
        if cell["fault"] == "incr-fsync-error" and needs(cell, "fault"):
            matches[_INCR_FSYNC].append(ref)
    return [f"{text}. Cells: {', '.join(found)}." for text, found in matches.items() if found]


# The mechanisms the Redis source predicts: (name, servers, policies, faults, what the
# mechanism text contains, an ingredient its cause must name).
PREDICTED: Final = (
    ("create of appendonly.aof without a directory fsync (6.x)", ("6.0", "6.2"), POLICIES,
     None, "lacks appendonly.aof", "strict metadata"),
    ("rewrite's rename over appendonly.aof without a directory fsync (6.x; redis#3487)",
     ("6.0", "6.2"), POLICIES, None, "has an older appendonly.aof", "strict metadata"),
    ("failed fsync ignored, writes still acknowledged (6.0; fixed by redis#8347, redis#8419)",
     ("6.0",), POLICIES, ("fsync-error",), "", "fault"),
    ("writes acknowledged before a failed background fsync lost with its dropped pages "
     "(everysec; redis#8419 refuses only the writes after it)",
     ("6.2", "7.0", "8.2", "valkey"), ("everysec",), ("fsync-error",), "", "fault"),
    ("EIO on the old incr's fsync during a rewrite ignored (7.0.5-7.0.15; redis#11713)",
     ("7.0", "8.2", "valkey"), ("everysec",), ("incr-fsync-error",), "", "fault"),
)


def _explored(explore: dict[str, Any] | None, model: str, servers: tuple[str, ...],
              policies: tuple[str, ...], text: str) -> tuple[int, list[str]]:
    """Crash states of findings-explore.md under `model` for those servers and policies
    (fault-free runs): how many were checked, and the rows where a mechanism of that kind
    (a durability loss with its text; a kernel column has no image effects: any durability
    loss) was seen."""
    if explore is None:
        return 0, []
    states, seen = 0, []
    for row in explore["rows"]:
        cell = row["cells"].get(model)
        if row["server"] not in servers or row["policy"] not in policies or cell is None:
            continue
        states += cell["states"]
        for m in row["mechanisms"]:
            if m["model"] == model and "durability" in m["rules"] and (
                    model in KERNEL_MODELS or text in m["mechanism"]):
                seen.append(row["key"])
                break
    return states, seen


def _predicted(data: dict[str, Any], explore: dict[str, Any] | None = None) -> list[str]:
    """Each mechanism the Redis source predicts, per model: the cells where it was seen (with
    their anchors) or how many cells ran that could have shown it; for a fault-free mechanism
    also every crash state of findings-explore.md under that model."""
    models = [m for m in _models_used(data) if m != "process"]
    out = ["## Mechanisms the Redis source predicts, per model", "",
           "Seen: the cells (linked) with a mechanism of that kind whose cause names the "
           "ingredient; not seen: how many cells of those servers, policies and faults ran "
           "under that model without it. For a mechanism that needs no fault, \"explore\" "
           "adds every crash state of those servers and policies in "
           "[findings-explore.md](findings-explore.md) under that model (recorded workloads, "
           "a rewrite in each; a durability loss of that kind, on the kernel's filesystems any "
           "durability loss): the rows "
           "where it was seen, or that none of that many states showed it. `-`: no cell ran "
           "(the kernel's filesystems take no SimDisk fault).", "",
           "| mechanism | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, servers, policies, faults, text, ingredient in PREDICTED:
        row = []
        for model in models:
            ran = [c for c in data["cells"] if c["server"] in servers and c["model"] == model
                   and c["policy"] in policies and (faults is None or c["fault"] in faults)]
            seen = sorted({c["cell"] for c in ran for m in c.get("mechanisms", [])
                           if text in m["mechanism"] and any(
                               label.startswith(ingredient)
                               for group in (m.get("minimal_sufficient_sets") or [])
                               for label in group)})
            if seen:
                text_here = ", ".join(f"[`{k}`](#{k})" for k in seen)
            else:
                text_here = f"not seen ({len(ran)} cells)" if ran else "-"
            if faults is None:
                states, rows = _explored(explore, model, servers, policies, text)
                if rows:
                    text_here += "; explore: " + ", ".join(
                        f"[{k}](findings-explore.md#{k.replace('.', '')})" for k in rows)
                elif states:
                    text_here += f"; explore: not in {states} states"
            row.append(text_here)
        out.append(f"| {_link(name)} | " + " | ".join(row) + " |")
    out.append("")
    return out


def _changes(data: dict[str, Any]) -> list[str]:
    """The table of cells whose verdict or cause changed against the previous version."""
    previous: dict[str, dict[str, Any]] = data["previous"]["cells"]
    renamed = {"power": "power-ext4"}
    now = {c["cell"]: c for c in data["cells"]}
    rows: list[str] = []
    for key, old in sorted(previous.items()):
        new_key = "-".join(renamed.get(part, part) for part in [
            old["server"], old["policy"], old["model"], old["fault"]])
        new = now.get(new_key)
        if new is None:
            if old["verdict"] in ("violation", "unavailable"):
                rows.append(f"| `{key}` | {old['verdict']} | not run | "
                            f"{_why_gone(old, data)} |")
            continue
        old_v, new_v = old["verdict"], new["verdict"]
        bad = ("violation", "unavailable")
        old_kinds = {_kind(label) for label in old.get("needs") or []}
        new_sets = [{_kind(label) for label in group} for m in new["mechanisms"]
                    for group in (m.get("minimal_sufficient_sets") or [])]
        if (old_v in bad) == (new_v in bad) and (
                old_v not in bad or new_sets == [old_kinds] * len(new_sets)):
            continue  # same verdict class and, for a violation, the same single cause
        why = []
        if old["model"] != new["model"]:
            why.append("`power` is now the calibrated ext4 journal model (a create or rename "
                       "is durable with the next journal commit, as the kernel's ext4 does)")
        if old_v != new_v:
            why.append(f"verdict {old_v} -> {new_v}")
            if new_v == "holds" and old.get("violations"):
                why.append(f"before: {old['violations']} of {old['trials']} trials; now "
                           f"{new['trials']} trials (fewer: this run's settings)")
        old_cause = old.get("cause") or "-"
        new_cause = "; ".join(f"{m['mechanism']}: {m['cause'] or '-'}"
                              for m in new["mechanisms"]) or "-"
        if old_v in bad and new_v in bad:
            why.append("cause from every subset of the ingredients, per mechanism: "
                       + ("two or more mechanisms with different causes"
                          if len(new_sets) > 1 else "a different minimal set"))
        rows.append(f"| [`{new_key}`](#{new_key}) (was `{key}`) | {old_v}: {old_cause} | "
                    f"{new_v}: {new_cause} | {'; '.join(why)} |")
    new_cells = [k for k in now if k not in {
        "-".join(renamed.get(p, p) for p in [o["server"], o["policy"], o["model"], o["fault"]])
        for o in previous.values()}]
    out = ["## Changes against the previous version", "",
           f"Previous version: {data['previous']['generated']} "
           f"(`{data['previous']['command']}`). Cells whose verdict or cause changed, and why; "
           f"{len(new_cells)} cells are new in this run (new servers, models or fault "
           "columns) and are not listed.", "",
           "| cell | before | now | why |", "|---|---|---|---|", *rows, ""]
    return out


def _kind(label: str) -> str:
    """An ingredient label of either version as its kind: fault, metadata or rewrite."""
    if label.startswith("strict metadata"):
        return "metadata"
    if label.startswith("rewrite"):
        return "rewrite" if "killed child" not in label else "fault"
    return "fault"


def _why_gone(old: dict[str, Any], data: dict[str, Any]) -> str:
    if {"power": "power-ext4"}.get(old["model"], old["model"]) not in _models_used(data):
        return f"model {old['model']} not in this run's matrix"
    return "not in this run's matrix"


if __name__ == "__main__":
    sys.exit(main())
