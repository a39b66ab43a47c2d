"""``aofcrash verify``: the same workload, faults and oracle against real server processes.

One *trial*:

1. a fresh temp directory — or, when the model is a power model or a fault is asked for, a fresh
   ``SimDisk`` served through ``faults.fuse.FuseMount`` (faults only reach a real process there);
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
import enum
import os
import random
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import hiredis

from faults import (
    Clock,
    CrashChoice,
    FaultOp,
    FaultPlan,
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

__all__ = [
    "FAULTS",
    "IMAGES",
    "MODELS",
    "POLICIES",
    "SERVERS",
    "Dumper",
    "Launcher",
    "TrialResult",
    "VerifyConfig",
    "VerifyEnvironmentError",
    "VerifyResult",
    "check_environment",
    "run_trial",
    "run_verify",
    "verify_report",
]

SERVERS: Final = ("6.0", "6.2", "7.0", "reference")
POLICIES: Final = ("always", "everysec", "no")
MODELS: Final = ("process", "power", "power-eager-metadata")
FAULTS: Final = ("none", "short-write", "no-space", "io-error", "slow-sync")
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

_AOF_GLOB: Final = "*.aof"  # 6.x appendonly.aof, 7.0 incr/base files, temp rewrite files
_HOUR_S: Final = 3600


class VerifyEnvironmentError(RuntimeError):
    """The run cannot start here (missing binary, no FUSE); the message is one line."""


@dataclass(frozen=True)
class VerifyConfig:
    """What ``aofcrash verify`` runs. Every field is validated; errors name the field."""

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

    def __post_init__(self) -> None:
        errors = []
        for name, allowed in (("server", SERVERS), ("policy", POLICIES), ("model", MODELS),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "policy": self.policy, "model": self.model,
            "trials": self.trials, "ops": self.ops, "fault": self.fault,
            "rewrite": self.rewrite, "seed": self.seed, "first_trial": self.first_trial,
            "window_ms": self.window_ms, "margin_ms": self.margin_ms,
            "batch_max": self.batch_max, "allow_unavailable": self.allow_unavailable,
            "image": self.image, "duration_ms": self.workload_duration_ms,
        }

    def command_line(self, *, trial: int | None = None) -> str:
        """The ``aofcrash verify`` command line that runs this (or only trial `trial`)."""
        first, count = (trial, 1) if trial is not None else (self.first_trial, self.trials)
        parts = ["aofcrash", "verify", "--server", self.server, "--policy", self.policy,
                 "--model", self.model, "--fault", self.fault, "--ops", str(self.ops),
                 "--seed", str(self.seed), "--trials", str(count)]
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
    outcome: str  # consistent | unavailable | violation
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
    faults: str  # the plan, as JSON ("" for none)
    fired: list[str]
    events: Counter[str]
    elapsed_s: float
    server_died_early: bool
    log_tail: list[str] = field(default_factory=list)
    history: History | None = None

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
        body = [v.render() for v in self.violations]
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
            "acknowledged_then_unavailable": self.unavailable_after_ack,
            "server_reason": self.recovery.unavailable_reason,
            "seconds": round(self.elapsed_s, 3),
        }


@dataclass
class VerifyResult:
    config: VerifyConfig
    server_version: str
    trials: list[TrialResult]
    elapsed_s: float

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.trials if t.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count("violation") == 0


# ---------------------------------------------------------------------------------------------
# Environment


def _server_launcher(server: str) -> tuple[Launcher, str]:
    """A launcher for `server` and its full version; VerifyEnvironmentError when missing."""
    from harness.targets import _servers

    if server == "reference":
        reference_process = getattr(_servers, "ReferenceProcess", None)
        if reference_process is None:
            raise VerifyEnvironmentError("the reference server process is not available")

        def launch_reference(data_dir: str, log_path: str, policy: str) -> Any:
            return reference_process(data_dir, appendfsync=policy, log_path=log_path)

        return launch_reference, "reference"
    try:
        binary = _servers.find_server(server)
    except _servers.ServerNotFound as exc:
        raise VerifyEnvironmentError(f"{exc} (run scripts/bootstrap.sh)") from None

    def launch(data_dir: str, log_path: str, policy: str) -> Any:
        return _servers.RedisProcess(
            binary, data_dir, appendfsync=policy, log_path=log_path,
            aof_load_truncated=True,
            extra_config={"aof-use-rdb-preamble": "no"},  # plain AOF base after a rewrite
        )

    return launch, binary.full_version


def check_environment(config: VerifyConfig) -> str:
    """Raise VerifyEnvironmentError (one line) unless the run can start; returns the version."""
    _, version = _server_launcher(config.server)
    if config.needs_mount:
        from faults.fuse import fuse_unavailable_reason

        reason = fuse_unavailable_reason()
        if reason is not None:
            raise VerifyEnvironmentError(f"FUSE is needed for --model/--fault: {reason}")
    return version


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


def _workload(rng: random.Random, ops: int, *, rewrite_at: int | None) -> list[_Item]:
    """`ops` write entries, with SELECTs between them and BGREWRITEAOF before entry rewrite_at."""
    items: list[_Item] = []
    db = 0
    for n in range(ops):
        if n == rewrite_at:
            items.append(_Item(_Kind.REWRITE))
        if rng.randrange(12) == 0:
            db = rng.randrange(3)
            items.append(_Item(_Kind.SELECT, db=db))
        if rng.randrange(8) == 0:
            block = tuple(_command(rng) for _ in range(rng.randrange(2, 5)))
            items.append(_Item(_Kind.WRITE, block, db))
        else:
            items.append(_Item(_Kind.WRITE, (_command(rng),), db))
    return items


def _encode(argv: Sequence[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _fault_plan(rng: random.Random, fault: str, ops: int, policy: str) -> FaultPlan:
    """One seeded fault of kind `fault` on the AOF files (never on the manifest)."""
    late = max(2, ops // 3)
    # Under everysec/no a run makes only a few fsyncs (about one a second): aim early.
    sync_late = late if policy == "always" else 4
    faults: list[PlanFault] = []
    if fault == "none":
        pass
    elif fault == "short-write":
        faults.append(ShortWrite(written_bytes=rng.randrange(1, 40), nth=rng.randrange(2, late),
                                 path_glob=_AOF_GLOB))
    elif fault == "no-space":
        partial = rng.choice([None, rng.randrange(1, 40)])
        faults.append(NoSpace(nth=rng.randrange(2, late), times=rng.randrange(1, 6),
                              partial_bytes=partial, path_glob=_AOF_GLOB))
    elif fault == "io-error":
        op = rng.choice([FaultOp.WRITE, FaultOp.FDATASYNC, FaultOp.FSYNC])
        nth = rng.randrange(1, late if op is FaultOp.WRITE else sync_late)
        faults.append(IOFault(op=op, nth=nth, times=rng.randrange(1, 3), path_glob=_AOF_GLOB))
    elif fault == "slow-sync":
        faults.append(SlowSync(delay_ms=rng.choice([500, 1500, 3000]),
                               nth=rng.randrange(1, sync_late),
                               times=rng.randrange(1, 3), path_glob=_AOF_GLOB))
    return FaultPlan(tuple(faults))


# ---------------------------------------------------------------------------------------------
# The connection


class _ServerGone(Exception):
    """The connection closed or reset: the server died."""


class _Conn:
    """One RESP connection: pipelined sends, replies read one at a time with their time."""

    def __init__(self, port: int, *, timeout_s: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
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


def _dump_snapshot(dump: Dumper, server: Any, now_ms: int) -> Snapshot:
    client = server.new_client()
    try:
        return snapshot_from_dump(dump(client, now_ms))
    finally:
        client.close()


def _default_dump(client: Any, now_ms: int) -> DumpMapping:
    from harness.targets._servers import dump_keyspace

    return dump_keyspace(client, now_ms=now_ms)


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
    """Where the server's files live: a plain temp dir, or a SimDisk FUSE mount."""

    def __init__(self, root: str, plan: FaultPlan | None) -> None:
        self.root = root
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, "redis.log")
        os.mkdir(self.data_dir)
        self.mount: Any = None
        if plan is not None:
            from faults.fuse import FuseMount

            clock = Clock()  # a SlowSync advances it; the mount turns that into a real sleep
            self.faulty = FaultyFileSystem(SimDisk(), plan, clock=clock)
            self.mount = FuseMount(self.faulty, self.data_dir, clock=clock)
            with _keep_cwd():
                self.mount.start()

    def fired(self) -> list[Any]:
        return list(self.faulty.fired) if self.mount is not None else []

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


