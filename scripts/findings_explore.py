"""Exhaustive crash states of real binaries: ``explore --server`` over servers x policies.

For every server (6.0, 6.2, 7.0, 8.2, Valkey 9.1; a server that is not installed is skipped with a
note) and policy (always, everysec), one seeded 200-write workload with one BGREWRITEAOF is
recorded on a traced FUSE SimDisk and every crash point x every legal image of every model
(process, power-ext4, power-posix-metadata, power-eager-metadata) is recovered by the real binary
and checked. Cause attribution, one ingredient removed at a time:

* strict metadata: a violation under ``power-ext4`` or ``power-posix-metadata`` at a crash point
  where ``power-eager-metadata`` (every directory operation durable at once) holds needs the
  strict metadata model (a missing directory fsync), not the data path;
* the rewrite: the same workload without BGREWRITEAOF is explored again; a violation that
  disappears there needs the rewrite.

Writes ``<out>/findings-explore.json`` and ``<out>/findings-explore.md`` (temp + rename) and
one reproduction per violating cell under ``<out>/findings/explore-<server>-<policy>/``
(``aofcrash explore --server S --replay FILE`` re-runs it). ``scripts/findings.py`` calls
``run`` so one command produces every findings table.

Usage: .venv/bin/python scripts/findings_explore.py [--out reports] [--ops 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.cli._report import write_atomic
from harness.targets import resolve_server
from harness.verify import (
    ServerExploreConfig,
    ServerExploreResult,
    VerifyEnvironmentError,
    explore_server,
    write_server_reproductions,
)

SERVERS = ("6.0", "6.2", "7.0", "8.2", "valkey")
POLICIES = ("always", "everysec")
MODELS = ("process", "power-ext4", "power-posix-metadata", "power-eager-metadata")
STRICT = ("power-ext4", "power-posix-metadata")


def _installed(server: str) -> str | None:
    """None when `server` can run here, else why not (one line)."""
    try:
        resolve_server(server)
    except (ValueError, OSError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    return None


def _points(result: ServerExploreResult) -> dict[tuple[str, str], set[int]]:
    """(model, rule) -> the crash points where it was violated."""
    out: dict[tuple[str, str], set[int]] = {}
    for v in result.violations:
        for rule in v.rules:
            out.setdefault((v.model.value, rule), set()).add(v.trace_index)
    return out


def _rules_by_model(result: ServerExploreResult) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {m: {} for m in result.config.models}
    for (model, rule), n in result.violation_counts.items():
        out.setdefault(model, {})[rule] = n
    return out


def _attribute(with_rewrite: ServerExploreResult,
               without_rewrite: ServerExploreResult | None) -> dict[str, list[str]]:
    """Per violated "model/rule": the ingredients it needs (see the module docstring)."""
    points = _points(with_rewrite)
    counts = with_rewrite.violation_counts
    counts_without = without_rewrite.violation_counts if without_rewrite is not None else None
    out: dict[str, list[str]] = {}
    for model, rule in sorted(counts):
        needs: list[str] = []
        if model in STRICT:
            eager = points.get(("power-eager-metadata", rule), set())
            if not points.get((model, rule), set()) & eager:
                needs.append("strict metadata (power-eager-metadata holds at those crash "
                             "points: a missing directory fsync)")
        if counts_without is not None:
            needs.append("the rewrite (holds without BGREWRITEAOF)"
                         if not counts_without.get((model, rule))
                         else "not the rewrite (also without BGREWRITEAOF)")
        out[f"{model}/{rule}"] = needs
    return out


def _reproductions(result: ServerExploreResult, where: Path) -> list[dict[str, Any]]:
    """One reproduction per (rules, model): the violating group with the most states."""
    shutil.rmtree(where, ignore_errors=True)
    best: dict[tuple[tuple[str, ...], str], Any] = {}
    for v in result.violations:
        key = (v.rules, v.model.value)
        if key not in best or v.count > best[key].count:
            best[key] = v
    if not best:
        return []
    chosen = dataclasses.replace(result, violations=list(best.values()))
    return write_server_reproductions(chosen, where, max_groups=len(best))


def _cell(result: ServerExploreResult, model: str) -> dict[str, Any]:
    by_model = result.to_dict()["by_model"].get(model, {})
    rules = _rules_by_model(result).get(model, {})
    return {"states": sum(by_model.values()), "outcomes": by_model, "violations": rules,
            "verdict": "holds" if not rules else "violated: " + ", ".join(sorted(rules))}


def run(out: Path, *, ops: int = 200, seed: int = 0, workers: int = 0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Explore every server x policy; write the JSON and Markdown; return the JSON document."""
    workers = workers or 2 * (os.cpu_count() or 1)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    repro_root = out / "findings"
    for server in SERVERS:
        why = _installed(server)
        if why is not None:
            skipped[server] = why
            log(f"skip {server}: {why}")
            continue
        for policy in POLICIES:
            # Every violating group is kept (and re-checked by the oracle), so the crash
            # points of each model can be compared for attribution.
            base = ServerExploreConfig(server=server, policy=policy, models=MODELS, ops=ops,
                                       seed=seed, max_exact_violations=100_000)
            t0 = time.monotonic()
            try:
                result = explore_server(base, workers=workers)
            except VerifyEnvironmentError as exc:
                skipped[f"{server}/{policy}"] = str(exc)
                log(f"skip {server}/{policy}: {exc}")
                continue
            without = None
            if not result.ok:
                without = explore_server(
                    ServerExploreConfig(server=server, policy=policy, models=MODELS, ops=ops,
                                        seed=seed, rewrite_at=-1, max_exact_violations=100_000),
                    workers=workers)
            where = repro_root / f"explore-{server}-{policy}"
            groups = _reproductions(result, where)
            cells = {m: _cell(result, m) for m in MODELS}
            row: dict[str, Any] = {
                "server": server, "server_label": result.server_label,
                "version": result.server_version, "policy": policy, "ops": ops, "seed": seed,
                "states": result.states, "crash_points": result.points_explored,
                "distinct_images": result.distinct_contents,
                "real_recoveries": result.real_recoveries,
                "seconds": round(time.monotonic() - t0, 1),
                "cells": cells,
                "needs": _attribute(result, without),
                "without_rewrite": None if without is None else {
                    m: _cell(without, m)["verdict"] for m in MODELS},
                "reproductions": [
                    {"rules": g["rules"], "models": g["models"],
                     "states": g["states"], "path": g["reproduction"],
                     "command": f"aofcrash explore --server {server} --replay "
                                f"{g['reproduction']}"}
                    for g in groups if g["reproduction"]],
            }
            rows.append(row)
            log(f"{server:7} {policy:9} {result.states:6} states "
                f"{result.distinct_contents:5} images {row['seconds']:6.1f} s  "
                + "  ".join(f"{m}: {cells[m]['verdict']}" for m in MODELS))
    doc = {"format": "aofcrash-findings-explore/1",
           "command": ".venv/bin/python scripts/findings_explore.py "
                      f"--out {out} --ops {ops} --seed {seed}",
           "models": list(MODELS), "rows": rows, "skipped": skipped,
           "elapsed_s": round(time.monotonic() - started, 1)}
    write_atomic(out / "findings-explore.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_atomic(out / "findings-explore.md", markdown(doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Every crash state of real binaries (`aofcrash explore --server`)",
        "",
        f"Produced by `{doc['command']}` ({doc['elapsed_s']} s).",
        "",
        "One seeded workload of writes with one BGREWRITEAOF in the middle is recorded on a "
        "traced FUSE SimDisk; every crash point x every legal image of each model is recovered "
        "by the real binary (each distinct image once) and checked with the oracle. Needed "
        "ingredients come from removing one at a time: strict metadata (compared with "
        "power-eager-metadata at the same crash points) and the rewrite (the same workload "
        "without BGREWRITEAOF).",
        "",
        "| server | policy | states | images | " + " | ".join(doc["models"]) + " | needs |",
        "|---|---|---|---|" + "---|" * len(doc["models"]) + "---|",
    ]
    for row in doc["rows"]:
        needs = "; ".join(f"{k}: {', '.join(n)}" for k, n in row["needs"].items()) or "-"
        lines.append(
            f"| {row['server_label']} {row['version']} | {row['policy']} | {row['states']} | "
            f"{row['distinct_images']} | "
            + " | ".join(row["cells"][m]["verdict"] for m in doc["models"])
            + f" | {needs} |")
    repro = [r for row in doc["rows"] for r in row["reproductions"] if r["command"]]
    if repro:
        lines += ["", "Reproductions (one per rule and model: the violating image with the most "
                  "states):", ""]
        lines += [f"- {', '.join(r['rules'])} ({', '.join(r['models'])}, {r['states']} "
                  f"states): `{r['command']}`" for r in repro]
    if doc["skipped"]:
        lines += ["", "Not run:", ""]
        lines += [f"- {k}: {v}" for k, v in doc["skipped"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0,
                        help="recoveries in parallel (default: two per core)")
    args = parser.parse_args(argv)
    if args.ops < 1 or args.workers < 0:
        parser.error("--ops must be >= 1 and --workers >= 0")
    run(args.out, ops=args.ops, seed=args.seed, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
