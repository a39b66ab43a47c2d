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

``--kernel`` (root, /dev/fuse, loop devices): the same workloads on the kernel's own ext4, xfs
and btrfs (``explore --server --model ext4|xfs|btrfs``: every crash state mounted by Linux),
merged into the existing JSON as the ``ext4``, ``xfs``, ``btrfs`` columns (default servers 6.2,
7.0, Valkey; ``--filesystems`` narrows). ``--merge``: only the SimDisk rows of ``--servers`` x
``--workloads``, put in place of the existing ones (their kernel columns kept). Both write the
JSON and Markdown after each run. A full run (neither flag) drops the kernel columns: run
``--kernel`` after it.
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
from harness.verify._explore_kernel import (
    KernelExploreConfig,
    KernelExploreResult,
    explore_kernel_server,
    write_kernel_reproductions,
)
from harness.verify._mechanism import same_mechanism_part, server_reason_kind

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
# The real kernel's filesystems (``--kernel``): the same workloads recorded on a loop device
# and every crash state mounted by Linux (``harness.verify._explore_kernel``).
KERNEL_MODELS = ("ext4", "xfs", "btrfs")
KERNEL_SERVERS = ("6.2", "7.0", "valkey")


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


def _metadata_label(model: str, weaker: str) -> str:
    """The "strict metadata" ingredient: the model against the next weaker one. Where the weaker
    one also has no size-before-data images (eager metadata), taking the model out takes those
    out too, and the label says so."""
    size_first = ("power-ext4", "power-xfs", "power-posix-metadata")
    if model in size_first and weaker not in size_first:
        return (f"strict metadata or the size journalled before its data ({model}; weaker: "
                f"{weaker}, which has neither)")
    return f"strict metadata ({model}; weaker: {weaker})"


def _relabelled(cause: str) -> str:
    """A cause written before ``_metadata_label`` named the size-before-data images."""
    for model in ("power-ext4", "power-xfs"):
        cause = cause.replace(f"strict metadata ({model}; weaker: power-eager-metadata)",
                              _metadata_label(model, "power-eager-metadata"))
    return cause


