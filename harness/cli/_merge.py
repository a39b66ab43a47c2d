"""``aofcrash report --merge``: one report from the reports of a campaign's shards.

Shards of one campaign (``--shard i/n`` on several machines) each write a report; merged, the
totals add up (wall-clock times take the longest shard, first failures the earliest), the
per-configuration rows and event counts add up, and the violations and their cause groups are
concatenated, grouped again by cause signature (for fuzz, explore and verify: the mechanism, so
one cause found by two shards is one cause, its count the sum, its members and where it was
seen joined, its smallest reproduction shown), with violation ids prefixed by the report's place
in the merge (``r2.v1``: every shard numbers from v1) and paths made absolute so the merged
report still points at every shard's reproductions.

Before anything is added up the reports are checked to be shards of one campaign: the same
command, and the same run description (target, seed, configuration) apart from what differs
between shards by design (``PER_SHARD_KEYS``); every shard index of ``n`` at most once, the
same ``n`` everywhere; no report given twice. A difference is a ``MergeError`` naming it;
``allow_mixed`` merges reports of different targets, seeds or configurations anyway (the
merged run description then says ``mixed: ...`` for each differing field) and checks the
shards of each campaign separately. Shards never given are not an error (a machine of the
matrix may have died) but a warning naming them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PER_SHARD_KEYS", "MergeError", "Merged", "merge_reports"]

_LONGEST = {"elapsed_s"}
_EARLIEST = {"first_failure_s"}

# Fields of a report's "run" that differ between the shards of one campaign by design.
PER_SHARD_KEYS = frozenset({"shard", "command_line", "units", "workers", "budget_s",
                            "switched_off", "merged_from", "shards", "reproduce"})
# What a differing field is called in the refusal, most telling first; others are
# "configurations".
_KINDS = (("targets", ("target", "server", "server_name", "server_cmd", "server_version")),
          ("seeds", ("seed",)))


class MergeError(ValueError):
    """The reports cannot be merged (different commands, a report or shard given twice,
    different campaigns without ``allow_mixed``, nothing to merge)."""


@dataclass(frozen=True, slots=True)
class Merged:
    """The merged report, the warnings to print (missing shards), and whether any merged
    report holds a violation (the merge's exit status, as each report's own would be)."""

    report: dict[str, Any]
    warnings: tuple[str, ...]
    violation: bool


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


def _run(report: dict[str, Any]) -> dict[str, Any]:
    run = report.get("run")
    return run if isinstance(run, dict) else {}


def _identity(report: dict[str, Any]) -> dict[str, str]:
    """The campaign a report belongs to: its run description without the per-shard fields,
    each value as canonical JSON (so lists and dicts compare by content)."""
    return {key: json.dumps(value, sort_keys=True, default=str)
            for key, value in _run(report).items() if key not in PER_SHARD_KEYS}


def _shard(report: dict[str, Any]) -> tuple[int, int]:
    """(i, n) from the run's "shard" ("i/n"); a report that does not say ran unsharded."""
    text = _run(report).get("shard")
    if isinstance(text, str):
        index, _, count = text.partition("/")
        if index.isdigit() and count.isdigit() and 0 <= int(index) < int(count):
            return int(index), int(count)
    return 0, 1


def _kind(key: str) -> str:
    return next((kind for kind, keys in _KINDS if key in keys), "configurations")


def _shown(value: str, limit: int = 60) -> str:
    """A canonical-JSON value as a reader would write it, elided past `limit` characters."""
    text = value[1:-1] if value.startswith('"') and value.endswith('"') else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, list[str]]]:
    """field -> value -> the reports (by label) that have it, for every field whose value is
    not the same in all reports (a field one report lacks counts as different)."""
    identities = [(label, _identity(r)) for label, r in reports]
    keys = sorted({k for _, ident in identities for k in ident})
    out: dict[str, dict[str, list[str]]] = {}
    for key in keys:
        values: dict[str, list[str]] = {}
        for label, ident in identities:
            values.setdefault(ident.get(key, "(none)"), []).append(label)
        if len(values) > 1:
            out[key] = values
    return out


