"""``aofcrash explore --server NAME|PATH --model ext4|xfs|btrfs``: explore --server with the
real kernel's crash states (see ``harness.verify._explore_kernel``).

``add_kernel_arguments(parser)`` adds the kernel's own limits to the ``explore`` parser;
``cmd_explore_kernel(args)`` runs it (``cmd_explore`` hands over when a kernel model is
asked for). ``KERNEL_MODEL_CHOICES`` are the ``--model`` values that name the real kernel.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    UsageError,
    positive_int,
)

__all__ = ["KERNEL_MODEL_CHOICES", "add_kernel_arguments", "cmd_explore_kernel",
           "kernel_models_asked"]

KERNEL_MODEL_CHOICES = ("ext4", "xfs", "btrfs")
KERNEL_MODEL_HELP = ("ext4, xfs, btrfs: the real kernel (with --server only): the server runs "
                     "on that filesystem on a recorded loop device and every crash image is "
                     "mounted by Linux itself (journal replay)")


def kernel_models_asked(args: argparse.Namespace) -> list[str]:
    return [m for m in (getattr(args, "model", None) or []) if m in KERNEL_MODEL_CHOICES]


def add_kernel_arguments(p: argparse.ArgumentParser) -> None:
    """Add the kernel models' limits to the ``explore`` parser."""
    g = p.add_argument_group(
        "the real kernel (--server with --model ext4|xfs|btrfs)",
        "Crash states recorded at the block layer (faults.kernel): at every marker (an entry "
        "sent, a reply read) the writes up to the last flush plus bounded subsets of the "
        "writes in flight, and at every flush; each image mounted by the kernel. Needs root, "
        "/dev/fuse and loop devices.")
    g.add_argument("--kernel-max-prefixes", type=positive_int, default=64, metavar="N",
                   help="in-flight prefixes per crash point (default 64; at least 2)")
    g.add_argument("--kernel-max-subsets", type=int, default=16, metavar="N",
                   help="other in-flight subsets per crash point, drawn from the seed "
                   "(default 16)")
    g.add_argument("--no-flush-points", action="store_true",
                   help="crash only at markers, not at every block-layer flush")
    g.add_argument("--fsck", action="store_true",
                   help="run the filesystem's checker on every crash image (slower; a "
                   "complaint is a finding about the filesystem)")


def _config(args: argparse.Namespace, fs: str) -> Any:
    from faults.kernel import KernelLimits
    from harness.cli._explore_server import _config as server_config
    from harness.verify._explore_kernel import KernelExploreConfig

    for name, default, flag in (("max_images_per_point", 4096, "--max-images-per-point"),
                                ("max_dirty_files", 4, "--max-dirty-files")):
        if getattr(args, name, default) != default:
            raise UsageError(f"{flag}: not with --model {fs} (the kernel's limits are "
                             f"--kernel-max-prefixes and --kernel-max-subsets)")
    if getattr(args, "torn", False) or getattr(args, "reorder", False):
        raise UsageError(f"--torn/--reorder: not with --model {fs} (a kernel crash image "
                         f"drops in-flight block writes whole)")
    if getattr(args, "include_startup", False):
        raise UsageError(f"--include-startup: not with --model {fs} (the started server is "
                         f"the recording's baseline)")
    saved = args.model
    args.model = ["process"]  # the FUSE explorer's config validates its own models
    try:
        server = server_config(args)
    finally:
        args.model = saved
    try:
        limits = KernelLimits(max_prefixes=getattr(args, "kernel_max_prefixes", 64),
                              max_subsets=getattr(args, "kernel_max_subsets", 16),
                              flush_points=not getattr(args, "no_flush_points", False))
        return KernelExploreConfig(fs, server, limits, fsck=getattr(args, "fsck", False))
    except ValueError as exc:
        raise UsageError(f"explore --server --model {fs}: {exc}") from None


