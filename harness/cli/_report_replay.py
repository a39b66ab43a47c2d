"""What a report shows about one reproduction, collected by replaying it with the trace on.

Replaying is deterministic (same steps, same virtual clock, same crash choices), so what this
sees is the violating run itself: the program as readable steps with what each write got back,
every crash epoch (the crash, the image, the frontier F, the matched or closest k, the everysec
window W) and, in order, the events of a Jepsen-style timeline: writes submitted and
acknowledged, the filesystem operations (AOF writes, fsyncs, renames), injected faults, the
crash and the recovery. Everything returned is plain JSON data: report.json keeps it and the
HTML (and its pictures) are rendered from report.json alone.

The replay also says what the image of the crash that broke a rule lacks or resurrects
against the files visible at that crash (``crash_effects``): the fuzz report's mechanism.
Also here: the older cause signature (rule, configuration, model, fault, shape of the program),
kept for a finding whose replay failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faults import (
    Crash as CrashFault,
)
from faults import (
    Fault,
    FaultPlan,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SimulatedCrash,
    SlowSync,
)
from faults import (
    KillChild as KillChildFault,
)
from harness.explore._effects import image_effects
from harness.explore._record import NotingLayer
from harness.machine import _steps
from harness.machine._driver import ContractViolation, Driver, ModelDivergence, TargetRunaway
from harness.machine._judge import Judge
from harness.machine._rules import CheckAofDisagreement, LivenessViolation
from harness.oracle import (
    ERROR_STALL_MS,
    History,
    Outcome,
    Verdict,
    describe_choice,
    effective_window_ms,
    window_stalls,
)

__all__ = [
    "RULE_WORDS",
    "collapse",
    "describe_choice",
    "describe_fault",
    "describe_step",
    "explorer_reproduction",
    "program_lines",
    "shape",
    "signature",
    "study",
    "workload_run",
]

#: Each rule of the contract in plain words (harness.oracle's docstring is the definition).
RULE_WORDS: dict[str, str] = {
    "durability": (
        "Acknowledged writes were lost. After the crash the server came back with an older "
        "state S(k) than the promise allows: every write up to the frontier F had to survive, "
        "and k < F."
    ),
    "prefix-consistency": (
        "The recovered data matches no moment of the history: it is not S(k) for any k "
        "(a hole, a reordering, half a transaction or a value that was never written)."
    ),
    "phantom": (
        "A write the server refused with an error (it promised it had no effect) shows up "
        "after recovery."
    ),
    "stability": (
        "Recovering the recovered state again, with no new writes, gave different data: the "
        "server read back something other than what it had just recovered."
    ),
    "availability": (
        "The server refused to start after a legal crash: it wrote that file itself, and a "
        "person must now repair it before the data comes back."
    ),
    "damage": (
        "A store that declares checksums loaded damaged synced bytes (a media error the run "
        "injected) as data: it must refuse to start or stop at the damage, never load a value "
        "that no moment of the history had."
    ),
    "model-divergence": (
        "A read returned something the independent model says it cannot: a bug in the "
        "server (or in the model)."
    ),
    "liveness": (
        "The server stopped making progress without a fault to blame: a rewrite that never "
        "ends or never replaces the AOF, or writes still refused long after every fault was "
        "cleared (a state-machine rule of the bundled reference, outside the crash contract)."
    ),
    "check-aof": (
        "check-aof and the loader judged the same crash image differently: the repair tool "
        "users run on such files would cut, keep or refuse what the server does not."
    ),
}

_SHOWN_OPS = frozenset({"write", "fsync", "fdatasync", "fsync_failed", "ftruncate", "rename",
                        "unlink", "fsync_dir"})
_ARGV_CHARS = 60


# -- words ---------------------------------------------------------------------------------


def _argv(argv: Sequence[bytes]) -> str:
    parts = []
    for arg in argv:
        text = arg.decode("latin-1")
        if not text or any(c in text for c in " \"'\\") or not text.isprintable():
            text = repr(arg)[1:]
        parts.append(text)
    line = " ".join(parts)
    return line if len(line) <= _ARGV_CHARS else line[: _ARGV_CHARS - 3] + "..."


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe_fault(fault: Fault) -> str:
    """One fault in words: ``EIO on the 2nd fsync (once)``."""
    where = "" if getattr(fault, "path_glob", "*") == "*" else f" of {fault.path_glob}"  # type: ignore[attr-defined]
    if isinstance(fault, ShortWrite):
        return f"short write of {fault.written_bytes} bytes on the {_nth(fault.nth)} write{where}"
    if isinstance(fault, NoSpace):
        times = "from then on" if fault.times is None else f"{fault.times} time(s)"
        part = ("" if fault.partial_bytes is None
                else f", the first one writing {fault.partial_bytes} bytes")
        return f"ENOSPC from the {_nth(fault.nth)} write{where} on, {times}{part}"
    if isinstance(fault, IOFault):
        times = "from then on" if fault.times is None else f"{fault.times} time(s)"
        return f"EIO on the {_nth(fault.nth)} {fault.op.value}{where}, {times}"
    if isinstance(fault, SlowSync):
        return f"the {_nth(fault.nth)} fsync{where} takes {fault.delay_ms} ms"
    if isinstance(fault, CrashFault):
        op = "operation" if fault.op.value == "any" else fault.op.value
        torn = "" if fault.torn_bytes is None else f", after {fault.torn_bytes} bytes of it"
        return f"crash at the {_nth(fault.nth)} {op}{where}{torn}"
    if isinstance(fault, KillChildFault):
        return (f"kill the child of the {_nth(fault.nth_rewrite)} rewrite at its step "
                f"{fault.at_step}")
    return type(fault).__name__


def _fault_kind(fault: Fault) -> str:
    """A fault's kind for signatures and coverage: ``IOFault fsync``, ``ShortWrite``."""
    name = type(fault).__name__
    op = getattr(fault, "op", None)
    if isinstance(fault, CrashFault):
        torn = " torn" if fault.torn_bytes is not None else ""
        return f"Crash {op.value if op is not None else 'any'}{torn}"
    return f"{name} {op.value}" if op is not None else name


