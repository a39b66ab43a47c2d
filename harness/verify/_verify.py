"""``aofcrash verify``: the same workload, faults and oracle against real server processes.

The server is any of ``harness.targets.resolve_server``'s forms: a preset (redis-server 6.0,
6.2, 7.0, Valkey 9.1 as ``valkey``, the reference as a process), a path to a binary run with
redis-server's flags, or a command template (``server_cmd``). ``check_environment`` starts it
once to check that it speaks RESP and to read its name and version, which go into every report.

One *trial*:

1. a fresh scratch directory (``make_run_dir``: removed at the next start if this run dies) —
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

Fault placement: a fault is *armed* during the workload, not counted from the start of the run,
so it lands on an operation the workload is known to reach. At a seeded batch before the kill
(for a fault on fsync under ``everysec``/``no``, at least ``_SYNC_LEAD_S`` before it: that
policy fsyncs about once a second) the fault joins the mount's plan and fires on the 1st-3rd
matching operation (AOF files: ``aof_glob``, default ``*.aof``) after that point. EIO on a sync
hits the kind the server was seen using (fdatasync for Redis on Linux, fsync otherwise). If it
has not fired when the kill batch comes, the kill moves to a later batch (under ``everysec``,
after the last batch, it waits up to ``_FIRE_WAIT_S`` for the background fsync). A fault the
server cannot reach (a slow fsync under ``no``, which never fsyncs the AOF without a rewrite)
is not armed, and the trial says so.

Faults (``FAULTS``): ``short-write``, ``no-space`` (ENOSPC), ``io-error`` (EIO on a write or,
in two thirds of the trials, on a sync), ``fsync-error`` (the same draws, always on a sync: EIO
1-2 times, then success), ``slow-sync``, ``kill-child``: a BGREWRITEAOF is sent with the batch
where the fault is placed (ahead of the kill's batch) and its rewrite child is SIGKILLed a
seeded 0-4 ms after that batch's replies; so that a small keyspace's child is still alive then,
the child's fsync of its own temp file (``temp-rewriteaof-<pid>.aof``) is held for 400 ms (a
stall off the persistence path: it does not widen the everysec window).

Cause attribution (``attribute_trial``; on by default in ``run_verify``, ``--no-attribution``
in the CLI): a violating trial is re-run as it was (a violation that does not come back in a
few re-runs is timing-dependent and is not attributed), then once per ingredient with that
ingredient taken out: the fault (drawn and placed exactly as before, never armed), a strict
metadata model (any ``power-*`` model but eager) replaced by ``power-eager-metadata``, the
rewrite. A variant re-runs up to ``attribution_repeats`` times and counts as recurring at its
first violation of a rule the trial broke. An ingredient is *needed* when the violation never
recurred without it, so a loss that also happens without the fault (e.g. a missing directory
fsync under strict metadata) does not name the fault as a cause. A fault that never fired in
the trial is not needed (no re-run).

Kill placement under ``everysec``: the kill lands after at least ``window + margin + 500 ms`` of
the workload's schedule (when the schedule is that long), so that some entries must survive; an
injected write/sync error widens the window by a retry period each (oracle rule 2), so with such
a fault the kill goes that much later and the fault is armed that much earlier when the schedule
allows. A trial whose frontier is still empty (no entry had to survive) is ``not-exercised``,
not ``consistent``: it checked only prefix consistency.

Workers: ``run_verify(config, workers=N)`` runs trials in N forked worker processes (each with
its own reaper, and killed by the kernel when the parent dies: ``PR_SET_PDEATHSIG``). A trial is a
function of (seed, index) whichever worker runs it; results come back in index order.

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
import ctypes
import enum
import json
import math
import multiprocessing
import os
import random
import shlex
import shutil
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeAlias

import hiredis
import psutil

from faults import (
    Clock,
    CrashChoice,
    FaultOp,
    FaultPlan,
    FaultPlanError,
    FaultyFileSystem,
    ImageLimits,
    IOFault,
    NoSpace,
    PersistenceModel,
    ShortWrite,
    SimDisk,
    SlowSync,
)
from faults import Fault as PlanFault
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
from harness.targets._servers import (
    SERVER_PRESETS,
    ServerInfo,
    ServerNotFound,
    ServerNotUsable,
    ServerSpec,
    ServerSpecError,
    _template_words,
    find_aof_files,
    make_run_dir,
    probe_server,
    remove_stale_run_dirs,
    resolve_server,
)

__all__ = [
    "FAULTS",
    "IMAGES",
    "INGREDIENTS",
    "MODELS",
    "OUTCOMES",
    "POLICIES",
    "SERVERS",
    "Ablation",
    "Attribution",
    "Dumper",
    "Launcher",
    "TrialResult",
    "VerifyConfig",
    "VerifyEnvironmentError",
    "VerifyResult",
    "attribute_trial",
    "check_environment",
    "run_trial",
    "run_verify",
    "verify_report",
    "worker_pool",
]

SERVERS: Final = SERVER_PRESETS  # or a path to a binary, or a command template (server_cmd)
POLICIES: Final = ("always", "everysec", "no")
# "power" is the old name of "power-ext4" (reproductions written before the calibration).
MODELS: Final = ("process", "power-ext4", "power-xfs", "power-btrfs", "power-posix-metadata",
                  "power-eager-metadata", "power")
# "fsync-error": io-error always on a sync (EIO 1-2 times, then success); "kill-child": a
# BGREWRITEAOF during the workload whose rewrite child is SIGKILLed.
FAULTS: Final = ("none", "short-write", "no-space", "io-error", "fsync-error", "slow-sync",
                 "kill-child")
# What cause attribution can take out of a violating trial, one at a time (``run_trial``'s
# `without`; "metadata" replaces a strict metadata model by ``power-eager-metadata``).
INGREDIENTS: Final = ("fault", "metadata", "rewrite")
_STRICT_METADATA: Final = ("power-ext4", "power-xfs", "power-btrfs", "power-posix-metadata",
                           "power")
# A trial's outcome. "not-exercised": an everysec trial in which no entry had to survive.
OUTCOMES: Final = ("consistent", "not-exercised", "unavailable", "violation")
# Power-model crash images: "drawn" with SimDisk's default ImageLimits (sector-aligned
# prefixes of the unsynced data, kept metadata prefixes), "drawn-damaged" also with torn and
# reordered sectors (opt-in in faults: an AOF has no checksums, so a damaged sector inside a
# value tests the file format rather than the persistence protocol), "durable" = durable state
# only. Both drawn kinds use the durable-only image in a seeded quarter of the trials.
IMAGES: Final = ("drawn", "drawn-damaged", "durable")
_DAMAGED: Final = ImageLimits(torn=True, reorder=True)

# A dump as dump_keyspace returns it: {db: {key: (type, value, expire_at_ms | None)}}.
DumpMapping: TypeAlias = Mapping[int, Mapping[bytes, tuple[str, Any, int | None]]]
# (client, now_ms) -> dump. A test double can wrap dump_keyspace to corrupt what it reports.
Dumper: TypeAlias = Callable[[Any, int], DumpMapping]
# (data_dir, log_path, policy) -> an unstarted RedisProcess-like object.
Launcher: TypeAlias = Callable[[str, str, str], Any]

# 6.x appendonly.aof, 7.0 / Valkey base and incr files, temp rewrite files (never the manifest).
_AOF_GLOB: Final = "*.aof"
_HOUR_S: Final = 3600
# A fault on fsync under everysec/no is armed at least this long before the kill.
_SYNC_LEAD_S: Final = 1.3
# Under everysec, how long to wait after the last batch for an armed fault to fire.
_FIRE_WAIT_S: Final = 1.5
# kill-child: the rewrite child's own temp file (Redis, Valkey, the reference; not the parent's
# temp-rewriteaof-bg-*), whose fsync is held this long so the child is still alive to be
# killed (a small keyspace is rewritten in a millisecond).
_CHILD_TEMP_GLOB: Final = "temp-rewriteaof-[0-9]*"
_CHILD_HOLD_MS: Final = 400


class VerifyEnvironmentError(RuntimeError):
    """The run cannot start here (missing binary, not a RESP server, no FUSE); one line."""


@dataclass(frozen=True)
class VerifyConfig:
    """What ``aofcrash verify`` runs. Every field is validated; errors name the field.

    `server` is a preset of ``SERVERS`` or a path to a binary (run with redis-server's flags);
    `server_cmd`, when given, is a command template instead (``server`` then reads "command").
    `aof_glob` names the server's AOF files (relative to its directory) for fault placement and
    the report; None means ``*.aof``, what Redis and Valkey write.
    """

    server: str = "7.0"
    policy: str = "always"
    model: str = "process"
    trials: int = 5
    ops: int = 200
    fault: str = "none"
    rewrite: bool = False
    seed: int = 0
    first_trial: int = 0  # trial indices run are first_trial .. first_trial + trials - 1
    window_ms: int = 2000
    margin_ms: int = 500
    batch_max: int = 6
    allow_unavailable: bool = False
    image: str = "drawn"
    duration_ms: int | None = None  # None: 6000 for everysec, else 0 (as fast as it goes)
    server_cmd: str | None = None
    aof_glob: str | None = None

    def __post_init__(self) -> None:
        errors = []
        if self.server_cmd is not None:
            object.__setattr__(self, "server", "command")
            try:
                _template_words(str(self.server_cmd))
            except ServerSpecError as exc:
                errors.append(str(exc))
        elif not isinstance(self.server, str) or (
            self.server not in SERVERS and "/" not in self.server
        ):
            errors.append(
                f"server must be one of {', '.join(SERVERS)} or a path to a server binary "
                f"(a path has a '/'), got {self.server!r}"
            )
        for name, allowed in (("policy", POLICIES), ("model", MODELS),
                              ("fault", FAULTS), ("image", IMAGES)):
            value = getattr(self, name)
            if value not in allowed:
                errors.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name, minimum in (("trials", 1), ("ops", 1), ("seed", 0), ("first_trial", 0),
                              ("window_ms", 0), ("margin_ms", 0), ("batch_max", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                errors.append(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.duration_ms is not None and (
            isinstance(self.duration_ms, bool) or not isinstance(self.duration_ms, int)
            or self.duration_ms < 0
        ):
            errors.append(f"duration_ms must be None or an int >= 0, got {self.duration_ms!r}")
        if self.aof_glob is not None:
            try:
                ShortWrite(written_bytes=1, path_glob=self.aof_glob)
            except (FaultPlanError, TypeError) as exc:
                problem = "; ".join(getattr(exc, "errors", [str(exc)]))
                errors.append(f"aof_glob{problem.split('path_glob', 1)[-1]}")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def workload_duration_ms(self) -> int:
        """How long the writes are spread over. everysec needs seconds: only entries acked
        more than W before the crash must survive, so a fast run would check nothing."""
        if self.duration_ms is not None:
            return self.duration_ms
        return 6000 if self.policy == "everysec" else 0

    @property
    def needs_mount(self) -> bool:
        """Power models and faults only reach a real process through a FUSE mount."""
        return self.model != "process" or self.fault != "none"

    @property
    def fault_glob(self) -> str:
        return self.aof_glob if self.aof_glob is not None else _AOF_GLOB

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "server_cmd": self.server_cmd, "aof_glob": self.aof_glob,
            "policy": self.policy, "model": self.model,
            "trials": self.trials, "ops": self.ops, "fault": self.fault,
            "rewrite": self.rewrite, "seed": self.seed, "first_trial": self.first_trial,
            "window_ms": self.window_ms, "margin_ms": self.margin_ms,
            "batch_max": self.batch_max, "allow_unavailable": self.allow_unavailable,
            "image": self.image, "duration_ms": self.workload_duration_ms,
        }

    def command_line(self, *, trial: int | None = None) -> str:
        """The ``aofcrash verify`` command line that runs this (or only trial `trial`)."""
        first, count = (trial, 1) if trial is not None else (self.first_trial, self.trials)
        parts = ["aofcrash", "verify"]
        if self.server_cmd is not None:
            parts += ["--server-cmd", shlex.quote(self.server_cmd)]
        else:
            parts += ["--server", shlex.quote(self.server)]
        if self.aof_glob is not None:
            parts += ["--aof-glob", shlex.quote(self.aof_glob)]
        parts += ["--policy", self.policy, "--model", self.model, "--fault", self.fault,
                  "--ops", str(self.ops), "--seed", str(self.seed), "--trials", str(count)]
        if first:
            parts += ["--first-trial", str(first)]
        if self.rewrite:
            parts.append("--rewrite")
        if self.margin_ms != 500:
            parts += ["--margin-ms", str(self.margin_ms)]
        if self.batch_max != 6:
            parts += ["--batch-max", str(self.batch_max)]
        if self.allow_unavailable:
            parts.append("--allow-unavailable")
        if self.image != "drawn":
            parts += ["--image", self.image]
        if self.duration_ms is not None:
            parts += ["--duration-ms", str(self.duration_ms)]
        return " ".join(parts)


@dataclass
class TrialResult:
    """One trial: what ran, what the client learned, and the verdicts."""

    index: int
    outcome: str  # one of OUTCOMES
    recovery: Verdict
    stability: Verdict | None
    entries: int
    acked: int
    unknown: int
    errors: int
    crash_ms: int
    recovery_ms: int
    crash_image: str  # "visible" (process), "durable-only" or "drawn"
    crash_choice: dict[str, Any] | None
    faults: str  # the armed plan, as JSON ("" for none)
    fired: list[str]
    events: Counter[str]
    elapsed_s: float
    server_died_early: bool
    log_tail: list[str] = field(default_factory=list)
    history: History | None = None
    fault_asked: bool = False
    fault_armed_at: int | None = None  # entries sent when the fault was armed
    fault_note: str = ""  # why a fault asked for was not armed
    aof_files: list[tuple[str, int]] = field(default_factory=list)  # at the crash: (path, bytes)
    attribution: Attribution | None = None  # violations only: which ingredients it needs

    @property
    def fault_fired(self) -> bool:
        return bool(self.fired)

    @property
    def unavailable_after_ack(self) -> bool:
        """The server acknowledged writes, then refused to start after a legal crash."""
        return self.recovery.unavailable_reason is not None and self.acked > 0

    @property
    def violations(self) -> list[Any]:
        found = list(self.recovery.violations)
        if self.stability is not None:
            found += self.stability.violations
        return found

    def render(self) -> str:
        head = (
            f"trial {self.index}: {self.outcome.upper()}  entries={self.entries} "
            f"acked={self.acked} unknown={self.unknown} errors={self.errors} "
            f"k={self.recovery.k} F={self.recovery.frontier} image={self.crash_image}"
        )
        if self.fault_asked:
            head += f" fault={'fired' if self.fault_fired else 'not fired'}"
        body = [v.render() for v in self.violations]
        if self.attribution is not None:
            body.append(f"  cause: {self.attribution.summary()}")
        if self.outcome == "not-exercised":
            body.append("  not exercised: no acknowledged entry was old enough that it had to "
                        "survive (everysec frontier is empty)")
        if self.fault_note:
            body.append(f"  fault: {self.fault_note}")
        if self.recovery.unavailable_reason:
            what = ("acknowledged, then unavailable" if self.unavailable_after_ack
                    else "refused to start")
            body.append(f"  {what}: {self.recovery.unavailable_reason}")
        return "\n".join([head, *body])

    def row(self) -> dict[str, Any]:
        return {
            "trial": self.index, "outcome": self.outcome, "entries": self.entries,
            "acked": self.acked, "unknown": self.unknown, "errors": self.errors,
            "k": self.recovery.k, "frontier": self.recovery.frontier,
            "crash_ms": self.crash_ms, "recovery_ms": self.recovery_ms,
            "image": self.crash_image, "fired": "; ".join(self.fired),
            "fault_fired": self.fault_fired if self.fault_asked else None,
            "fault_armed_at_entry": self.fault_armed_at,
            "fault_note": self.fault_note or None,
            "aof_files": "; ".join(f"{name} ({size} B)" for name, size in self.aof_files),
            "acknowledged_then_unavailable": self.unavailable_after_ack,
            "server_reason": self.recovery.unavailable_reason,
            "cause": None if self.attribution is None else self.attribution.summary(),
            "seconds": round(self.elapsed_s, 3),
        }


@dataclass
class VerifyResult:
    config: VerifyConfig
    server_version: str
    trials: list[TrialResult]
    elapsed_s: float
    server_name: str = ""
    workers: int = 1
    attribution_s: float = 0.0  # of elapsed_s: re-running violating trials for their causes

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.trials if t.outcome == outcome)

    @property
    def fault_fired(self) -> int:
        """Trials in which the fault asked for actually fired."""
        return sum(1 for t in self.trials if t.fault_asked and t.fault_fired)

    @property
    def ok(self) -> bool:
        return self.count("violation") == 0


# ---------------------------------------------------------------------------------------------
# Environment

# (server, server_cmd) -> the spec resolved by the last run_verify/check_environment of this
# process (a forked worker inherits it and never resolves again); probes by spec.
_SPECS: dict[tuple[str, str | None], ServerSpec] = {}
_PROBED: dict[ServerSpec, ServerInfo] = {}


def _spec(config: VerifyConfig, *, fresh: bool = False) -> ServerSpec:
    """The server of `config`, resolved now when `fresh` (a run's start: the binary may have
    changed since), else the one resolved last in this process."""
    key = (config.server, config.server_cmd)
    spec = None if fresh else _SPECS.get(key)
    if spec is None:
        try:
            spec = resolve_server(None if config.server_cmd is not None else config.server,
                                  server_cmd=config.server_cmd)
        except ServerNotFound as exc:
            hint = " (run scripts/bootstrap.sh)" if config.server in SERVERS else ""
            raise VerifyEnvironmentError(f"{exc}{hint}") from None
        except ServerSpecError as exc:
            raise VerifyEnvironmentError(str(exc)) from None
        _SPECS[key] = spec
    return spec


def _launcher_for(spec: ServerSpec) -> Launcher:
    # Plain AOF base after a rewrite (a redis-server flag; the reference has no RDB preamble).
    extra = None if spec.kind == "reference" else {"aof-use-rdb-preamble": "no"}

    def launch(data_dir: str, log_path: str, policy: str) -> Any:
        return spec.process(data_dir, appendfsync=policy, log_path=log_path,
                            aof_load_truncated=True, extra_config=extra)

    return launch


def _server_identity(config: VerifyConfig) -> ServerInfo:
    """The server's name and version (resolves it again; starts it once per spec to ask)."""
    spec = _spec(config, fresh=True)
    info = _PROBED.get(spec)
    if info is None:
        try:
            info = probe_server(spec)
        except (ServerNotUsable, ServerNotFound) as exc:
            raise VerifyEnvironmentError(str(exc)) from None
        _PROBED[spec] = info
    return info


def check_environment(config: VerifyConfig) -> str:
    """Raise VerifyEnvironmentError (one line) unless the run can start: the server resolves,
    starts and answers PING over RESP, and FUSE works when needed. Returns its version."""
    info = _server_identity(config)
    _check_fuse(config)
    return info.version


def _check_fuse(config: VerifyConfig) -> None:
    if config.needs_mount:
        from faults.fuse import fuse_unavailable_reason

        reason = fuse_unavailable_reason()
        if reason is not None:
            raise VerifyEnvironmentError(f"FUSE is needed for --model/--fault: {reason}")


# ---------------------------------------------------------------------------------------------
# Faults: drawn before the trial, armed during it


@dataclass(frozen=True, slots=True)
class _FaultDraw:
    """One trial's fault, drawn up front from the seed; ``arm`` builds it at arming time."""

    kind: str  # one of FAULTS other than "none"
    position: float  # where in the armable range of batches it is armed, in [0, 1)
    nth: int  # it fires on the nth matching operation after arming
    times: int
    written_bytes: int  # short-write
    partial_bytes: int | None  # no-space
    on_sync: bool  # io-error: on a sync (else on a write)
    delay_ms: int  # slow-sync

    @property
    def errors(self) -> int:
        """How many failed operations it injects (slow syncs and a killed child fail none)."""
        if self.kind in ("slow-sync", "kill-child"):
            return 0
        return 1 if self.kind == "short-write" else self.times

    @property
    def syncs(self) -> bool:
        """Whether it needs the server to fsync (a rare event under everysec and no)."""
        return self.kind == "slow-sync" or (self.kind == "io-error" and self.on_sync)

    def arm(
        self, glob: str, seen: Counter[FaultOp], *, expect_syncs: bool
    ) -> tuple[PlanFault | None, str]:
        """The fault to add now, given the operation kinds the workload made on the AOF files
        so far and whether the server fsyncs them by itself; or None and why it cannot be
        placed."""
        if self.kind == "short-write":
            return ShortWrite(written_bytes=self.written_bytes, nth=self.nth, path_glob=glob), ""
        if self.kind == "no-space":
            return NoSpace(nth=self.nth, times=self.times, partial_bytes=self.partial_bytes,
                           path_glob=glob), ""
        # Syncs of the workload (not of start-up, where Redis fsyncs the files it creates).
        syncs = {op: n for op, n in seen.items() if op in (FaultOp.FDATASYNC, FaultOp.FSYNC)}
        reachable = expect_syncs or bool(syncs)
        if self.kind == "slow-sync":
            if not reachable:
                return None, ("not armed: the server made no fsync of an AOF file, and under "
                              "appendfsync no it makes none without a rewrite")
            return SlowSync(delay_ms=self.delay_ms, nth=self.nth, times=self.times,
                            path_glob=glob), ""
        op = FaultOp.WRITE
        if self.on_sync and reachable:
            # The kind this server syncs its AOF with (Redis on Linux: fdatasync); fdatasync
            # until the workload has shown one.
            op = max(syncs, key=lambda k: (syncs[k], k is FaultOp.FDATASYNC), default=None) \
                or FaultOp.FDATASYNC
        return IOFault(op=op, nth=self.nth, times=self.times, path_glob=glob), ""


def _draw_fault(rng: random.Random, fault: str) -> _FaultDraw | None:
    if fault == "none":
        return None
    # The same draws for every fault (a trial's workload does not depend on the fault kind).
    return _FaultDraw(
        kind="io-error" if fault == "fsync-error" else fault, position=rng.random(),
        nth=1 + rng.randrange(3),
        times=rng.randrange(1, 6) if fault == "no-space" else rng.randrange(1, 3),
        written_bytes=rng.randrange(1, 40),
        partial_bytes=rng.choice([None, rng.randrange(1, 40)]),
        on_sync=rng.randrange(3) != 0 or fault == "fsync-error",
        delay_ms=rng.choice([500, 1500, 3000]),
    )


def _kill_range(config: VerifyConfig, *, extra_ms: int = 0) -> tuple[int, int]:
    """Entries among which the kill is drawn. everysec: late enough in the schedule that the
    entries of its first part had to survive (else the trial checks no durability); `extra_ms`
    is how much injected errors are expected to widen the window."""
    if config.policy != "everysec":
        return 0, config.ops
    duration = config.workload_duration_ms
    need_ms = config.window_ms + config.margin_ms + 500 + extra_ms
    if duration <= need_ms:
        if extra_ms:
            return _kill_range(config)  # place it as well as it goes without the errors
        return 0, config.ops  # too short to place; the idle-before-kill trials still exercise
    low = min(config.ops - 1, math.ceil(config.ops * need_ms / duration))
    return low, config.ops


# ---------------------------------------------------------------------------------------------
# The workload


class _Kind(enum.Enum):
    WRITE = "write"
    SELECT = "select"
    REWRITE = "rewrite"


@dataclass(frozen=True, slots=True)
class _Item:
    kind: _Kind
    commands: tuple[tuple[bytes, ...], ...] = ()
    db: int = 0


_STRING_KEYS: Final = [b"s:%d" % i for i in range(6)]
_COUNTER_KEYS: Final = [b"c:%d" % i for i in range(3)]
_LIST_KEYS: Final = [b"l:%d" % i for i in range(3)]
_SET_KEYS: Final = [b"t:%d" % i for i in range(3)]
_ZSET_KEYS: Final = [b"z:%d" % i for i in range(3)]
_HASH_KEYS: Final = [b"h:%d" % i for i in range(3)]
_ALL_KEYS: Final = (_STRING_KEYS + _COUNTER_KEYS + _LIST_KEYS + _SET_KEYS + _ZSET_KEYS
                    + _HASH_KEYS)
_MEMBERS: Final = [b"m%d" % i for i in range(8)]
_SCORES: Final = [b"0", b"1", b"-2", b"2.5", b"100", b"-0.5", b"1e3"]


def _value(rng: random.Random) -> bytes:
    pick = rng.randrange(5)
    if pick == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))  # binary, \r\n
    if pick == 1:
        return b"x" * rng.choice([100, 700, 3000])  # spans 512-byte sectors
    return b"v%d" % rng.randrange(1000)


