"""``aofcrash report --merge``: one report from the reports of a campaign's shards.

Shards of one campaign (``--shard i/n`` on several machines) each write a report; merged, the
totals add up (wall-clock times take the longest shard, first failures the earliest), the
per-configuration rows and event counts add up, and the violations and their cause groups are
concatenated, grouped again by cause signature, with paths made absolute so the merged report
still points at every shard's reproductions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["MergeError", "merge_reports"]

_LONGEST = {"elapsed_s"}
_EARLIEST = {"first_failure_s"}


class MergeError(ValueError):
    """The reports cannot be merged (different commands, nothing to merge)."""


def _add(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        old = into.get(key)
        if isinstance(value, bool) or value is None:
            into.setdefault(key, value)
        elif isinstance(value, int | float) and (old is None or isinstance(old, int | float)):
            if key in _LONGEST:
                into[key] = max(old or 0, value)
            elif key in _EARLIEST:
                into[key] = value if old is None else min(old, value)
            else:
                into[key] = (old or 0) + value
        elif isinstance(value, dict) and isinstance(old, dict | type(None)):
            sub = dict(old or {})
            _add(sub, value)
            into[key] = sub
        else:
            into.setdefault(key, value)


def merge_reports(reports: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """(run directory, report) of every shard -> the merged report (see the module doc)."""
    if len(reports) < 2:
        raise MergeError("--merge needs at least two reports")
    commands = {r.get("command") for _, r in reports}
    if len(commands) != 1:
        raise MergeError(f"cannot merge reports of different commands: "
                         f"{', '.join(sorted(map(str, commands)))}")
    totals: dict[str, Any] = {}
    events: Counter[str] = Counter()
    configurations: dict[str, dict[str, Any]] = {}
    violations: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for run_dir, report in reports:
        _add(totals, report.get("totals") or {})
        for name, count in (report.get("events") or {}).items():
            if isinstance(count, int):
                events[name] += count
        for row in report.get("configurations") or []:
            if isinstance(row, dict):
                label = str(row.get("configuration", row.get("trial", len(configurations))))
                merged = configurations.setdefault(label, {})
                _add(merged, row)
        for v in report.get("violations") or []:
            if not isinstance(v, dict):
                continue
            v = dict(v)
            v["shard_report"] = str(run_dir.resolve())
            name = v.get("reproduction")
            if isinstance(name, str) and not Path(name).is_absolute():
                v["reproduction"] = str((run_dir / name).resolve())
            violations.append(v)
        for g in report.get("groups") or []:
            if not isinstance(g, dict):
                continue
            signature = str(g.get("signature", len(groups)))
            if signature in groups:
                groups[signature]["count"] = (groups[signature].get("count", 0)
                                              + g.get("count", 0))
            else:
                groups[signature] = dict(g)
    for number, g in enumerate(groups.values(), 1):
        g["group"] = number
    first = reports[0][1]
    totals["violations"] = len(violations)
    if groups:
        totals["causes"] = len(groups)
    return {
        **{k: v for k, v in first.items() if k not in ("totals", "events", "configurations",
                                                         "violations", "groups", "run_id")},
        "run": {**(first.get("run") or {}),
                "merged_from": [str(d.resolve()) for d, _ in reports]},
        "summary": (f"{len(reports)} reports merged ({first.get('command')}): "
                    f"{len(violations)} violation(s)."),
        "totals": totals,
        "events": dict(events),
        "configurations": list(configurations.values()),
        "violations": violations,
        "groups": list(groups.values()),
    }