def describe_step(step: _steps.Step) -> str:
    """One step in words, e.g. ``SET k0 a``, ``wait 1000 ms``, ``crash now``."""
    client = "" if getattr(step, "client", 0) == 0 else f"  [client {step.client}]"  # type: ignore[union-attr]
    if isinstance(step, _steps.Write):
        queued = "" if step.iterate else "  (queued; no event-loop iteration yet)"
        return f"{_argv(step.argv)}{client}{queued}"
    if isinstance(step, _steps.Multi):
        inner = "; ".join(_argv(c) for c in step.commands)
        return f"MULTI; {inner}; EXEC{client}"
    if isinstance(step, _steps.Read):
        return f"{_argv(step.argv)}{client}  (read, checked against the model)"
    if isinstance(step, _steps.Tick):
        return f"wait {step.delta_ms} ms"
    if isinstance(step, _steps.BgRewrite):
        return "BGREWRITEAOF"
    if isinstance(step, _steps.ChildStep):
        return f"the rewrite child takes {step.count} step(s)"
    if isinstance(step, _steps.KillChild):
        return "kill the rewrite child"
    if isinstance(step, _steps.InjectFaults):
        return "inject: " + "; ".join(describe_fault(f) for f in step.plan.faults)
    if isinstance(step, _steps.ClearFaults):
        return "clear every fault (the device works again)"
    if isinstance(step, _steps.ArmCrash):
        when = " (counted from the next reply release)" if step.after_release else ""
        return "arm: " + "; ".join(describe_fault(f) for f in step.plan.faults) + when
    if isinstance(step, _steps.Crash):
        return "crash now (between two filesystem operations)"
    if isinstance(step, _steps.Recover):
        choice = "drawn from seed " + str(step.seed) if step.choice is None else describe_choice(
            step.choice.to_dict())
        extra = "" if step.downtime_ms == 0 else f", after {step.downtime_ms} ms down"
        again = ("" if step.crash_during_recovery_op is None
                 else f", crashing the recovery at its {_nth(step.crash_during_recovery_op)} "
                 "operation")
        damaged = ("" if step.damage is None else
                   f"; then {step.damage.length_bytes} synced byte(s) of {step.damage.path_glob} "
                   f"{'flipped' if step.damage.kind.value == 'flip' else 'zeroed'} "
                   f"{step.damage.at_permille / 10:g}% in")
        return f"recover under {step.model.value} (image: {choice}{extra}{again}{damaged})"
    return str(getattr(step, "kind", type(step).__name__))  # type: ignore[unreachable]