def _long_ttl_s(rng: random.Random) -> bytes:
    return str(rng.randrange(2 * _HOUR_S, 48 * _HOUR_S)).encode()


def _command(rng: random.Random) -> tuple[bytes, ...]:
    """One write command (long TTLs only: a real server expires on its wall clock)."""
    roll = rng.randrange(100)
    if roll < 20:
        key = rng.choice(_STRING_KEYS)
        flag = rng.choice([(), (), (b"NX",), (b"XX",)])
        return (b"SET", key, _value(rng), *flag)
    if roll < 25:
        return (b"APPEND", rng.choice(_STRING_KEYS), _value(rng))
    if roll < 35:
        key = rng.choice(_COUNTER_KEYS)
        op = rng.choice([b"INCR", b"DECR", b"INCRBY", b"DECRBY"])
        return (op, key) if op in (b"INCR", b"DECR") else (op, key, b"%d" % rng.randrange(-50, 50))
    if roll < 45:
        key = rng.choice(_LIST_KEYS)
        op = rng.choice([b"LPUSH", b"RPUSH", b"RPUSH", b"LPOP", b"RPOP"])
        if op in (b"LPOP", b"RPOP"):
            return (op, key)
        return (op, key, *(_value(rng) for _ in range(rng.randrange(1, 4))))
    if roll < 53:
        op = rng.choice([b"SADD", b"SADD", b"SREM"])
        return (op, rng.choice(_SET_KEYS), *rng.sample(_MEMBERS, rng.randrange(1, 4)))
    if roll < 61:
        key = rng.choice(_ZSET_KEYS)
        if rng.randrange(3) == 0:
            return (b"ZREM", key, rng.choice(_MEMBERS))
        return (b"ZADD", key, rng.choice(_SCORES), rng.choice(_MEMBERS))
    if roll < 69:
        key = rng.choice(_HASH_KEYS)
        if rng.randrange(3) == 0:
            return (b"HDEL", key, rng.choice(_MEMBERS))
        return (b"HSET", key, rng.choice(_MEMBERS), _value(rng))
    if roll < 81:
        key = rng.choice(_ALL_KEYS)
        which = rng.randrange(6)
        if which == 0:
            return (b"SET", rng.choice(_STRING_KEYS), _value(rng), b"EX", _long_ttl_s(rng))
        if which == 1:
            return (b"SETEX", rng.choice(_STRING_KEYS), _long_ttl_s(rng), _value(rng))
        if which == 2:
            ms = str(rng.randrange(2 * _HOUR_S * 1000, 48 * _HOUR_S * 1000)).encode()
            return (b"PSETEX", rng.choice(_STRING_KEYS), ms, _value(rng))
        if which == 3:
            return (b"EXPIRE", key, _long_ttl_s(rng))
        if which == 4:
            ms = str(rng.randrange(2 * _HOUR_S * 1000, 48 * _HOUR_S * 1000)).encode()
            return (b"PEXPIRE", key, ms)
        return (b"PERSIST", key)
    if roll < 99:
        return (b"DEL", rng.choice(_ALL_KEYS))
    return (b"FLUSHDB",)


