"""``aofcrash explore --server NAME|PATH``: the crash-state explorer on a real server binary
(see ``harness.verify._explore_server``).

``add_server_arguments(parser)`` adds ``--server`` and the options only it takes to the
``explore`` parser; ``cmd_explore_server(args)`` runs it (``cmd_explore`` hands over when
``args.server`` is set). It shares ``explore``'s own options where they mean the same thing:
``--seed --ops --policy --model --workers --allow-unavailable --torn --reorder
--max-images-per-point --max-dirty-files --max-crash-points --max-reproductions --naive
--defect --json --reports --progress``. With ``--replay FILE`` it re-runs one reproduction
written by an earlier run instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli._common import (
    EXIT_OK,
    EXIT_VIOLATION,
    UsageError,
    nonnegative_int,
    progress_bar,
    resolve_workers,
)

__all__ = ["DEFAULT_MODELS", "add_server_arguments", "cmd_explore_server"]

# Every simulated model but the POSIX minimum: power-posix-metadata multiplies the states
# (about 7x for redis 7.0, always, 200 writes: 10,649 against 1,961 with three models) and no
# filesystem measured here is that weak, so it is asked for by name (--model).
DEFAULT_MODELS = ("process", "power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata")
_POSIX_NOTE = ("note: power-posix-metadata (the POSIX minimum, where the committed findings "
               "show Redis 6.0-8.2 and Valkey losing files without a directory fsync) was not "
               "explored: add --model power-posix-metadata (about 7 times the states)")
# explore options that mean nothing for a real binary, with why (UsageError if given).
_NOT_WITH_SERVER = (
    ("workload", None, "--workload: explore --server runs its own seeded workload (--ops, "
                       "--seed, --rewrite-at)"),
    ("target", None, "--target: a real server is named by --server"),
    ("profile", None, "--profile: only the in-process reference has profiles"),
    ("byte_granularity", False, "--byte-granularity: a real process writes whole FUSE writes "
                                "(power prefixes are at sector boundaries)"),
    ("sector_granularity", False, "--sector-granularity: explore --server has no crash "
                                  "points inside writes"),
    ("no_appendfsync_on_rewrite", False, "--no-appendfsync-on-rewrite: pass it to the "
                                         "server with --server-config"),
)


def _server_config_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().lstrip("-")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE (a server setting, e.g. aof-use-rdb-preamble=yes), "
            f"got {text!r}")
    return name, value


def _rewrite_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (-1: no rewrite), got {text!r}"
                                         ) from None
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be >= -1 (-1: no rewrite), got {value}")
    return value


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--server`` and its own options to the ``explore`` parser."""
    g = p.add_argument_group(
        "real servers (--server)",
        "Record a seeded workload on the real binary through the FUSE SimDisk, then recover "
        "every distinct crash image once with that binary on every core and check every "
        "crash state. Defaults with --server: --policy always, --ops 200, one BGREWRITEAOF "
        "before the middle write, --model process, power-ext4, power-xfs, power-btrfs and "
        "power-eager-metadata (every simulated model but power-posix-metadata, which takes "
        "about 7 times the states: ask for it by name; the real kernel's ext4, xfs and btrfs "
        "need root and FUSE), "
        "--workers two per core (a recovery mostly waits for the server).")
    g.add_argument("--server", default=None, metavar="NAME|PATH",
                   help="explore a real server: a preset (6.0, 6.2, 7.0, 8.2, valkey, reference) "
                   "or a path to a redis-server-like binary")
    g.add_argument("--server-config", action="append", default=None, type=_server_config_arg,
                   metavar="NAME=VALUE",
                   help="an extra server setting passed as --NAME VALUE (repeatable)")
    g.add_argument("--rewrite-at", type=_rewrite_arg, default=None, metavar="N",
                   help="send BGREWRITEAOF before write N (default: ops/2; -1: no rewrite)")
    g.add_argument("--duration-ms", type=nonnegative_int, default=None,
                   help="spread the writes over this long (default: 6000 for everysec, else "
                   "as fast as they go)")
    g.add_argument("--margin-ms", type=nonnegative_int, default=500,
                   help="everysec: scheduling slack added to the 2 s window (default 500)")
    g.add_argument("--include-startup", action="store_true",
                   help="also crash during the server's own start-up (default: from the "
                   "workload's first write on)")
    g.add_argument("--no-stability", action="store_true",
                   help="skip rule 3 (recovering what the first recovery left)")
    g.add_argument("--replay", type=Path, default=None, metavar="FILE",
                   help="re-run one reproduction (repro.json) of an earlier explore --server "
                   "run: recover its image with the server and judge it again")