def run_trial(
    config: VerifyConfig,
    index: int,
    *,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
) -> TrialResult:
    """Run trial `index` of `config` (its workload, faults and crash depend only on the seed
    and the index). Every process and mount it starts is gone when it returns or raises."""
    from harness.targets._servers import ServerRefusedToStart, ServerStartTimeout

    if launcher is None:
        launcher = _server_launcher(config.server)[0]
    dumper = dump if dump is not None else _default_dump
    rng = random.Random(f"aofcrash-verify/{config.seed}/{index}")
    model = PersistenceModel(config.model)
    kill_at = rng.randrange(config.ops)  # the entry whose batch is in flight at the kill
    rewrite_at = None
    if config.rewrite:
        # Half the time just before the kill, so the kill often lands during the rewrite.
        close = max(0, kill_at - rng.randrange(0, 4))
        rewrite_at = close if rng.randrange(2) else rng.randrange(kill_at + 1)
    items = _workload(rng, config.ops, rewrite_at=rewrite_at)
    plan: FaultPlan | None = None
    if config.needs_mount:
        plan = _fault_plan(rng, config.fault, config.ops, config.policy)
    kill_delay_s = rng.choice([0.0, 0.0, 0.0005, 0.002, 0.005, 0.02])
    durable_only = rng.randrange(4) == 0 or config.image == "durable"
    limits = _DAMAGED if config.image == "drawn-damaged" else None
    image_seed, stability_seed = rng.randrange(2**32), rng.randrange(2**32)
    # everysec: a third of the trials go idle for longer than the window before the last
    # batch, so the fsync of a burst that is followed by silence is checked too.
    idle_s = 0.0
    if config.policy == "everysec" and rng.randrange(3) == 0:
        idle_s = (config.window_ms + config.margin_ms + 500) / 1000

    started = time.monotonic()
    history = History()
    run = _Run(history, started)
    site = _Site(tempfile.mkdtemp(prefix="aofcrash-verify-"), plan)
    server: Any = None
    conn: _Conn | None = None
    stalls: list[tuple[int, int]] = []
    error_stalls: list[tuple[int, int]] = []
    seen_fired = 0
    log_tail: list[str] = []

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

    try:
        server = launcher(site.data_dir, site.log_path, config.policy)
        server.start()
        conn = _Conn(server.port)
        run.last_alive_ms = run.now_ms()
        # Batches: the kill lands while the batch holding entry `kill_at` is in flight.
        batches: list[list[_Item]] = []
        current: list[_Item] = []
        size = rng.randrange(1, config.batch_max + 1)
        for item in items:
            current.append(item)
            if item.kind is _Kind.WRITE and len(current) >= size:
                batches.append(current)
                current, size = [], rng.randrange(1, config.batch_max + 1)
        if current:
            batches.append(current)
        pause_s = config.workload_duration_ms / 1000 / max(1, len(batches))
        entry_no = 0
        died_early = False
        crash_ms = 0
        for batch in batches:
            writes = sum(1 for it in batch if it.kind is _Kind.WRITE)
            last_batch = entry_no + writes > kill_at
            entry_no += writes
            try:
                if last_batch and idle_s:
                    time.sleep(idle_s)
                    run.events["idle before the kill"] += 1
                run.queue(batch, conn)
                if last_batch:
                    if kill_delay_s:
                        time.sleep(kill_delay_s)
                    break
                run.read(conn)
                if pause_s:
                    time.sleep(pause_s)
            except _ServerGone:
                died_early = True
                break
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
        _scan_log(server, run.events)
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
    counts = Counter(e.outcome for e in history)
    return TrialResult(
        index=index, outcome=outcome, recovery=verdict, stability=stability,
        entries=len(history), acked=counts[Outcome.OK], unknown=counts[Outcome.UNKNOWN],
        errors=counts[Outcome.ERROR], crash_ms=crash_ms, recovery_ms=recovery_ms,
        crash_image=image_kind,
        crash_choice=None if choice is None else choice.to_dict(),
        faults=plan.to_json() if plan is not None and plan.faults else "",
        fired=[f"{type(f.fault).__name__} on {f.path}: {f.effect}" for f in site.fired()],
        events=run.events, elapsed_s=time.monotonic() - started,
        server_died_early=died_early, log_tail=log_tail, history=history,
    )


