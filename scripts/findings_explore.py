"""Exhaustive crash states of real binaries: ``explore --server`` over servers x policies x
workloads.

For every server (6.0, 6.2, 7.0, 8.2, Valkey 9.1; a server that is not installed is skipped with a
note) and policy (always, everysec), seeded workloads are recorded on a traced FUSE SimDisk and
every crash point x every legal image of every model (``MODELS``: process, the calibrated
power-ext4 and power-btrfs, the POSIX minimum, eager metadata) is recovered by the real binary
and checked:

* ``burst``: 200 writes with one BGREWRITEAOF in the middle (everysec spreads them over 6 s);
* ``paced`` (``always`` only; everysec is paced already): 60 writes over 3 s with the
  BGREWRITEAOF after the 20th, so acknowledged writes follow the rewrite's rename before
  anything else is synced (the 6.x rename without a directory fsync; 7.x's manifest switch).

Violations are grouped by mechanism (``explore_server``'s ``mechanisms``: model, rules, what the
image lacks or resurrects against the visible state, the server's refusal), each with its
reproduction. Cause attribution per mechanism, over every subset of its ingredients
(``harness.verify._attribution.minimal_sufficient_sets``): strict metadata (the model against
the next weaker calibrated one, ``weaker_model``, at the same crash points of the same
recording) and the rewrite (the same workload without BGREWRITEAOF, recorded and explored
again: any state of that run). The recording is one run, so nothing is re-run for timing: the
attribution compares crash states. A variant is sufficient when it breaks the same rule the
same way (``same_mechanism_part``: its image effects and refusal are a part of the
mechanism's).

Writes ``<out>/findings-explore.json`` and ``<out>/findings-explore.md`` (temp + rename) and
one reproduction per mechanism under ``<out>/findings/explore-<server>-<policy>-<workload>/``
(``aofcrash explore --server S --replay FILE`` re-runs it).

Usage: .venv/bin/python scripts/findings_explore.py [--out reports] [--seed 0] [--servers ...]
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
from datetime import UTC, datetime
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
from harness.verify._attribution import minimal_sufficient_sets, weaker_model
from harness.verify._mechanism import same_mechanism_part

SERVERS = ("6.0", "6.2", "7.0", "8.2", "valkey")
POLICIES = ("always", "everysec")
MODELS = ("process", "power-ext4", "power-btrfs", "power-posix-metadata",
          "power-eager-metadata")
# name -> (ops, duration_ms or None for the policy's default, rewrite_at, policies)
WORKLOADS: dict[str, tuple[int, int | None, int | None, tuple[str, ...]]] = {
    "burst": (200, None, None, POLICIES),
    "paced": (60, 3000, 20, ("always",)),
}
UPSTREAM = "https://github.com/redis/redis"


def _installed(server: str) -> str | None:
    """None when `server` can run here, else why not (one line)."""
    try:
        resolve_server(server)
    except (ValueError, OSError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    return None


def _rules_by_model(result: ServerExploreResult) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {m: {} for m in result.config.models}
    for (model, rule), n in result.violation_counts.items():
        out.setdefault(model, {})[rule] = n
    return out


def _violates(result: ServerExploreResult | None, model: str, mechanism: dict[str, Any],
              points: set[int] | None) -> bool:
    """Whether `result` breaks one of the rules of `mechanism` the same way (``same_mechanism_
    part``) under `model` (at one of `points`, when given)."""
    if result is None:
        return False
    this = (mechanism["effects"], mechanism["server_refusal"] or "")
    for m in result.mechanisms:
        if m["model"] == model and set(m["rules"]) & set(mechanism["rules"]) and (
                points is None or points & set(m["crash_points"])) \
                and same_mechanism_part((m["effects"], m["server_refusal"] or ""), this):
            return True
    return False


def _attribute(mechanism: dict[str, Any], with_rewrite: ServerExploreResult,
               without_rewrite: ServerExploreResult | None) -> dict[str, Any]:
    """The minimal sufficient sets of one mechanism (see the module docstring)."""
    model = mechanism["model"]
    points = set(mechanism["crash_points"])
    weaker = weaker_model(model)
    labels: dict[str, str] = {}
    if weaker is not None and weaker in with_rewrite.config.models:
        labels["metadata"] = f"strict metadata ({model}; weaker: {weaker})"
    labels["rewrite"] = "rewrite"
    variants: list[dict[str, Any]] = []

    def sufficient(kept: frozenset[str]) -> bool:
        m = model if "metadata" in kept or "metadata" not in labels else str(weaker)
        if "rewrite" in kept:
            ok = _violates(with_rewrite, m, mechanism, points)
            where = f"{m}, same recording, same crash points"
        else:
            ok = _violates(without_rewrite, m, mechanism, None)
            where = f"{m}, the workload without BGREWRITEAOF"
        variants.append({"kept": sorted(labels[x] for x in kept), "where": where,
                         "sufficient": ok})
        return ok

    search = minimal_sufficient_sets(list(labels), sufficient)
    minimal = [[labels[x] for x in labels if x in group] for group in search.minimal]
    if minimal == [[]]:
        cause = "needs none of them: it happens without " + ", ".join(
            f"the {label}" for label in labels.values())
    elif len(minimal) == 1:
        cause = "needs the " + " AND ".join(minimal[0])
    else:
        cause = "either " + " OR ".join(
            ("the " if len(g) == 1 else "(") + " AND ".join(g) + ("" if len(g) == 1 else ")")
            for g in minimal)
    return {"minimal_sufficient_sets": minimal, "cause": cause, "variants": variants}


def _cell(result: ServerExploreResult, model: str) -> dict[str, Any]:
    by_model = result.to_dict()["by_model"].get(model, {})
    rules = _rules_by_model(result).get(model, {})
    mechanisms = sum(1 for m in result.mechanisms if m["model"] == model)
    verdict = "holds" if not rules else "violated: " + ", ".join(sorted(rules))
    if mechanisms > 1:
        verdict += f" ({mechanisms} mechanisms)"
    return {"states": sum(by_model.values()), "outcomes": by_model, "violations": rules,
            "verdict": verdict}


def _explore(config: ServerExploreConfig, workers: int) -> ServerExploreResult:
    return explore_server(config, workers=workers)


def run(out: Path, *, seed: int = 0, workers: int = 0, servers: tuple[str, ...] = SERVERS,
        workloads: tuple[str, ...] = tuple(WORKLOADS),
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Explore every server x policy x workload; write the JSON and Markdown; return the JSON
    document."""
    workers = workers or 2 * (os.cpu_count() or 1)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    repro_root = out / "findings"
    for old in repro_root.glob("explore-*"):
        shutil.rmtree(old, ignore_errors=True)  # reproductions of earlier runs
    for server in servers:
        why = _installed(server)
        if why is not None:
            skipped[server] = why
            log(f"skip {server}: {why}")
            continue
        for policy in POLICIES:
            for workload in workloads:
                ops, duration_ms, rewrite_at, policies = WORKLOADS[workload]
                if policy not in policies:
                    continue
                # Every violating group is kept (and re-checked by the oracle): nothing is
                # left out unless a run has more than this many.
                base = ServerExploreConfig(server=server, policy=policy, models=MODELS, ops=ops,
                                           seed=seed, duration_ms=duration_ms,
                                           rewrite_at=rewrite_at, max_exact_violations=100_000)
                t0 = time.monotonic()
                try:
                    result = _explore(base, workers)
                except VerifyEnvironmentError as exc:
                    skipped[f"{server}/{policy}/{workload}"] = str(exc)
                    log(f"skip {server}/{policy}/{workload}: {exc}")
                    continue
                without = None
                if not result.ok:
                    without = _explore(dataclasses.replace(base, rewrite_at=-1), workers)
                key = f"{server}-{policy}-{workload}"
                where = repro_root / f"explore-{key}"
                written = write_server_reproductions(result, where,
                                                     max_groups=len(result.violations))
                by_mechanism = {(g["example"]["model"], g["mechanism"]): g for g in written}
                mechanisms = []
                for m in result.mechanisms:
                    group = by_mechanism.get((m["model"], m["mechanism"]))
                    path = group["reproduction"] if group else None
                    mechanisms.append({
                        **{k: v for k, v in m.items() if k != "crash_points"},
                        "crash_points": len(m["crash_points"]),
                        "first_crash_point": min(m["crash_points"]),
                        **_attribute(m, result, without),
                        "reproduction": None if path is None else os.path.relpath(
                            path, out.parent),
                        "command": None if path is None else
                        f"aofcrash explore --server {server} --replay "
                        f"{os.path.relpath(path, out.parent)}",
                    })
                cells = {m: _cell(result, m) for m in MODELS}
                row: dict[str, Any] = {
                    "key": key, "server": server, "server_label": result.server_label,
                    "version": result.server_version, "policy": policy, "workload": workload,
                    "ops": ops, "duration_ms": base.workload_duration_ms,
                    "rewrite_before": base.rewrite_before, "seed": seed,
                    "states": result.states, "crash_points": result.points_explored,
                    "distinct_images": result.distinct_contents,
                    "real_recoveries": result.real_recoveries,
                    "seconds": round(time.monotonic() - t0, 1),
                    "cells": cells, "mechanisms": mechanisms,
                    "violation_groups_left_out": result.groups_left_out,
                    "violating_states_left_out": result.states_left_out,
                    "without_rewrite": None if without is None else {
                        m: _cell(without, m)["verdict"] for m in MODELS},
                }
                rows.append(row)
                log(f"{key:26} {result.states:6} states {result.distinct_contents:5} images "
                    f"{row['seconds']:6.1f} s  "
                    + "  ".join(f"{m}: {cells[m]['verdict']}" for m in MODELS))
    doc = {"format": "aofcrash-findings-explore/2",
           "command": ".venv/bin/python scripts/findings_explore.py "
                      f"--out {out.name if out.is_absolute() else out} --seed {seed}"
                      + (f" --servers {','.join(servers)}" if servers != SERVERS else "")
                      + (f" --workloads {','.join(workloads)}"
                         if workloads != tuple(WORKLOADS) else ""),
           "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "models": list(MODELS), "rows": rows, "skipped": skipped,
           "elapsed_s": round(time.monotonic() - started, 1)}
    write_atomic(out / "findings-explore.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_atomic(out / "findings-explore.md", markdown(doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Every crash state of real binaries (`aofcrash explore --server`)",
        "",
        f"Produced by `{doc['command']}` ({doc['elapsed_s']} s, generated "
        f"{doc.get('generated', '?')}).",
        "",
        "Seeded workloads are recorded on a traced FUSE SimDisk; every crash point x every "
        "legal image of each model is recovered by the real binary (each distinct image once) "
        "and checked with the oracle against the contract in "
        "[docs/contract.md](../docs/contract.md). Workloads: `burst` = 200 writes with one "
        "BGREWRITEAOF in the middle (everysec: over 6 s); `paced` = 60 writes over 3 s with "
        "the BGREWRITEAOF after the 20th (always only). Models: `power-ext4` and `power-btrfs` "
        "are calibrated against the kernel's own filesystems; `power-posix-metadata` is the "
        "POSIX minimum (no filesystem measured here is that weak: a finding seen only there "
        "is labelled so); `power-eager-metadata` the most optimistic bound.",
        "",
        "Each violation is a *mechanism* (what the crash image lacks or resurrects against "
        "what the server had written, and how the server recovered), with its cause: the "
        "minimal sets of ingredients that are enough for it (strict metadata: the next weaker "
        "model at the same crash points; the rewrite: the same workload without "
        "BGREWRITEAOF), and its reproduction.",
        "",
        "| run | states | images | " + " | ".join(doc["models"]) + " |",
        "|---|---|---|" + "---|" * len(doc["models"]),
    ]
    for row in doc["rows"]:
        lines.append(
            f"| [{row['key']}](#{row['key'].replace('.', '')}) ({row['version']}) | "
            f"{row['states']} | {row['distinct_images']} | "
            + " | ".join(row["cells"][m]["verdict"] for m in doc["models"]) + " |")
    for row in doc["rows"]:
        if not row["mechanisms"]:
            continue
        lines += ["", f"<a id=\"{row['key'].replace('.', '')}\"></a>",
                  f"## {row['key']}: {row['server_label']} {row['version']}, {row['policy']}, "
                  f"{row['workload']} ({row['ops']} writes over {row['duration_ms']} ms, "
                  f"BGREWRITEAOF before write {row['rewrite_before']})", ""]
        if row["violation_groups_left_out"]:
            lines.append(f"{row['violation_groups_left_out']} violating state groups "
                         f"({row['violating_states_left_out']} states) past the cap are "
                         "counted in the table but not listed here.")
            lines.append("")
        lines.append("| model | mechanism | states (points) | cause | reproduction |")
        lines.append("|---|---|---|---|---|")
        for m in sorted(row["mechanisms"], key=lambda m: (doc["models"].index(m["model"]),
                                                          -m["states"])):
            repro = f"`{m['command']}`" if m["command"] else "-"
            lines.append(f"| {m['model']} | {m['mechanism']} | {m['states']} "
                         f"({m['crash_points']}) | {m['cause']} | {repro} |")
    if doc["skipped"]:
        lines += ["", "Not run:", ""]
        lines += [f"- {k}: {v}" for k, v in doc["skipped"].items()]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in NOTES]
    if doc.get("previous"):
        lines += _changes(doc)
    return "\n".join(lines) + "\n"


