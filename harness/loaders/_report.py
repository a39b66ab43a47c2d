"""Findings of a loader campaign as JSON, Markdown and regression cases.

The upstream references are only issues and pull requests that were looked up and read; a
finding gets one when its file matches what the thread is about (``UPSTREAM`` says how).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from harness.loaders._campaign import CampaignResult, Finding
from harness.loaders._diff import CLASSES, Disagreement
from harness.loaders._run import CheckRun, LoadOutcome

__all__ = ["UPSTREAM", "Upstream", "finding_upstream", "regression_case", "render_markdown",
           "report_json", "version_steps", "write_regressions", "write_report"]


@dataclass(frozen=True, slots=True)
class Upstream:
    ref: str
    url: str
    about: str
    matches: Callable[[Disagreement, bytes], bool]


def _has_annotation(data: bytes) -> bool:
    return data.startswith(b"#") or b"\n#" in data


def _multi(d: Disagreement, data: bytes) -> bool:
    return b"MULTI" in data.upper() and (d.cls == "restart" or "offset" in " ".join(d.key))


UPSTREAM: Final[tuple[Upstream, ...]] = (
    Upstream("valkey-io/valkey#4342", "https://github.com/valkey-io/valkey/pull/4342",
             "a short read inside MULTI was truncated after the MULTI, leaving an open "
             "transaction in the AOF; Valkey now truncates before the MULTI", _multi),
    Upstream("redis/redis#5201", "https://github.com/redis/redis/pull/5201",
             "discussion of what to do with a MULTI whose EXEC was lost at load", _multi),
    Upstream("redis/redis#11484", "https://github.com/redis/redis/pull/11484",
             "7.x: a truncated AOF file that is not the last one is fatal (a truncated legacy "
             "file becomes the base, followed by a new incr file)",
             lambda d, data: d.cls == "restart" and d.key[1] in ("redis-7.0", "redis-8.2",
                                                                   "valkey-9.1")),
    Upstream("redis/redis#9326", "https://github.com/redis/redis/pull/9326",
             "7.0 added '#TS:' timestamp annotations to the AOF; 6.x loaders and checkers do "
             "not know them", lambda d, data: _has_annotation(data) and d.cls in (
                 "version-vs-version", "check-vs-loader", "reference-vs-real")),
    Upstream("valkey-io/valkey#1614", "https://github.com/valkey-io/valkey/pull/1614",
             "Valkey checks command existence and arity when loading an AOF (Redis does not)",
             lambda d, data: d.cls == "version-vs-version" and "valkey-9.1: refused" in d.key[2]
             and not _has_annotation(data)),
)


def finding_upstream(finding: Finding) -> list[dict[str, str]]:
    return [{"ref": u.ref, "url": u.url, "about": u.about} for u in UPSTREAM
            if u.matches(finding.disagreement, finding.data)]


def _outcome_brief(outcome: LoadOutcome | CheckRun) -> str:
    if isinstance(outcome, CheckRun):
        text = outcome.verdict.value
        if outcome.ok_up_to is not None:
            text += f", ok_up_to={outcome.ok_up_to}"
        if outcome.reason:
            text += f" ({outcome.reason})"
        return text
    first = outcome.first
    text = first.verdict.value
    if first.offset is not None:
        text += f" at {first.offset}"
    if first.reason:
        text += f" ({first.reason})"
    if first.keyspace is not None:
        text += f"; {len(first.keyspace)} key(s)"
    if outcome.restart is not None:
        again = outcome.restart
        same = again.keyspace == first.keyspace
        text += f"; restart: {again.verdict.value}"
        if again.verdict.value in ("loaded", "truncated"):
            text += " (same keyspace)" if same else " (another keyspace)"
    return text


def report_json(result: CampaignResult, *, command: str, versions: Mapping[str, str],
                missing: Mapping[str, str]) -> dict[str, Any]:
    findings = []
    for index, f in enumerate(result.findings, start=1):
        findings.append({
            "id": index, **f.disagreement.to_dict(),
            "slug": f"{f.disagreement.slug}-{f.family}",
            "size_bytes": len(f.data), "hex": f.data.hex(), "text": repr(f.data),
            "found_in_family": f.family, "original_size_bytes": f.original_size_bytes,
            "files_showing": f.files_showing, "shrink_evals": f.shrink_evals,
            "reproduced": f.reproduced, "upstream": finding_upstream(f),
            "outcomes": {t: o.to_dict() for t, o in sorted(f.outcomes.items())},
        })
    total = result.matrix_seconds
    return {
        "command": command, "versions": dict(versions), "missing": dict(missing),
        "tools": result.tools, "workers": result.workers, "files": result.files,
        "coverage": dict(sorted(result.coverage.items())),
        "loader_runs": result.loader_runs, "check_runs": result.check_runs,
        "matrix_seconds": round(total, 2), "shrink_seconds": round(result.shrink_seconds, 2),
        "files_per_second": round(result.files / total, 2) if total else None,
        "stopped_early": result.stopped_early,
        "counts": {c: sum(1 for f in findings if f["class"] == c) for c in CLASSES},
        "findings": findings,
    }


def _load_seen(outcome: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if outcome is None:
        return None
    first, again = outcome["first"], outcome.get("restart")
    keyspace = first.get("keyspace")
    return (first["verdict"], first.get("offset"), None if keyspace is None else str(keyspace),
            None if again is None else again["verdict"])


def version_steps(report: Mapping[str, Any]) -> list[tuple[str, str, list[int], list[int]]]:
    """Each real server next to the one before it (in the order of ``versions``): the ids of
    the findings whose file the two loaders treat differently (verdict, offset, keyspace or
    what a restart does, with either ``aof-load-truncated`` setting) and those whose file
    their check tools judge differently (verdict or offset). Crash reasons are not compared:
    they name functions, which move between versions."""
    names = list(report["versions"])
    steps = []
    for older, newer in itertools.pairwise(names):
        loads, checks = [], []
        for f in report["findings"]:
            o = f["outcomes"]
            if any(_load_seen(o.get(f"load:{older}:{flag}")) != _load_seen(o.get(
                       f"load:{newer}:{flag}")) for flag in ("yes", "no")
                   if f"load:{older}:{flag}" in o and f"load:{newer}:{flag}" in o):
                loads.append(f["id"])
            a, b = o.get(f"check:{older}"), o.get(f"check:{newer}")
            if a is not None and b is not None and (a["verdict"], a["ok_up_to"]) != (
                    b["verdict"], b["ok_up_to"]):
                checks.append(f["id"])
        steps.append((older, newer, loads, checks))
    return steps


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(f"#{i}" for i in ids) if ids else "none"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# Differential loader findings",
        "",
        f"Produced by: `{report['command']}`",
        "",
        "Every AOF file below was loaded by each tool: real servers "
        + ", ".join(f"{k} ({v})" for k, v in report["versions"].items())
        + " with `aof-load-truncated yes` and `no` (7.x-style servers get a legacy "
        "`appendonly.aof`, which they migrate), the reference (`reference.Server` on a SimDisk, "
        "each profile), each version's `redis-check-aof` / `valkey-check-aof` and `aofcrash "
        "check-aof`. Each finding is one distinct disagreement, shrunk to the smallest file "
        "that still shows it; its verdict table is a fresh run of every tool on that file. "
        "Regression cases: `tests/regressions/loaders/`.",
        "",
        f"Files run: {report['files']} ({report['loader_runs']} loader runs, "
        f"{report['check_runs']} check runs) in {report['matrix_seconds']} s on "
        f"{report['workers']} worker(s); shrinking {report['shrink_seconds']} s.",
        "",
        "Coverage by family: " + ", ".join(f"{k} {v}" for k, v in report["coverage"].items()),
        "",
        "| class | findings |",
        "| --- | --- |",
        *(f"| {c} | {n} |" for c, n in report["counts"].items()),
        "",
    ]
    steps = version_steps(report)
    if steps:
        lines += [
            "Version to version, on the files of the findings below: where a loader (verdict, "
            "offset, keyspace, restart) or a check tool (verdict, offset) of one version "
            "treats a file differently from the version before it.",
            "",
            "| from | to | loaders differ on | check tools differ on |",
            "| --- | --- | --- | --- |",
            *(f"| {a} | {b} | {_ids(loads)} | {_ids(checks)} |"
              for a, b, loads, checks in steps),
            "",
        ]
    if report.get("missing"):
        lines += ["Missing tools: " + "; ".join(f"{k}: {v}" for k, v in
                                                report["missing"].items()), ""]
    current = None
    for f in report["findings"]:
        if f["class"] != current:
            current = f["class"]
            lines += [f"## {current}", ""]
        lines += [f"### {f['id']}. {_md_escape(f['summary'])}", ""]
        lines += [f"Key: `{' / '.join(f['key'])}`  ", f"Smallest file ({f['size_bytes']} bytes, "
                  f"from {f['original_size_bytes']} in family `{f['found_in_family']}`, "
                  f"{f['files_showing']} generated file(s) showed it):", "",
                  f"    hex:  {f['hex']}", f"    text: {f['text']}", ""]
        if not f["reproduced"]:
            lines += ["(Did not reproduce on a second run: flaky; kept unshrunk.)", ""]
        for up in f["upstream"]:
            lines += [f"Upstream: [{up['ref']}]({up['url']}): {up['about']}.  "]
        if f["upstream"]:
            lines.append("")
        lines += ["| tool | verdict |", "| --- | --- |"]
        for tool, outcome in f["outcomes"].items():
            lines.append(f"| {tool} | {_md_escape(_brief_from_dict(outcome))} |")
        lines.append("")
    return "\n".join(lines)


def _brief_from_dict(outcome: Mapping[str, Any]) -> str:
    if "first" not in outcome:
        text = str(outcome["verdict"])
        if outcome.get("ok_up_to") is not None:
            text += f", ok_up_to={outcome['ok_up_to']}"
        if outcome.get("reason"):
            text += f" ({outcome['reason']})"
        return text
    first = outcome["first"]
    text = str(first["verdict"])
    if first.get("offset") is not None:
        text += f" at {first['offset']}"
    if first.get("reason"):
        text += f" ({first['reason']})"
    if first.get("keyspace") is not None:
        keys = first["keyspace"]
        shown = ", ".join(f"db{k[0]} {k[1]}={k[3]!s}" + (f" {k[4]}" if k[4] else "")
                          for k in keys[:3])
        text += f"; keys: {shown or '(none)'}" + (" ..." if len(keys) > 3 else "")
    again = outcome.get("restart")
    if again is not None:
        text += f"; restart: {again['verdict']}"
        if again["verdict"] in ("loaded", "truncated"):
            text += (" (same keyspace)" if again.get("keyspace") == first.get("keyspace")
                     else " (another keyspace)")
    return text


def write_report(report: Mapping[str, Any], *, md_path: Path, json_path: Path) -> None:
    for path, text in ((json_path, json.dumps(report, separators=(",", ":")) + "\n"),
                       (md_path, render_markdown(report) + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def _expected(outcome: LoadOutcome | CheckRun) -> dict[str, Any]:
    if isinstance(outcome, CheckRun):
        return {"verdict": outcome.verdict.value, "ok_up_to": outcome.ok_up_to}
    out: dict[str, Any] = {"verdict": outcome.first.verdict.value,
                           "offset": outcome.first.offset}
    return out


def regression_case(finding: Finding) -> dict[str, Any]:
    """What a regression test needs: the file, the disagreement and each of its tools'
    recorded verdicts (and offsets)."""
    d = finding.disagreement
    return {
        "disagreement": d.to_dict(), "hex": finding.data.hex(),
        "expected": {t: _expected(finding.outcomes[t]) for t in d.tools
                     if t in finding.outcomes},
        "upstream": [u["ref"] for u in finding_upstream(finding)],
    }


def write_regressions(findings: Sequence[Finding], directory: Path) -> list[Path]:
    """One JSON file per reproduced finding (named by class and slug); old cases are kept."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for f in findings:
        if not f.reproduced:
            continue
        path = directory / f"{f.disagreement.slug}-{f.family}.json"
        path.write_text(json.dumps(regression_case(f), indent=1) + "\n")
        written.append(path)
    return written
