"""Calibration of the in-process persistence models against the kernel's ext4, xfs and btrfs.

Run (root, /dev/fuse, loop devices; xfsprogs and btrfs-progs from scripts/bootstrap.sh):
``.venv/bin/python benchmarks/calibration.py [--workloads 300] [--fs ext4,xfs,btrfs]
[--workers 2] [--batch 100] [--seed 0] [--fsck]``

For each filesystem: the workloads of ``faults.calibration.generate_workloads`` (the Redis 6
rewrite and Redis 7 manifest update first, then ACE-style ones) run in batches of ``--batch`` on
one ``faults.kernel.BlockRecorder`` each, with a marker after every syscall; every distinct crash
image is mounted by the kernel on ``--workers`` processes. Then each power model of
``faults.PersistenceModel`` runs the same workloads on a SimDisk. Prints, per filesystem and
model, the MISSED states (a tree the kernel produced that the model does not allow; goal 0) and
the OVER-approximations (what the model allows to be lost that the kernel kept in every state at
a marker, by kind: entry, existence, data; goal 0), tables of the missed states and
over-approximations of the model that claims the filesystem, and kernel images/s (mount + read,
min/median/max over the batches).
Writes reports/calibration.md and reports/calibration.json (temp file + rename).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.calibration import (
    KernelRun,
    ModelFigures,
    claiming_model,
    compare,
    generate_workloads,
    power_models,
    run_kernel,
)
from faults.kernel import KernelFilesystem, KernelLimits, kernel_unavailable_reason

_REPORTS = Path(__file__).resolve().parents[1] / "reports"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _stamp(stamps: dict[str, float], phase: str) -> None:
    stamps[phase] = time.perf_counter()


def _run_fs(fs: KernelFilesystem, args: argparse.Namespace) -> dict[str, Any]:
    workloads = generate_workloads(args.workloads, seed=args.seed)
    limits = KernelLimits(max_prefixes=args.max_prefixes, max_subsets=args.max_subsets)
    rates: list[float] = []
    images = 0
    mount_errors: list[str] = []
    fsck: list[str] = []
    cut_off = 0
    figures: dict[str, dict[str, Any]] = {}
    missed_rows: list[dict[str, str]] = []
    over_rows: list[dict[str, str]] = []
    for start in range(0, len(workloads), args.batch):
        batch = workloads[start : start + args.batch]
        stamps: dict[str, float] = {}
        run: KernelRun = run_kernel(
            fs, batch, workers=args.workers, limits=limits, seed=args.seed, fsck=args.fsck,
            on_phase=functools.partial(_stamp, stamps))
        seconds = stamps["compare"] - stamps["mount"]
        rates.append(run.images / seconds if seconds > 0 else 0.0)
        images += run.images
        for points in run.points:
            for point in points:
                mount_errors += point.mount_errors
                fsck += point.fsck
                cut_off += point.cut_off
        for fig in compare(run, batch, power_models()):
            _merge(figures, fig)
            if fig.claims:
                missed_rows += [
                    {"workload": m.workload, "point": m.point, "kernel": m.kernel,
                     "closest": m.closest, "inside_call": m.inside_call}
                    for m in fig.missed]
                over_rows += [
                    {"workload": o.workload, "marker": o.marker, "kind": o.kind, "path": o.path}
                    for o in fig.over]
        print(f"  {fs.value}: workloads {start + len(batch)}/{len(workloads)}, "
              f"{run.images} images at {rates[-1]:.1f}/s", flush=True)
    return {
        "fs": fs.value,
        "claiming_model": claiming_model(fs).value,
        "workloads": len(workloads),
        "images": images,
        "images_per_s": {"min": min(rates), "median": statistics.median(rates),
                         "max": max(rates), "samples": len(rates)},
        "in_flight_subsets_cut_off": cut_off,
        "mount_errors": mount_errors,
        "fsck_complaints": fsck,
        "models": figures,
        "missed_by_claiming_model": missed_rows,
        "over_by_claiming_model": over_rows,
        "workload_text": {w.name: w.describe() for w in workloads},
    }


def _merge(figures: dict[str, dict[str, Any]], fig: ModelFigures) -> None:
    row = figures.setdefault(fig.model.value, {
        "claims": fig.claims, "points": 0, "kernel_states": 0, "missed": 0,
        "missed_inside_calls": 0, "over": Counter(), "missed_workloads": set()})
    row["points"] += fig.points
    row["kernel_states"] += fig.kernel_states
    row["missed"] += len(fig.missed)
    row["missed_inside_calls"] += sum(m.inside_call for m in fig.missed)
    row["over"].update(o.kind for o in fig.over)
    row["missed_workloads"].update(m.workload for m in fig.missed)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["models"] = {
        name: {**row, "over": dict(row["over"]), "over_total": sum(row["over"].values()),
               "missed_workloads": len(row["missed_workloads"])}
        for name, row in result["models"].items()}
    return out


def _markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Calibration: in-process persistence models against the kernel",
        "",
        "Generated by `.venv/bin/python benchmarks/calibration.py "
        f"--workloads {args.workloads} --fs {args.fs} --seed {args.seed}`. Kernel "
        f"{os.uname().release}. A missed state is a tree the kernel produced at a crash point "
        "that the model does not allow there (goal 0); an over-approximation is something the "
        "model allows to be lost that the kernel kept in every state recorded at that marker "
        "and the program saw there (goal 0). A state inside a call is one at a block-layer "
        "flush between two markers (a crash during the call, e.g. an fsync that wrote data in "
        "place before its journal commit); the in-process models treat a call as atomic, so "
        "such a state must be one they allow at the marker before or after the call (their "
        "images include `in-place` and `size-before-data` ones, `ImageLimits(size_before_data="
        "True, in_place=True)`). "
        "`*` marks the model that claims the filesystem. Kernel images/s here is mount + read "
        "on the workers (no server).",
        "",
        "| fs | model | workloads | crash points | missed states (workloads) | of them inside a "
        "call | over: entry | over: existence | over: data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for name, row in res["models"].items():
            over = row["over"]
            lines.append(
                f"| {res['fs']} | {name}{' *' if row['claims'] else ''} | {res['workloads']} "
                f"| {row['points']} | {row['missed']} ({len(row['missed_workloads'])}) "
                f"| {row['missed_inside_calls']} "
                f"| {over.get('entry', 0)} | {over.get('existence', 0)} "
                f"| {over.get('data', 0)} |")
    lines += ["", "| fs | kernel images | images/s min / median / max | in-flight subsets "
              "cut off | refused mounts | fsck complaints |", "|---|---|---|---|---|---|"]
    for res in results:
        rate = res["images_per_s"]
        lines.append(
            f"| {res['fs']} | {res['images']} | {rate['min']:.1f} / {rate['median']:.1f} / "
            f"{rate['max']:.1f} | {res['in_flight_subsets_cut_off']} "
            f"| {len(res['mount_errors'])} "
            f"| {len(res['fsck_complaints']) if args.fsck else 'not run (--fsck)'} |")
    for res in results:
        rows = res["missed_by_claiming_model"]
        lines += ["", f"## Missed states on {res['fs']} (model {res['claiming_model']}): "
                  f"{len(rows)}", ""]
        if not rows:
            continue
        lines += ["| workload | ops | crash point | kernel tree | closest model tree |",
                  "|---|---|---|---|---|"]
        # States after a call returned first: those are the model's plainest mistakes.
        rows = sorted(rows, key=lambda r: bool(r["inside_call"]))
        for row in rows[: args.show]:
            text = res["workload_text"][row["workload"]]
            lines.append(f"| {row['workload']} | {text} | {row['point']} | `{row['kernel']}` "
                         f"| `{row['closest']}` |")
        if len(rows) > args.show:
            lines.append(f"| ... {len(rows) - args.show} more in calibration.json | | | | |")
    for res in results:
        overs = res["over_by_claiming_model"]
        lines += ["", f"## Over-approximations on {res['fs']} (model {res['claiming_model']}): "
                  f"{len(overs)}", ""]
        if not overs:
            continue
        lines += ["| workload | ops | marker | kind | path |", "|---|---|---|---|---|"]
        for row in overs[: args.show]:
            text = res["workload_text"][row["workload"]]
            lines.append(f"| {row['workload']} | {text} | {row['marker']} | {row['kind']} "
                         f"| `{row['path']}` |")
        if len(overs) > args.show:
            lines.append(f"| ... {len(overs) - args.show} more in calibration.json | | | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=300)
    parser.add_argument("--fs", default="ext4,xfs,btrfs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-prefixes", type=int, default=64)
    parser.add_argument("--max-subsets", type=int, default=16)
    parser.add_argument("--fsck", action="store_true")
    parser.add_argument("--show", type=int, default=40, help="missed rows in the markdown")
    parser.add_argument("--out", type=Path, default=_REPORTS)
    args = parser.parse_args()
    try:
        filesystems = [KernelFilesystem(name) for name in args.fs.split(",")]
    except ValueError:
        print(f"calibration: --fs: unknown filesystem in {args.fs!r} (ext4, xfs, btrfs)",
              file=sys.stderr)
        return 2
    if args.workloads < 1 or args.batch < 1 or args.workers < 1:
        print("calibration: --workloads, --batch and --workers must be >= 1", file=sys.stderr)
        return 2
    for fs in filesystems:
        reason = kernel_unavailable_reason(fs)
        if reason is not None:
            print(f"calibration: {fs.value}: {reason}", file=sys.stderr)
            return 2
    results = []
    for fs in filesystems:
        started = time.perf_counter()
        res = _run_fs(fs, args)
        res["seconds"] = time.perf_counter() - started
        results.append(res)
        rate = res["images_per_s"]
        print(f"{fs.value}: {res['workloads']} workloads, {res['images']} kernel images, "
              f"images/s min/median/max {rate['min']:.1f}/{rate['median']:.1f}/"
              f"{rate['max']:.1f}, {res['seconds']:.0f} s")
        for name, row in res["models"].items():
            print(f"  {name:24}{' *' if row['claims'] else '  '} missed {row['missed']:5} "
                  f"({row['missed_inside_calls']} inside calls) over {dict(row['over'])}")
        for row in res["missed_by_claiming_model"][: args.show]:
            print(f"    MISSED {row['workload']} @ {row['point']}: kernel {row['kernel']} | "
                  f"closest {row['closest']}")
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "calibration.json", json.dumps(
        [_jsonable(r) for r in results], indent=1, default=sorted) + "\n")
    _write_atomic(args.out / "calibration.md", _markdown(results, args))
    print(f"wrote {args.out / 'calibration.md'} and calibration.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
