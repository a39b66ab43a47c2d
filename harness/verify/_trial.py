"""One *trial* of ``aofcrash verify``: the same workload, faults and oracle against a real server
process, in five steps (where the fault and the kill go: ``_faults``):

1. a fresh scratch directory (``_site``: removed at the next start if this run dies) —
   with, when the model is a power model or a fault is asked for, a fresh ``SimDisk`` served
   through ``faults.fuse.FuseMount`` on it (faults only reach a real process there);
2. start the server (``appendonly yes``, the policy, ``aof-use-rdb-preamble no``,
   ``aof-load-truncated yes``) and open ONE raw RESP connection;
3. a seeded workload of ``ops`` writes (strings, counters, lists, sets, zsets, hashes,
   MULTI/EXEC, SELECT, long-TTL expiries; optionally BGREWRITEAOF) sent pipelined in small
   batches; every write is an entry of a ``History`` with ``executed_ms`` = the send time and
   ``ack_ms`` = the time its reply was read (``error`` for an error reply);
4. at a seeded batch the batch is sent and NOT waited for; after a seeded delay the server and
   its rewrite child are SIGKILLed (``RedisProcess.kill``). Replies already on the socket are
   then read (they were released before the kill, so they are acknowledgements); the rest stay
   ``unknown``. Under a power model the mount is crashed with a choice drawn from the seed
   (``SimDisk.draw_crash_choice``) or, for a seeded quarter of the trials, the durable-only image;
5. restart, dump, ``check_recovery``; then a second crash without new writes, restart, dump,
   ``check_stability``.

A trial whose frontier is still empty (no entry had to survive) is ``not-exercised``,
not ``consistent``: it checked only prefix consistency.

Times are milliseconds since the trial started on the monotonic clock (so ``executed_ms`` never
goes backwards); a real server computes expiries on its wall clock, which runs at the same rate
over a few seconds, and its dump is read with ``now_ms`` on the same scale.

Every recorded time errs on the lenient side, so the oracle is never stricter than the truth:
``executed_ms`` is taken before the batch is sent (the server executes later), ``ack_ms`` after
the reply is read (the server released it earlier) and ``crash_ms`` before SIGKILL is sent (or,
when the server died on its own, the last moment it was seen alive). The everysec window is
``window_ms`` (2000, the contract's W) plus ``margin_ms`` (default 500): the only slack left is
the server's own scheduling — serverCron runs at hz 10 (100 ms), the fsync runs in a
background thread that shares 2 cores with the harness and the FUSE loop — so 500 ms covers it
with a wide margin while staying well below a second, the smallest loss the contract forbids.
Injected slow fsyncs add their delay (``stalls``), each placed at the latest moment it could
have started (the time the harness first saw it fired), which again can only widen the window.
Expiry times are compared with ``expiry_tolerance_ms`` = 2000 + the longest
send-to-reply latency of the trial (a server applies a relative TTL when it executes the write,
somewhere between send and reply); TTLs are hours, so no key expires during a trial.

This module talks to real processes over TCP: it reads the monotonic clock and sleeps for real.
All randomness comes from ``random.Random`` instances seeded from (seed, trial index).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import hiredis
import psutil

from faults import Fault as PlanFault
from faults import FaultPlan, ImageLimits, IOFault, NoSpace, PersistenceModel, ShortWrite, SlowSync
from harness.oracle import (
    ERROR_STALL_MS,
    CrashInfo,
    History,
    Outcome,
    Snapshot,
    Verdict,
    check_recovery,
    check_stability,
    snapshot_from_dump,
)
from harness.targets._servers import find_aof_files
from harness.verify._config import Dumper, Launcher, TrialResult, VerifyConfig
from harness.verify._conn import Conn, ServerGone, encode, end_run, info_field
from harness.verify._environment import launcher_for, server_spec
from harness.verify._faults import (
    CHILD_TEMP_GLOB,
    FIRE_WAIT_S,
    PACE_MS,
    PACED_ENTRIES,
    child_reached,
    plan_trial,
)
from harness.verify._mechanism import PAGE_BYTES
from harness.verify._site import Site
from harness.verify._workload import Item, ItemKind, batch_stream, workload_stream

__all__ = ["run_fuse_trial"]

_DAMAGED: Final = ImageLimits(torn=True, reorder=True)
# rewrite-completes: how long the rewrite may take before the trial goes on without it.
_REWRITE_WAIT_S: Final = 30.0
_INCR_GLOB: Final = "*.incr.aof"


def _split_at_rewrite(batches: Iterator[tuple[list[Item], int]]
                      ) -> Iterator[tuple[list[Item], int]]:
    """The same batches, with a BGREWRITEAOF in the middle of one starting a batch of its own
    (incr-fsync-error arms its EIO between the two)."""
    for batch, writes in batches:
        at = next((i for i, item in enumerate(batch) if item.kind is ItemKind.REWRITE), 0)
        if at:
            before = batch[:at]
            counted = sum(1 for item in before if item.kind is ItemKind.WRITE)
            yield before, counted
            yield batch[at:], writes - counted
        else:
            yield batch, writes


def _await_rewrite(conn: Conn) -> bool:
    """Wait until no rewrite is in progress or scheduled; False at the cap."""
    deadline = time.monotonic() + _REWRITE_WAIT_S
    while time.monotonic() < deadline:
        busy = [info_field(conn, b"aof_rewrite_in_progress"),
                info_field(conn, b"aof_rewrite_scheduled")]
        if all(b in (None, b"0") for b in busy):
            return True
        time.sleep(0.01)
    return False


@dataclass
class _Expect:
    """One reply the client waits for; `entry` is the history index it resolves (or None)."""

    entry: int | None
    executed_ms: int


class _Run:
    """The mutable state of one trial's workload phase."""

    def __init__(self, history: History, started: float) -> None:
        self.history = history
        self.started = started
        self.pending: list[_Expect] = []
        self.cursor = 0
        self.last_alive_ms = 0
        self.max_latency_ms = 0
        self.events: Counter[str] = Counter()

    def now_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def queue(self, items: Sequence[Item], conn: Conn) -> None:
        """Record `items` in the history (executed at the send time) and send them at once."""
        sent_ms = self.now_ms()
        payload = []
        for item in items:
            if item.kind is ItemKind.SELECT:
                payload.append(encode((b"SELECT", b"%d" % item.db)))
                self.pending.append(_Expect(None, sent_ms))
            elif item.kind is ItemKind.REWRITE:
                payload.append(encode((b"BGREWRITEAOF",)))
                self.pending.append(_Expect(None, sent_ms))
                self.events["bgrewriteaof sent"] += 1
            else:
                index = self.history.submit(item.commands, db=item.db, executed_ms=sent_ms)
                if len(item.commands) > 1:
                    payload.append(encode((b"MULTI",)))
                    self.pending.append(_Expect(None, sent_ms))
                    for argv in item.commands:
                        payload.append(encode(argv))
                        self.pending.append(_Expect(None, sent_ms))
                    payload.append(encode((b"EXEC",)))
                else:
                    payload.append(encode(item.commands[0]))
                self.pending.append(_Expect(index, sent_ms))
        conn.send(b"".join(payload))

    def read(self, conn: Conn, *, count: int | None = None) -> None:
        """Read replies (all pending by default) and resolve the entries they acknowledge."""
        target = len(self.pending) if count is None else min(len(self.pending), self.cursor + count)
        while self.cursor < target:
            reply = conn.next_reply()
            at = self.now_ms()
            self.last_alive_ms = at
            expect = self.pending[self.cursor]
            self.cursor += 1
            if expect.entry is None:
                continue
            self.max_latency_ms = max(self.max_latency_ms, at - expect.executed_ms)
            if isinstance(reply, hiredis.ReplyError):
                self.history.resolve(expect.entry, Outcome.ERROR)
                self.events[f"error reply: {str(reply).split(' ')[0]}"] += 1
            else:
                self.history.resolve(expect.entry, Outcome.OK, at_ms=at)

    def drain(self, conn: Conn) -> int:
        """After the kill: read the replies the server released before it died."""
        before = self.cursor
        conn.sock.settimeout(2.0)
        with contextlib.suppress(ServerGone, TimeoutError, OSError):
            self.read(conn)
        return self.cursor - before