def _check_options(args: argparse.Namespace) -> None:
    for name, default, why in _NOT_WITH_SERVER:
        if getattr(args, name, default) not in (default, None):
            raise UsageError(f"{why}; it cannot be combined with --server")
    shard = getattr(args, "shard", (0, 1))
    if tuple(shard) != (0, 1):
        raise UsageError("--shard: explore --server runs one recording; shard the recoveries "
                         "with --workers instead")
    if getattr(args, "max_reproductions", 20) < 0:
        raise UsageError(f"--max-reproductions: must be >= 0, got {args.max_reproductions}")


def _config(args: argparse.Namespace) -> Any:
    from harness.verify._explore_server import ServerExploreConfig

    server_config = list(getattr(args, "server_config", None) or [])
    defects = getattr(args, "defect", None) or []
    if defects:
        if args.server != "reference":
            raise UsageError("--defect with --server: only the reference has named defects "
                             "(--server reference)")
        server_config += [("defect", name) for name in defects]
    try:
        return ServerExploreConfig(
            server=args.server,
            policy=getattr(args, "policy", None) or "always",
            models=tuple(getattr(args, "model", None) or DEFAULT_MODELS),
            ops=getattr(args, "ops", None) or 200,
            seed=getattr(args, "seed", 0),
            rewrite_at=args.rewrite_at,
            duration_ms=args.duration_ms,
            margin_ms=args.margin_ms,
            allow_unavailable=getattr(args, "allow_unavailable", False),
            server_config=tuple(server_config),
            include_startup=args.include_startup,
            stability=not args.no_stability,
            max_crash_points=getattr(args, "max_crash_points", None),
            max_images_per_point=getattr(args, "max_images_per_point", 4096),
            max_dirty_files=getattr(args, "max_dirty_files", 4),
            torn=getattr(args, "torn", False),
            reorder=getattr(args, "reorder", False),
            exact=getattr(args, "naive", False),
        )
    except ValueError as exc:
        raise UsageError(f"explore --server: {exc}") from None


def _replay(args: argparse.Namespace) -> int:
    from harness.verify import VerifyEnvironmentError
    from harness.verify._explore_kernel import is_kernel_reproduction, replay_kernel_reproduction
    from harness.verify._explore_server import replay_server_reproduction

    replay = (replay_kernel_reproduction if is_kernel_reproduction(args.replay)
              else replay_server_reproduction)
    try:
        verdict = replay(args.replay, server=args.server)
    except ValueError as exc:
        raise UsageError(f"--replay: {exc}") from None
    except VerifyEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    if getattr(args, "json", False):
        print(json.dumps({"status": "ok" if verdict.ok else "violation",
                          "verdict": verdict.to_dict()}, default=str))
    else:
        print(f"replay {args.replay}:")
        print(verdict.render())
    return EXIT_OK if verdict.ok else EXIT_VIOLATION