def _workload_stream(rng: random.Random, ops: int, *, rewrite_at: int | None) -> Iterator[_Item]:
    """`ops` write entries, with SELECTs between them and BGREWRITEAOF before entry
    rewrite_at; lazily (a trial stops drawing at its kill)."""
    db = 0
    for n in range(ops):
        if n == rewrite_at:
            yield _Item(_Kind.REWRITE)
        if rng.randrange(12) == 0:
            db = rng.randrange(3)
            yield _Item(_Kind.SELECT, db=db)
        if rng.randrange(8) == 0:
            block = tuple(_command(rng) for _ in range(rng.randrange(2, 5)))
            yield _Item(_Kind.WRITE, block, db)
        else:
            yield _Item(_Kind.WRITE, (_command(rng),), db)


def _workload(rng: random.Random, ops: int, *, rewrite_at: int | None) -> list[_Item]:
    """The whole workload of `_workload_stream`, as a list."""
    return list(_workload_stream(rng, ops, rewrite_at=rewrite_at))


def _batch_stream(rng: random.Random, items: Iterator[_Item], batch_max: int
                  ) -> Iterator[tuple[list[_Item], int]]:
    """Pipelined batches of 1..batch_max writes (with the SELECT/BGREWRITEAOF before them) and
    their write counts. Only the last batch can hold fewer writes than drawn."""
    current: list[_Item] = []
    writes = 0
    size = rng.randrange(1, batch_max + 1)
    for item in items:
        current.append(item)
        if item.kind is _Kind.WRITE:
            writes += 1
            if writes >= size:
                yield current, writes
                current, writes, size = [], 0, rng.randrange(1, batch_max + 1)
    if current:
        yield current, writes