def run_verify(
    config: VerifyConfig,
    *,
    progress: Callable[[int, TrialResult], None] | None = None,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
) -> VerifyResult:
    """Run every trial of `config`; `progress(done, trial)` after each one."""
    if launcher is None:
        launcher, version = _server_launcher(config.server)
    else:
        version = "custom launcher"
    if config.needs_mount:
        check_environment(config)
    started = time.monotonic()
    trials: list[TrialResult] = []
    for n in range(config.trials):
        trial = run_trial(config, config.first_trial + n, launcher=launcher, dump=dump)
        trials.append(trial)
        if progress is not None:
            progress(n + 1, trial)
    return VerifyResult(config, version, trials, time.monotonic() - started)


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
                "text": f"trial {t.index}\n{v.render()}",
                "reproduce": cfg.command_line(trial=t.index),
                "violation": v.to_dict(),
                "faults": t.faults,
                "fired": t.fired,
                "log_tail": t.log_tail,
                "history": None if t.history is None else t.history.to_dict(),
            })
    elapsed = result.elapsed_s
    return {
        "command": "verify",
        "run_id": run_id,
        "run": {
            **cfg.to_dict(),
            "server_version": result.server_version,
            "command_line": " ".join(argv) if argv else cfg.command_line(),
        },
        "totals": {
            "trials": len(result.trials),
            "consistent": result.count("consistent"),
            "unavailable": result.count("unavailable"),
            "acknowledged_then_unavailable": sum(t.unavailable_after_ack
                                                 for t in result.trials),
            "violations": result.count("violation"),
            "acked_entries": sum(t.acked for t in result.trials),
            "unknown_entries": sum(t.unknown for t in result.trials),
            "error_entries": sum(t.errors for t in result.trials),
            "elapsed_s": round(elapsed, 2),
            "trials_per_s": round(len(result.trials) / elapsed, 2) if elapsed > 0 else None,
        },
        "configurations": [t.row() for t in result.trials],
        "events": dict(events),
        "violations": violations,
    }