def shape(steps: Sequence[_steps.Step]) -> str:
    """The program's shape: step kinds with repeats collapsed (``write+ crash recover``)."""
    out: list[str] = []
    for step in steps:
        kind = step.kind
        if out and out[-1].rstrip("+") == kind:
            out[-1] = kind + "+"
        else:
            out.append(kind)
    return " ".join(out)


def program_faults(steps: Sequence[_steps.Step]) -> list[str]:
    """The kinds of every fault the program injects or arms, in order, without repeats."""
    kinds: list[str] = []
    for step in steps:
        if isinstance(step, _steps.InjectFaults | _steps.ArmCrash):
            kinds.extend(_fault_kind(f) for f in step.plan.faults)
        elif isinstance(step, _steps.Crash):
            kinds.append("Crash now")
        elif isinstance(step, _steps.KillChild):
            kinds.append("KillChild")
    seen: list[str] = []
    for k in kinds:
        if k not in seen:
            seen.append(k)
    return seen


def file_role(path: str) -> str:
    """A path with its run-specific numbers replaced, so two runs' files compare equal."""
    return re.sub(r"\d+", "N", path) if path not in ("", ".") else "the directory"


def signature(*, rules: Sequence[str], configuration: str, model: str | None,
              fault: str, program_shape: str) -> str:
    """A violation's cause: what one bug's violating states have in common."""
    return " | ".join([", ".join(sorted(rules)) or "?", configuration, model or "-",
                       fault or "no fault", program_shape])


def collapse(program: Sequence[Any]) -> list[dict[str, Any]]:
    """Consecutive identical steps without a result as one row with ``times``."""
    out: list[dict[str, Any]] = []
    for row in program:
        if not isinstance(row, dict):
            continue
        if (out and not row.get("result") and not out[-1].get("result")
                and row.get("text") == out[-1].get("text")):
            out[-1]["times"] = out[-1].get("times", 1) + 1
            continue
        out.append(dict(row))
    return out


def program_lines(program: Sequence[dict[str, Any]], *, limit: int = 30) -> list[str]:
    """The readable program for a terminal: numbered steps with results, repeats folded; a
    long program keeps its start and its end (where the crash is)."""
    rows = collapse(program)
    width = len(str(max((int(r.get("n", 0)) for r in rows), default=0)))
    lines = []
    for row in rows:
        result = f"  -> {row['result']}" if row.get("result") else ""
        times = f"  (x{row['times']})" if row.get("times", 1) > 1 else ""
        lines.append(f"  {row['n']:>{width}}. {row['text']}{times}{result}")
    if len(lines) > limit:
        head, tail = limit // 4, limit - limit // 4 - 1
        gap = f"  {'':>{width}}  ... {len(lines) - head - tail} more step(s) ..."
        lines = [*lines[:head], gap, *lines[-tail:]]
    return lines


# -- the replay ----------------------------------------------------------------------------


@dataclass
class _Study:
    driver: Driver
    events: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 1
    step_index: int = 0
    history: History | None = None
    seen: int = 0
    carried: int = 0
    pending: set[int] = field(default_factory=set)
    disk: Any = None
    ops_seen: int = 0
    fs: Any = None
    fired_seen: int = 0
    stalls: list[tuple[int, int]] = field(default_factory=list)
    error_stalls: list[tuple[int, int]] = field(default_factory=list)
    step_entries: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def emit(self, kind: str, t_ms: int, **data: Any) -> None:
        self.events.append({"seq": len(self.events), "epoch": self.epoch, "kind": kind,
                            "t": t_ms, "step": self.step_index, **data})

    def attach(self) -> None:
        """Tap the driver's current disk (a new one after every recovery)."""
        d = self.driver
        if self.disk is not d.disk:
            self.disk = d.disk
            self.ops_seen = 0
        if self.fs is not d.fs:
            self.fs = d.fs
            self.fired_seen = 0
        if not isinstance(d.fs.inner, NotingLayer):
            d.fs.inner = NotingLayer(d.disk, self.note)

    def note(self) -> None:
        d = self.driver
        h = d.history
        if h is not self.history:  # a recovery rebased it: the kept entries carry over
            self.history, self.seen, self.pending = h, len(h.entries), set()
            self.carried = len(h.entries)
        entries = h.entries
        now = d.clock.now_ms
        for i in range(self.seen, len(entries)):
            e = entries[i]
            self.emit("submit", e.executed_ms, entry=i, text=_entry_text(e.commands),
                      client=e.client, db=e.db)
            self.pending.add(i)
            self.step_entries.setdefault(self.step_index, []).append((self.epoch, i))
        self.seen = len(entries)
        if not d.crashed:
            for i in sorted(self.pending):
                e = entries[i]
                if e.outcome is not Outcome.UNKNOWN:
                    self.emit("ack", e.ack_ms if e.ack_ms is not None else now, entry=i,
                              outcome=e.outcome.value)
                    self.pending.discard(i)
        fs = d.fs
        if fs is self.fs:
            for f in fs.fired[self.fired_seen:]:
                self.emit("fault", f.at_ms, fault=_fault_kind(f.fault), effect=f.effect,
                          path=f.path, words=describe_fault(f.fault))
                if isinstance(f.fault, SlowSync):
                    self.stalls.append((f.at_ms, f.fault.delay_ms))
                elif isinstance(f.fault, IOFault | NoSpace | ShortWrite):
                    self.error_stalls.append((f.at_ms, ERROR_STALL_MS))
            self.fired_seen = len(fs.fired)
        disk = d.disk
        if disk is self.disk:
            trace = disk.trace
            for i in range(self.ops_seen, len(trace)):
                op = trace[i]
                if op.op.value in _SHOWN_OPS:
                    self.emit("op", now, op=op.op.value, path=op.path, bytes=op.length,
                              result=op.result, trace_index=i)
            self.ops_seen = len(trace)