def _refusal(differences: dict[str, dict[str, list[str]]]) -> str:
    order = [kind for kind, _ in _KINDS] + ["configurations"]
    kinds = [kind for kind in order if any(_kind(key) == kind for key in differences)]
    fields = "; ".join(
        f"{key} " + ", ".join(f"{_shown(value)} ({', '.join(labels)})"
                              for value, labels in values.items())
        for key, values in differences.items())
    return (f"cannot merge reports of different {' and '.join(kinds)}: {fields} (add "
            "--allow-mixed to merge them anyway)")


def _check_shards(label: str, group: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """MergeError for a shard given twice or shards of different counts; the warning naming
    the missing shards (empty when the group covers 0..n-1)."""
    counts = {_shard(r)[1] for _, r in group}
    if len(counts) > 1:
        listed = ", ".join(f"{i}/{n} ({name})" for name, r in group for i, n in [_shard(r)])
        raise MergeError(f"cannot merge shards of campaigns dealt differently{label}: {listed}")
    (count,) = counts
    seen: dict[int, str] = {}
    for name, report in group:
        index = _shard(report)[0]
        if index in seen:
            raise MergeError(f"shard {index}/{count} given twice{label}: {seen[index]} and "
                             f"{name}")
        seen[index] = name
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if not missing:
        return []
    return [f"shard(s) {', '.join(missing)} missing{label}: the merged report covers "
            f"{len(seen)} of {count} shards"]


def _holds_violation(report: dict[str, Any]) -> bool:
    """What makes ``aofcrash report DIR`` exit 1 on this report alone: a violation listed,
    or counted in its totals."""
    totals = report.get("totals")
    counted = totals.get("violations") if isinstance(totals, dict) else None
    return bool(report.get("violations")) or (isinstance(counted, int) and counted > 0)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _renamed(group: dict[str, Any], ident: Any) -> dict[str, Any]:
    """A copy of `group` with its violation ids renamed by `ident`."""
    out = dict(group)
    out["representative"] = ident(group.get("representative"))
    out["members"] = [ident(m) for m in group.get("members") or []]
    if isinstance(group.get("seen"), list):
        out["seen"] = [{**row, "id": ident(row.get("id"))} if isinstance(row, dict) else row
                       for row in group["seen"]]
    return out


def _join_group(into: dict[str, Any], more: dict[str, Any]) -> None:
    """One cause seen by two shards: counts added, members and where it was seen joined."""
    into["count"] = _int(into.get("count")) + _int(more.get("count"))
    into["members"] = [*(into.get("members") or []), *(more.get("members") or [])]
    if isinstance(more.get("seen"), list):
        into["seen"] = [*(into.get("seen") or []), *more["seen"]]
    for key in ("configuration", "model"):
        values = [str(x) for g in (into, more) for x in str(g.get(key) or "").split(", ") if x]
        if values:
            into[key] = ", ".join(dict.fromkeys(values))


def _choose_representatives(groups: Any, violations: list[dict[str, Any]]) -> None:
    """Each cause shows its smallest member (one with a reproduction first, then fewest
    program steps), as a campaign's own report does."""
    by_id = {v.get("id"): v for v in violations}
    for g in groups:
        members = [by_id[m] for m in g.get("members") or [] if m in by_id]
        if not members:
            continue

        def size(v: dict[str, Any]) -> tuple[int, int]:
            program = v.get("program")
            steps = len(program) if isinstance(program, list) and program else 10**9
            return (0 if v.get("reproduction") else 1, steps)

        best = min(members, key=size)
        if g.get("representative") not in by_id or size(best) < size(by_id[g["representative"]]):
            g["representative"] = best["id"]
            for key in ("rule", "fault", "shape"):
                if key in best:
                    g[key] = best[key]


def merge_reports(reports: list[tuple[Path, dict[str, Any]]], *,
                  allow_mixed: bool = False) -> Merged:
    """(run directory, report) of every shard -> the merged report (see the module doc)."""
    if len(reports) < 2:
        raise MergeError("--merge needs at least two reports")
    commands = {r.get("command") for _, r in reports}
    if len(commands) != 1:
        raise MergeError(f"cannot merge reports of different commands: "
                         f"{', '.join(sorted(map(str, commands)))}")
    seen_dirs: dict[Path, str] = {}
    labelled: list[tuple[str, dict[str, Any]]] = []
    for run_dir, report in reports:
        label = str(run_dir)
        where = run_dir.resolve()
        if where in seen_dirs:
            raise MergeError(f"the same report is given twice: {seen_dirs[where]} and {label}")
        seen_dirs[where] = label
        labelled.append((label, report))
    differences = _differences(labelled)
    if differences and not allow_mixed:
        raise MergeError(_refusal(differences))
    campaigns: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, report in labelled:
        campaigns.setdefault(json.dumps(_identity(report), sort_keys=True), []).append(
            (label, report))
    warnings: list[str] = []
    for number, group in enumerate(campaigns.values(), 1):
        which = f" (campaign {number} of {len(campaigns)})" if len(campaigns) > 1 else ""
        warnings.extend(_check_shards(which, group))

    totals: dict[str, Any] = {}
    events: Counter[str] = Counter()
    configurations: dict[str, dict[str, Any]] = {}
    violations: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for position, (run_dir, report) in enumerate(reports, 1):
        # Every shard numbers its violations v1, v2, ...: prefixed with the report's place
        # in the merge, ids stay unique and the groups' members still name them.
        def ident(value: Any, position: int = position) -> Any:
            return f"r{position}.{value}" if isinstance(value, str) else value

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
            v["id"] = ident(v.get("id"))
            v["shard_report"] = str(run_dir.resolve())
            name = v.get("reproduction")
            if isinstance(name, str) and not Path(name).is_absolute():
                v["reproduction"] = str((run_dir / name).resolve())
            violations.append(v)
        for g in report.get("groups") or []:
            if not isinstance(g, dict):
                continue
            g = _renamed(g, ident)
            signature = str(g.get("signature", len(groups)))
            if signature in groups:
                _join_group(groups[signature], g)
            else:
                groups[signature] = g
    _choose_representatives(groups.values(), violations)
    ordered = sorted(groups.values(), key=lambda g: -_int(g.get("count")))
    number_of: dict[Any, int] = {}
    for number, g in enumerate(ordered, 1):
        g["group"] = number
        for member in g.get("members") or []:
            number_of[member] = number
    for v in violations:
        if v.get("id") in number_of:
            v["group"] = number_of[v["id"]]
    first = reports[0][1]
    totals["violations"] = len(violations)
    if groups:
        totals["causes"] = len(groups)
    shards = sorted({_shard(r) for _, r in reports})
    run = {**_run(first),
           **{key: "mixed: " + ", ".join(_shown(v) for v in values)
              for key, values in differences.items()},
           "shard": ", ".join(f"{i}/{n}" for i, n in shards),
           "merged_from": [str(d.resolve()) for d, _ in reports]}
    if warnings:
        run["merge_warnings"] = warnings
    mixed = f"; mixed {', '.join(differences)}" if differences else ""
    report = {
        **{k: v for k, v in first.items() if k not in ("totals", "events", "configurations",
                                                         "violations", "groups", "run_id")},
        "run": run,
        "summary": (f"{len(reports)} reports merged ({first.get('command')}, shards "
                    f"{run['shard']}{mixed}): {len(violations)} violation(s)."),
        "totals": totals,
        "events": dict(events),
        "configurations": list(configurations.values()),
        "violations": violations,
        "groups": ordered,
    }
    return Merged(report=report, warnings=tuple(warnings),
                  violation=any(_holds_violation(r) for _, r in reports))
