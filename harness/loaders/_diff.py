"""The differential comparison: from every tool's outcome on one file, the disagreements.

A ``Disagreement`` has a class, a *key* and the tools that show it. The key is what makes two
disagreements "the same" across files: coarse on purpose (verdict kinds and which tools group
together, never offsets or keyspaces themselves), so that a campaign reports each distinct
behaviour once, with the smallest file that shows it. Classes:

``crash``
    A tool was killed by a signal (or a reference tool raised), or hung.
``check-vs-loader``
    A version's check tool and its own loader (``aof-load-truncated yes``) disagree: the checker
    calls valid a file the loader truncates or refuses, or invalid a file the loader loads
    whole, or both cut the file but at different offsets. ``check:aofcrash`` is compared with
    ``load:ref-safe:yes`` the same way.
``version-vs-version``
    The real loaders (one ``aof-load-truncated`` setting) or the real check tools do not all
    behave the same. A loader's behaviour is its verdict, truncation offset and keyspace; a
    checker's is its verdict and ``ok_up_to``.
``reference-vs-real``
    A reference profile behaves like none of the real loaders (same setting).
``restart``
    A loader came up (whole or truncated) and a restart on what it left behind refused, crashed
    or came up with another keyspace.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from harness.loaders._run import REAL_SERVERS, CheckRun, LoadOutcome, LoadRun, Verdict

__all__ = [
    "CLASSES",
    "Disagreement",
    "Outcomes",
    "disagreements",
    "loader_behaviour",
    "reason_class",
]

CLASSES: Final = ("crash", "check-vs-loader", "version-vs-version", "reference-vs-real",
                  "restart")
Outcomes = Mapping[str, LoadOutcome | CheckRun]


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One distinct disagreement. ``key`` identifies it across files; ``tools`` are the tools
    whose outcomes it is about (re-running them on a file tells whether it shows there);
    ``restart`` says whether it needs the restart run; ``summary`` is one readable line."""

    cls: str
    key: tuple[str, ...]
    tools: tuple[str, ...]
    summary: str
    restart: bool = False

    @property
    def slug(self) -> str:
        text = "-".join(self.key[:2])
        text = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()[:60]
        digest = hashlib.sha1("\x00".join(self.key).encode()).hexdigest()[:8]
        return f"{text}-{digest}"

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.cls, "key": list(self.key), "tools": list(self.tools),
                "summary": self.summary, "restart": self.restart}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Disagreement:
        return cls(str(data["class"]), tuple(data["key"]), tuple(data["tools"]),
                   str(data["summary"]), bool(data.get("restart", False)))


def _server(tool: str) -> str:
    return tool.split(":")[1]


def _setting(tool: str) -> str:
    return tool.split(":")[2]


def loader_behaviour(run: LoadRun) -> tuple[Any, ...]:
    """What two loaders must share to agree: verdict, truncation offset, keyspace. (Why a
    loader refused is not compared, only shown: labels name it, ``reason_class``.)"""
    offset = run.offset if run.verdict is Verdict.TRUNCATED else None
    return (run.verdict.value, offset, run.keyspace)


_REASON_CLASSES: Final = (
    ("unexpected end of file", "eof"), ("bad file format", "format"),
    ("unknown command", "unknown-command"), ("wrong number of arguments", "arity"),
    ("rdb", "rdb"), ("unrecoverable", "read-error"),
)


def reason_class(reason: str | None) -> str:
    """A refusal's reason in a few words shared by every tool (``other`` if none fits)."""
    text = (reason or "").lower()
    for needle, name in _REASON_CLASSES:
        if needle in text:
            return name
    return "other"


def _label(run: LoadRun) -> str:
    if run.verdict is Verdict.REFUSED:
        return f"refused({reason_class(run.reason)})"
    return run.verdict.value


def _crash_reason(reason: str | None) -> str:
    """What identifies a crash across runs: its site when the bug report names one (whether the
    report got as far as "ASSERTION FAILED" before the process died varies between runs), else
    the reason ("signal 11"; a reference exception's type)."""
    if not reason:
        return "?"
    for marker in (" at ", " in "):
        if marker in reason:
            return reason[reason.index(marker) + 1:]
    return reason.split(":", 1)[0] if not reason.startswith("signal") else reason