def _entry_text(commands: Sequence[Sequence[bytes]]) -> str:
    if len(commands) == 1:
        return _argv(commands[0])
    return "MULTI[" + "; ".join(_argv(c) for c in commands) + "]"


def _epoch_row(study: _Study, recover: _steps.Recover, crash_ms: int, history: History,
               verdict: Verdict | None, record: Any, config: _steps.RunConfig) -> dict[str, Any]:
    model = recover.model.value
    if verdict is not None:
        k = verdict.k
        f = verdict.frontier
        v = verdict.violations[0] if verdict.violations else None
        closest = v.closest_k if v is not None else None
        outcome = verdict.outcome
        rules = sorted({x.rule.value for x in verdict.violations})
    else:
        k, f, closest = record.k, record.frontier, None
        outcome, rules = record.outcome, []
    window = None
    if config.policy == "everysec":
        window = effective_window_ms(crash_ms, window_ms=config.window_ms,
                                     stalls=window_stalls(model, study.stalls,
                                                          study.error_stalls))
    entries = history.entries
    executed = [e for e in entries if e.outcome is not Outcome.ERROR]
    survived = k if k is not None else closest
    rows = []
    position = 0
    for e in entries:
        pos = None
        if e.outcome is not Outcome.ERROR:
            position += 1
            pos = position
        if pos is None:
            status = "refused"
        elif survived is not None and pos <= survived:
            status = "survived"
        elif f is not None and pos <= f:
            status = "lost"
        else:
            status = "may be lost"
        rows.append({"entry": e.index, "position": pos, "text": _entry_text(e.commands),
                     "outcome": e.outcome.value, "executed_ms": e.executed_ms,
                     "ack_ms": e.ack_ms, "status": status,
                     "carried": e.index < study.carried})
    choice = recover.choice.to_dict() if recover.choice is not None else None
    return {
        "epoch": study.epoch,
        "crash_ms": crash_ms,
        "model": model,
        "image": describe_choice(choice),
        "choice": choice,
        "outcome": outcome,
        "rules": rules,
        "k": k,
        "closest_k": closest,
        "frontier": f,
        "window_ms": window,
        "executed": len(executed),
        "acknowledged": sum(1 for e in entries if e.outcome is Outcome.OK),
        "refused": sum(1 for e in entries if e.outcome is Outcome.ERROR),
        "entries": rows,
    }