def _encode(argv: Sequence[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# The connection


class _ServerGone(Exception):
    """The connection closed or reset: the server died."""


class _Conn:
    """One RESP connection: pipelined sends, replies read one at a time with their time."""

    def __init__(self, port: int, *, timeout_s: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout_s)
            self.sock.connect(("127.0.0.1", port))  # an address: no getaddrinfo round
        except BaseException:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            raise _ServerGone(str(exc)) from None

    def next_reply(self) -> Any:
        """The next reply (an error reply is a hiredis.ReplyError instance)."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise _ServerGone(str(exc)) from None
            if not data:
                raise _ServerGone("connection closed")
            self.reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# ---------------------------------------------------------------------------------------------
# A trial


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

    def queue(self, items: Sequence[_Item], conn: _Conn) -> None:
        """Record `items` in the history (executed at the send time) and send them at once."""
        sent_ms = self.now_ms()
        payload = []
        for item in items:
            if item.kind is _Kind.SELECT:
                payload.append(_encode((b"SELECT", b"%d" % item.db)))
                self.pending.append(_Expect(None, sent_ms))
            elif item.kind is _Kind.REWRITE:
                payload.append(_encode((b"BGREWRITEAOF",)))
                self.pending.append(_Expect(None, sent_ms))
                self.events["bgrewriteaof sent"] += 1
            else:
                index = self.history.submit(item.commands, db=item.db, executed_ms=sent_ms)
                if len(item.commands) > 1:
                    payload.append(_encode((b"MULTI",)))
                    self.pending.append(_Expect(None, sent_ms))
                    for argv in item.commands:
                        payload.append(_encode(argv))
                        self.pending.append(_Expect(None, sent_ms))
                    payload.append(_encode((b"EXEC",)))
                else:
                    payload.append(_encode(item.commands[0]))
                self.pending.append(_Expect(index, sent_ms))
        conn.send(b"".join(payload))

    def read(self, conn: _Conn, *, count: int | None = None) -> None:
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

    def drain(self, conn: _Conn) -> int:
        """After the kill: read the replies the server released before it died."""
        before = self.cursor
        conn.sock.settimeout(2.0)
        with contextlib.suppress(_ServerGone, TimeoutError, OSError):
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


@contextlib.contextmanager
def _keep_cwd() -> Iterator[None]:
    """libfuse's mount loop chdirs this whole process to "/": put the working directory back
    (relative paths given by the user, e.g. --reports, must keep their meaning)."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


class _Site:
    """Where the server's files live: a scratch directory, optionally with a SimDisk FUSE mount
    on its ``data`` directory (whose plan starts empty: faults are armed during the trial)."""

    def __init__(self, *, mount: bool) -> None:
        self.root = make_run_dir("verify")
        self.data_dir = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "server.log")
        os.mkdir(self.data_dir)
        self.mount: Any = None
        if mount:
            from faults.fuse import FuseMount

            clock = Clock()  # a SlowSync advances it; the mount turns that into a real sleep
            self.faulty = FaultyFileSystem(SimDisk(), FaultPlan(), clock=clock)
            self.mount = FuseMount(self.faulty, self.data_dir, clock=clock)
            with _keep_cwd():
                self.mount.start()

    def fired(self) -> list[Any]:
        return list(self.faulty.fired) if self.mount is not None else []

    def trace_length(self) -> int:
        with self.mount.lock:
            disk = self.mount.disk
            return len(disk.trace) if disk is not None else 0

    def seen_ops(self, glob: str, *, since: int = 0) -> Counter[FaultOp]:
        """Operation kinds made on files matching `glob` from trace position `since` on."""
        from fnmatch import fnmatchcase

        kinds = {"write": FaultOp.WRITE, "fsync": FaultOp.FSYNC, "fdatasync": FaultOp.FDATASYNC}
        with self.mount.lock:
            disk = self.mount.disk
            entries = list(disk.trace) if disk is not None else []
        seen: Counter[FaultOp] = Counter()
        for entry in entries[since:]:
            kind = kinds.get(entry.op.value)
            if kind is not None and fnmatchcase(entry.path, glob):
                seen[kind] += 1
        return seen

    def arm(self, fault: PlanFault) -> None:
        """Add `fault` to the live plan: it counts matching operations from now on."""
        with self.mount.lock:
            self.faulty.add_faults(FaultPlan((fault,)))

    def crash(
        self, model: PersistenceModel, seed: int | None, *, limits: ImageLimits | None = None
    ) -> tuple[str, CrashChoice | None, int | None]:
        """Crash the disk (the server is dead): the image kind, the choice used and the trace
        position of the crash (None on a plain directory)."""
        if self.mount is None:
            return "visible", None, None  # a plain directory: the kernel survives
        self.mount.stop()  # unmount first: no late FUSE operation can change the disk now
        disk = self.mount.disk
        assert disk is not None
        choice: CrashChoice | None = None
        kind = "visible"
        if model is not PersistenceModel.PROCESS:
            kind = "durable-only"
            if seed is not None:
                choice = disk.draw_crash_choice(model, seed, limits=limits)
                kind = "drawn" if limits is None else "drawn-damaged"
        position = len(disk.trace)
        with _keep_cwd():
            self.mount.crash(model, choice)
        return kind, choice, position

    def close(self) -> None:
        try:
            if self.mount is not None:
                self.mount.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _holds_child(fault: PlanFault) -> bool:
    """The kill-child fault's stall of the rewrite child's fsync (not a fault of its own)."""
    return isinstance(fault, SlowSync) and fault.path_glob == _CHILD_TEMP_GLOB


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


def run_trial(
    config: VerifyConfig,
    index: int,
    *,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
    without: Collection[str] = (),
) -> TrialResult:
    """Run trial `index` of `config` (its workload, faults and crash depend only on the seed
    and the index). Every process and mount it starts is gone when it returns or raises.

    `without` takes ingredients out of the same trial (cause attribution): "fault" draws the
    fault and places the kill exactly as with it but never arms it; "rewrite" sends no
    BGREWRITEAOF. Everything else (workload, batches, kill, crash image seeds) is unchanged.
    """
    from harness.targets._servers import ServerRefusedToStart, ServerStartTimeout

    removed = frozenset(without)
    if not removed <= {"fault", "rewrite"}:
        raise ValueError(f"without: only 'fault' and 'rewrite' (a model change replaces "
                         f"strict metadata), got {sorted(removed)!r}")

    if launcher is None:
        launcher = _launcher_for(_spec(config))
    dumper = dump  # None: dump_keyspace_at, over a raw connection
    rng = random.Random(f"aofcrash-verify/{config.seed}/{index}")
    model = PersistenceModel(config.model)
    draw = _draw_fault(rng, config.fault)
    # Each injected write/sync error widens the everysec window by a retry period (oracle rule
    # 2): the kill then goes later still, and the fault is armed that much earlier.
    errors_ms = draw.errors * ERROR_STALL_MS if draw is not None else 0
    kill_at = rng.randrange(*_kill_range(config, extra_ms=errors_ms))  # batch in flight
    rewrite_at = None
    if config.rewrite:
        # Half the time just before the kill, so the kill often lands during the rewrite.
        close = max(0, kill_at - rng.randrange(0, 4))
        rewrite_at = close if rng.randrange(2) else rng.randrange(kill_at + 1)
    kill_delay_s = rng.choice([0.0, 0.0, 0.0005, 0.002, 0.005, 0.02])
    durable_only = rng.randrange(4) == 0 or config.image == "durable"
    limits = _DAMAGED if config.image == "drawn-damaged" else None
    image_seed, stability_seed = rng.randrange(2**32), rng.randrange(2**32)
    # everysec: a third of the trials go idle for longer than the window before the last
    # batch, so the fsync of a burst that is followed by silence is checked too.
    idle_s = 0.0
    if config.policy == "everysec" and rng.randrange(3) == 0:
        idle_s = (config.window_ms + config.margin_ms + 500) / 1000
    entry_pause_s = config.workload_duration_ms / 1000 / config.ops
    arm_entry: int | None = None  # the fault is armed before the batch holding this entry
    if draw is not None:
        last = kill_at
        if config.policy != "always" and entry_pause_s > 0:
            lead_s = _SYNC_LEAD_S if draw.syncs else 0.0
            if config.policy == "everysec" and errors_ms:
                # Fire before the window the errors widen, so that entries still must survive.
                window_s = (config.window_ms + config.margin_ms + 500 + errors_ms) / 1000
                if kill_at - math.ceil(window_s / entry_pause_s) > 1:
                    lead_s = max(lead_s, window_s)
            last = kill_at - math.ceil(lead_s / entry_pause_s)
        if draw.kind == "kill-child" and last - config.batch_max > 1:
            last -= config.batch_max  # the rewrite's batch completes before the kill's batch
        first = 1 if last > 1 else 0  # after the first batch: the server is writing by then
        arm_entry = first + int(draw.position * max(1, last - first))
    kill_child = draw is not None and draw.kind == "kill-child"
    if kill_child:
        rewrite_at = arm_entry  # the BGREWRITEAOF whose child is killed
    if "rewrite" in removed:
        rewrite_at = None
        kill_child = False
    if "fault" in removed:
        arm_entry = None
        kill_child = False
    child_hold = SlowSync(delay_ms=_CHILD_HOLD_MS, path_glob=_CHILD_TEMP_GLOB)
    # The rest of the stream is the workload and its batches, drawn as they are sent.
    batches = _batch_stream(rng, _workload_stream(rng, config.ops, rewrite_at=rewrite_at),
                            config.batch_max)

    started = time.monotonic()
    history = History()
    run = _Run(history, started)
    site = _Site(mount=config.needs_mount)
    server: Any = None
    conn: _Conn | None = None
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

    def note_fired(at_ms: int) -> None:
        nonlocal seen_fired
        fired = site.fired()
        for f in fired[seen_fired:]:
            if _holds_child(f.fault):
                continue  # not on the persistence path: the child is killed during it
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
        )
        if fault is None:
            run.events["fault not armed: unreachable"] += 1
            return
        site.arm(fault)
        armed, armed_at = fault, entries_sent

    def waiting_for_fault() -> bool:
        return armed is not None and not site.fired()

    def kill_rewrite_child() -> None:
        """kill-child: SIGKILL the rewrite child the batch's BGREWRITEAOF forked (a seeded
        0-4 ms after its reply), or say why it could not be."""
        nonlocal fault_note
        assert draw is not None
        delay_ms = 2 * (draw.nth - 1)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        killed = []
        for child in server.fork_children():
            with contextlib.suppress(psutil.Error):
                child.kill()
                killed.append(child.pid)
        if killed:
            child_kills.append(f"KillChild: rewrite child {killed[0]} SIGKILLed {delay_ms} ms "
                               "after the BGREWRITEAOF batch was acknowledged")
            run.events["rewrite child killed"] += 1
        else:
            fault_note = "not fired: the rewrite child had finished before it could be killed"
            run.events["fault not fired: rewrite child already gone"] += 1

    try:
        server = launcher(site.data_dir, site.log_path, config.policy)
        server.start()
        # Operations from here on are the workload's (not the server's start-up).
        workload_start = site.trace_length() if site.mount is not None else 0
        conn = _Conn(server.port)
        run.last_alive_ms = run.now_ms()
        died_early = False
        in_flight = False
        crash_ms = 0
        sent = 0  # entries sent before the current batch
        for batch, writes in batches:
            try:
                if arm_entry is not None and armed_at is None and not fault_note \
                        and draw is not None and draw.kind != "kill-child" \
                        and sent + writes > arm_entry:
                    arm(sent)
                last_batch = sent + writes > kill_at
                if last_batch and waiting_for_fault() and sent + writes < config.ops:
                    # Not fired yet: let the workload run on until it has.
                    last_batch = False
                    if sent <= kill_at:
                        run.events["kill moved later: the fault had not fired yet"] += 1
                if last_batch and idle_s:
                    time.sleep(idle_s)
                    run.events["idle before the kill"] += 1
                rewrites = any(item.kind is _Kind.REWRITE for item in batch)
                if kill_child and rewrites and site.mount is not None:
                    site.arm(child_hold)  # before BGREWRITEAOF: the child's fsync waits
                run.queue(batch, conn)
                sent += writes
                if last_batch:
                    in_flight = True
                    if kill_delay_s:
                        time.sleep(kill_delay_s)
                    break
                run.read(conn)
                if kill_child and rewrites:
                    kill_rewrite_child()
                if entry_pause_s:
                    time.sleep(entry_pause_s * writes)
            except _ServerGone:
                died_early = True
                break
            note_fired(run.now_ms())
        if not in_flight and not died_early and waiting_for_fault():
            # Every write is sent: under everysec the background fsync may still come.
            polls = int(_FIRE_WAIT_S / 0.01) if config.policy == "everysec" else 0
            for _ in range(polls):
                if not waiting_for_fault():
                    break
                time.sleep(0.01)
            note_fired(run.now_ms())
        # The crash: when the server is still alive, crash_ms is taken before SIGKILL; when it
        # died on its own, the last moment it answered (it died after that).
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
        conn = None
        note_fired(crash_ms)
        if died_early:
            run.events["server died before the planned kill"] += 1
        if armed is not None and not site.fired():
            run.events["fault armed but not fired"] += 1
        _scan_log(server, run.events)
        aof_files = _aof_listing(site.data_dir, config.aof_glob)
        image_kind, choice, position = site.crash(
            model, None if durable_only else image_seed, limits=limits
        )
        window_ms = config.window_ms + config.margin_ms
        tolerance_ms = 2000 + run.max_latency_ms
        crash_info = CrashInfo(
            model=config.model, choice=choice, crash_ms=crash_ms, trace_index=position,
        )
        # Recovery 1.
        recovered: Snapshot | None = None
        reason: str | None = None
        try:
            server.start()
        except (ServerRefusedToStart, ServerStartTimeout) as exc:
            log_tail = getattr(exc, "log_tail", None) or _log_tail(server)
            reason = log_tail[-1] if log_tail else str(exc).splitlines()[0]
        recovery_ms = max(run.now_ms(), crash_ms)
        if reason is None:
            recovered = _dump_snapshot(dumper, server, recovery_ms)
            _scan_log(server, run.events)
        verdict = check_recovery(
            history, recovered, policy=config.policy, model=config.model,
            crash_ms=crash_ms, recovery_ms=recovery_ms, window_ms=window_ms,
            stalls=stalls, error_stalls=error_stalls, unavailable_reason=reason,
            allow_unavailable=config.allow_unavailable,
            damaged_image=choice is not None and choice.damaged, crash=crash_info,
            expiry_tolerance_ms=tolerance_ms,
        )
        # Recovery 2: crash the recovered state again (no new writes) and compare.
        stability: Verdict | None = None
        if recovered is not None:
            server.kill()
            kind2, choice2, position2 = site.crash(
                model, None if durable_only else stability_seed, limits=limits
            )
            info2 = CrashInfo(model=config.model, choice=choice2, crash_ms=run.now_ms(),
                              trace_index=position2)
            second: Snapshot | None = None
            reason2: str | None = None
            try:
                server.start()
            except (ServerRefusedToStart, ServerStartTimeout) as exc:
                tail = getattr(exc, "log_tail", None) or _log_tail(server)
                reason2 = tail[-1] if tail else str(exc).splitlines()[0]
                log_tail = tail
            at_ms = run.now_ms()
            if reason2 is None:
                second = _dump_snapshot(dumper, server, at_ms)
            stability = check_stability(
                recovered, second, at_ms=at_ms, expiry_tolerance_ms=tolerance_ms,
                unavailable_reason=reason2, crash=info2,
            )
            run.events[f"second crash image: {kind2}"] += 1
        if not log_tail:
            log_tail = _log_tail(server, 30)  # the log of all three runs: for the report
        server.kill()
        server = None
    finally:
        if conn is not None:
            conn.close()
        if server is not None:
            server.kill()
        site.close()

    outcome = verdict.outcome
    if stability is not None and not stability.ok:
        outcome = "violation"
    if outcome == "consistent" and config.policy == "everysec" and not verdict.frontier:
        outcome = "not-exercised"
        run.events["everysec: empty frontier (not exercised)"] += 1
    counts = Counter(e.outcome for e in history)
    return TrialResult(
        index=index, outcome=outcome, recovery=verdict, stability=stability,
        entries=len(history), acked=counts[Outcome.OK], unknown=counts[Outcome.UNKNOWN],
        errors=counts[Outcome.ERROR], crash_ms=crash_ms, recovery_ms=recovery_ms,
        crash_image=image_kind,
        crash_choice=None if choice is None else choice.to_dict(),
        faults=(FaultPlan((armed,)).to_json() if armed is not None
                else json.dumps({"kill_child": {"before_entry": arm_entry}})
                if kill_child else ""),
        fired=[f"{type(f.fault).__name__} on {f.path}: {f.effect}" for f in site.fired()
               if not _holds_child(f.fault)] + child_kills,
        events=run.events, elapsed_s=time.monotonic() - started,
        server_died_early=died_early, log_tail=log_tail, history=history,
        fault_asked=draw is not None and "fault" not in removed,
        fault_armed_at=arm_entry if kill_child else armed_at, fault_note=fault_note,
        aof_files=aof_files,
    )