# What a reader needs to weigh the rows above (checked against this version's mechanisms).
NOTES = (
    "\"needs the rewrite\" compares with ONE recording of the same workload without "
    "BGREWRITEAOF: no state of that recording broke the rule the same way. It is not a proof "
    "that the rewrite is necessary, since recordings differ run to run (timing): the 6.0 "
    "`everysec` key recovered without its TTL (6.0 writes SET with an expiry as SET + "
    "PEXPIREAT, two commands, and a power loss inside the second leaves the first: "
    "redis#4068) is marked so here, while an earlier recording of 60 writes over 3 s without "
    "a rewrite showed it in 23 states.",
    "6.0 `always`, paced: under power-ext4, power-btrfs and eager metadata, 2 states lose "
    "acknowledged writes right after the rewrite: 6.0 renames the rewritten file over "
    "appendonly.aof and only then fsyncs the part the parent appended to it, so a crash in "
    "between keeps the new name with a tail that never reached the disk. It needs the "
    "rewrite and is timing-dependent (an earlier recording of the same workload held). The "
    "ext4 model does not model auto_da_alloc (ext4 flushes a file renamed over another at the "
    "next commit), so the kernel's ext4 may not produce this state: the kernel recorder is "
    "the check.",
    "7.0, 8.2 and Valkey, `everysec`, every power model: after a rewrite a power loss can "
    "leave the old incr file cut mid-command while the manifest lists a newer one; the server "
    "refuses \"the truncated file is not the last file\" after truncating it, and the next "
    "start (no crash between) comes up: \"one start only\". In a few states of 8.2 the next "
    "start refuses too. It needs the rewrite.",
    "Under the POSIX minimum the 7.x rows have many mechanisms: every combination of what the "
    "image keeps of appendonlydir/ (made, and its base moved in, with no fsync of the data "
    "directory), the base, the incr files and the manifest. No filesystem measured here is "
    "that weak.",
)