def study(repro: _steps.Reproduction) -> dict[str, Any]:
    """Replay `repro` with the trace on and return (JSON data): ``outcome`` (violation,
    divergence, unavailable, consistent, error), ``rules``, ``verdict`` (the last check's
    Verdict.to_dict(), if it failed), ``text``, ``program`` (numbered steps with results),
    ``epochs`` (one row per crash and recovery) and ``events`` (the timeline, in order)."""
    driver = Driver(repro.config)
    judge = Judge(driver, repro)
    st = _Study(driver)
    st.attach()
    st.note()
    epochs: list[dict[str, Any]] = []
    outcome, rules, text = "consistent", [], "no violation"
    verdict_dict: dict[str, Any] | None = None
    crash_effects: list[str] | None = None  # of the recovery that broke a rule, if one did
    steps = list(repro.steps)
    done = 0
    for index, step in enumerate([*steps, None]):
        st.step_index = index
        try:
            if step is None:
                judge.finish()  # the campaign's rules judged at the end (check-aof, liveness)
            elif isinstance(step, _steps.Recover):
                judge.before(step)
                history = driver.history
                crash_ms = driver.crash_ms
                crashed_disk = driver.disk
                st.note()
                st.emit("crash", crash_ms)
                before = len(driver.stats.recoveries)
                try:
                    driver.run(step)
                except ContractViolation as exc:
                    resolved = (driver.steps[-1] if isinstance(driver.steps[-1], _steps.Recover)
                                else step)
                    crash_effects = _crash_image_effects(crashed_disk, resolved)
                    epochs.append(_epoch_row(st, resolved, crash_ms, history, exc.verdict,
                                             None, repro.config))
                    st.emit("recover", driver.clock.now_ms, model=step.model.value,
                            outcome="violation", k=exc.verdict.k,
                            frontier=exc.verdict.frontier)
                    raise
                resolved = (driver.steps[-1] if isinstance(driver.steps[-1], _steps.Recover)
                            else step)
                record: Any = (driver.stats.recoveries[-1]
                               if len(driver.stats.recoveries) > before
                               else _Unavailable())  # refused to start, allowed: no record
                epochs.append(_epoch_row(st, resolved, crash_ms, history, None, record,
                                         repro.config))
                st.emit("recover", driver.clock.now_ms, model=step.model.value,
                        outcome=record.outcome, k=record.k, frontier=record.frontier)
                st.epoch += 1
                st.attach()
                st.note()
            else:
                judge.before(step)
                driver.run(step)
                st.attach()
                st.note()
        except ContractViolation as exc:
            outcome = "violation"
            rules = sorted({v.rule.value for v in exc.verdict.violations})
            text = str(exc)
            verdict_dict = exc.verdict.to_dict()
            done = min(index + 1, len(steps))
            break
        except CheckAofDisagreement as exc:
            outcome, rules, text = "check-aof", ["check-aof"], str(exc)
            done = min(index + 1, len(steps))
            break
        except (LivenessViolation, TargetRunaway) as exc:
            outcome, rules, text = "liveness", ["liveness"], str(exc)
            done = min(index + 1, len(steps))
            break
        except ModelDivergence as exc:
            outcome, rules, text = "divergence", ["model-divergence"], str(exc)
            done = index + 1
            break
        except SimulatedCrash:  # pragma: no cover - the driver turns crashes into epochs
            raise
        done = min(index + 1, len(steps))
    if outcome == "consistent" and driver.unavailable:
        outcome, text = "unavailable", f"server refused to start: {driver.unavailable}"
    program = _program(steps[:done], driver, st, epochs)
    return {"outcome": outcome, "rules": rules, "text": text, "verdict": verdict_dict,
            "program": program, "epochs": epochs, "events": st.events,
            "policy": repro.config.policy, "steps": len(steps), "judged": judge.judged,
            "crash_effects": crash_effects}


def _crash_image_effects(disk: SimDisk, recover: _steps.Recover) -> list[str] | None:
    """What the image `recover` started from lacks or resurrects against the files visible
    on `disk` at the crash (``image_effects``, as the explorer computes it); None without a
    resolved image choice. A damaged image (``Recover.damage``) is compared before its damage:
    the damage rule names that part."""
    if recover.choice is None:
        return None
    visible = disk.crash(PersistenceModel.PROCESS).files
    return list(image_effects(visible, disk.crash(recover.model, recover.choice).files))


@dataclass
class _Unavailable:
    outcome: str = "unavailable"
    k: int | None = None
    frontier: int | None = None


