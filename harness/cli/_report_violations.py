"""From what a campaign or the explorer found to the report's violations: reproduction files
(``*.aofrepro.json``, which the pytest plugin collects), cause groups, and per violation what a
person needs (see ``_report_replay``); plus the same for a terminal.

A *group* (a cause) is every violation with one signature, shown once with its smallest
reproduction and its count. For the explorer the signature is the violation's mechanism
(``mechanism_text``: the rules broken and what the crash image lacks or resurrects against what
the server had written, under any model and at any crash point), and the count is every
violating state of that mechanism, kept in detail or not, so the causes add up to the violating
states. A fuzz finding's signature is its mechanism too (``fuzz_mechanism``): its reproduction
is replayed, and the rules it broke plus what the image of the crash that broke them lacks or
resurrects against the files visible at that crash (``image_effects``, as the explorer computes
it) say what explains it; an image holding exactly what the server wrote says what the server
lost itself (per rule) and, for a refusal, why it refused. Configuration, model and faults are
where a cause was seen (the group's ``seen`` rows), not part of it, so one planted bug found
under two policies or fault sets is one cause, counted once per finding. A finding that no
recovery broke (a read, liveness, check-aof) is grouped by its rules and first line; one whose
replay failed or did not break a data rule at a recovery keeps the older signature (rules,
configuration, model, faults fired, shape).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.cli._fileio import slug, write_atomic
from harness.cli._report_replay import (
    RULE_WORDS,
    crash_point_words,
    explorer_reproduction,
    program_faults,
    program_lines,
    shape,
    signature,
    study,
    workload_run,
)

__all__ = [
    "REPRO_SUFFIX",
    "aofcrash_command",
    "explore_violations",
    "fuzz_mechanism",
    "fuzz_violations",
    "group_violations",
    "replay_command",
    "terminal_lines",
    "violation_lines",
]

#: Reproduction files end so; the pytest plugin collects exactly these.
REPRO_SUFFIX = ".aofrepro.json"


def aofcrash_command() -> str:
    """How to run aofcrash from a shell here: the bare name when it is on PATH, else the
    absolute path of the script that is running."""
    if shutil.which("aofcrash"):
        return "aofcrash"
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "aofcrash" and argv0.exists():
        return shlex.quote(str(argv0.absolute()))
    script = Path(sys.executable).with_name("aofcrash")
    return shlex.quote(str(script)) if script.exists() else "aofcrash"


def replay_command(path: Path) -> str:
    """An absolute, copy-paste replay command for a reproduction file."""
    return f"{aofcrash_command()} replay {shlex.quote(str(path.absolute()))}"


def _headline(verdict: dict[str, Any] | None, fallback: str) -> str:
    if verdict and verdict.get("violations"):
        first = verdict["violations"][0]
        return str(first.get("message", fallback))
    return fallback.splitlines()[0] if fallback else ""


def _rules_of(rules: Sequence[str]) -> str:
    return ", ".join(rules) if rules else "?"


def _record(*, index: int, rules: Sequence[str], kind: str, configuration: str,
            model: str | None, fault: str, program_shape: str, text: str,
            verdict: dict[str, Any] | None) -> dict[str, Any]:
    rule = _rules_of(rules)
    return {
        "id": f"v{index}",
        "rule": rule,
        "rules": list(rules),
        "kind": kind,
        "configuration": configuration,
        "model": model,
        "fault": fault,
        "shape": program_shape,
        "signature": signature(rules=rules, configuration=configuration, model=model,
                               fault=fault, program_shape=program_shape),
        "headline": _headline(verdict, text),
        "explanation": " ".join(RULE_WORDS.get(r, r) for r in rules),
        "text": text,
        "verdict": verdict,
        "reproduction": None,
        "replay": None,
    }


def _attach_study(record: dict[str, Any], repro: Any, *, timeline: bool) -> None:
    """Replay `repro` and add the program, the crash epochs and (for a group's representative)
    the timeline events to `record`."""
    try:
        seen = study(repro)
    except Exception as exc:  # a report must still be written: say why the replay failed
        record["study_error"] = f"{type(exc).__name__}: {exc}"
        return
    record["program"] = seen["program"]
    record["epochs"] = seen["epochs"]
    record["crash_effects"] = seen.get("crash_effects")
    record["policy"] = seen["policy"]
    record["replayed_outcome"] = seen["outcome"]
    if record.get("verdict") is None and seen.get("verdict") is not None:
        record["verdict"] = seen["verdict"]
        record["headline"] = _headline(seen["verdict"], record["text"])
    if timeline:
        record["events"] = seen["events"]


def _fired(events: Sequence[dict[str, Any]], steps: Sequence[Any]) -> str | None:
    """The kinds of the faults that fired in a replay, and how the process died."""
    if not events:
        return None
    kinds: list[str] = []
    for e in events:
        if e.get("kind") == "fault" and e.get("fault") not in kinds:
            kinds.append(str(e["fault"]))
    if any(s.kind == "crash" for s in steps) and "Crash now" not in kinds:
        kinds.append("crash now")
    return " + ".join(kinds) or "no fault"


def _write_repro(run_dir: Path, name: str, repro: Any, record: dict[str, Any]) -> None:
    path = run_dir / name
    # Where the target's module came from (relative to the directory the run started in): the
    # replay command then works from any directory, without PYTHONPATH.
    write_atomic(path, repro.with_target_source(Path.cwd()).to_json())
    record["reproduction"] = name
    record["reproduction_path"] = str(path.absolute())
    record["replay"] = replay_command(path)


def group_violations(violations: list[dict[str, Any]],
                     sizes: dict[str, int] | None = None,
                     replayable: set[str] | None = None) -> list[dict[str, Any]]:
    """Groups by signature, biggest first; each names its smallest member (one with a
    reproduction first, then fewest program steps), the configurations and models of its
    members (``configuration``, ``model``: distinct values joined) and where each member was
    seen (``seen``), and every violation gets its ``group`` number."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in violations:
        groups.setdefault(v["signature"], []).append(v)
    rows = []
    for sig, members in groups.items():
        def size(v: dict[str, Any]) -> tuple[int, int]:
            steps = (sizes or {}).get(v["id"], len(v.get("program") or []) or 10**9)
            has = v.get("reproduction") or (replayable is not None and v["id"] in replayable)
            return (0 if has else 1, steps)

        smallest = min(members, key=size)
        rows.append({"signature": sig, "count": len(members),
                     "representative": smallest["id"],
                     "members": [m["id"] for m in members],
                     "rule": smallest["rule"],
                     "configuration": _joined(m["configuration"] for m in members),
                     "model": _joined(m["model"] for m in members) or None,
                     "fault": smallest["fault"], "shape": smallest["shape"],
                     # Where this cause was seen: one row per member.
                     "seen": [{"id": m["id"], "configuration": m["configuration"],
                               "model": m["model"], "fault": m["fault"]} for m in members]})
    rows.sort(key=lambda g: -int(g["count"]))
    _number(rows, violations)
    return rows


def _joined(values: Iterable[Any]) -> str:
    """Distinct non-empty values, in the order first seen, as one string."""
    return ", ".join(dict.fromkeys(str(x) for x in values if x))


def _number(groups: list[dict[str, Any]], violations: list[dict[str, Any]]) -> None:
    """Number `groups` in order (1, 2, ...) and give every violation its group's number."""
    number_of = {}
    for number, g in enumerate(groups, 1):
        g["group"] = number
        number_of[g["signature"]] = number
    for v in violations:
        if v["signature"] in number_of:
            v["group"] = number_of[v["signature"]]


def mechanism_text(rules: Sequence[str], effects: Sequence[str]) -> str:
    """A violation's mechanism in words: its rules and what its image lacks or resurrects."""
    from harness.verify._mechanism import cause_text, describe_effects

    return cause_text(f"{'/'.join(sorted(rules))}: {describe_effects(sorted(set(effects)))}")


#: What a server lost or refused when its crash image holds exactly what it had written (no
#: image effect explains it: its own doing), per rule.
_OWN_DOING = {
    "durability": "acknowledged writes its own files do not give back",
    "prefix-consistency": "its own files load to no moment of the history",
    "phantom": "its own files hold a write it refused",
    "stability": "a second recovery of its own files differs",
    "damage": "damaged synced bytes loaded as data",
}
_JSON_OBJECT = re.compile(r"\{.*\}")
_READ = re.compile(r"\bread (\S+)")


#: Rules a finding breaks with no recovery to blame (a read, the end of the program, the check
#: before a recovery).
_NOT_AT_RECOVERY = frozenset({"model-divergence", "liveness", "check-aof"})


def fuzz_mechanism(rules: Sequence[str], crash_effects: Sequence[str] | None, text: str,
                   unavailable_reason: str | None = None) -> str | None:
    """A fuzz finding's mechanism, as the explorer's (``mechanism_text``): its rules and what
    the image of the crash that broke them lacks or resurrects against what the server had
    written (`crash_effects`, from the replay; None when no recovery broke them), and why the
    server refused to start. Policy, model, faults and program are left out: they are where a
    mechanism was seen, not what it is. With no effect the server lost or refused what it
    wrote itself: the rules say what it lost. With no recovery to blame (a read, liveness or
    check-aof), the finding's first line, numbers and crash image left out. None when no
    recovery broke a data rule in the replay (it did not reproduce): nothing to explain it."""
    from harness.verify._mechanism import cause_text, describe_effects, server_reason_kind

    head = "/".join(sorted(rules)) or "?"
    if crash_effects is None:
        if not set(rules) & _NOT_AT_RECOVERY:
            return None
        first = (text.strip().splitlines() or [""])[0]
        read = _READ.search(first)
        if "model-divergence" in rules and read is not None:
            body = f"a read of {read.group(1)} disagreed with the model"
        else:
            body = server_reason_kind(_JSON_OBJECT.sub("an image", first))
            body = body.removeprefix("liveness: ")
        return f"{head}: {body}"
    body = describe_effects(sorted(set(crash_effects)))
    if not crash_effects:
        own = [_OWN_DOING[r] for r in sorted(rules) if r in _OWN_DOING]
        body += (": " + "; ".join(own)) if own else ""
    if unavailable_reason:
        body += f"; the server: {_refusal_kind(server_reason_kind(unavailable_reason))}"
    return cause_text(f"{head}: {body}")


_QUOTED = re.compile(r"b?'[^']*'")


def _refusal_kind(reason: str) -> str:
    """A refusal as a kind: up to its first ": " (the parser's detail after it, what it
    expected and got, depends on where the bad bytes fell), quoted bytes elided."""
    return _QUOTED.sub("'...'", reason.split(": ", 1)[0])


def fuzz_violations(findings: Sequence[Any], run_dir: Path, label: Any, *,
                    names: Sequence[str] | None = None,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Violations and groups of a fuzz campaign; writes one reproduction per finding (a
    campaign reports few findings, each already shrunk), named by `names` when given (file
    stems, one per finding; the pytest plugin names them after the test)."""
    out = []
    for i, f in enumerate(findings, 1):
        repro = f.reproduction
        steps = list(repro.steps) if repro is not None else []
        recovers = [s for s in steps if s.kind == "recover"]
        model = recovers[-1].model.value if recovers else None
        record = _record(index=i, rules=f.rules, kind=f.kind, configuration=label(f.config),
                         model=model, fault=" + ".join(program_faults(steps)) or "no fault",
                         program_shape=shape(steps), text=f.text, verdict=None)
        record["seed"] = f.seed
        record["program_note"] = ("Shrunk by Hypothesis to a minimal failing program; "
                                  "results are from replaying it.")
        record["found_after_s"] = round(f.elapsed_s, 2)
        if f.first_seen_s is not None:
            record["first_seen_s"] = round(f.first_seen_s, 2)
        if repro is not None:
            name = (names[i - 1] if names is not None else
                    f"violation-{i}-{slug('-'.join(f.rules))}-{slug(label(f.config))}")
            _write_repro(run_dir, name + REPRO_SUFFIX, repro, record)
            _attach_study(record, repro, timeline=True)
            fired = _fired(record.get("events") or [], steps)
            if fired is not None:  # the faults that took effect, not every one injected
                record["fault"] = fired
                record["signature"] = signature(
                    rules=f.rules, configuration=record["configuration"], model=model,
                    fault=fired, program_shape=record["shape"])
            verdict = record.get("verdict") or {}
            mechanism = (None if "study_error" in record else fuzz_mechanism(
                f.rules, record.get("crash_effects"), f.text, verdict.get("unavailable_reason")))
            if mechanism is not None:
                # The cause is the mechanism, wherever it was seen (configuration, model,
                # faults): one planted bug found under two policies is one cause.
                record["mechanism"] = record["signature"] = mechanism
        out.append(record)
    groups = group_violations(out)
    by_id = {v["id"]: v for v in out}
    for g in groups:
        if "mechanism" in by_id[g["representative"]]:
            g["mechanism"] = g["signature"]
    return out, groups


def explore_violations(result: Any, config: Any, steps: Sequence[Any], run_dir: Path,
                       label: Any, *, max_reproductions: int
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Violations and groups of an exploration. The explorer keeps the first violating
    states in detail; they are grouped by cause and one reproduction is written per group
    (the smallest), up to `max_reproductions` groups."""
    run = workload_run(config, steps) if result.violations else None
    ops = run.ops if run is not None else []
    out = []
    repros: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for i, v in enumerate(result.violations, 1):
        point = v.point
        repro = v.reproduction
        if repro is None and run is not None:
            # Past the explorer's own reproductions: build it the same way.
            repro = explorer_reproduction(config, steps, run, point, v.model, v.choice, v.rules)
        program = list(repro.steps) if repro is not None else list(steps[: point.step_index])
        fault = crash_point_words(ops, point.trace_index, point.torn_bytes)
        verdict = v.verdict.to_dict() if v.verdict is not None else None
        record = _record(index=i, rules=list(v.rules), kind="violation",
                         configuration=label(config), model=v.model.value, fault=fault,
                         program_shape=shape(program), text=v.describe(), verdict=verdict)
        record["program_note"] = ("The workload up to the crash point, the crash, the "
                                  "recovery with this state's image; results are from "
                                  "replaying it.")
        record["point"] = point.to_dict()
        record["choice"] = v.choice.to_dict()
        record["confirmed_by_replay"] = v.confirmed
        record["image_effects"] = list(v.effects)
        record["states"] = v.count
        # The cause is the mechanism: the rules and what the image lacks or resurrects, under
        # whichever model and at whichever crash point (one missing fsync is one cause).
        record["mechanism"] = mechanism_text(v.rules, v.effects)
        record["signature"] = record["mechanism"]
        sizes[record["id"]] = len(program)
        if repro is not None:
            repros[record["id"]] = repro
        out.append(record)
    groups = group_violations(out, sizes, replayable=set(repros))
    states: dict[str, int] = {}
    models: dict[str, set[str]] = {}
    for (model, rules, effects), n in getattr(result, "mechanism_states", {}).items():
        text = mechanism_text(rules, effects)
        states[text] = states.get(text, 0) + n
        models.setdefault(text, set()).add(model)
    for g in groups:  # every violating state counted, not only the ones kept in detail
        g["count"] = states.get(g["signature"], g["count"])
        g["unit"] = "state"
        g["mechanism"] = g["signature"]
        if g["signature"] in models:
            g["model"] = ", ".join(sorted(models[g["signature"]]))
    groups.sort(key=lambda g: -int(g["count"]))
    _number(groups, out)
    by_id = {v["id"]: v for v in out}
    written = 0
    for g in groups:
        rep = by_id[g["representative"]]
        repro = repros.get(rep["id"])
        if repro is None or written >= max_reproductions:
            continue
        written += 1
        name = f"violation-{g['group']}-{slug(rep['rule'])}-{slug(rep['model'] or '')}"
        _write_repro(run_dir, name + REPRO_SUFFIX, repro, rep)
        _attach_study(rep, repro, timeline=True)
    return out, groups


def terminal_lines(violations: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]],
                   *, total: int | None = None, limit: int = 3) -> list[str]:
    """What fuzz, explore and replay print about violations: per cause group (at most
    `limit`), the verdict, the program as steps, every crash epoch, the replay command."""
    by_id = {v["id"]: v for v in violations}
    lines: list[str] = []
    grouped = sum(int(g["count"]) for g in groups)
    count = total if total is not None else grouped
    unit = {"state": "violating state", "trial": "violating trial"}.get(
        next((str(g["unit"]) for g in groups if g.get("unit")), ""), "violation")
    if groups:
        lines.append(f"{count} {unit}(s) from {len(groups)} cause(s):")
        if count > grouped:
            lines.append(f"  ({count - grouped} of them counted, not kept in detail)")
    for g in list(groups)[:limit]:
        v = by_id[g["representative"]]
        lines.append("")
        what = f" {g['mechanism']};" if g.get("mechanism") else ""
        lines.append(f"== cause {g['group']}:{what} [{v['rule']}] "
                     f"{g.get('configuration') or v['configuration']}, "
                     f"model {g.get('model') or v['model'] or '-'}, e.g. {v['fault']} "
                     f"({g['count']} {unit}(s))")
        lines.extend(violation_lines(v))
    if len(groups) > limit:
        lines.append(f"\n... and {len(groups) - limit} more cause(s) in the report")
    return lines