def _dump_snapshot(dump: Dumper | None, server: Any, now_ms: int) -> Snapshot:
    if dump is None:
        from harness.targets._servers import dump_keyspace_at

        return snapshot_from_dump(dump_keyspace_at(server.port, now_ms=now_ms))
    client = server.new_client()
    try:
        return snapshot_from_dump(dump(client, now_ms))
    finally:
        client.close()


def _log_tail(server: Any, lines: int = 12) -> list[str]:
    try:
        return [line for line in server.log_lines() if line.strip()][-lines:]
    except OSError:
        return []


_LOG_EVENTS: Final = (
    ("Truncating the AOF", "load: truncated a torn AOF tail"),
    ("Short write", "server: short write to the AOF"),
    ("Error writing to the AOF", "server: AOF write error"),
    ("Can't recover from AOF write error", "server: exited on AOF write error"),
    ("Fail to fsync", "server: AOF fsync failed"),
    ("Background append only file rewriting terminated with success",
     "rewrite: finished before the crash"),
    ("Asynchronous AOF fsync is taking too long", "server: fsync took too long"),
)


def _scan_log(server: Any, events: Counter[str]) -> None:
    text = "\n".join(server.log_lines())
    for needle, event in _LOG_EVENTS:
        if needle in text:
            events[event] += 1