def _program(steps: Sequence[_steps.Step], driver: Driver, st: _Study,
             epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    outcomes: dict[tuple[int, int], dict[str, Any]] = {}
    for row in epochs:
        for e in row["entries"]:
            outcomes[(row["epoch"], e["entry"])] = e
    live = {(st.epoch, e.index): e for e in driver.history.entries}
    rows = []
    epoch_iter = iter(epochs)
    for index, step in enumerate(steps):
        results = []
        for key in st.step_entries.get(index, []):
            e = outcomes.get(key)
            if e is not None:
                results.append(_entry_result(e["outcome"], e["ack_ms"], e["status"]))
            elif key in live:
                entry = live[key]
                results.append(_entry_result(entry.outcome.value, entry.ack_ms, None))
        result = "; ".join(results)
        if isinstance(step, _steps.Recover):
            epoch_row: dict[str, Any] | None = next(epoch_iter, None)
            if epoch_row is not None:
                result = _recovery_result(epoch_row)
        rows.append({"n": index + 1, "kind": step.kind, "text": describe_step(step),
                     "result": result})
    return rows


def _entry_result(outcome: str, ack_ms: int | None, status: str | None) -> str:
    if outcome == "ok":
        text = f"acknowledged at {ack_ms} ms"
    elif outcome == "error":
        text = "refused with an error"
    else:
        text = "no reply before the crash"
    if status == "lost":
        text += ", LOST"
    return text


def _recovery_result(row: dict[str, Any]) -> str:
    k = row["k"] if row["k"] is not None else row["closest_k"]
    got = "no prefix S(k)" if row["k"] is None and row["outcome"] == "violation" else f"S({k})"
    if row["outcome"] == "unavailable":
        got = "refused to start"
    front = "" if row["frontier"] is None else f", F={row['frontier']}"
    verdict = ("VIOLATION " + ", ".join(row["rules"])) if row["rules"] else row["outcome"]
    return f"recovered {got}{front}: {verdict}"


@dataclass(frozen=True)
class WorkloadRun:
    """One run of an explorer workload: its traced operations as (operation, path), the
    virtual time at its end and whether the server died by itself."""

    ops: list[tuple[str, str]]
    end_ms: int
    ended_crashed: bool


def workload_run(config: _steps.RunConfig, steps: Sequence[_steps.Step]) -> WorkloadRun:
    """Run a workload once, as the explorer records it (what a crash point's trace index
    names)."""
    driver = Driver(config)
    for step in steps:
        try:
            driver.run(step)
        except (ContractViolation, ModelDivergence):
            break
        if not driver.alive:
            break
    return WorkloadRun([(e.op.value, e.path) for e in driver.disk.trace], driver.clock.now_ms,
                       not driver.alive)


def explorer_reproduction(config: _steps.RunConfig, steps: Sequence[_steps.Step], run: WorkloadRun,
                          point: Any, model: Any, choice: Any,
                          rules: Sequence[str]) -> _steps.Reproduction:
    """The reproduction of one explored crash state, built as the explorer builds the ones
    it keeps (for states past its ``max_reproductions``): the workload up to the crash
    point's step, a Crash fault armed at the point's operation, the recovery with the
    state's image choice at the workload's end time."""
    prefix: list[_steps.Step] = list(steps[: point.step_index])
    if point.nth_op is not None:
        fault = CrashFault(nth=point.nth_op, torn_bytes=point.torn_bytes)
        prefix.append(_steps.ArmCrash(FaultPlan((fault,))))
        prefix.append(steps[point.step_index])
    elif not run.ended_crashed:
        prefix.append(_steps.Crash())
    prefix.append(_steps.Recover(model=model, choice=choice,
                                 downtime_ms=run.end_ms - point.crash_ms))
    return _steps.Reproduction(config=config, steps=tuple(prefix),
                               expected={"outcome": "violation", "rules": list(rules)},
                               note=f"aofcrash explore: {', '.join(rules)} after a crash at trace "
                               f"index {point.trace_index}, model {model.value}")


def crash_point_words(ops: Sequence[tuple[str, str]], trace_index: int,
                      torn_bytes: int | None) -> str:
    """Where an explorer crash point is, in words: ``crash inside a write to appendonly.aof``."""
    if trace_index >= len(ops):
        return "crash after the last step"
    op, path = ops[trace_index]
    if torn_bytes is not None:
        return f"crash inside a {op} to {file_role(path)}"
    return f"crash before a {op} of {file_role(path)}"


def plan_of(steps: Sequence[_steps.Step]) -> FaultPlan:
    """Every fault the program injects or arms, as one plan (for descriptions)."""
    faults: list[Fault] = []
    for step in steps:
        if isinstance(step, _steps.InjectFaults | _steps.ArmCrash):
            faults.extend(step.plan.faults)
    return FaultPlan(tuple(faults))