def _changes(doc: dict[str, Any]) -> list[str]:
    """Per server, policy and model: the previous version's verdict (one 200-write workload)
    against this one's ``burst`` row, where either changed."""
    prev = doc["previous"]
    rows = {(r["server"], r["policy"]): r for r in doc["rows"] if r["workload"] == "burst"}
    renamed = {"power": "power-ext4"}
    out = ["", "## Changes against the previous version", "",
           f"Previous version: `{prev['command']}` (one 200-write workload per server and "
           "policy; its `power` model was a journal committed only by a directory fsync). "
           "Compared with this version's `burst` row, per model; the `paced` rows and the "
           "power-btrfs column are new.", "",
           "| run | model | before | now | why |", "|---|---|---|---|---|"]
    for old in prev["rows"]:
        new = rows.get((old["server"], old["policy"]))
        for model, cell in old["cells"].items():
            now_model = renamed.get(model, model)
            if new is None:
                out.append(f"| {old['server']}-{old['policy']} | {model} | {cell['verdict']} | "
                           "not run | |")
                continue
            now = new["cells"].get(now_model, {}).get("verdict", "not run")
            if now.split(" (")[0] == cell["verdict"] and model == now_model:
                continue
            why = []
            if model != now_model:
                why.append("`power` is now the calibrated ext4 journal model")
            if now.startswith("violated") and now_model in ("power-ext4", "power-btrfs",
                                                            "power-eager-metadata"):
                why.append("see the mechanisms of this row (the recording differs run to run: "
                           "timing-dependent)")
            if now.split(" (")[0] == cell["verdict"]:
                why.append("same verdict")
            out.append(f"| [{new['key']}](#{new['key'].replace('.', '')}) | {model} -> "
                       f"{now_model} | {cell['verdict']} | {now} | {'; '.join(why)} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--workers", type=int, default=0,
                        help="recoveries in parallel (default: two per core)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite findings-explore.md from findings-explore.json")
    parser.add_argument("--previous", type=Path, default=None,
                        help="with --render-only: an earlier findings-explore.json to compare")
    args = parser.parse_args(argv)
    if args.render_only:
        doc = json.loads((args.out / "findings-explore.json").read_text())
        if args.previous is not None:
            old = json.loads(args.previous.read_text())
            doc["previous"] = {"command": old.get("command"), "rows": [
                {"server": r["server"], "policy": r["policy"], "cells": r["cells"]}
                for r in old["rows"]]}
            write_atomic(args.out / "findings-explore.json",
                         json.dumps(doc, indent=1, default=str) + "\n")
        write_atomic(args.out / "findings-explore.md", markdown(doc))
        return 0
    unknown = [w for w in args.workloads.split(",") if w not in WORKLOADS]
    if args.workers < 0 or unknown:
        parser.error(f"--workers must be >= 0; workloads are {', '.join(WORKLOADS)}")
    run(args.out.absolute(), seed=args.seed, workers=args.workers,
        servers=tuple(args.servers.split(",")), workloads=tuple(args.workloads.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