def _aof_listing(data_dir: str, glob: str | None) -> list[tuple[str, int]]:
    """The AOF files (manifest or glob) and their sizes; only stat and readdir, never open."""
    try:
        files = find_aof_files(data_dir, glob=glob)
        return [(os.path.relpath(f, data_dir), f.stat().st_size) for f in files]
    except (OSError, ValueError):
        return []


def _restart(server: Any) -> tuple[str | None, list[str]]:
    """Start `server` again after a crash: (None, []) when it came up, else why it refused (the
    last line of its log) and the tail of its log."""
    from harness.targets._servers import ServerRefusedToStart, ServerStartTimeout

    try:
        server.start()
    except (ServerRefusedToStart, ServerStartTimeout) as exc:
        tail = getattr(exc, "log_tail", None) or _log_tail(server)
        return (tail[-1] if tail else str(exc).splitlines()[0]), tail
    return None, []


def _kill(run: _Run, server: Any, conn: Conn, died_early: bool) -> tuple[int, bool]:
    """The crash: SIGKILL, then the replies the server released before it died are read and
    `conn` closed. Returns crash_ms (taken before the kill when the server is still alive;
    when it died on its own, the last moment it answered) and whether it died early."""
    if server.running and not died_early:
        crash_ms = run.now_ms()
    else:
        died_early = True
        crash_ms = run.last_alive_ms
    server.kill()
    drained = run.drain(conn)
    if drained:
        run.events["replies read after the kill"] += drained
    conn.close()
    return crash_ms, died_early


def _start_and_dump(run: _Run, server: Any, dumper: Dumper | None, crash_ms: int
                    ) -> tuple[str | None, list[str], int, Snapshot | None]:
    """Start `server` on the crash image and dump what it recovered: (why it refused or None,
    its log tail, recovery_ms, the snapshot or None)."""
    reason, log_tail = _restart(server)
    at_ms = max(run.now_ms(), crash_ms)
    recovered: Snapshot | None = None
    if reason is None:
        recovered = _dump_snapshot(dumper, server, at_ms)
        _scan_log(server, run.events)
    return reason, log_tail, at_ms, recovered


def _second_start(run: _Run, server: Any, dumper: Dumper | None, recovered: Snapshot,
                  tolerance_ms: int, crash: CrashInfo | None) -> tuple[Verdict, list[str] | None]:
    """Rule 3: start the killed `server` again (no new writes) and compare what it recovers
    with `recovered`. Returns the verdict and, when it refused, its log tail. `crash` None:
    a process crash at the time of the second start."""
    reason, tail = _restart(server)
    at_ms = run.now_ms()
    second = None if reason is not None else _dump_snapshot(dumper, server, at_ms)
    stability = check_stability(
        recovered, second, at_ms=at_ms, expiry_tolerance_ms=tolerance_ms,
        unavailable_reason=reason,
        crash=crash if crash is not None else CrashInfo(model="process", crash_ms=at_ms),
    )
    return stability, (tail if reason is not None else None)


def _outcome(config: VerifyConfig, run: _Run, verdict: Verdict, stability: Verdict | None
             ) -> str:
    outcome = verdict.outcome
    if stability is not None and not stability.ok:
        outcome = "violation"
    if outcome == "consistent" and config.policy == "everysec" and not verdict.frontier:
        outcome = "not-exercised"
        run.events["everysec: empty frontier (not exercised)"] += 1
    return outcome


