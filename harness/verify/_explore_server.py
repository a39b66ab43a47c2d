"""``aofcrash explore --server``: the crash-state explorer (ALICE's method) on an unmodified
server binary (Redis 6.x/7.x, Valkey, the reference as a process, any RESP server).

Method
------
1. **Record.** The server runs on a FUSE mount (``faults.fuse.FuseMount``) of a fresh traced
   ``SimDisk``. Between the mount and the disk sits a thin layer that notes, for every traced
   operation, the monotonic time at which it returned. A seeded workload (verify's generator:
   ``_workload.workload``; ``ops`` writes, optionally one BGREWRITEAOF at ``rewrite_at``)
   is sent over ONE raw RESP connection, one entry at a time (a MULTI/EXEC block as one
   payload), and every reply is read before the next entry is sent. For every entry the run
   records ``submit_pos`` (the trace length read just before the send), ``executed_ms`` (the
   time before the send), ``ack_ms`` (the time after its reply was read) and ``resolve_pos``
   (the trace length read after ``ack_ms`` was taken); trace lengths are read under the
   mount's lock, which every operation holds while it is applied and timed. Then the run
   waits until the disk is quiet (a rewrite finished; under everysec, no operation for longer
   than the window, so the end state checks the writes made before an idle period) and
   SIGKILLs the server.
2. **Crash points.** For a real process a crash point is a trace index p: the state in which
   operations 0..p-1 reached the filesystem and p.. did not (every traced operation but reads
   and seeks, plus the end of the trace; by default from the first write of the workload on,
   ``include_startup`` adds the server's own start-up). A write is one FUSE WRITE
   (``direct_io``), which the SimDisk applies whole, so a process crash never cuts one; torn
   data after a power loss is what the power models' sector prefixes are. The disk state at
   each p is rebuilt with ``ReplayCursor``.
3. **States.** At each point, every legal crash choice of each persistence model
   (``SimDisk.crash_choices`` bounded by ``ImageLimits``, cut-offs counted) is materialised
   (``SimDisk.crash``): the image is every file and directory under the data dir (Redis 7 and
   Valkey: ``appendonlydir/`` with its manifest, base and incr files, and any temp file).
   States are grouped by the image's digest (``DiskImage.digest``): the recovery of a real
   binary is a function of the files it is given.
4. **Recover each distinct image once** with the real binary on a plain scratch directory
   holding exactly that image (no FUSE: recovery only reads), on a process pool (``workers``;
   forked, ``PR_SET_PDEATHSIG``), started while the enumeration still runs; the keyspace is
   dumped with verify's dumper (``dump_keyspace_at``). Rule 3 (stability): the directory the
   first recovery leaves (it may truncate a torn tail, create a base) is read back; if it is
   the same image the second recovery is the same run again and is not made; otherwise that
   image is recovered too (from the same cache: it is often another state's image) and the
   two keyspaces are compared.
5. **Check** every state with the oracle. The state's history is the entries sent before p
   (``submit_pos <= p``), an entry being acknowledged iff its reply was read before p
   (``resolve_pos <= p``). Fast path: the prefixes S(k) each distinct recovery matches are
   computed once (``Checker.matching_prefixes`` on the final history); a state is consistent
   iff one matching k lies in [F, n] (F the frontier of p, n the entries sent before p). The
   first violating state group of every *mechanism* (model, rules, what the image lacks or
   resurrects against the visible state at p, the server's refusal: ``_mechanism``) and the
   first ``max_exact_violations`` groups are re-checked with ``check_recovery`` on their own
   history and kept with the oracle's verdict (a disagreement raises ``ServerExploreError``);
   the other violating groups are counted per mechanism and as left out, never dropped
   silently; points where a write that was eventually refused is still
   unanswered always go through the oracle, as does every state with ``exact=True``.

Why acknowledgements are never placed stricter than the truth
-------------------------------------------------------------
A reply is read at ``ack_ms`` and the trace length read afterwards is ``resolve_pos``; the
length only grows, so when the reply was read at most ``resolve_pos`` operations had happened.
A state p >= ``resolve_pos`` therefore only exists after the reply was read: counting the entry
as acknowledged there is what the client knew. Between the server's release of the reply and
the read, the entry is counted as not acknowledged (lenient). An entry is in a state's history
from ``submit_pos`` on, read before the send: no earlier operation can hold its effect.
``crash_ms`` of point p is a moment at which that state existed with those acknowledgements:
the time taken just before operation p was applied (for the end of the trace, the time taken
before SIGKILL). Until then op p had not happened, and every reply counted at p had been read
(its trace length was read under the same lock before op p, after its ``ack_ms``), so a power
loss at ``crash_ms`` leaves exactly state p with at least those acknowledgements: the frontier
computed there is never larger than the real one (it matters under everysec only). The
everysec window is ``window_ms + margin_ms`` as in verify (the server's own
scheduling; the fsync thread shares the cores with the FUSE loop). Expiry times compare with
``expiry_tolerance_ms`` = 2000 + the longest send-to-reply latency (a TTL is applied somewhere
between send and reply); TTLs are hours, so nothing expires during a run. Times are
milliseconds on the monotonic clock since the recording started (all processes share it); a
recovery's dump is read with ``now_ms`` on that scale.

Not modelled
------------
* Faults during the run (ENOSPC, EIO, slow fsync): ``aofcrash verify --fault`` does that.
* Crashes in the middle of one ``write(2)`` under ``process`` (a FUSE WRITE is applied whole);
  torn and reordered sectors under the power models are opt-in (``torn``, ``reorder``); the
  kernel's own size-before-data and in-place images are on (``size_before_data``,
  ``in_place``: the file at a size its journal took before the data, over zeros).
* Stability after a power loss of the recovered state: the second recovery reads the directory
  a SIGKILL of the first one leaves (the ``process`` image), under every model.
* One client and no concurrency between writes: each entry is sent after the previous reply.
* Anything the server does outside its data directory (the log file is outside it).
* Determinism of the binary: an image is recovered once and that recovery stands for every
  state with the same image.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import hiredis

from faults import (
    CrashChoice,
    DiskImage,
    ImageLimits,
    Op,
    PersistenceModel,
    ReplayCursor,
    SimDisk,
)
from harness.explore._explorer import FrontierIndex, StateTally, model_image_limits
from harness.explore._record import DiskLayer
from harness.oracle import (
    CrashInfo,
    History,
    Outcome,
    Verdict,
    check_recovery,
    check_stability,
    snapshot_from_dump,
)
from harness.targets._servers import (
    SERVER_PRESETS,
    ServerSpec,
    make_run_dir,
    remove_stale_run_dirs,
)
from harness.verify._config import POLICIES, VerifyEnvironmentError
from harness.verify._conn import Conn, ServerGone, encode, end_run, info_field
from harness.verify._mechanism import describe_effects, image_effects, server_reason_kind
from harness.verify._recovery import (
    _Content,
    _read_tree,
    _recover,
    _Recoveries,
    _write_tree,
)
from harness.verify._workload import ItemKind, workload

__all__ = [
    "REPRO_FORMAT",
    "SERVER_EXPLORE_MODELS",
    "ServerExploreConfig",
    "ServerExploreError",
    "ServerExploreResult",
    "ServerViolation",
    "explore_server",
    "replay_server_reproduction",
    "write_server_reproductions",
]

SERVER_EXPLORE_MODELS: Final = ("process", "power-ext4", "power-xfs", "power-btrfs",
                                "power-eager-metadata", "power-posix-metadata", "power")
REPRO_FORMAT: Final = "aofcrash-server-explore-repro/1"
_NOT_POINTS: Final = frozenset((Op.READ, Op.LSEEK))
_POLL_S: Final = 0.01
# How long the trace must stay unchanged before the recording ends. everysec: longer than the
# window, so the end state (crash_ms = the kill) checks that the writes before an idle period
# were fsynced (a server that only fsyncs while it is busy loses them).
_QUIET_S: Final = {"always": 0.3, "no": 0.3}
_IDLE_EXTRA_S: Final = 0.5
_SETTLE_TIMEOUT_S: Final = 60.0


class ServerExploreError(RuntimeError):
    """The exploration cannot go on (the fast path and the oracle disagree, the server died
    during the workload); one line."""


@dataclass(frozen=True)
class ServerExploreConfig:
    """What one ``explore_server`` run does. Every field is validated; errors name the field.

    `server`: a preset of ``SERVER_PRESETS`` or a path to a binary. `server_config`: extra
    ``--name value`` settings for the server (e.g. ``("defect", "reply-before-fsync")`` for
    the reference). `rewrite_at`: BGREWRITEAOF before that write (None: ``ops // 2``; -1:
    none). `duration_ms`: how long the writes are spread over (None: 6000 for everysec, else
    0). `exact`: judge every state group with the oracle (the cross-check of the fast path).
    """

    server: str = "7.0"
    policy: str = "always"
    models: tuple[str, ...] = ("process", "power-ext4", "power-eager-metadata")
    ops: int = 200
    seed: int = 0
    rewrite_at: int | None = None
    duration_ms: int | None = None
    window_ms: int = 2000
    margin_ms: int = 500
    allow_unavailable: bool = False
    server_config: tuple[tuple[str, str], ...] = ()
    include_startup: bool = False
    stability: bool = True
    max_crash_points: int | None = None
    max_images_per_point: int = 4096
    max_dirty_files: int = 4
    torn: bool = False
    reorder: bool = False
    max_exact_violations: int = 50
    exact: bool = False
    # The images the kernel's ext4/xfs produce besides prefixes (faults.ImageLimits): a size
    # journalled before its data (the file at its new size over zeros), blocks written in place
    # before a truncate's commit. Real recoveries read any image: on by default, under the
    # models whose filesystem produces them (harness.explore._explorer.model_image_limits).
    size_before_data: bool = True
    in_place: bool = True

    def __post_init__(self) -> None:
        errors: list[str] = []
        if not isinstance(self.server, str) or (
            self.server not in SERVER_PRESETS and "/" not in self.server
        ):
            errors.append(f"server must be one of {', '.join(SERVER_PRESETS)} or a path to a "
                          f"server binary (a path has a '/'), got {self.server!r}")
        if self.policy not in POLICIES:
            errors.append(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        if not models or any(m not in SERVER_EXPLORE_MODELS for m in models):
            errors.append(f"models must be one or more of {', '.join(SERVER_EXPLORE_MODELS)}, "
                          f"got {list(models)!r}")
        elif len(set(models)) != len(models):
            errors.append(f"models must not repeat, got {list(models)!r}")
        for name, minimum in (("ops", 1), ("seed", 0), ("window_ms", 0), ("margin_ms", 0),
                              ("max_images_per_point", 1), ("max_dirty_files", 1),
                              ("max_exact_violations", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                errors.append(f"{name} must be an int >= {minimum}, got {value!r}")
        for name, minimum in (("rewrite_at", -1), ("duration_ms", 0), ("max_crash_points", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < minimum):
                errors.append(f"{name} must be None or an int >= {minimum}, got {value!r}")
        pairs = tuple(tuple(p) for p in self.server_config)
        object.__setattr__(self, "server_config", pairs)
        for pair in pairs:
            if (len(pair) != 2 or not all(isinstance(x, str) for x in pair) or not pair[0]
                    or pair[0].startswith("-")):
                errors.append(f"server_config items must be (name, value) strings with a name "
                              f"not starting with '-', got {pair!r}")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def rewrite_before(self) -> int | None:
        """The write index BGREWRITEAOF is sent before (None: no rewrite)."""
        if self.rewrite_at is None:
            return self.ops // 2
        return None if self.rewrite_at < 0 else self.rewrite_at

    @property
    def workload_duration_ms(self) -> int:
        if self.duration_ms is not None:
            return self.duration_ms
        return 6000 if self.policy == "everysec" else 0

    @property
    def persistence_models(self) -> tuple[PersistenceModel, ...]:
        return tuple(PersistenceModel(m) for m in self.models)

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_choices_per_point=self.max_images_per_point,
                           max_dirty_files=self.max_dirty_files, torn=self.torn,
                           reorder=self.reorder, size_before_data=self.size_before_data,
                           in_place=self.in_place)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "policy": self.policy, "models": list(self.models),
            "ops": self.ops, "seed": self.seed, "rewrite_before_write": self.rewrite_before,
            "duration_ms": self.workload_duration_ms, "window_ms": self.window_ms,
            "margin_ms": self.margin_ms, "allow_unavailable": self.allow_unavailable,
            "server_config": dict(self.server_config), "include_startup": self.include_startup,
            "stability": self.stability, "max_crash_points": self.max_crash_points,
            "max_images_per_point": self.max_images_per_point,
            "max_dirty_files": self.max_dirty_files, "torn": self.torn,
            "reorder": self.reorder, "exact": self.exact,
            "size_before_data": self.size_before_data, "in_place": self.in_place,
        }


@dataclass(frozen=True)
class ServerViolation:
    """One violating state group: every state at one crash point under one model whose image
    is ``digest``; ``count`` states, ``choice`` one of them."""

    trace_index: int
    crash_ms: int
    model: PersistenceModel
    choice: CrashChoice
    count: int
    rules: tuple[str, ...]
    digest: str
    verdict: Verdict | None
    reason: str | None  # why the server refused to start (availability)
    effects: tuple[str, ...] = ()  # what the image lacks or resurrects (_mechanism)
    heals: bool | None = None  # after a refusal: whether the next start came up

    @property
    def mechanism(self) -> str:
        """The rules, what the image lacks or resurrects, why the server refused (and for
        how many starts)."""
        return _mechanism_text(
            self.rules, self.effects,
            server_reason_kind(self.reason) + _refusal_span(self.heals) if self.reason else "")

    def describe(self) -> str:
        head = (f"[{', '.join(self.rules)}] model={self.model.value} "
                f"trace_index={self.trace_index} crash_ms={self.crash_ms} states={self.count} "
                f"image={self.digest[:12]} choice={self.choice.to_json()}")
        return head if self.verdict is None else head + "\n" + self.verdict.render()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": list(self.rules), "model": self.model.value,
            "trace_index": self.trace_index, "crash_ms": self.crash_ms, "states": self.count,
            "image_digest": self.digest, "choice": self.choice.to_dict(),
            "server_reason": self.reason,
            "image_effects": list(self.effects), "mechanism": self.mechanism,
            "heals_on_next_start": self.heals,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
        }


@dataclass
class ServerExploreResult(StateTally):
    """Counts, coverage, timings and violations of one ``explore_server`` run."""

    config: ServerExploreConfig
    server_label: str
    server_version: str
    workers: int
    entries: int = 0
    acked: int = 0
    errors: int = 0
    trace_ops: int = 0
    first_point: int = 0
    violations: list[ServerViolation] = field(default_factory=list)
    state_groups: int = 0
    distinct_contents: int = 0
    real_recoveries: int = 0
    stability_recoveries: int = 0
    refused_contents: int = 0
    exact_checks: int = 0
    record_s: float = 0.0
    enumerate_s: float = 0.0
    recover_s: float = 0.0
    check_s: float = 0.0
    elapsed_s: float = 0.0
    expiry_tolerance_ms: int = 0
    wall_offset_ms: float = 0.0
    events: Counter[str] = field(default_factory=Counter)
    final_history: History | None = field(default=None, repr=False)
    # Images of the reported violations (digest -> image), for reproductions.
    images: dict[str, DiskImage] = field(default_factory=dict, repr=False)
    histories: dict[int, History] = field(default_factory=dict, repr=False)
    # Every violation mechanism seen (model, rules, image effects, the server's refusal) with
    # its state groups and states; `violations` holds the first group of each, then the first
    # groups up to ``max_exact_violations``; the rest are counted here.
    mechanisms: list[dict[str, Any]] = field(default_factory=list)
    groups_left_out: int = 0
    states_left_out: int = 0

    @property
    def violating_states(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome == "violation")

    @property
    def ok(self) -> bool:
        return self.violating_states == 0

    @property
    def recoveries_per_s(self) -> float | None:
        return self.real_recoveries / self.recover_s if self.recover_s > 0 else None

    def _coverage_models(self) -> Sequence[str]:
        return self.config.models

    def to_dict(self) -> dict[str, Any]:
        rate = self.recoveries_per_s
        return {
            "mode": "server-exact" if self.config.exact else "server",
            "server": self.server_label, "server_version": self.server_version,
            "entries": self.entries, "acked": self.acked, "errors": self.errors,
            "trace_ops": self.trace_ops, "first_point": self.first_point,
            "states": self.states, "state_groups": self.state_groups,
            "violating_states": self.violating_states,
            "by_model": self.outcomes_by_model(),
            "violations_by_rule": self.violations_by_rule(),
            "coverage": self.coverage(),
            "distinct_aof_contents": self.distinct_contents,
            "real_recoveries": self.real_recoveries,
            "stability_recoveries": self.stability_recoveries,
            "refused_contents": self.refused_contents,
            "exact_oracle_checks": self.exact_checks,
            "recoveries_per_s": None if rate is None else round(rate, 1),
            "workers": self.workers,
            "seconds": {"record": round(self.record_s, 2),
                        "enumerate": round(self.enumerate_s, 2),
                        "recover": round(self.recover_s, 2), "check": round(self.check_s, 2),
                        "total": round(self.elapsed_s, 2)},
            "expiry_tolerance_ms": self.expiry_tolerance_ms,
            "events": dict(self.events),
            "mechanisms": self.mechanisms,
            "violation_groups_kept": len(self.violations),
            "violation_groups_left_out": self.groups_left_out,
            "violating_states_left_out": self.states_left_out,
        }


# ---------------------------------------------------------------------------------------------
# Recording: the workload once on the FUSE SimDisk, with the time of every traced operation


class _TimedDisk(DiskLayer):
    """Stands between the FUSE mount and the SimDisk: notes, for every traced operation, the
    monotonic time (ms since `t0`) taken just before it was applied. Calls arrive under the
    mount's lock, as do the client's reads of the trace length."""

    def __init__(self, disk: SimDisk, t0: float) -> None:
        super().__init__(disk)  # FuseMount.disk follows .inner to the SimDisk
        self._t0 = t0
        self.start_ms: list[float] = []

    def _call(self, name: str, *args: Any) -> Any:
        before = (time.monotonic() - self._t0) * 1000
        try:
            return super()._call(name, *args)
        finally:
            while len(self.start_ms) < len(self.inner.trace):
                self.start_ms.append(before)


@dataclass(frozen=True, slots=True)
class _EntryPos:
    """One history entry's trace positions (resolve_pos None: never answered)."""

    submit_pos: int
    resolve_pos: int | None