# ---------------------------------------------------------------------------------------------
# Cause attribution: the same violating trial again, one ingredient taken out at a time


@dataclass(frozen=True)
class Ablation:
    """One ingredient taken out of a violating trial and what the re-runs of it showed."""

    ingredient: str  # one of INGREDIENTS
    label: str  # what it is in this run: "fault io-error", "strict metadata (power)", ...
    runs: int  # re-runs made (they stop at the first that recurs)
    recurred: int  # re-runs that broke one of the rules the trial broke
    outcomes: tuple[str, ...] = ()  # each re-run's outcome, with the rules it broke
    reason: str = ""  # why no re-run was needed (e.g. the fault never fired)

    @property
    def needed(self) -> bool:
        """The violation did not come back without it."""
        return self.recurred == 0 and not self.reason

    def to_dict(self) -> dict[str, Any]:
        return {"ingredient": self.ingredient, "label": self.label, "needed": self.needed,
                "runs": self.runs, "recurred": self.recurred, "outcomes": list(self.outcomes),
                "reason": self.reason or None}


@dataclass(frozen=True)
class Attribution:
    """Which ingredients a violating trial needs: each one taken out in turn, the trial re-run
    (same seed, same index) up to `repeats` times. First the trial is re-run as it was: a
    violation that does not come back as is is timing-dependent and not attributed."""

    rules: tuple[str, ...]
    repeats: int
    as_is_runs: int
    as_is_recurred: int
    ablations: tuple[Ablation, ...] = ()

    @property
    def reproducible(self) -> bool:
        return self.as_is_recurred > 0

    @property
    def needs(self) -> list[str]:
        """Labels of the ingredients without which the violation did not come back."""
        return [a.label for a in self.ablations if a.needed] if self.reproducible else []

    @property
    def happens_without(self) -> list[str]:
        """Labels of the ingredients without which it still came back (not causes)."""
        return [a.label for a in self.ablations if not a.needed] if self.reproducible else []

    def summary(self) -> str:
        """One line: "needs: fault io-error, strict metadata (power)", "happens without the
        fault io-error", or why it is not attributed."""
        if not self.reproducible:
            return (f"not attributed: it did not recur in {self.as_is_runs} re-run(s) of the "
                    "same trial (timing-dependent)")
        parts = []
        if self.needs:
            parts.append("needs: " + ", ".join(self.needs))
        for ablation in self.ablations:
            if not ablation.needed:
                why = f" ({ablation.reason})" if ablation.reason else ""
                parts.append(f"happens without the {ablation.label}{why}")
        if not self.ablations:
            parts.append("needs: only the workload and the crash (no fault, rewrite or strict "
                         "metadata to take out)")
        elif not self.needs:
            parts.append("needs none of them")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "rules": list(self.rules), "repeats": self.repeats,
                "reproducible": self.reproducible, "as_is_runs": self.as_is_runs,
                "as_is_recurred": self.as_is_recurred, "needs": self.needs,
                "happens_without": self.happens_without,
                "ablations": [a.to_dict() for a in self.ablations]}