def _result_fields(config: VerifyConfig, run: _Run, index: int, verdict: Verdict,
                   stability: Verdict | None, history: History, crash_ms: int,
                   recovery_ms: int, started: float) -> dict[str, Any]:
    """What every trial's TrialResult holds alike."""
    counts: Counter[Outcome] = Counter(e.outcome for e in history)
    return {
        "index": index, "outcome": _outcome(config, run, verdict, stability),
        "recovery": verdict, "stability": stability, "entries": len(history),
        "acked": counts[Outcome.OK], "unknown": counts[Outcome.UNKNOWN],
        "errors": counts[Outcome.ERROR], "crash_ms": crash_ms, "recovery_ms": recovery_ms,
        "events": run.events, "elapsed_s": time.monotonic() - started, "history": history,
    }


def run_fuse_trial(
    config: VerifyConfig,
    index: int,
    *,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
    without: Collection[str] = (),
) -> TrialResult:
    """Run trial `index` of `config` on a plain directory or the FUSE SimDisk (its workload,
    faults and crash depend only on the seed and the index). Every process and mount it starts
    is gone when it returns or raises.

    `without` takes ingredients out of the same trial (cause attribution): "fault" draws the
    fault and places the kill exactly as with it but never arms it; "rewrite" sends no
    BGREWRITEAOF. Everything else (workload, batches, kill, crash image seeds) is unchanged.
    """
    removed = frozenset(without)
    if not removed <= {"fault", "rewrite"}:
        raise ValueError(f"without: only 'fault' and 'rewrite' (a model change replaces "
                         f"strict metadata), got {sorted(removed)!r}")

    if launcher is None:
        launcher = launcher_for(server_spec(config))
    dumper = dump  # None: dump_keyspace_at, over a raw connection
    rng = random.Random(f"aofcrash-verify/{config.seed}/{index}")
    model = PersistenceModel(config.model)
    plan = plan_trial(config, rng, removed)
    draw, kill_at, arm_entry, kill_child = plan.draw, plan.kill_at, plan.arm_entry, plan.kill_child
    limits = _DAMAGED if config.image == "drawn-damaged" else None
    child_gate: Any = None  # kill-child: the FuseHold on the child's fsync
    # The rest of the stream is the workload and its batches, drawn as they are sent.
    batches = batch_stream(rng, workload_stream(rng, config.ops, rewrite_at=plan.rewrite_at),
                           config.batch_max)
    if plan.split_at_rewrite:
        batches = _split_at_rewrite(batches)
    paced_left = 0  # rewrite-completes: entries still to pace after the rewrite

    started = time.monotonic()
    history = History()
    run = _Run(history, started)
    site = Site(mount=config.needs_mount)
    server: Any = None
    conn: Conn | None = None
    stalls: list[tuple[int, int]] = []
    error_stalls: list[tuple[int, int]] = []
    seen_fired = 0
    log_tail: list[str] = []
    armed: PlanFault | None = None
    armed_at: int | None = None
    fault_note = ""
    workload_start = 0
    aof_files: list[tuple[str, int]] = []
    child_kills: list[str] = []  # kill-child: what was killed, for `fired`
    refused_starts = 0  # 1: refused once, the next start came up; 2: refused twice
    after_refusal = ""  # the verdict of the start after a refusal that healed
    rewrite_events: list[str] = []  # rewrite-completes: the awaited rewrite, for `fired`

    def note_fired(at_ms: int) -> None:
        nonlocal seen_fired
        fired = site.fired()
        for f in fired[seen_fired:]:
            if isinstance(f.fault, SlowSync):
                # The stall started at or before now: placing it now only widens the window.
                stalls.append((at_ms, f.fault.delay_ms))
            elif isinstance(f.fault, IOFault | NoSpace | ShortWrite):
                # A failed persistence-path operation costs one retry period (oracle rule 2).
                error_stalls.append((at_ms, ERROR_STALL_MS))
        seen_fired = len(fired)

    def arm(entries_sent: int) -> None:
        nonlocal armed, armed_at, fault_note
        assert draw is not None
        fault, fault_note = draw.arm(
            config.fault_glob, site.seen_ops(config.fault_glob, since=workload_start),
            expect_syncs=config.policy != "no" or config.rewrite,
            incr_path=site.last_written(_INCR_GLOB) if draw.kind == "incr-fsync-error" else None,
        )
        if fault is None:
            run.events["fault not armed: unreachable"] += 1
            return
        site.arm(fault)
        armed, armed_at = fault, entries_sent

    def waiting_for_fault() -> bool:
        return armed is not None and not site.fired()

    def kill_rewrite_child() -> None:
        """kill-child: SIGKILL the rewrite child the batch's BGREWRITEAOF forked while it is
        held at the fsync of its temp file (the gate), or say why it could not be."""
        nonlocal fault_note, child_gate
        gate, child_gate = child_gate, None
        killed = []
        try:
            if child_reached(gate, server):
                for child in server.fork_children():
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                        killed.append(child.pid)
        finally:
            gate.abandon()  # the held fsync never reaches the disk: its caller is dead
        if killed:
            child_kills.append(f"KillChild: rewrite child {killed[0]} SIGKILLed at the fsync of "
                               f"its temp file {gate.path}")
            run.events["rewrite child killed"] += 1
        else:
            fault_note = "not fired: the rewrite child ended without reaching its fsync"
            run.events["fault not fired: rewrite child never reached its fsync"] += 1

    try:
        server = launcher(site.data_dir, site.log_path, config.policy)
        server.start()
        # Operations from here on are the workload's (not the server's start-up).
        workload_start = site.trace_length() if site.mount is not None else 0
        conn = Conn(server.port)
        run.last_alive_ms = run.now_ms()
        died_early = False
        in_flight = False
        crash_ms = 0
        sent = 0  # entries sent before the current batch
        for batch, writes in batches:
            try:
                if arm_entry is not None and armed_at is None and not fault_note \
                        and draw is not None \
                        and draw.kind not in ("kill-child", "rewrite-completes") \
                        and sent + writes > arm_entry:
                    arm(sent)
                last_batch = sent + writes > kill_at
                if last_batch and waiting_for_fault() and sent + writes < config.ops:
                    # Not fired yet: let the workload run on until it has.
                    last_batch = False
                    if sent <= kill_at:
                        run.events["kill moved later: the fault had not fired yet"] += 1
                rewrites = any(item.kind is ItemKind.REWRITE for item in batch)
                if last_batch and (kill_child or plan.await_rewrite) and rewrites:
                    # The child is killed once its BGREWRITEAOF is acknowledged: the server's
                    # kill comes with a later batch.
                    last_batch = False
                    run.events["kill moved after the BGREWRITEAOF (its child dies first)"] += 1
                if last_batch and plan.idle_s:
                    time.sleep(plan.idle_s)
                    run.events["idle before the kill"] += 1
                if kill_child and rewrites and site.mount is not None:
                    # Before BGREWRITEAOF: the child's fsync waits at the gate until killed.
                    child_gate = site.mount.hold("fsync", CHILD_TEMP_GLOB)
                run.queue(batch, conn)
                sent += writes
                if last_batch:
                    in_flight = True
                    if plan.kill_delay_s:
                        time.sleep(plan.kill_delay_s)
                    break
                run.read(conn)
                if child_gate is not None:
                    kill_rewrite_child()
                if plan.await_rewrite and rewrites:
                    if _await_rewrite(conn):
                        rewrite_events.append("RewriteCompleted: the BGREWRITEAOF's rewrite "
                                              "finished before the writes went on")
                        run.events["rewrite completed (awaited)"] += 1
                        paced_left = PACED_ENTRIES if not plan.entry_pause_s else 0
                    else:
                        fault_note = "not fired: the rewrite did not finish within the wait"
                if plan.entry_pause_s:
                    time.sleep(plan.entry_pause_s * writes)
                elif paced_left > 0:
                    time.sleep(PACE_MS / 1000 * writes)
                    paced_left -= writes
            except ServerGone:
                died_early = True
                break
            note_fired(run.now_ms())
        if not in_flight and not died_early and waiting_for_fault():
            # Every write is sent: under everysec the background fsync may still come.
            polls = int(FIRE_WAIT_S / 0.01) if config.policy == "everysec" else 0
            for _ in range(polls):
                if not waiting_for_fault():
                    break
                time.sleep(0.01)
            note_fired(run.now_ms())
        crash_ms, died_early = _kill(run, server, conn, died_early)
        conn = None
        note_fired(crash_ms)
        if died_early:
            run.events["server died before the planned kill"] += 1
        if armed is not None and not site.fired():
            run.events["fault armed but not fired"] += 1
        _scan_log(server, run.events)
        aof_files = _aof_listing(site.data_dir, config.aof_glob)
        image_kind, choice, position, effects = site.crash(
            model, None if plan.durable_only else plan.image_seed, limits=limits
        )
        for _, _, end in site.holes:  # a failed fsync's range under later data
            run.events["crash image: zero hole ending at a page boundary" if end % PAGE_BYTES == 0
                       else "crash image: zero hole ending inside a page"] += 1
        window_ms = config.window_ms + config.margin_ms
        tolerance_ms = 2000 + run.max_latency_ms
        crash_info = CrashInfo(
            model=config.model, choice=choice, crash_ms=crash_ms, trace_index=position,
        )
        # Recovery 1.
        reason, log_tail, recovery_ms, recovered = _start_and_dump(run, server, dumper, crash_ms)
        verdict = check_recovery(
            history, recovered, policy=config.policy, model=config.model,
            crash_ms=crash_ms, recovery_ms=recovery_ms, window_ms=window_ms,
            stalls=stalls, error_stalls=error_stalls, unavailable_reason=reason,
            allow_unavailable=config.allow_unavailable,
            damaged_image=choice is not None and choice.damaged, crash=crash_info,
            expiry_tolerance_ms=tolerance_ms,
        )
        # A refusal may heal: the refusing start can repair the file itself (Valkey truncates
        # a torn incr and then refuses "not the last file"). Start once more, no crash between,
        # and judge what that start recovers: the report says for how many starts it refused.
        if reason is not None:
            refused_starts = 1
            again, _ = _restart(server)
            if again is None:
                at_ms = max(run.now_ms(), crash_ms)
                healed = check_recovery(
                    history, _dump_snapshot(dumper, server, at_ms), policy=config.policy,
                    model=config.model, crash_ms=crash_ms, recovery_ms=at_ms,
                    window_ms=window_ms, stalls=stalls, error_stalls=error_stalls,
                    crash=crash_info, expiry_tolerance_ms=tolerance_ms,
                )
                after_refusal = healed.outcome if healed.ok else "/".join(
                    sorted({v.rule.value for v in healed.violations}))
                run.events["refusal healed on the next start"] += 1
            else:
                refused_starts = 2
                run.events["refused again on the next start"] += 1
        # Recovery 2: crash the recovered state again (no new writes) and compare.
        stability: Verdict | None = None
        if recovered is not None:
            server.kill()
            kind2, choice2, position2, _ = site.crash(
                model, None if plan.durable_only else plan.stability_seed, limits=limits
            )
            info2 = CrashInfo(model=config.model, choice=choice2, crash_ms=run.now_ms(),
                              trace_index=position2)
            stability, tail = _second_start(run, server, dumper, recovered, tolerance_ms, info2)
            if tail is not None:
                log_tail = tail
            run.events[f"second crash image: {kind2}"] += 1
        if not log_tail:
            log_tail = _log_tail(server, 30)  # the log of all three runs: for the report
        server.kill()
        server = None
    finally:
        end_run(conn, server)
        site.close()

    return TrialResult(
        **_result_fields(config, run, index, verdict, stability, history, crash_ms,
                         recovery_ms, started),
        crash_image=image_kind,
        crash_choice=None if choice is None else choice.to_dict(),
        faults=(FaultPlan((armed,)).to_json() if armed is not None
                else json.dumps({"kill_child": {"before_entry": arm_entry}})
                if kill_child
                else json.dumps({"rewrite_completes": {"before_entry": plan.rewrite_at}})
                if plan.await_rewrite else ""),
        fired=[f"{type(f.fault).__name__} on {f.path}: {f.effect}" for f in site.fired()]
        + child_kills + rewrite_events,
        server_died_early=died_early, log_tail=log_tail,
        fault_asked=draw is not None and "fault" not in removed,
        fault_armed_at=arm_entry if kill_child or plan.await_rewrite else armed_at,
        fault_note=fault_note,
        aof_files=aof_files, image_effects=effects, refused_starts=refused_starts,
        after_refusal=after_refusal,
    )