def _attribute(mechanism: dict[str, Any], with_rewrite: ServerExploreResult,
               without_rewrite: ServerExploreResult | None) -> dict[str, Any]:
    """The minimal sufficient sets of one mechanism (see the module docstring)."""
    model = mechanism["model"]
    points = set(mechanism["crash_points"])
    weaker = weaker_model(model)
    labels: dict[str, str] = {}
    if weaker is not None and weaker in with_rewrite.config.models:
        labels["metadata"] = _metadata_label(model, weaker)
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
        workloads: tuple[str, ...] = tuple(WORKLOADS), merge: bool = False,
        policies: tuple[str, ...] = POLICIES,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Explore every server x policy x workload; write the JSON and Markdown; return the JSON
    document. `merge`: only those rows, put into the existing ``findings-explore.json`` (its
    other rows and every row's kernel columns kept), written after each row."""
    workers = workers or 2 * (os.cpu_count() or 1)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    repro_root = out / "findings"
    command = (".venv/bin/python scripts/findings_explore.py "
               f"--out {out.name if out.is_absolute() else out} --seed {seed}"
               + (f" --servers {','.join(servers)}" if servers != SERVERS else "")
               + (f" --workloads {','.join(workloads)}"
                  if workloads != tuple(WORKLOADS) else "")
               + (f" --policies {','.join(policies)}" if policies != POLICIES else ""))
    previous: dict[str, Any] | None = None
    if merge:
        previous = json.loads((out / "findings-explore.json").read_text())
        command += " --merge"
    else:
        for old in repro_root.glob("explore-*"):
            shutil.rmtree(old, ignore_errors=True)  # reproductions of earlier runs
    for server in servers:
        why = _installed(server)
        if why is not None:
            skipped[server] = why
            log(f"skip {server}: {why}")
            continue
        for policy in policies:
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
                shutil.rmtree(where, ignore_errors=True)
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
                row["image_kinds"] = "prefixes, size-before-data, in-place"
                rows.append(row)
                log(f"{key:26} {result.states:6} states {result.distinct_contents:5} images "
                    f"{row['seconds']:6.1f} s  "
                    + "  ".join(f"{m}: {cells[m]['verdict']}" for m in MODELS))
                if previous is not None:
                    _merge_row(previous, row, {
                        "command": command,
                        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                        "elapsed_s": round(time.monotonic() - started, 1)})
                    write_atomic(out / "findings-explore.json",
                                 json.dumps(previous, indent=1, default=str) + "\n")
                    write_atomic(out / "findings-explore.md", markdown(previous))
    if previous is not None:
        previous["skipped"].update(skipped)
        return previous
    doc = {"format": "aofcrash-findings-explore/2",
           "command": command,
           "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "models": list(MODELS), "rows": rows, "skipped": skipped,
           "elapsed_s": round(time.monotonic() - started, 1)}
    write_atomic(out / "findings-explore.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_atomic(out / "findings-explore.md", markdown(doc))
    return doc


def _merge_row(doc: dict[str, Any], row: dict[str, Any], run: dict[str, Any]) -> None:
    """Put `row` (a SimDisk row) into `doc` in place of the row of the same key, keeping that
    row's kernel columns and their mechanisms; `run` is listed under "merged"."""
    rows = doc["rows"]
    at = next((i for i, r in enumerate(rows) if r["key"] == row["key"]), None)
    if at is None:
        rows.append(row)
    else:
        old = rows[at]
        for fs in KERNEL_MODELS:
            if fs in old["cells"]:
                row["cells"][fs] = old["cells"][fs]
        row["mechanisms"] += [m for m in old["mechanisms"] if m["model"] in KERNEL_MODELS]
        rows[at] = row
    merged = doc.setdefault("merged", [])
    for other in merged:  # a row comes from one run: the latest
        if other["command"] != run["command"] and row["key"] in other["rows"]:
            other["rows"].remove(row["key"])
    merged[:] = [m for m in merged if m["rows"] or m["command"] == run["command"]]
    entry = next((m for m in merged if m["command"] == run["command"]), None)
    if entry is None:
        merged.append({**run, "rows": [row["key"]]})
    else:
        entry.update({k: v for k, v in run.items() if k != "rows"})
        entry["rows"] = [*dict.fromkeys([*entry["rows"], row["key"]])]


# ---------------------------------------------------------------------------------------------
# Kernel columns: the real ext4, xfs and btrfs, merged into an existing findings-explore.json


def _kernel_mechanism_key(v: Any) -> tuple[tuple[str, ...], str]:
    return tuple(v.rules), server_reason_kind(v.reason) if v.reason else ""


def _kernel_mechanisms(result: KernelExploreResult) -> list[dict[str, Any]]:
    """The kernel run's violations grouped by (rules, the server's refusal kind): the kernel's
    images are compared with no model of what the server wrote, so no image effects."""
    found: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    for v in result.kernel_violations:
        rules, refusal = _kernel_mechanism_key(v)
        m = found.setdefault((rules, refusal), {
            "model": result.fs, "rules": list(rules), "effects": [],
            "server_refusal": refusal or None, "state_groups": 0, "states": 0,
            "crash_points": set(), "first_digest": v.digest,
            "mechanism": f"{'/'.join(rules)}: the data dir as the kernel's {result.fs} mounted "
                         "it" + (f"; the server: {refusal}" if refusal else ""),
        })
        m["state_groups"] += 1
        m["states"] += v.count
        m["crash_points"].add(v.position)
    return list(found.values())


def _kernel_attribute(mechanism: dict[str, Any],
                      without_rewrite: KernelExploreResult | None) -> dict[str, Any]:
    """Minimal sufficient sets over the one ingredient a kernel run can take out: the rewrite
    (the same workload without BGREWRITEAOF, recorded on the same filesystem). Strict metadata
    is not an ingredient: the kernel is the filesystem."""
    key = (tuple(mechanism["rules"]), mechanism["server_refusal"] or "")
    variants: list[dict[str, Any]] = []

    def sufficient(kept: frozenset[str]) -> bool:
        ok = "rewrite" in kept or (without_rewrite is not None and any(
            _kernel_mechanism_key(v) == key for v in without_rewrite.kernel_violations))
        if "rewrite" not in kept:
            variants.append({"kept": [], "where": f"the kernel's {mechanism['model']}, the "
                             "workload without BGREWRITEAOF", "sufficient": ok})
        return ok

    search = minimal_sufficient_sets(["rewrite"], sufficient)
    minimal = [sorted(group) for group in search.minimal]
    cause = ("needs none of them: it happens without the rewrite" if minimal == [[]]
             else "needs the rewrite")
    return {"minimal_sufficient_sets": minimal, "cause": cause, "variants": variants}


def _kernel_cell(result: KernelExploreResult) -> dict[str, Any]:
    cell = _cell(result, result.fs)
    cell.update({"kernel": True, "mounted_images": result.mounted_images,
                 "distinct_data_dirs": result.distinct_contents,
                 "block_writes": result.block_writes, "flushes": result.flushes,
                 "filesystem_findings": len(result.filesystem_findings),
                 "seconds": round(result.elapsed_s, 1)})
    if result.filesystem_findings:
        cell["verdict"] += f"; {len(result.filesystem_findings)} filesystem finding(s)"
    return cell


def run_kernel(out: Path, *, seed: int = 0, workers: int = 0,
               servers: tuple[str, ...] = KERNEL_SERVERS,
               filesystems: tuple[str, ...] = KERNEL_MODELS,
               workloads: tuple[str, ...] = tuple(WORKLOADS),
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """The kernel columns only: every server x policy x workload of the existing
    ``<out>/findings-explore.json`` (its rows, cells and reproductions kept) explored again on
    the kernel's `filesystems`, merged into its rows; the JSON and Markdown are written after
    each row (a partial run keeps what it finished)."""
    workers = workers or 2 * (os.cpu_count() or 1)
    doc: dict[str, Any] = json.loads((out / "findings-explore.json").read_text())
    for fs in filesystems:
        if fs not in doc["models"]:
            doc["models"].append(fs)
    rows = {r["key"]: r for r in doc["rows"]}
    started = time.monotonic()
    timings = doc.setdefault("kernel_runs", {})
    for server in servers:
        why = _installed(server)
        if why is not None:
            doc["skipped"][f"{server} (kernel)"] = why
            log(f"skip {server}: {why}")
            continue
        for policy in POLICIES:
            for workload in workloads:
                ops, duration_ms, rewrite_at, policies = WORKLOADS[workload]
                key = f"{server}-{policy}-{workload}"
                row = rows.get(key)
                if policy not in policies or row is None:
                    continue
                base = ServerExploreConfig(server=server, policy=policy, ops=ops, seed=seed,
                                           duration_ms=duration_ms, rewrite_at=rewrite_at,
                                           max_exact_violations=100_000)
                for fs in filesystems:
                    t0 = time.monotonic()
                    try:
                        result = explore_kernel_server(KernelExploreConfig(fs, base),
                                                       workers=workers)
                    except VerifyEnvironmentError as exc:
                        doc["skipped"][f"{key} ({fs})"] = str(exc)
                        log(f"skip {key} on {fs}: {exc}")
                        continue
                    assert isinstance(result, KernelExploreResult)
                    without = None
                    if result.kernel_violations:
                        without = explore_kernel_server(KernelExploreConfig(
                            fs, dataclasses.replace(base, rewrite_at=-1)), workers=workers)
                    where = out / "findings" / f"explore-{key}-{fs}"
                    shutil.rmtree(where, ignore_errors=True)
                    written = write_kernel_reproductions(
                        result, where, max_groups=len(result.kernel_violations))
                    by_digest = {(tuple(g["rules"]), g["image_digest"]): g for g in written}
                    mechanisms = []
                    for m in _kernel_mechanisms(result):
                        group = by_digest.get((tuple(m["rules"]), m.pop("first_digest")))
                        path = group["reproduction"] if group else None
                        points = m.pop("crash_points")
                        mechanisms.append({
                            **m, "crash_points": len(points), "first_crash_point": min(points),
                            **_kernel_attribute(m, without),
                            "reproduction": None if path is None else os.path.relpath(
                                path, out.parent),
                            "command": None if path is None else
                            f"aofcrash explore --server {server} --replay "
                            f"{os.path.relpath(path, out.parent)}",
                        })
                    row["mechanisms"] = [m for m in row["mechanisms"] if m["model"] != fs] \
                        + mechanisms
                    row["cells"][fs] = _kernel_cell(result)
                    seconds = round(time.monotonic() - t0, 1)
                    timings[f"{key}-{fs}"] = {
                        "states": result.states, "seconds": seconds,
                        "mounted_images": result.mounted_images,
                        "images_per_s": None if result.images_per_s is None
                        else round(result.images_per_s, 1)}
                    log(f"{key:26} {fs:5} {result.states:6} states "
                        f"{result.mounted_images:5} mounted {seconds:6.1f} s  "
                        f"{row['cells'][fs]['verdict']}")
                    doc["kernel_command"] = (
                        ".venv/bin/python scripts/findings_explore.py --kernel "
                        f"--out {out.name} --seed {seed} --servers {','.join(servers)}"
                        + (f" --filesystems {','.join(filesystems)}"
                           if filesystems != KERNEL_MODELS else ""))
                    doc["kernel_generated"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
                    doc["kernel_elapsed_s"] = round(time.monotonic() - started, 1)
                    write_atomic(out / "findings-explore.json",
                                 json.dumps(doc, indent=1, default=str) + "\n")
                    write_atomic(out / "findings-explore.md", markdown(doc))
    return doc


def _real_fs_note(row: dict[str, Any], mechanism: dict[str, Any], models: list[str]) -> str:
    """For a mechanism under the POSIX minimum: whether a calibrated or kernel model of the
    same row shows a violation of one of its rules, and what the kernel's filesystems say."""
    rules = set(mechanism["rules"])
    others = [m for m in row["mechanisms"] if m["model"] not in (
        "power-posix-metadata", "process") and rules & set(m["rules"])]
    kernel = [fs for fs in KERNEL_MODELS if fs in models]
    said = []
    for fs in kernel:
        cell = row["cells"].get(fs)
        if cell is None:
            said.append(f"{fs} not run")
        elif any(m["model"] == fs for m in others):
            said.append(f"**{fs}: violated ({cell['verdict'].removeprefix('violated: ')})**")
        else:
            said.append(f"{fs} holds ({cell['states']} states)"
                        if not cell["violations"] else f"{fs}: {cell['verdict']}")
    real = "; the kernel's " + ", ".join(said) if said else ""
    if not others:
        return (" **Seen only under the POSIX minimum** (power-ext4, power-btrfs and eager "
                "metadata: not this rule)" + (real + "." if real else
                                              "; no kernel run for this row."))
    return (" Also under " + ", ".join(sorted({m["model"] for m in others}))
            + (real + "." if real else "."))


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "not run"
    if cell.get("kernel"):
        return f"{cell['verdict']} ({cell['states']} states)"
    return str(cell["verdict"])


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
    ]
    for merged in doc.get("merged", []):
        lines += [f"Rows {', '.join(merged['rows'])} come from `{merged['command']}` "
                  f"(generated {merged['generated']}, {merged['elapsed_s']} s): their SimDisk "
                  "models also enumerate the images the kernel's ext4 and xfs produce besides "
                  "prefixes (size-before-data: the file at a size its journal took before the "
                  "data, over zeros; in-place); rows marked *prefixes only* are from the "
                  "command above and enumerate prefix images only.", ""]
    kernel = [m for m in doc["models"] if m in KERNEL_MODELS]
    if kernel:
        runs = doc.get("kernel_runs", {})
        secs = sorted(r["seconds"] for r in runs.values())
        lines += [
            "Kernel columns (" + ", ".join(f"`{m}`" for m in kernel) + "): the same workload "
            "(same seed) recorded on the kernel's own filesystem (a loop device whose backing "
            "file is a FUSE file logging every block write and flush); every crash state (the "
            "writes up to each flush, plus bounded subsets of the writes in flight at each "
            "marker) mounted by Linux (its own journal/log replay), the data dir recovered by "
            "the real binary and judged the same way. Those columns come from "
            f"`{doc.get('kernel_command', '?')}` (generated {doc.get('kernel_generated', '?')}, "
            f"{len(runs)} runs in {doc.get('kernel_elapsed_s', '?')} s; per run min/median/max "
            + (f"{secs[0]}/{secs[len(secs) // 2]}/{secs[-1]} s" if secs else "-")
            + "); their state counts are the kernel's (one recording each, so a different "
            "timing than the SimDisk rows). The kernel runs take no faults and no strict "
            "metadata: a kernel mechanism's cause names the rewrite only. Rows a kernel "
            "column was not run for say `not run`.", ""]
    lines += [
        "| run | states | images | " + " | ".join(doc["models"]) + " |",
        "|---|---|---|" + "---|" * len(doc["models"]),
    ]
    for row in doc["rows"]:
        lines.append(
            f"| [{row['key']}](#{row['key'].replace('.', '')}) ({row['version']})"
            + (" *prefixes only*" if doc.get("merged") and "image_kinds" not in row else "")
            + f" | {row['states']} | {row['distinct_images']} | "
            + " | ".join(_cell_text(row["cells"].get(m)) for m in doc["models"]) + " |")
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
            cause = _relabelled(m["cause"]) if "image_kinds" in row else m["cause"]
            if m["model"] == "power-posix-metadata":
                cause = cause.rstrip(".") + "." + _real_fs_note(row, m, doc["models"])
            model = f"kernel {m['model']}" if m["model"] in KERNEL_MODELS else m["model"]
            lines.append(f"| {model} | {m['mechanism']} | {m['states']} "
                         f"({m['crash_points']}) | {cause} | {repro} |")
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
    "next commit), so the kernel's ext4 may not produce this state: the `ext4` column of this "
    "row is that check (one recording of the same workload).",
    "7.0, 8.2 and Valkey, `everysec`, every power model: after a rewrite a power loss can "
    "leave the old incr file cut mid-command while the manifest lists a newer one; the server "
    "refuses \"the truncated file is not the last file\" after truncating it, and the next "
    "start (no crash between) comes up: \"one start only\". In a few states of 8.2 the next "
    "start refuses too. It needs the rewrite.",
    "The kernel's ext4 (the `ext4` column): a power loss inside the fsync that follows an "
    "append can leave the file at its new size with zeros where the appended bytes should be "
    "(ext4 journals the new size before the data blocks reach the disk; measured, FACTS). "
    "6.0 and 6.2 then refuse \"Bad file format reading the append only file\", 7.0, 8.2 and "
    "Valkey the same on the incr file (in the runs here: the incr file the rewrite opened, "
    "over zeros after a crash at a flush); acknowledged, then unavailable. Under `always` no write "
    "of the zeroed range had been acknowledged (the reply follows the fsync), yet every "
    "earlier acknowledged write is unreachable until the file is repaired (`redis-check-aof "
    "--fix`). "
    "xfs and btrfs showed no such state in these runs. The SimDisk rows marked *prefixes "
    "only* do not enumerate these images (their power-ext4 column holds where the kernel's "
    "ext4 does not); the rows regenerated with size-before-data images do. \"needs the "
    "rewrite\" is one recording without BGREWRITEAOF that showed none.",
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
    parser.add_argument("--kernel", action="store_true",
                        help="only the kernel columns (ext4, xfs, btrfs: root, /dev/fuse, loop "
                        "devices): explored and merged into the existing findings-explore.json "
                        "(default servers: " + ",".join(KERNEL_SERVERS) + ")")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="which appendfsync policies (default: both)")
    parser.add_argument("--merge", action="store_true",
                        help="only the rows of --servers x --workloads, merged into the "
                        "existing findings-explore.json (other rows and the kernel columns "
                        "kept)")
    parser.add_argument("--filesystems", default=",".join(KERNEL_MODELS),
                        help="with --kernel: which of the kernel's filesystems")
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
    unknown = [w for w in args.workloads.split(",") if w not in WORKLOADS] + [
        p for p in args.policies.split(",") if p not in POLICIES]
    if args.workers < 0 or unknown:
        parser.error(f"--workers must be >= 0; workloads are {', '.join(WORKLOADS)}; "
                     f"policies {', '.join(POLICIES)}")
    if args.kernel:
        servers = args.servers if args.servers != ",".join(SERVERS) else ",".join(KERNEL_SERVERS)
        bad = [f for f in args.filesystems.split(",") if f not in KERNEL_MODELS]
        if bad:
            parser.error(f"--filesystems: one of {', '.join(KERNEL_MODELS)}, got {bad[0]}")
        if not (args.out / "findings-explore.json").exists():
            parser.error(f"--kernel merges into {args.out / 'findings-explore.json'}: not found")
        run_kernel(args.out.absolute(), seed=args.seed, workers=args.workers,
                   servers=tuple(servers.split(",")),
                   filesystems=tuple(args.filesystems.split(",")),
                   workloads=tuple(args.workloads.split(",")))
        return 0
    if args.merge and not (args.out / "findings-explore.json").exists():
        parser.error(f"--merge: {args.out / 'findings-explore.json'} not found")
    run(args.out.absolute(), seed=args.seed, workers=args.workers,
        servers=tuple(args.servers.split(",")), workloads=tuple(args.workloads.split(",")),
        merge=args.merge, policies=tuple(args.policies.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