def _rewrite_in(config: VerifyConfig) -> bool:
    return config.rewrite or config.fault == "kill-child"


def attribute_trial(
    config: VerifyConfig,
    trial: TrialResult,
    *,
    repeats: int = 3,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
) -> Attribution:
    """Re-check violating `trial` of `config` with one ingredient taken out at a time: the
    injected fault (drawn and placed as before, never armed), a strict metadata model
    (``power-ext4``, ``-xfs``, ``-btrfs``, ``-posix-metadata``) replaced by
    ``power-eager-metadata``, the rewrite.
    Each variant runs up to `repeats` times and stops at the first that breaks a rule the
    trial broke. A fault that never fired in the trial is not needed and is not re-run."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    rules = tuple(sorted({v.rule.value for v in trial.violations}))

    def rerun(cfg: VerifyConfig, without: Collection[str]) -> tuple[int, int, tuple[str, ...]]:
        outcomes = []
        for _ in range(repeats):
            again = run_trial(cfg, trial.index, launcher=launcher, dump=dump, without=without)
            broke = sorted({v.rule.value for v in again.violations})
            outcomes.append(again.outcome + (f" ({', '.join(broke)})" if broke else ""))
            if set(broke) & set(rules):
                return len(outcomes), 1, tuple(outcomes)
        return len(outcomes), 0, tuple(outcomes)

    runs, recurred, _ = rerun(config, ())
    if not recurred:
        return Attribution(rules, repeats, runs, 0)
    ablations = []
    if config.fault != "none":
        label = f"fault {config.fault}"
        if trial.fault_asked and not trial.fault_fired:
            ablations.append(Ablation("fault", label, 0, 0, reason="it never fired"))
        else:
            ablations.append(Ablation("fault", label, *rerun(config, ("fault",))))
    if config.model in _STRICT_METADATA:
        eager = replace(config, model="power-eager-metadata")
        ablations.append(Ablation("metadata", f"strict metadata ({config.model})",
                                  *rerun(eager, ())))
    if _rewrite_in(config):
        label = "rewrite" + (" (and the killed child)" if config.fault == "kill-child" else "")
        if not trial.events.get("bgrewriteaof sent"):
            ablations.append(Ablation("rewrite", label, 0, 0, reason="none was sent"))
        else:
            ablations.append(Ablation("rewrite", label, *rerun(config, ("rewrite",))))
    return Attribution(rules, repeats, runs, recurred, tuple(ablations))


# ---------------------------------------------------------------------------------------------
# Running trials: in this process, or in forked workers

_PR_SET_PDEATHSIG: Final = 1


def _worker_init(parent_pid: int) -> None:
    """In a forked worker: die (SIGKILL) with the parent, so a SIGKILLed harness takes its
    workers along; each worker's own reaper then ends that worker's servers."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_trial(config: VerifyConfig, index: int) -> TrialResult:
    return run_trial(config, index)