def _partition(behaviours: Mapping[str, tuple[Any, ...]], labels: Mapping[str, str]
               ) -> list[tuple[tuple[str, ...], str]]:
    """Group tools by identical behaviour; label each group by verdict, distinguishing groups
    that share a verdict by what differs (offset, keyspace)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for tool, behaviour in behaviours.items():
        groups.setdefault(behaviour, []).append(tool)
    by_label: dict[str, list[tuple[Any, ...]]] = {}
    for behaviour, tools in groups.items():
        by_label.setdefault(labels[tools[0]], []).append(behaviour)
    out: list[tuple[tuple[str, ...], str]] = []
    for behaviour, tools in groups.items():
        label = labels[tools[0]]
        same = by_label[label]
        if len(same) > 1:
            others = [b for b in same if b != behaviour]
            aspects = []
            if any(b[1] != behaviour[1] for b in others):
                aspects.append("offset")
            if any(b[2:] != behaviour[2:] for b in others):
                aspects.append("keyspace")
            rank = sorted(same, key=repr).index(behaviour)
            label = f"{label}[{'+'.join(aspects) or 'other'}#{rank}]"
        out.append((tuple(sorted(tools)), label))
    return sorted(out)


def _describe(partition: Iterable[tuple[tuple[str, ...], str]]) -> str:
    return " | ".join(f"{','.join(tools)}: {label}" for tools, label in partition)


def _crashes(outcomes: Outcomes) -> list[Disagreement]:
    found: dict[tuple[str, ...], Disagreement] = {}
    for tool, outcome in outcomes.items():
        if isinstance(outcome, CheckRun):
            runs = [("check", outcome.verdict, outcome.reason)]
        else:
            runs = [(phase, run.verdict, run.reason)
                    for phase, run in (("load", outcome.first), ("restart", outcome.restart))
                    if run is not None]
        for phase, verdict, reason in runs:
            if verdict not in (Verdict.CRASHED, Verdict.HUNG):
                continue
            key = ("crash", _server(tool), phase, verdict.value, _crash_reason(reason))
            if key not in found:
                found[key] = Disagreement(
                    "crash", key, (tool,), f"{tool} {verdict.value} ({reason}) at {phase}",
                    restart=phase == "restart")
    return list(found.values())


def _check_vs_loader(outcomes: Outcomes) -> list[Disagreement]:
    out: list[Disagreement] = []
    pairs = [(f"check:{s}", f"load:{s}:yes", s) for s in REAL_SERVERS]
    pairs.append(("check:aofcrash", "load:ref-safe:yes", "aofcrash"))
    for check_id, load_id, name in pairs:
        check, load = outcomes.get(check_id), outcomes.get(load_id)
        if not isinstance(check, CheckRun) or not isinstance(load, LoadOutcome):
            continue
        run = load.first
        if check.verdict not in (Verdict.VALID, Verdict.INVALID) or run.verdict in (
                Verdict.CRASHED, Verdict.HUNG):
            continue  # a crash is its own class
        what: str | None = None
        if check.verdict is Verdict.VALID and run.verdict is not Verdict.LOADED:
            what = f"check valid, loader {_label(run)}"
        elif check.verdict is Verdict.INVALID and run.verdict is Verdict.LOADED:
            what = "check invalid, loader loads it whole"
        elif (check.verdict is Verdict.INVALID and run.verdict is Verdict.TRUNCATED
              and check.ok_up_to != run.offset):
            what = "check and loader cut at different offsets"
        if what is None:
            continue
        key = ("check-vs-loader", name, what)
        summary = (f"{check_id}: {check.verdict.value} ok_up_to={check.ok_up_to}; {load_id}: "
                   f"{_label(run)}" + (f" at {run.offset}" if run.offset is not None else ""))
        out.append(Disagreement("check-vs-loader", key, (check_id, load_id), summary))
    return out


def _versions(outcomes: Outcomes) -> list[Disagreement]:
    out: list[Disagreement] = []
    for setting in ("yes", "no"):
        runs = {s: o.first for s in REAL_SERVERS
                if isinstance(o := outcomes.get(f"load:{s}:{setting}"), LoadOutcome)}
        if len(runs) < 2:
            continue
        if any(r.verdict in (Verdict.CRASHED, Verdict.HUNG) for r in runs.values()):
            continue  # reported as a crash
        partition = _partition({s: loader_behaviour(r) for s, r in runs.items()},
                               {s: _label(r) for s, r in runs.items()})
        if len(partition) > 1:
            key = ("version-vs-version", f"loaders:{setting}", _describe(partition))
            tools = tuple(f"load:{s}:{setting}" for s in sorted(runs))
            out.append(Disagreement("version-vs-version", key, tools,
                                    f"aof-load-truncated {setting}: {_describe(partition)}"))
    checks = {s: o for s in REAL_SERVERS if isinstance(o := outcomes.get(f"check:{s}"), CheckRun)}
    if len(checks) >= 2 and not any(
            c.verdict in (Verdict.CRASHED, Verdict.HUNG) for c in checks.values()):
        partition = _partition({s: (c.verdict.value, c.ok_up_to) for s, c in checks.items()},
                               {s: c.verdict.value for s, c in checks.items()})
        if len(partition) > 1:
            key = ("version-vs-version", "checkers", _describe(partition))
            tools = tuple(f"check:{s}" for s in sorted(checks))
            out.append(Disagreement("version-vs-version", key, tools,
                                    f"check tools: {_describe(partition)}"))
    return out


def _reference(outcomes: Outcomes) -> list[Disagreement]:
    out: list[Disagreement] = []
    refs = sorted(t for t in outcomes if t.startswith("load:ref-"))
    for ref_id in refs:
        ref = outcomes[ref_id]
        if not isinstance(ref, LoadOutcome) or ref.first.verdict in (Verdict.CRASHED,
                                                                     Verdict.HUNG):
            continue
        setting = _setting(ref_id)
        reals = {s: o.first for s in REAL_SERVERS
                 if isinstance(o := outcomes.get(f"load:{s}:{setting}"), LoadOutcome)}
        if not reals or any(r.verdict in (Verdict.CRASHED, Verdict.HUNG) for r in reals.values()):
            continue
        mine = loader_behaviour(ref.first)
        if any(loader_behaviour(r) == mine for r in reals.values()):
            continue
        behaviours = {s: loader_behaviour(r) for s, r in reals.items()}
        behaviours[_server(ref_id)] = mine
        labels = {s: _label(r) for s, r in reals.items()}
        labels[_server(ref_id)] = _label(ref.first)
        partition = _partition(behaviours, labels)
        key = ("reference-vs-real", ref_id, _describe(partition))
        tools = (ref_id, *(f"load:{s}:{setting}" for s in sorted(reals)))
        out.append(Disagreement("reference-vs-real", key, tools,
                                f"{ref_id} like no real server: {_describe(partition)}"))
    return out


def _restarts(outcomes: Outcomes) -> list[Disagreement]:
    out: list[Disagreement] = []
    seen: set[tuple[str, ...]] = set()
    for tool, outcome in outcomes.items():
        if not isinstance(outcome, LoadOutcome) or outcome.restart is None:
            continue
        first, again = outcome.first, outcome.restart
        if first.verdict not in (Verdict.LOADED, Verdict.TRUNCATED):
            continue
        if again.verdict in (Verdict.CRASHED, Verdict.HUNG):
            continue  # a crash
        if again.verdict is Verdict.LOADED and again.keyspace == first.keyspace:
            continue
        what = _label(again) if again.verdict is not Verdict.LOADED else "another keyspace"
        key = ("restart", _server(tool), f"{_label(first)} then {what}")
        if key in seen:
            continue
        seen.add(key)
        out.append(Disagreement("restart", key, (tool,),
                                f"{tool}: {_label(first)}, then on restart {what}",
                                restart=True))
    return out


def disagreements(outcomes: Outcomes) -> list[Disagreement]:
    """Every disagreement that ``outcomes`` (tool id -> outcome, for one file) shows."""
    return (_crashes(outcomes) + _check_vs_loader(outcomes) + _versions(outcomes)
            + _reference(outcomes) + _restarts(outcomes))