def cmd_explore_kernel(args: argparse.Namespace) -> int:
    """Run ``aofcrash explore --server X --model ext4|xfs|btrfs``; 0 no violation, 1
    violations or a filesystem finding (UsageError: 2)."""
    from harness.cli._explore_server import (
        _by_rule,
        _check_options,
        _explore,
        _print_models,
        _print_violations,
        _report,
        _write,
    )
    from harness.verify._explore_kernel import explore_kernel_server, write_kernel_reproductions

    models = list(getattr(args, "model", None) or [])
    if len(models) != 1:
        raise UsageError(f"--model {' '.join(models)}: a kernel model runs alone (one of "
                         f"{', '.join(KERNEL_MODEL_CHOICES)} per run)")
    fs = models[0]
    _check_options(args)
    config = _config(args, fs)
    result, run_dir, series = _explore(
        args, lambda **kw: explore_kernel_server(config, **kw), f"explore --server --model {fs}")
    cfg = config.server
    rows = write_kernel_reproductions(result, run_dir / "reproductions",
                                      max_groups=getattr(args, "max_reproductions", 20))
    base = f"aofcrash explore --server {cfg.server}"
    rate = result.images_per_s
    totals = {
        "states": result.states,
        "violating_states": result.violating_states,
        "filesystem_findings": len(result.filesystem_findings),
        "crash_points": f"{result.points_explored}/{result.points_total}",
        "mounted_images": result.mounted_images,
        "distinct_aof_contents": result.distinct_contents,
        "real_recoveries": result.real_recoveries,
        "kernel_images_per_s": None if rate is None else round(rate, 1),
        "elapsed_s": round(result.elapsed_s, 2),
    }
    text = (f"Every recorded crash state of a {cfg.ops}-write {cfg.policy} workload "
            f"on {result.server_label} {result.server_version} on the kernel's {fs}: "
            f"{result.states} states at {result.points_explored}/{result.points_total}"
            f" crash points, {result.mounted_images} images mounted by the kernel, "
            f"{result.distinct_contents} distinct data dirs each recovered once by "
            f"the real binary, in {result.elapsed_s:.1f} s.")
    note = (f"{result.violating_states} violating state(s) ({_by_rule(result.to_dict())}), "
            f"grouped by rule and image; each group keeps its image and a repro.json."
            if result.violating_states else "")
    report = _report(result, config, run_dir, text, note, totals, series, rows, base)
    status = EXIT_OK if result.ok else EXIT_VIOLATION
    html_path = _write(args, result, run_dir, report, status, rows,
                       filesystem_findings=result.filesystem_findings)
    if html_path is None:
        return status
    print(f"explore --server {cfg.server} --model {fs} ({result.server_label} "
          f"{result.server_version}, the kernel's {fs}), policy {cfg.policy}, {cfg.ops} "
          f"writes: {result.states} states at {result.points_explored}/{result.points_total} "
          f"crash points in {result.elapsed_s:.1f}s")
    cov = result.coverage()[fs]
    print(f"  {result.block_writes} block writes, {result.flushes} flushes, {result.markers} "
          f"markers; {result.mounted_images} images mounted by the kernel, "
          f"{result.distinct_contents} distinct data dirs, {result.real_recoveries} real "
          f"recoveries; {totals['kernel_images_per_s']} states mounted, recovered and judged "
          f"per second on {result.workers} worker(s)")
    print(f"  limits: {cov['cut_by_max_images']} in-flight subsets cut of "
          f"{cov['legal_states_at_explored_points']} (--kernel-max-prefixes, "
          f"--kernel-max-subsets)")
    _print_models(report)
    for finding in result.filesystem_findings[:5]:
        print(f"  filesystem finding: {finding['finding']} ({finding['kernel_state']})")
    if result.violating_states:
        _print_violations(result, report, rows, base, lambda ex: f"at {ex['point']}")
    elif not result.filesystem_findings:
        print("no violation")
    print(f"report: {html_path}")
    return status