@dataclass
class _Recording:
    trace: Any
    start_ms: list[float]  # per traced operation: the time just before it was applied
    first_point: int
    end_ms: int
    history: History
    positions: list[_EntryPos]
    max_latency_ms: int
    events: Counter[str]


def _spec_and_identity(config: ServerExploreConfig) -> tuple[ServerSpec, str, str]:
    from harness.verify._config import VerifyConfig
    from harness.verify._environment import server_identity, server_spec

    vc = VerifyConfig(server=config.server)
    info = server_identity(vc)
    return server_spec(vc), info.name, info.version


def _extra_config(spec: ServerSpec, config: ServerExploreConfig) -> dict[str, str]:
    # A plain AOF base after a rewrite, as verify runs it (the reference has no RDB preamble).
    extra = {} if spec.kind == "reference" else {"aof-use-rdb-preamble": "no"}
    extra.update(dict(config.server_config))
    return extra


def _trace_len(mount: Any) -> int:
    with mount.lock:
        disk = mount.disk
        return len(disk.trace) if disk is not None else 0


def _settle(conn: Conn, mount: Any, policy: str, window_ms: int, events: Counter[str]
            ) -> None:
    """Wait until a rewrite in progress is done and the trace has been quiet for a while."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        busy = [info_field(conn, b"aof_rewrite_in_progress"),
                info_field(conn, b"aof_rewrite_scheduled")]
        if all(b in (None, b"0") for b in busy):
            break
        time.sleep(_POLL_S)
    else:
        events["rewrite still running at the settle timeout"] += 1
    quiet_s = _QUIET_S.get(policy, window_ms / 1000 + _IDLE_EXTRA_S)
    length, since = _trace_len(mount), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(_POLL_S)
        now_len = _trace_len(mount)
        if now_len != length:
            length, since = now_len, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    events["trace still changing at the settle timeout"] += 1


def _play(conn: Conn, server: Any, items: Sequence[Any], position: Callable[[str], int],
          now_ms: Callable[[], float], pause_s: float, history: History,
          positions: list[_EntryPos], events: Counter[str]) -> int:
    """Send the workload's `items` to the server, recording each write in `history` with its
    `position` (label "send N" / "reply N") on the recording when sent and when answered;
    returns the longest latency in ms."""
    max_latency = 0
    for number, item in enumerate(items):
        if item.kind is ItemKind.SELECT:
            conn.send(encode((b"SELECT", b"%d" % item.db)))
            conn.next_reply()
            continue
        if item.kind is ItemKind.REWRITE:
            conn.send(encode((b"BGREWRITEAOF",)))
            answer = conn.next_reply()
            events["bgrewriteaof: " + ("error" if isinstance(answer, hiredis.ReplyError)
                                       else "started")] += 1
            continue
        payload = [encode(argv) for argv in item.commands]
        if len(item.commands) > 1:
            payload = [encode((b"MULTI",)), *payload, encode((b"EXEC",))]
        submit_pos = position(f"send {number}")
        sent = now_ms()
        index = history.submit(item.commands, db=item.db, executed_ms=int(sent))
        positions.append(_EntryPos(submit_pos, None))
        try:
            conn.send(b"".join(payload))
            reply: Any = None
            for _ in payload:
                reply = conn.next_reply()
        except ServerGone as exc:
            raise ServerExploreError(
                f"the server died during the workload ({exc}); see its log: "
                f"{' / '.join(server.log_lines()[-3:])}"
            ) from None
        acked = now_ms()
        resolve_pos = position(f"reply {number}")  # taken after the time: never too early
        positions[index] = _EntryPos(submit_pos, resolve_pos)
        max_latency = max(max_latency, math.ceil(acked - sent))
        if isinstance(reply, hiredis.ReplyError):
            history.resolve(index, Outcome.ERROR)
            events[f"error reply: {str(reply).split(' ')[0]}"] += 1
        else:
            history.resolve(index, Outcome.OK, at_ms=math.ceil(acked))
        if pause_s:
            time.sleep(pause_s)
    return max_latency


def _record(config: ServerExploreConfig, spec: ServerSpec, t0: float) -> _Recording:
    from faults.fuse import FuseMount
    from harness.verify._site import keep_cwd

    rng = random.Random(f"aofcrash-explore-server/{config.seed}")
    items = workload(rng, config.ops, rewrite_at=config.rewrite_before)
    pause_s = config.workload_duration_ms / 1000 / config.ops
    root = make_run_dir("explore")
    data_dir = os.path.join(root, "data")
    os.mkdir(data_dir)
    disk = SimDisk()
    timed = _TimedDisk(disk, t0)
    mount = FuseMount(timed, data_dir)
    server: Any = None
    conn: Conn | None = None
    history = History()
    positions: list[_EntryPos] = []
    events: Counter[str] = Counter()
    max_latency = 0

    def now_ms() -> float:
        return (time.monotonic() - t0) * 1000

    try:
        with keep_cwd():
            mount.start()
        server = spec.process(data_dir, appendfsync=config.policy,
                              log_path=os.path.join(root, "server.log"),
                              aof_load_truncated=True, extra_config=_extra_config(spec, config))
        server.start()
        conn = Conn(server.port)
        first_point = 0 if config.include_startup else _trace_len(mount)
        max_latency = _play(conn, server, items, lambda label: _trace_len(mount), now_ms,
                            pause_s, history, positions, events)
        _settle(conn, mount, config.policy, config.window_ms + config.margin_ms, events)
        conn.close()
        conn = None
        end_ms = math.floor(now_ms())  # before the kill: the end state existed until then
        server.kill()
        mount.stop()  # no late operation can reach the disk now
        with mount.lock:
            start_ms = list(timed.start_ms)
        trace = disk.trace
        if len(start_ms) != len(trace):  # pragma: no cover - a recorder bug
            raise ServerExploreError("explore --server: operations without a time")
    finally:
        end_run(conn, server)
        try:
            mount.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _Recording(trace, start_ms, first_point, end_ms, history, positions, max_latency,
                      events)


# ---------------------------------------------------------------------------------------------
# The frontier index: F and n of every crash point from the recorded positions


class _Frontiers(FrontierIndex):
    """The frontier index of a server recording: a fixed everysec window (the server's own
    scheduling margin included), and the last acknowledgement before each point."""

    def __init__(self, rec: _Recording, config: ServerExploreConfig) -> None:
        super().__init__(((entry.outcome, pos.submit_pos, pos.resolve_pos, entry.ack_ms, False)
                          for entry, pos in zip(rec.history, rec.positions, strict=True)),
                         policy=config.policy)
        self.window_ms = config.window_ms + config.margin_ms

    def _window_ms(self, p: int, crash_ms: int, model: PersistenceModel) -> int:
        return self.window_ms

    def last_ack_ms(self, p: int) -> int | None:
        j = bisect_right(self.ack_pos, p)
        return max(self.ack_ms[:j]) if j else None


def _history_at(rec: _Recording, p: int) -> History:
    history = History()
    for entry, pos in zip(rec.history, rec.positions, strict=True):
        if pos.submit_pos > p:
            break
        i = history.submit(entry.commands, db=entry.db, executed_ms=entry.executed_ms)
        if pos.resolve_pos is not None and pos.resolve_pos <= p \
                and entry.outcome is not Outcome.UNKNOWN:
            history.resolve(i, entry.outcome, at_ms=entry.ack_ms)
    return history


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class _Group:
    """States at one point under one model with one image (and one damage flag)."""

    point: int
    crash_ms: int
    model: PersistenceModel
    digest: str
    choice: CrashChoice
    count: int
    effects: tuple[str, ...] = ()  # what the image lacks or resurrects (_mechanism)


class _Histories:
    """The history as it stood at each crash point, the latest few kept."""

    def __init__(self, rec: _Recording) -> None:
        self.rec = rec
        self.kept: dict[int, History] = {}

    def __call__(self, p: int) -> History:
        h = self.kept.get(p)
        if h is None:
            if len(self.kept) > 64:
                self.kept.clear()
            h = self.kept[p] = _history_at(self.rec, p)
        return h


def _take_recording(result: ServerExploreResult, rec: _Recording) -> int:
    """The recording's history and tallies into `result`; returns the expiry tolerance."""
    result.final_history = rec.history
    result.events.update(rec.events)
    counts = Counter(e.outcome for e in rec.history)
    result.entries, result.acked, result.errors = (len(rec.history), counts[Outcome.OK],
                                                   counts[Outcome.ERROR])
    result.first_point = rec.first_point
    tolerance = 2000 + rec.max_latency_ms
    result.expiry_tolerance_ms = tolerance
    return tolerance