def _worker_attribution(config: VerifyConfig, trial: TrialResult, repeats: int) -> TrialResult:
    trial.attribution = attribute_trial(config, trial, repeats=repeats)
    return trial


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of forked trial workers (each dies with this process: ``PR_SET_PDEATHSIG``).

    fork: a worker starts in a millisecond with everything already imported and the server
    already resolved (``check_environment`` first; no resource-tracker process either); the
    parent must hold no mount or server when it forks."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_init, initargs=(os.getpid(),),
    )


def _run_pool(
    jobs: Sequence[tuple[Callable[..., TrialResult], tuple[Any, ...]]],
    workers: int,
    on_trial: Callable[[TrialResult], None],
) -> list[TrialResult]:
    """Run `jobs` (each returns a TrialResult) on `workers` forked processes; results in the
    order of `jobs`, `on_trial` called in completion order."""
    pool = worker_pool(workers)
    results: dict[Future[TrialResult], TrialResult] = {}
    try:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        pending: set[Future[TrialResult]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                trial = future.result()
                results[future] = trial
                on_trial(trial)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[future] for future in futures]


def run_verify(
    config: VerifyConfig,
    *,
    workers: int = 1,
    progress: Callable[[int, TrialResult], None] | None = None,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
    attribution: bool = True,
    attribution_repeats: int = 3,
    attribution_max: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> VerifyResult:
    """Run every trial of `config` on `workers` processes (1: in this one); `progress(done,
    trial)` after each one (in completion order; the result lists trials in index order).
    `shard` (i, n) runs only the trials numbered i mod n: a trial is a function of (seed,
    index), so n shards on n machines run exactly the trials of one run.

    Then, with `attribution`, each violating trial (the first `attribution_max` of them; None:
    all) is re-checked with one ingredient taken out at a time (``attribute_trial``, up to
    `attribution_repeats` re-runs per variant) and its ``attribution`` says what it needs.

    First removes the scratch directories of dead runs. `launcher` and `dump` (test doubles)
    only work in this process: with either, `workers` must be 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if attribution_max is not None and (isinstance(attribution_max, bool)
                                        or not isinstance(attribution_max, int)
                                        or attribution_max < 0):
        raise ValueError(f"attribution_max must be None or an int >= 0, got {attribution_max!r}")
    if isinstance(attribution_repeats, bool) or not isinstance(attribution_repeats, int) \
            or attribution_repeats < 1:
        raise ValueError(f"attribution_repeats must be an int >= 1, got {attribution_repeats!r}")
    if (not isinstance(shard, tuple) or len(shard) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            or not (shard[1] >= 1 and 0 <= shard[0] < shard[1])):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if workers > 1 and (launcher is not None or dump is not None):
        raise ValueError("workers > 1 runs trials in other processes: a launcher or dump "
                         "given here cannot go there; use workers=1")
    remove_stale_run_dirs()
    if launcher is None:
        info = _server_identity(config)
        name, version = info.name, info.version
    else:
        name, version = "custom", "custom launcher"
    _check_fuse(config)
    started = time.monotonic()
    indices = [config.first_trial + n for n in range(config.trials) if n % shard[1] == shard[0]]
    done: list[TrialResult] = []

    def on_trial(trial: TrialResult) -> None:
        done.append(trial)
        if progress is not None:
            progress(len(done), trial)

    pool_size = min(workers, len(indices))
    if pool_size == 1:
        for index in indices:
            on_trial(run_trial(config, index, launcher=launcher, dump=dump))
        trials = done
    else:
        trials = _run_pool([(_worker_trial, (config, index)) for index in indices],
                           pool_size, on_trial)
    attribution_started = time.monotonic()
    if attribution:
        violating = [t for t in trials if t.outcome == "violation"][:attribution_max]
        if min(workers, len(violating)) <= 1:
            for trial in violating:
                trial.attribution = attribute_trial(config, trial, repeats=attribution_repeats,
                                                    launcher=launcher, dump=dump)
        else:
            attributed = _run_pool(
                [(_worker_attribution, (config, t, attribution_repeats)) for t in violating],
                min(workers, len(violating)), lambda _trial: None,
            )
            by_index = {t.index: t.attribution for t in attributed}
            for trial in violating:
                trial.attribution = by_index[trial.index]
    finished = time.monotonic()
    return VerifyResult(config, version, trials, finished - started,
                        server_name=name, workers=pool_size,
                        attribution_s=finished - attribution_started)


def verify_report(result: VerifyResult, *, run_id: str, argv: Sequence[str] = ()) -> dict[str, Any]:
    """The report.json content for a run (write it with harness.cli._report.write_report)."""
    cfg = result.config
    events: Counter[str] = Counter()
    for t in result.trials:
        events.update(t.events)
        events[f"outcome: {t.outcome}"] += 1
        events[f"crash image: {t.crash_image}"] += 1
    violations = []
    for t in result.trials:
        for v in t.violations:
            violations.append({
                "rule": v.rule.value,
                "case": ("acknowledged, then unavailable"
                         if v.rule.value == "availability" and t.unavailable_after_ack
                         else v.rule.value),
                "server_reason": t.recovery.unavailable_reason,
                "trial": t.index,
                "text": f"trial {t.index}\n{v.render()}" + (
                    f"\ncause: {t.attribution.summary()}" if t.attribution is not None else ""),
                "reproduce": cfg.command_line(trial=t.index),
                "cause": None if t.attribution is None else t.attribution.summary(),
                "attribution": None if t.attribution is None else t.attribution.to_dict(),
                "violation": v.to_dict(),
                "faults": t.faults,
                "fired": t.fired,
                "log_tail": t.log_tail,
                "history": None if t.history is None else t.history.to_dict(),
            })
    elapsed = result.elapsed_s
    asked = sum(1 for t in result.trials if t.fault_asked)
    return {
        "command": "verify",
        "run_id": run_id,
        "run": {
            **cfg.to_dict(),
            "server_name": result.server_name,
            "server_version": result.server_version,
            "workers": result.workers,
            "command_line": " ".join(argv) if argv else cfg.command_line(),
        },
        "totals": {
            "trials": len(result.trials),
            "consistent": result.count("consistent"),
            "not_exercised": result.count("not-exercised"),
            "unavailable": result.count("unavailable"),
            "acknowledged_then_unavailable": sum(t.unavailable_after_ack
                                                 for t in result.trials),
            "violations": result.count("violation"),
            "fault_asked_trials": asked,
            "fault_fired_trials": result.fault_fired,
            "acked_entries": sum(t.acked for t in result.trials),
            "unknown_entries": sum(t.unknown for t in result.trials),
            "error_entries": sum(t.errors for t in result.trials),
            "elapsed_s": round(elapsed, 2),
            "attribution_s": round(result.attribution_s, 2),
            "attributed_trials": sum(t.attribution is not None for t in result.trials),
            "trials_per_s": (round(len(result.trials) / trials_s, 2)
                             if (trials_s := elapsed - result.attribution_s) > 0 else None),
        },
        "configurations": [t.row() for t in result.trials],
        "events": dict(events),
        "violations": violations,
    }