def violation_lines(v: dict[str, Any]) -> list[str]:
    lines = [str(v.get("text", "")).rstrip()]
    program = v.get("program")
    if program:
        lines.append(f"program ({len(program)} step(s)):")
        lines.extend(program_lines(program))
    epochs = v.get("epochs") or []
    if len(epochs) > 1:
        lines.append("crash epochs:")
        for e in epochs:
            lines.append("  " + epoch_line(e))
    if v.get("replay"):
        lines.append(f"replay: {v['replay']}")
    return lines


def epoch_line(e: dict[str, Any]) -> str:
    k = e.get("k") if e.get("k") is not None else e.get("closest_k")
    got = "no prefix" if e.get("k") is None and e.get("outcome") == "violation" else f"S({k})"
    if e.get("outcome") == "unavailable":
        got = "refused to start"
    window = "" if e.get("window_ms") is None else f", W={e['window_ms']} ms"
    rules = ", ".join(e.get("rules") or [])
    verdict = f"VIOLATION {rules}" if rules else str(e.get("outcome"))
    return (f"epoch {e.get('epoch')}: crash at {e.get('crash_ms')} ms under "
            f"{e.get('model')}, {e.get('executed')} executed / {e.get('acknowledged')} "
            f"acknowledged writes; recovered {got}, F={e.get('frontier')}{window}: {verdict}")