def explore_server(
    config: ServerExploreConfig,
    *,
    workers: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> ServerExploreResult:
    """Record `config`'s workload on the real server through the FUSE SimDisk, enumerate every
    crash state, recover each distinct image once with the real binary on `workers` processes
    and check every state (see the module docstring). `progress(phase, done, total)` with
    phase "record", "enumerate", "recover" or "check". Raises VerifyEnvironmentError (one line)
    when the server or FUSE cannot be used."""
    from faults.fuse import fuse_unavailable_reason

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    reason = fuse_unavailable_reason()
    if reason is not None:
        raise VerifyEnvironmentError(f"FUSE is needed for explore --server: {reason}")
    remove_stale_run_dirs()
    spec, name, version = _spec_and_identity(config)
    report = (progress if progress is not None else lambda phase, done, total: None)
    started = time.monotonic()
    t0 = started
    wall_offset_ms = time.time() * 1000 - (time.monotonic() - t0) * 1000
    result = ServerExploreResult(config, f"{name} ({config.server})", version, workers,
                                 wall_offset_ms=wall_offset_ms)
    report("record", 0, 1)
    rec = _record(config, spec, t0)
    result.record_s = time.monotonic() - started
    report("record", 1, 1)
    tolerance = _take_recording(result, rec)
    result.trace_ops = len(rec.trace)
    extra = _extra_config(spec, config)
    fr = _Frontiers(rec, config)

    # -- enumerate (recoveries start in the pool as new images turn up)
    recoveries = _Recoveries(result, workers, spec, config.policy, extra, t0, config.stability)
    images = recoveries.images
    groups: list[_Group] = []
    recover_started = time.monotonic()
    try:
        enum_started = time.monotonic()
        trace = rec.trace
        points = [p for p in range(rec.first_point, len(trace)) if trace[p].op not in _NOT_POINTS]
        points.append(len(trace))
        result.points_total = len(points)
        if config.max_crash_points is not None:
            points = points[: config.max_crash_points]
        limits = config.image_limits()
        models = config.persistence_models
        cursor = ReplayCursor(trace)
        for number, p in enumerate(points):
            cursor.seek(p)
            disk = cursor.disk
            visible = disk.crash(PersistenceModel.PROCESS).files
            # The latest moment state p existed: just before operation p (the kill at the end).
            until = math.floor(rec.start_ms[p]) if p < len(trace) else rec.end_ms
            last_ack = fr.last_ack_ms(p)
            crash_ms = max(until, last_ack if last_ack is not None else 0)
            for model in models:
                enum = disk.crash_choices(model, limits=model_image_limits(limits, model))
                result.count_choices(model, enum)
                seen: dict[tuple[str, bool], _Group] = {}
                for choice in enum:
                    image = disk.crash(model, choice)
                    digest = image.digest()
                    key = (digest, choice.damaged)
                    group = seen.get(key)
                    if group is None:
                        group = seen[key] = _Group(p, crash_ms, model, digest, choice, 0,
                                                   image_effects(visible, image.files))
                        groups.append(group)
                        if digest not in images:
                            recoveries.submit(digest, image)
                    group.count += 1
            result.points_explored += 1
            if number % 32 == 0:
                report("enumerate", number + 1, len(points))
        report("enumerate", len(points), len(points))
        result.enumerate_s = time.monotonic() - enum_started
        result.state_groups = len(groups)

        # -- recover (and, for rule 3, what each recovery left behind)
        recoveries.drain(report)
    except BaseException:
        recoveries.close(interrupted=True)
        raise
    recoveries.close()
    result.recover_s = time.monotonic() - recover_started

    # -- check
    check_started = time.monotonic()
    recoveries.match(rec.history, tolerance)
    contents = recoveries.contents
    history_at = _Histories(rec)

    # (model, rules, image effects, server refusal) -> (state groups and states, crash points)
    mechanisms: dict[tuple[Any, ...], tuple[Counter[str], set[int]]] = {}
    for done_groups, group in enumerate(groups):
        content = contents[group.digest]
        p = group.point
        n = fr.submitted(p)
        f = fr.frontier(p, group.crash_ms, group.model)
        where = f"trace index {p} ({group.model.value}, image {group.digest[:12]})"

        def exact(content: _Content = content, group: _Group = group, p: int = p
                  ) -> tuple[str, tuple[str, ...], Verdict]:
            return _group_exact(config, content, group, history_at(p), tolerance)

        def fast(content: _Content = content, group: _Group = group, f: int = f, n: int = n
                 ) -> tuple[str, tuple[str, ...]]:
            return _fast(config, content, f, n, damaged=group.choice.damaged)

        outcome, rules, verdict = _judge(result, config.exact or fr.refused_pending(p),
                                         not fr.refused_pending(p), fast, exact, where)
        mechanism: tuple[Any, ...] = ()
        first_of_kind = False
        if outcome == "violation":
            reason = content.recovered.reason
            mechanism = (group.model.value, rules, group.effects,
                         server_reason_kind(reason) + _refusal_span(content.recovered.heals)
                         if reason else "")
            first_of_kind = mechanism not in mechanisms
        if outcome == "violation" and verdict is None and (
                first_of_kind or len(result.violations) < config.max_exact_violations):
            rules, verdict = _confirm(result, rules, exact, where)
            if rules != mechanism[1]:
                mechanism = (mechanism[0], rules, *mechanism[2:])
                first_of_kind = mechanism not in mechanisms
        _tally(result, group.model.value, outcome, rules, group.count)
        if outcome == "violation":
            _count_mechanism(mechanisms, mechanism, group.count, p)
            # Every mechanism keeps its first group; beyond that, the first groups up to the
            # cap. What is left out is counted (reports say how much), never dropped silently.
            if first_of_kind or len(result.violations) < max(config.max_exact_violations, 1):
                result.violations.append(ServerViolation(
                    p, group.crash_ms, group.model, group.choice, group.count, rules,
                    group.digest, verdict, content.recovered.reason, group.effects,
                    content.recovered.heals))
                _keep(result, images, history_at, group.digest, p)
            else:
                result.groups_left_out += 1
                result.states_left_out += group.count
        if done_groups % 256 == 0:
            report("check", done_groups + 1, len(groups))
    report("check", len(groups), len(groups))
    result.mechanisms = _mechanism_rows(mechanisms)
    result.check_s = time.monotonic() - check_started
    result.elapsed_s = time.monotonic() - started
    return result


def _tally(result: ServerExploreResult, model: str, outcome: str, rules: tuple[str, ...],
           count: int) -> None:
    result.outcomes[(model, outcome)] += count
    if outcome == "violation":
        for rule in rules:
            result.violation_counts[(model, rule)] += count


def _keep(result: ServerExploreResult, images: Mapping[str, DiskImage],
          history_at: Callable[[int], History], digest: str, p: int) -> None:
    """What a kept violation's reproduction needs: its image and the history at its point."""
    result.images[digest] = images[digest]
    if p not in result.histories:
        result.histories[p] = history_at(p)


def _refusal_span(heals: bool | None) -> str:
    if heals is None:
        return ""
    return (" (one start only: the next start came up)" if heals
            else " (the next start refused too)")


def _count_mechanism(mechanisms: dict[tuple[Any, ...], tuple[Counter[str], set[int]]],
                     mechanism: tuple[Any, ...], states: int, p: int) -> None:
    """Count one state group of `states` states at crash point `p` under its mechanism."""
    tally = mechanisms.setdefault(mechanism, (Counter(), set()))
    tally[0]["groups"] += 1
    tally[0]["states"] += states
    tally[1].add(p)


def _mechanism_rows(mechanisms: Mapping[tuple[Any, ...], tuple[Counter[str], set[int]]]
                    ) -> list[dict[str, Any]]:
    """The report's mechanism rows, from (model, rules, image effects, server refusal) ->
    (state groups and states, crash points)."""
    return [
        {"model": model, "rules": list(rules), "effects": list(effects),
         "server_refusal": refusal or None, "state_groups": counts["groups"],
         "states": counts["states"], "crash_points": sorted(points),
         "mechanism": _mechanism_text(rules, effects, refusal)}
        for (model, rules, effects, refusal), (counts, points) in mechanisms.items()]


def _mechanism_text(rules: Sequence[str], effects: Sequence[str], refusal: str) -> str:
    text = f"{'/'.join(rules)}: {describe_effects(effects)}"
    return text + (f"; the server: {refusal}" if refusal else "")


def _fast(config: ServerExploreConfig, content: _Content, f: int, n: int, *,
          damaged: bool = False) -> tuple[str, tuple[str, ...]]:
    """The fast path's outcome for one image: its matching prefixes against the frontier `f`
    and the `n` writes submitted (rule 3 as checked beforehand)."""
    if content.snapshot is None:
        if not config.allow_unavailable and not damaged:
            return "violation", ("availability",)
        return "unavailable", ()
    assert content.ks is not None
    best = max((k for k in content.ks if k <= n), default=-1)
    if best < 0:
        return "violation", ("prefix-consistency",)
    if best < f:
        return "violation", ("durability",)
    if content.stable is not None and not content.stable.ok:
        return "violation", ("stability",)
    return "consistent", ()


def _exact(config: ServerExploreConfig, content: _Content, history: History, tolerance: int,
           *, model: str, choice: dict[str, Any], position: int, crash_ms: int,
           damaged: bool = False) -> tuple[str, tuple[str, ...], Verdict]:
    """The oracle's verdict on one state group (rules 1, 2, 4, then 3)."""
    got = content.recovered
    crash = CrashInfo(model=model, choice=choice, trace_index=position, crash_ms=crash_ms)
    verdict = check_recovery(
        history, content.snapshot, policy=config.policy, model=model,
        crash_ms=crash_ms, recovery_ms=max(got.dump_ms, crash_ms),
        window_ms=config.window_ms + config.margin_ms,
        unavailable_reason=got.reason if content.snapshot is None else None,
        allow_unavailable=config.allow_unavailable, damaged_image=damaged,
        crash=crash, expiry_tolerance_ms=tolerance,
    )
    if not verdict.ok:
        return "violation", tuple(sorted({v.rule.value for v in verdict.violations})), verdict
    if content.stable is not None and not content.stable.ok:
        return "violation", ("stability",), content.stable
    return verdict.outcome, (), verdict


def _group_exact(config: ServerExploreConfig, content: _Content, group: _Group,
                 history: History, tolerance: int) -> tuple[str, tuple[str, ...], Verdict]:
    return _exact(config, content, history, tolerance, model=group.model.value,
                  choice=group.choice.to_dict(), position=group.point,
                  crash_ms=group.crash_ms, damaged=group.choice.damaged)


def _judge(result: ServerExploreResult, exact_now: bool, cross_check: bool,
           fast: Callable[[], tuple[str, tuple[str, ...]]],
           exact: Callable[[], tuple[str, tuple[str, ...], Verdict]], where: str
           ) -> tuple[str, tuple[str, ...], Verdict | None]:
    """One state group's outcome: the oracle's when `exact_now` (cross-checked against the
    fast path when `cross_check`), the fast path's otherwise."""
    if not exact_now:
        outcome, rules = fast()
        return outcome, rules, None
    outcome, rules, verdict = exact()
    result.exact_checks += 1
    if cross_check:
        fast_outcome, _ = fast()
        if (fast_outcome == "violation") != (outcome == "violation"):
            raise ServerExploreError(
                f"the fast path says {fast_outcome} at {where} but the oracle says {outcome}")
    return outcome, rules, verdict


def _confirm(result: ServerExploreResult, rules: tuple[str, ...],
             exact: Callable[[], tuple[str, tuple[str, ...], Verdict]], where: str
             ) -> tuple[tuple[str, ...], Verdict]:
    """The oracle's rules for a violation the fast path found (it must agree)."""
    outcome, exact_rules, verdict = exact()
    result.exact_checks += 1
    if outcome != "violation":
        raise ServerExploreError(
            f"the fast path found {rules} at {where} but the oracle says {outcome}")
    return exact_rules, verdict


# ---------------------------------------------------------------------------------------------
# Reproductions: the image, and a JSON file that re-runs its recovery


def write_server_reproductions(
    result: ServerExploreResult, directory: Path, *, max_groups: int = 20
) -> list[dict[str, Any]]:
    """One reproduction per violation mechanism (model x rules x what the image lacks or
    resurrects x the server's refusal), the first state of each: the image under
    ``<directory>/<n>-<rule>/image`` and ``repro.json`` beside it, which
    ``replay_server_reproduction`` (``aofcrash explore --server ... --replay FILE``) re-runs.
    Returns one summary row per mechanism (with the kept states it stands for; the result's
    ``mechanisms`` count them all). Past `max_groups` a row has no reproduction."""
    groups: dict[tuple[str, tuple[str, ...], str], list[ServerViolation]] = {}
    for v in result.violations:
        groups.setdefault((v.model.value, v.rules, v.mechanism), []).append(v)
    rows: list[dict[str, Any]] = []
    cfg = result.config
    for number, ((_, rules, mechanism), members) in enumerate(groups.items()):
        first = members[0]
        digest = first.digest
        row: dict[str, Any] = {
            "rules": list(rules), "mechanism": mechanism, "image_digest": digest,
            "states": sum(v.count for v in members),
            "crash_points": sorted({v.trace_index for v in members}),
            "models": sorted({v.model.value for v in members}),
            "example": first.to_dict(), "reproduction": None,
        }
        if number < max_groups:
            row["reproduction"] = _save_repro(
                result, directory / f"{number:02d}-{'-'.join(rules)}", rules, digest,
                result.histories[first.trace_index], first.verdict, {
                    "format": REPRO_FORMAT, "model": first.model.value,
                    "choice": first.choice.to_dict(), "trace_index": first.trace_index,
                    "crash_ms": first.crash_ms},
                f"aofcrash explore --server {cfg.server}: {', '.join(rules)} after a crash at "
                f"trace index {first.trace_index} ({first.model.value}); ")
        rows.append(row)
    return rows


def _save_repro(result: ServerExploreResult, where: Path, rules: tuple[str, ...],
                digest: str, history: History, verdict: Verdict | None,
                fields: Mapping[str, Any], note: str) -> str:
    """The image under ``<where>/image`` and ``<where>/repro.json`` (what is common to both
    kinds of reproduction and `fields`); returns the JSON file's path."""
    cfg = result.config
    image = result.images[digest]
    image_dir = where / "image"
    image_dir.mkdir(parents=True, exist_ok=True)
    _write_tree(str(image_dir), image.files, sorted(image.dirs))
    path = where / "repro.json"
    repro = {
        **fields,
        "server": cfg.server, "server_config": dict(cfg.server_config),
        "policy": cfg.policy, "rules": list(rules),
        "image_dir": "image", "image_digest": digest,
        "files": {p: len(c) for p, c in sorted(image.files.items())},
        "dirs": sorted(image.dirs),
        "window_ms": cfg.window_ms + cfg.margin_ms,
        "expiry_tolerance_ms": result.expiry_tolerance_ms,
        "wall_offset_ms": result.wall_offset_ms,
        "allow_unavailable": cfg.allow_unavailable,
        "history": history.to_dict(),
        "verdict": None if verdict is None else verdict.to_dict(),
        "note": (f"{note}re-run with: aofcrash explore --server {cfg.server} --replay "
                 f"{path}"),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(repro, indent=1, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return str(path)


def _load_repro(path: Path, repro_format: str, what: str) -> dict[str, Any]:
    """A reproduction's JSON; ValueError (one line) for a file that is not `what` one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != repro_format:
        raise ValueError(f"{path}: not {what} reproduction (format {repro_format!r})")
    return data


def replay_server_reproduction(path: Path, *, server: str | None = None) -> Verdict:
    """Recover a reproduction's image with its server (or `server`) and judge it again with
    the recorded history. Raises ValueError (one line) for a file that is not one."""
    data = _load_repro(path, REPRO_FORMAT, "an explore --server")
    try:
        config = ServerExploreConfig(
            server=server or data["server"], policy=data["policy"],
            models=(data["model"],),
            server_config=tuple((str(k), str(v)) for k, v in data["server_config"].items()),
        )
        choice = CrashChoice.from_dict(data["choice"])
        history = History.from_dict(data["history"])
        image_dir = path.parent / data["image_dir"]
        files, dirs = _read_tree(str(image_dir))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    content = _recover_again(config, files, dirs, data)
    tolerance = int(data["expiry_tolerance_ms"])
    group = _Group(int(data["trace_index"]), int(data["crash_ms"]), choice.model,
                   content.recovered.digest, choice, 1)
    cfg = ServerExploreConfig(server=config.server, policy=config.policy,
                              models=config.models, window_ms=int(data["window_ms"]),
                              margin_ms=0, allow_unavailable=bool(data["allow_unavailable"]))
    _, _, verdict = _group_exact(cfg, content, group, history, tolerance)
    return verdict


def _recover_again(config: ServerExploreConfig, files: dict[str, bytes],
                   dirs: tuple[str, ...], data: Mapping[str, Any]) -> _Content:
    """A reproduction's image recovered once more with `config`'s server on the recording's
    time scale (`data`'s wall offset), and what it left behind judged by rule 3."""
    spec, _, _ = _spec_and_identity(config)
    extra = _extra_config(spec, config)
    # Times on the recording's scale: wall clock minus the offset it had then.
    t0 = time.monotonic() - (time.time() * 1000 - float(data["wall_offset_ms"])) / 1000
    image = DiskImage(files, dirs)
    got = _recover(spec, config.policy, extra, t0, image.digest(), files, dirs, True)
    snapshot = None if got.dump is None else snapshot_from_dump(got.dump)
    content = _Content(got, snapshot)
    if snapshot is not None and got.after_files is not None:
        after = DiskImage(got.after_files, got.after_dirs)
        if after.digest() != image.digest():
            second = _recover(spec, config.policy, extra, t0, after.digest(),
                              dict(after.files), tuple(sorted(after.dirs)), False)
            second_snap = None if second.dump is None else snapshot_from_dump(second.dump)
            content.stable = check_stability(
                snapshot, second_snap, at_ms=max(got.dump_ms, second.dump_ms),
                expiry_tolerance_ms=int(data["expiry_tolerance_ms"]),
                unavailable_reason=second.reason)
    return content