def _report_violations(result: Any, rows: list[dict[str, Any]], command: str
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(violations, groups) in the shape the report renderer reads: one card per cause. A
    cause is a mechanism (``cause_text`` of the row's: rules, what the image lacks or
    resurrects, the server's refusal) under any model; its count is every violating state
    of that mechanism (the result's ``mechanisms``, left-out groups included), so the causes
    add up to the violating states. The kernel's rows have one too (the image against the
    files the server had written, read at each marker); a row without one (no files read at
    its marker) is a cause of its own."""
    from harness.verify._mechanism import cause_text

    states: dict[str, int] = {}
    for m in getattr(result, "mechanisms", None) or []:
        key = cause_text(str(m.get("mechanism", "")))
        states[key] = states.get(key, 0) + int(m.get("states", 0))
    violations: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    by_cause: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, 1):
        example = row["example"]
        verdict = example.get("verdict") or {}
        first = (verdict.get("violations") or [{}])[0]
        ident = f"g{number}"
        history = result.histories.get(example["trace_index"])
        mechanism = row.get("mechanism")
        cause = (cause_text(str(mechanism)) if mechanism
                 else f"{', '.join(row['rules'])} (image {row['image_digest'][:12]})")
        entry: dict[str, Any] = {
            "id": ident, "rule": ", ".join(row["rules"]), "model": example["model"],
            "configuration": f"{result.server_label} {result.config.policy}",
            "headline": first.get("message", ""),
            "text": json.dumps(example, indent=1, default=str),
            "verdict": verdict,
            "history": None if history is None else history.to_dict(),
            "states": row["states"], "crash_points": row["crash_points"],
            "models": row["models"], "image_digest": row["image_digest"],
            "server_reason": example.get("server_reason"),
            "mechanism": mechanism, "signature": cause,
        }
        if row["reproduction"] is not None:
            entry["reproduction"] = row["reproduction"]
            entry["replay"] = f"{command} --replay {row['reproduction']}"
        violations.append(entry)
        group = by_cause.get(cause)
        if group is None:
            group = by_cause[cause] = {
                "signature": cause, "mechanism": cause, "unit": "state",
                "count": states.get(cause, 0) if mechanism and cause in states else 0,
                "counted": bool(mechanism and cause in states),
                "representative": ident, "members": [], "models": []}
            groups.append(group)
        group["members"].append(ident)
        group["models"] = sorted({*group["models"], *row["models"]})
        group["model"] = ", ".join(group["models"])
        if not group["counted"]:
            group["count"] += int(row["states"])
        if group["representative"] != ident and row["reproduction"] is not None and not any(
                v["id"] == group["representative"] and v.get("reproduction")
                for v in violations):
            group["representative"] = ident
    groups.sort(key=lambda g: -int(g["count"]))
    for number, g in enumerate(groups, 1):
        g["group"] = number
        del g["counted"]
    number_of = {g["signature"]: g["group"] for g in groups}
    for v in violations:
        v["group"] = number_of[v["signature"]]
    return violations, groups


def _explore(args: argparse.Namespace, explore: Callable[..., Any], what: str
             ) -> tuple[Any, Path, list[list[float]]]:
    """Call `explore(workers=, progress=)` with a progress bar and a new run directory:
    (result, run_dir, the recoveries-over-time series). Errors are one line (UsageError),
    prefixed with `what`."""
    from harness.cli._report import PartialReports, new_run_dir
    from harness.cli._report_violations import command_line
    from harness.verify import VerifyEnvironmentError
    from harness.verify._explore_server import ServerExploreError

    requested = getattr(args, "workers", 0) or 0
    # A recovery mostly waits (the server's start-up, its death after SIGKILL): two per core
    # keep every core busy (measured: 72/s with 4 workers on 2 cores vs 46/s with 2).
    workers = requested if requested > 0 else 2 * resolve_workers(0)
    seed = getattr(args, "seed", 0)
    run_dir = new_run_dir(getattr(args, "reports", Path("reports")), "explore", seed)
    bar = progress_bar(args, total=1, unit="steps")
    series: list[list[float]] = [[0.0, 0]]
    started = time.perf_counter()
    partial = PartialReports(run_dir)
    phase_at: dict[str, Any] = {"phase": "start", "done": 0, "total": 0, "written": -1e9}

    def progress_report(how: str) -> dict[str, Any]:
        """What is known before the states are judged: the phase reached, no verdict."""
        return {"command": "explore", "run_id": run_dir.name, "interrupted": how,
                "summary": f"{what} did not finish: {how}. The states are judged at the end, "
                           "so no violation can be reported from this run.",
                "run": {"command_line": command_line()},
                "totals": {"phase": phase_at["phase"],
                           "phase_done": f"{phase_at['done']}/{phase_at['total']}",
                           "elapsed_s": round(time.perf_counter() - started, 2)},
                "progress_series": {"title": "Real recoveries over time", "xlabel": "seconds",
                                    "ylabel": "recoveries", "points": series},
                "violations": [], "groups": []}

    def on_progress(phase: str, done: int, total: int) -> None:
        bar.total = max(total, 1)
        if phase == "recover":
            series.append([round(time.perf_counter() - started, 3), done])
        bar.update(done, f"{phase}: {done}/{total}")
        phase_at.update(phase=phase, done=done, total=total)
        now = time.perf_counter()
        if now - phase_at["written"] >= 5.0:  # a killed run leaves where it was
            phase_at["written"] = now
            partial.write(progress_report(
                f"not finished when written: {phase} {done}/{total} (the run was still "
                "going, or was killed)"))

    try:
        result = explore(workers=workers, progress=on_progress)
    except KeyboardInterrupt:
        bar.close()
        partial.final(progress_report(
            f"Ctrl-C (SIGINT) during {phase_at['phase']} {phase_at['done']}/"
            f"{phase_at['total']}"))
        sys.stderr.write(f"aofcrash {what}: the report says how far it got: "
                         f"{run_dir / 'report.html'}\n")
        raise
    except VerifyEnvironmentError as exc:
        raise UsageError(str(exc)) from None
    except ServerExploreError as exc:
        raise UsageError(f"{what}: {exc}") from None
    finally:
        bar.close()
    return result, run_dir, series


def _report(result: Any, config: Any, run_dir: Path, text: str, note: str, totals: dict[str, Any],
            series: list[list[float]], rows: list[dict[str, Any]], base: str
            ) -> dict[str, Any]:
    """The run's report in the shape the report renderer reads (`text`: its summary line,
    `note`: what the violations section says above its groups)."""
    from harness.cli._report_violations import command_line

    summary = result.to_dict()
    violations, groups = _report_violations(result, rows, base)
    totals["causes"] = len(groups)
    return {
        "command": "explore",
        "run_id": run_dir.name,
        "summary": text,
        "run": {**config.to_dict(), "server_name": result.server_label,
                "server_version": result.server_version, "workers": result.workers,
                "mode": summary["mode"], "command_line": command_line()},
        "totals": totals,
        "coverage": result.coverage(),
        "progress_series": {"title": "Real recoveries over time", "xlabel": "seconds",
                            "ylabel": "recoveries", "points": series},
        "violations_note": note,
        "groups": groups,
        "configurations": [{"model": m, **counts} for m, counts in summary["by_model"].items()],
        "events": dict(result.events),
        "explore": summary,
        "violations": violations,
    }


def _by_rule(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {n}" for k, n in summary["violations_by_rule"].items())


def _write(args: argparse.Namespace, result: Any, run_dir: Path, report: dict[str, Any],
           status: int, rows: list[dict[str, Any]], **extra: Any) -> Path | None:
    """Write the report; with --json print the one-line answer (then None), else return the
    HTML report's path for the text answer."""
    from harness.cli._report import write_report

    json_path, html_path = write_report(run_dir, report)
    if not getattr(args, "json", False):
        return html_path
    summary = report["explore"]
    print(json.dumps({"status": "violation" if status else "ok",
                      "report": str(json_path), "html": str(html_path), **report["totals"],
                      "by_model": summary["by_model"],
                      "violations_by_rule": summary["violations_by_rule"],
                      "coverage": result.coverage(), "seconds": summary["seconds"], **extra,
                      "groups": [{k: v for k, v in row.items() if k != "example"}
                                 for row in rows]}, default=str))
    return None


def _print_models(report: dict[str, Any]) -> None:
    for m, counts in report["explore"]["by_model"].items():
        print(f"  {m}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))


def _print_violations(result: Any, report: dict[str, Any], rows: list[dict[str, Any]],
                      base: str, at: Callable[[dict[str, Any]], str]) -> None:
    """The violating states by rule and the first groups (`at`: where its example crashed)."""
    print(f"{result.violating_states} violating state(s): " + _by_rule(report["explore"]))
    for row in rows[:10]:
        ex = row["example"]
        where = row["reproduction"] or "(no reproduction kept)"
        print(f"  [{', '.join(row['rules'])}] {row['states']} state(s), e.g. {at(ex)}: {where}")
        if ex.get("server_reason"):
            print(f"    server: {ex['server_reason']}")
    if rows and rows[0]["reproduction"]:
        print(f"replay one: {base} --replay {rows[0]['reproduction']}")


def cmd_explore_server(args: argparse.Namespace) -> int:
    """Run ``aofcrash explore --server``; 0 no violation, 1 violations (UsageError: 2)."""
    from harness.verify._explore_server import explore_server, write_server_reproductions

    if getattr(args, "replay", None) is not None:
        return _replay(args)
    _check_options(args)
    config = _config(args)
    result, run_dir, series = _explore(
        args, lambda **kw: explore_server(config, **kw), "explore --server")
    max_repros = getattr(args, "max_reproductions", 20)
    rows = write_server_reproductions(result, run_dir / "reproductions", max_groups=max_repros)
    base = f"aofcrash explore --server {config.server}"
    rate = result.recoveries_per_s
    totals = {
        "states": result.states,
        "violating_states": result.violating_states,
        "crash_points": f"{result.points_explored}/{result.points_total}",
        "distinct_aof_contents": result.distinct_contents,
        "real_recoveries": result.real_recoveries,
        "recoveries_per_s": None if rate is None else round(rate, 1),
        "elapsed_s": round(result.elapsed_s, 2),
    }
    models = list(config.models)
    text = (f"Every crash state of a {config.ops}-write {config.policy} workload on "
            f"{result.server_label} {result.server_version} under "
            f"{', '.join(models)}: {result.states} states at "
            f"{result.points_explored}/{result.points_total} crash points, "
            f"{result.distinct_contents} distinct images each recovered once by the "
            f"real binary, in {result.elapsed_s:.1f} s.")
    note = (
        f"{result.violating_states} violating state(s) ({_by_rule(result.to_dict())}), "
        f"grouped by mechanism (rules, what the image lacks or resurrects against what the "
        f"server wrote, its refusal); each keeps its first image and a repro.json"
        + (f"; {len(rows) - max_repros} mechanism(s) past --max-reproductions have no "
           "repro.json" if len(rows) > max_repros else "")
        + (f"; {result.groups_left_out} violating state group(s) "
           f"({result.states_left_out} states) past the cap of {config.max_exact_violations} "
           "are counted, not listed" if result.groups_left_out else "") + "."
        if result.violating_states else "")
    report = _report(result, config, run_dir, text, note, totals, series, rows, base)
    status = EXIT_VIOLATION if result.violating_states else EXIT_OK
    html_path = _write(args, result, run_dir, report, status, rows)
    if html_path is None:
        return status
    print(f"explore --server {config.server} ({result.server_label} {result.server_version}), "
          f"policy {config.policy}, {config.ops} writes: {result.states} states at "
          f"{result.points_explored}/{result.points_total} crash points in "
          f"{result.elapsed_s:.1f}s")
    print(f"  {result.distinct_contents} distinct images, {result.real_recoveries} real "
          f"recoveries ({result.stability_recoveries} for stability) at "
          f"{totals['recoveries_per_s']}/s on {result.workers} worker(s)")
    _print_models(report)
    if "power-posix-metadata" not in models:
        print(_POSIX_NOTE)
    if status:
        _print_violations(result, report, rows, base,
                          lambda ex: f"{ex['model']} at trace index {ex['trace_index']}")
    else:
        print("no violation")
    print(f"report: {html_path}")
    return status