def slim(v: dict[str, Any]) -> dict[str, Any]:
    """A violation for ``--json`` summaries: everything but the bulky timeline and verdict."""
    return {k: x for k, x in v.items() if k not in ("events", "verdict", "epochs")}


def command_line() -> str:
    """The command line that started this run, as it can be pasted into a shell."""
    return " ".join(shlex.quote(a) for a in ["aofcrash", *sys.argv[1:]])


#: Fault kinds a fuzz campaign can inject: listed even when never drawn, so gaps show.
_FAULT_ROWS = (
    "fault: Crash write", "fault: Crash fsync", "fault: Crash fdatasync",
    "fault: Crash fsync_dir", "fault: Crash rename", "fault: IOFault write",
    "fault: IOFault fsync", "fault: IOFault fdatasync", "fault: IOFault rename",
    "fault: IOFault fsync_dir", "fault: ShortWrite", "fault: NoSpace", "fault: SlowSync",
    "fault: KillChild",
)


def fuzz_coverage(per_label: dict[str, Any], labels: Sequence[str],
                  models: Sequence[str] = ()) -> dict[str, Any]:
    """Faults injected and crash models recovered, per configuration: the heat map data
    (zero cells are the gaps: a fault or model the campaign never exercised there)."""
    seen = {name for counts in per_label.values() for name in counts
            if name.startswith(("fault: ", "recover: "))}
    seen |= set(_FAULT_ROWS) | {f"recover: {m}" for m in models}
    names = sorted(seen, key=lambda n: (not n.startswith("fault: "), n))
    return {
        "title": "Coverage: faults injected and crash models recovered, per configuration",
        "xlabel": "configuration (policy/profile/defects)",
        "ylabel": "",
        "rows": names,
        "columns": list(labels),
        "values": [[int(per_label.get(label, {}).get(name, 0)) for label in labels]
                   for name in names],
    }


def explore_coverage(coverage: dict[str, Any], models: Sequence[str]) -> dict[str, Any]:
    """Crash states checked per image kind and persistence model: the heat map data."""
    kinds = sorted({k for m in models for k in _dict_of(coverage.get(m)).get("by_kind", {})})
    return {
        "title": "Coverage: crash states checked, per image kind and persistence model",
        "xlabel": "persistence model",
        "ylabel": "image kind of the AOF",
        "rows": kinds,
        "columns": list(models),
        "values": [[int(_dict_of(_dict_of(coverage.get(m)).get("by_kind")).get(k, 0))
                    for m in models] for k in kinds],
    }


def _dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
