"""Recovering crash images for the explorer, fast: each distinct AOF content once, prefixes of
one append-only file through one incremental loader.

Why only the AOF matters: ``reference.Server.start`` reads nothing but ``config.aof_filename``
(exists/open/stat/read/ftruncate on that path), so two images with the same AOF content (or both
without one) recover to the same keyspace and pass or fail stability alike. The explorer keys
every state by a *content key* of its AOF and recovers each key once.

Content keys
------------
An inode's bytes only grow by appends between non-append modifications (an overwrite, a
truncate below its size, O_TRUNC). A *lineage* is one inode between two such modifications; any
image of that inode is ``B[:L]`` of the lineage's bytes B, possibly with a damaged tail (a torn
last sector: zeros or garbage; a reordered sector reading as zeros). A lineage is parsed once
(``reference.parse_aof_command``: the loader's own parser, so that a damaged tail is judged as
the loader judges it; ``safe`` also skips ``#`` annotation lines, so a tail with one where a
command starts goes to a full recovery) into command boundaries and fed command by command to one
``reference.AofLoader``; at every boundary b the loader's keyspace is R(b), the recovery of
``B[:b]``. Then:

* ``B[:L]`` with b the last boundary <= L: R(b), "truncated" when L > b (or when a MULTI is open
  at b), which matters only with ``aof-load-truncated no`` (the server refuses) and with the
  defect that applies an unfinished MULTI (handled by a full recovery).
* a damaged tail starting at s: the bytes from the last boundary b0 <= s to the end are parsed
  on their own. No complete command: R(b0), truncated. A format error: the server refuses to
  start. A complete command (zeros or garbage that happen to parse): full recovery.
* anything else (ranges a failed fsync dropped, durable bytes saved before an overwrite, an
  overwrite in progress): full recovery, keyed by the SHA-256 of the bytes.

Matching R(b) against the history without rebuilding it: a mirror of the loader keyspace is
updated only for the keys each command names (every command the reference loads touches only
keys named in its arguments, in the selected db; anything else rebuilds the mirror), with a
running hash of its live keys (sum of per-key hashes, like the oracle's). ``PrefixIndex`` holds
the hash of S(k) for every k; candidates with the same hash are confirmed exactly by a mismatch
set kept between the mirror and S(k_t), moved along the history's change log. So a match is
always exact; a hash miss means no k matches.

A sample of fast results (every ``audit_every``-th distinct key) is recomputed by a full
recovery and must agree: the fast path checks itself. A disagreement is a bug of the explorer,
never a finding: the full recovery's result replaces the fast one (``FastPathDisagreement``
carries both; the explorer judges that state with the oracle and reports the bug).
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_right
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from faults import (
    Clock,
    CrashChoice,
    DiskImage,
    FileChoice,
    ImageKind,
    InodeView,
    PersistenceModel,
    ReplayCursor,
    SimDisk,
    garbage_sector,
)
from harness.machine._steps import RunConfig
from harness.oracle._checker import KeyChangeLog
from harness.oracle._history import History, Outcome
from harness.oracle._model import Model
from harness.oracle._snapshot import DbKey, KeyValue, Snapshot, snapshot_from_dump
from harness.targets._reference import reference_server_config
from reference import (
    AofLoader,
    LoadError,
    Profile,
    RespFormatError,
    Server,
    ServerConfig,
    encode_command,
)
from reference import defects as D
from reference._aof import parse_aof_command as parse_command

__all__ = [
    "ExplorerError",
    "FastPathDisagreement",
    "PrefixIndex",
    "Rec",
    "StateEvaluator",
    "full_recover",
]

_MASK = (1 << 64) - 1
PROCESS = PersistenceModel.PROCESS

# Commands that change only keys named in their arguments, in the selected db.
_LOCAL = frozenset((
    b"set", b"setex", b"psetex", b"setnx", b"getset", b"del", b"unlink", b"incr", b"decr",
    b"incrby", b"decrby", b"incrbyfloat", b"append", b"expire", b"pexpire", b"expireat",
    b"pexpireat", b"persist", b"lpush", b"rpush", b"lpop", b"rpop", b"lset", b"ltrim", b"lrem",
    b"sadd", b"srem", b"spop", b"zadd", b"zrem", b"zincrby", b"hset", b"hsetnx", b"hdel",
    b"hincrby", b"hmset", b"get", b"exists",
))
_NO_CHANGE = frozenset((b"select", b"multi", b"exec", b"discard"))


class ExplorerError(RuntimeError):
    """The explorer cannot go on (a bug in the explorer, or a runaway recovery)."""


class FastPathDisagreement(Exception):
    """The fast path's result for one content disagreed with a full recovery's (a bug of the
    explorer): ``full`` is the full recovery's, now cached for that content."""

    def __init__(self, message: str, full: Rec) -> None:
        super().__init__(message)
        self.full = full


def _live(kv: KeyValue | None, t_ms: int) -> KeyValue | None:
    if kv is None or (kv.expire_at_ms is not None and kv.expire_at_ms <= t_ms):
        return None
    return kv


def _h(dbkey: DbKey, kv: KeyValue | None, t_ms: int) -> int:
    live = _live(kv, t_ms)
    return 0 if live is None else hash((dbkey, live))


class PrefixIndex(KeyChangeLog):
    """S(k)@T for every prefix k of a history's executed sequence, as a change log with the hash
    and live-key count of every S(k) (built once through the oracle's model)."""

    def __init__(self, history: History, at_ms: int) -> None:
        super().__init__()
        self.at_ms = at_ms
        model = Model()
        state = model.state
        self.changes: list[list[DbKey]] = [[]]
        self.hashes = [0]
        self.counts = [0]
        self.by_hash: dict[int, list[int]] = {0: [0]}
        h = cnt = 0
        k = 0
        for entry in history:
            if entry.outcome is Outcome.ERROR:
                continue
            k += 1
            state.journal = {}
            model.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
            journal, state.journal = state.journal, None
            changed: list[DbKey] = []
            for dbkey, old in journal.items():
                new = state.data.get(dbkey)
                if new == old:
                    continue
                changed.append(dbkey)
                self.key_ks.setdefault(dbkey, []).append(k)
                self.key_vals.setdefault(dbkey, []).append(new)
                ho, hn = _h(dbkey, old, at_ms), _h(dbkey, new, at_ms)
                h += hn - ho
                cnt += (_live(new, at_ms) is not None) - (_live(old, at_ms) is not None)
            h &= _MASK
            self.changes.append(changed)
            self.hashes.append(h)
            self.counts.append(cnt)
            self.by_hash.setdefault(h, []).append(k)
        self.n = k

    def live_at(self, k: int) -> dict[DbKey, KeyValue]:
        out: dict[DbKey, KeyValue] = {}
        for dbkey in self.key_ks:
            kv = _live(self.value_at(dbkey, k), self.at_ms)
            if kv is not None:
                out[dbkey] = kv
        return out

    def matches(self, live: dict[DbKey, KeyValue]) -> tuple[int, ...]:
        """Every k with S(k)@T == `live` (a keyspace already restricted to live keys)."""
        h = sum(hash(item) for item in live.items()) & _MASK
        out = []
        for k in self.by_hash.get(h, ()):
            if self.counts[k] != len(live):
                continue
            if all(self.value_at(dbkey, k) == kv for dbkey, kv in live.items()):
                out.append(k)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Rec:
    """How one AOF content recovers: refused (``unavailable``) or the matching prefixes ``ks``
    (empty: none); ``stable_*`` from a second recovery (None: not computed on the fast path)."""

    unavailable: str | None
    ks: tuple[int, ...]
    stable_process: bool | None = None
    stable_power: bool | None = None
    full: bool = False


def _server_config(config: RunConfig) -> ServerConfig:
    return reference_server_config(config.target_config())


def full_recover(
    config: RunConfig, content: bytes | None, index: PrefixIndex, *, stability: bool = True
) -> tuple[Rec, Snapshot | None]:
    """Boot the reference on an image holding only this AOF (None: no AOF), at the recovery
    time, and match what it loaded; with `stability`, crash it again at once (process: the
    visible state; power: durable state only) and recover once more."""
    server_config = _server_config(config)
    name = server_config.aof_filename
    t_ms = index.at_ms
    image = DiskImage({} if content is None else {name: content})
    disk = SimDisk.from_image(image, fsync_failure=config.fsync_failure)
    server = Server(disk, Clock(t_ms), server_config)
    try:
        server.start()
    except LoadError as exc:
        return Rec(exc.reason, (), True, True, True), None
    snapshot = snapshot_from_dump(server.dump()).at(t_ms)
    live = dict(snapshot.items())
    ks = index.matches(live)
    stable: list[bool | None] = [None, None]
    if stability:
        for i, model in enumerate((PROCESS, PersistenceModel.POWER)):
            again = SimDisk.from_image(disk.crash(model), fsync_failure=config.fsync_failure)
            second = Server(again, Clock(t_ms), server_config)
            try:
                second.start()
            except LoadError:
                stable[i] = False
                continue
            stable[i] = snapshot_from_dump(second.dump()).at(t_ms) == snapshot
    return Rec(None, ks, stable[0], stable[1], True), snapshot


# ------------------------------------------------------------------------- lineages


def _read_key(loader: AofLoader, dbkey: DbKey) -> KeyValue | None:
    dumped = loader.keyspace.dump_key(dbkey[0], dbkey[1])
    if dumped is None:
        return None
    # The per-key form of Keyspace.dump + snapshot_from_dump (same canonicalisation).
    kv: KeyValue | None = snapshot_from_dump({dbkey[0]: {dbkey[1]: dumped}}).get(dbkey)
    return kv


def _seed_key(loader: AofLoader, dbkey: DbKey, kv: KeyValue) -> None:
    """Put a canonical value back into a loader's keyspace (the inverse of _read_key)."""
    value: Any = kv.value
    if kv.type == "zset" or kv.type == "hash":
        value = dict(value)
    loader.keyspace.restore_key(dbkey[0], dbkey[1], kv.type, value, kv.expire_at_ms)


class _Mirror:
    """The loader's keyspace as canonical KeyValues, with the hash/count of its live keys, a
    mismatch set against S(k_t), updated for named keys only."""

    def __init__(self, loader: AofLoader, index: PrefixIndex, bidx: int) -> None:
        self.loader = loader
        self.index = index
        self.t_ms = index.at_ms
        self.cur: dict[DbKey, KeyValue] = {}
        self.h = 0
        self.count = 0
        self.k_t = 0
        self.diff: set[DbKey] = set()
        # Per key: (boundary indexes, values from there on), for forks at older boundaries.
        self.bidx = bidx
        self.khist: dict[DbKey, tuple[list[int], list[KeyValue | None]]] = {}
        self.rebuild()

    def _read(self, dbkey: DbKey) -> KeyValue | None:
        return _read_key(self.loader, dbkey)

    def value_at(self, dbkey: DbKey, bidx: int) -> KeyValue | None:
        """The key's value at boundary index `bidx` (>= the lineage's ``hist_from``)."""
        hist = self.khist.get(dbkey)
        if hist is None:
            return None
        i = bisect_right(hist[0], bidx) - 1
        return None if i < 0 else hist[1][i]

    def _set(self, dbkey: DbKey, new: KeyValue | None) -> None:
        old = self.cur.get(dbkey)
        if old == new:
            return
        t = self.t_ms
        ho, hn = _h(dbkey, old, t), _h(dbkey, new, t)
        self.h = (self.h - ho + hn) & _MASK
        self.count += (_live(new, t) is not None) - (_live(old, t) is not None)
        if new is None:
            del self.cur[dbkey]
        else:
            self.cur[dbkey] = new
        hist = self.khist.get(dbkey)
        if hist is None:
            hist = self.khist[dbkey] = ([], [])
        if hist[0] and hist[0][-1] == self.bidx:
            hist[1][-1] = new
        else:
            hist[0].append(self.bidx)
            hist[1].append(new)
        self._judge(dbkey)

    def _judge(self, dbkey: DbKey) -> None:
        t = self.t_ms
        if _live(self.cur.get(dbkey), t) == _live(self.index.value_at(dbkey, self.k_t), t):
            self.diff.discard(dbkey)
        else:
            self.diff.add(dbkey)

    def refresh(self, keys: Iterable[DbKey]) -> None:
        for dbkey in keys:
            self._set(dbkey, self._read(dbkey))

    def rebuild(self) -> None:
        keys = set(self.cur)
        for db in self.loader.keyspace.dbs:
            keys.update((db.id, key) for key in db.data)
        self.refresh(keys)
        self._reset_diff(self.k_t)

    def _reset_diff(self, k: int) -> None:
        self.k_t = k
        self.diff = set()
        for dbkey in set(self.cur) | set(self.index.live_at(k)):
            self._judge(dbkey)

    def move(self, k: int) -> None:
        lo, hi = sorted((self.k_t, k))
        changes = self.index.changes
        if sum(len(changes[j]) for j in range(lo + 1, hi + 1)) > 4 * (len(self.cur) + 16):
            self._reset_diff(k)
            return
        self.k_t = k
        for j in range(lo + 1, hi + 1):
            for dbkey in changes[j]:
                self._judge(dbkey)

    def matches(self) -> tuple[int, ...]:
        out = []
        for k in self.index.by_hash.get(self.h, ()):
            if self.index.counts[k] != self.count:
                continue
            self.move(k)
            if not self.diff:
                out.append(k)
        return tuple(out)


class _Lineage:
    """One inode between non-append modifications; see the module docstring."""

    _next_uid = 0

    def __init__(self, evaluator: StateEvaluator, inherit: _Lineage | None = None,
                 upto: int = 0) -> None:
        _Lineage._next_uid += 1
        self.uid = _Lineage._next_uid
        self.ev = evaluator
        self.bounds = [0]
        # Per boundary: (ks, valid offset, MULTI open) of the loader there.
        self.res: list[tuple[tuple[int, ...], int, bool] | None] = [None]
        if inherit is not None:
            cut = bisect_right(inherit.bounds, upto)
            self.bounds = inherit.bounds[:cut]
            self.res = inherit.res[:cut]
        # The lineage's own copy of the inode's bytes (SimDisk hands out copies, not its
        # buffer): a lineage only grows by appends, so it is extended, never rewritten.
        self.buf: bytearray = bytearray() if inherit is None else inherit.buf[:upto]
        self.error = False
        self.loader: AofLoader | None = None
        self.mirror: _Mirror | None = None
        self.db = 0
        self.queued: list[list[bytes]] | None = None
        # Per boundary (from hist_from on): selected db and the mirror's (hash, live count).
        self.hist_from = len(self.bounds) - 1
        self.dbs: dict[int, int] = {}
        self.hc: dict[int, tuple[int, int]] = {}

    def _start_loader(self, data: bytearray) -> None:
        ev = self.ev
        loader = AofLoader(
            now_ms=ev.index.at_ms,
            rollback_multi=ev.config.profile == Profile.SAFE.value,
            apply_unfinished_multi=D.MULTI_APPLIED_ON_LOAD in ev.config.defects,
        )
        end = self.bounds[-1]
        if end:
            # Inherited boundaries: replay them in one feed (their results are known).
            loader.feed(bytes(data[:end]))
            self.db = _selected_db(data, end)
        self.loader = loader
        self.hist_from = len(self.bounds) - 1
        mirror = self.mirror = _Mirror(loader, ev.index, self.hist_from)
        self._note(self.hist_from)
        if self.res[0] is None:
            self.res[0] = (mirror.matches(), 0, False)

    def sync(self, inode: InodeView) -> bytearray:
        """The lineage's bytes, extended to the inode's current (appended-to) size."""
        buf = self.buf
        if len(buf) < inode.size_bytes:
            buf += inode.read(len(buf), inode.size_bytes)
        return buf

    def _note(self, bidx: int) -> None:
        assert self.mirror is not None
        self.dbs[bidx] = self.db
        self.hc[bidx] = (self.mirror.h, self.mirror.count)

    def ensure(self, data: bytearray, offset: int) -> None:
        """Parse and load until the boundaries around `offset` are known."""
        if self.loader is None:
            self._start_loader(data)
        loader, mirror = self.loader, self.mirror
        assert loader is not None and mirror is not None
        end = len(data)
        while not self.error and self.bounds[-1] <= offset:
            pos = self.bounds[-1]
            try:
                parsed = parse_command(data, pos, end)
            except RespFormatError:
                self.error = True
                break
            if parsed is None:
                break
            argv, nxt = parsed
            try:
                loader.feed(bytes(data[pos:nxt]))
            except LoadError:
                self.error = True
                break
            self.ev.commands_fed += 1
            mirror.bidx = len(self.bounds)
            self._track(argv)
            self._note(len(self.bounds))
            self.bounds.append(nxt)
            self.res.append((mirror.matches(), loader.valid_offset_bytes, loader.multi_open))

    def fork(self, i: int, tail: bytes) -> Rec | None:
        """Recover ``B[:bounds[i]] + tail`` (a tail that parses as commands) from what is known
        at boundary i: seed a fresh loader with the keys the tail names, as they were at i,
        apply the tail, and match the result. None when this cannot be done exactly (no
        history at i, R(b_i) matched nothing, a MULTI, a command not known to be key-local)."""
        ev = self.ev
        entry = self.res[i] if i < len(self.res) else None
        if self.mirror is None or i < self.hist_from or entry is None or i not in self.dbs:
            return None
        ks0, _, multi_open = entry
        if not ks0 or multi_open:
            return None
        db = self.dbs[i]
        commands: list[list[bytes]] = []
        pos = 0
        truncated = False
        while pos < len(tail):
            try:
                parsed = parse_command(tail, pos, len(tail))
            except RespFormatError as exc:
                if ev.annotations and tail[pos : pos + 1] == b"#":
                    return None  # `safe` skips an annotation line: a full recovery judges it
                return Rec(f"Bad file format reading the append only file: {exc.reason}", ())
            if parsed is None:
                truncated = True
                break
            argv, pos_next = parsed
            commands.append(argv)
            pos = pos_next
        touched: set[DbKey] = set()
        cur_db = db
        for argv in commands:
            name = argv[0].lower()
            if name == b"select" and len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < 16:
                cur_db = int(argv[1])
            elif name in _LOCAL:
                touched.update((cur_db, a) for a in argv[1:])
            else:
                return None
        mirror = self.mirror
        before = {t: mirror.value_at(t, i) for t in touched}
        loader = AofLoader(now_ms=ev.index.at_ms,
                           rollback_multi=ev.config.profile == Profile.SAFE.value)
        for t, kv in before.items():
            if kv is not None:
                _seed_key(loader, t, kv)
        try:
            loader.feed(encode_command([b"SELECT", b"%d" % db]) + tail[:pos])
        except LoadError as exc:
            return Rec(exc.reason, ())
        if truncated and not ev.config.aof_load_truncated:
            return Rec("Unexpected end of file", ())
        after = {t: _read_key(loader, t) for t in touched}
        index, t_ms = ev.index, ev.index.at_ms
        h, count = self.hc[i]
        for t in touched:
            h += _h(t, after[t], t_ms) - _h(t, before[t], t_ms)
            count += (_live(after[t], t_ms) is not None) - (_live(before[t], t_ms) is not None)
        h &= _MASK
        k0 = ks0[-1]
        out = []
        for k in index.by_hash.get(h, ()):
            if index.counts[k] != count:
                continue
            if any(_live(after[t], t_ms) != _live(index.value_at(t, k), t_ms) for t in touched):
                continue
            lo, hi = sorted((k0, k))
            # R(b_i) == S(k0): every key the tail left alone must agree between S(k0) and S(k).
            same = all(
                _live(index.value_at(key, k0), t_ms) == _live(index.value_at(key, k), t_ms)
                for j in range(lo + 1, hi + 1)
                for key in index.changes[j]
                if key not in touched
            )
            if same:
                out.append(k)
        ev.forks += 1
        return Rec(None, tuple(out))

    def _track(self, argv: list[bytes]) -> None:
        mirror = self.mirror
        assert mirror is not None
        name = argv[0].lower()
        if name == b"multi":
            # The loader ignores a MULTI inside an open one (an error reply): the queue stays.
            if self.queued is None:
                self.queued = []
            return
        if self.queued is not None and name not in (b"exec", b"discard"):
            self.queued.append(argv)
            return
        if name == b"discard":
            self.queued = None
            return
        batch = [argv]
        if name == b"exec":
            batch, self.queued = self.queued or [], None
        keys: set[DbKey] = set()
        rebuild = False
        for cmd in batch:
            cname = cmd[0].lower()
            if cname == b"select":
                # (Every SELECT of the batch counts, also after a command that rebuilds.)
                if len(cmd) == 2 and cmd[1].isdigit() and int(cmd[1]) < 16:
                    self.db = int(cmd[1])
            elif cname in _LOCAL:
                keys.update((self.db, a) for a in cmd[1:])
            elif cname not in _NO_CHANGE:
                rebuild = True  # FLUSHDB, FLUSHALL, anything not known to be key-local
        if rebuild:
            mirror.rebuild()
        else:
            mirror.refresh(keys)


def _selected_db(data: bytearray, end: int) -> int:
    """The db selected after the commands in data[:end], as the loader selects it: a SELECT
    queued in a MULTI counts at its EXEC, not at all when the block is discarded or left
    open; a nested MULTI changes nothing."""
    db, pos = 0, 0
    queued: list[int] | None = None  # SELECTs of the open MULTI
    while pos < end:
        parsed = parse_command(data, pos, end)
        if parsed is None:
            break
        argv, pos = parsed
        name = argv[0].lower()
        if name == b"multi":
            if queued is None:
                queued = []
        elif name == b"exec":
            if queued:
                db = queued[-1]
            queued = None
        elif name == b"discard":
            queued = None
        elif name == b"select" and len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < 16:
            if queued is None:
                db = int(argv[1])
            else:
                queued.append(int(argv[1]))
    return db


# ------------------------------------------------------------------------- states


class StateEvaluator:
    """Content key and recovery result of crash states (see the module docstring).

    Reads the SimDisk's inode layer through its read-only views (``inode_at``, ``inode``,
    ``namespace_after``, the replay cursor's ``open_file``): the content key of an image is a
    property of that layer.
    """

    def __init__(self, config: RunConfig, index: PrefixIndex, *, audit_every: int = 97) -> None:
        self.config = config
        self.index = index
        self.name = _server_config(config).aof_filename
        # reference.AofLoader(zero_tail_truncated=...): `safe` loads an all-zero tail as torn.
        self._zero_tail_is_torn = (config.profile == Profile.SAFE.value
                                   and D.ZERO_TAIL_REFUSED not in config.defects)
        # reference.AofLoader(annotations=None): `safe` skips '#' lines where a command starts.
        self.annotations = config.profile == Profile.SAFE.value
        self.audit_every = audit_every
        self.lineages: dict[int, _Lineage] = {}
        self.cache: dict[Hashable, Rec] = {}
        self.full_cache: dict[str, Rec] = {}
        self.commands_fed = 0
        self.forks = 0
        self.full_recoveries = 0
        self.audits = 0
        self.fast_keys = 0
        self._ns: dict[tuple[PersistenceModel, int, tuple[int, ...] | None], int | None] = {}
        self._overwriting: int | None = None

    # -- keeping lineages current

    def before_step(self, cursor: ReplayCursor, entry: Any) -> None:
        """Called before the replay applies `entry`: a non-append change starts a new lineage."""
        if entry.result < 0:
            return
        disk = cursor.disk
        op = entry.op.value
        inode = None
        at = -1
        if op in ("write", "ftruncate"):
            f = cursor.open_file(entry.fd)
            inode = None if f is None or f.ino is None else disk.inode(f.ino)
            if inode is not None:
                at = entry.offset if op == "write" else int(entry.payload)
        elif op == "open" and entry.payload & os.O_TRUNC:
            inode = disk.inode_at(entry.path)
            at = 0
        if inode is not None and 0 <= at < inode.size_bytes and inode.ino in self.lineages:
            self.lineages[inode.ino] = _Lineage(self, self.lineages[inode.ino], at)

    def new_point(self, *, overwriting: int | None = None) -> None:
        """A new crash point: forget per-point caches; `overwriting` is the inode an
        in-progress (partial) overwrite is changing, whose images need full recovery."""
        self._ns = {}
        self._overwriting = overwriting

    def _lineage(self, ino: int) -> _Lineage:
        lineage = self.lineages.get(ino)
        if lineage is None:
            lineage = self.lineages[ino] = _Lineage(self)
        return lineage

    # -- one state

    def evaluate(self, disk: SimDisk, model: PersistenceModel, choice: CrashChoice) -> Rec:
        if model is PROCESS:
            inode = disk.inode_at(self.name)
            if inode is None:
                return self._keyed(("absent",), disk, model, choice)
            return self._file(disk, inode, None, model, choice)
        metadata = (model, choice.metadata_kept, choice.metadata_ops)  # per model: k differs
        if metadata not in self._ns:
            self._ns[metadata] = disk.namespace_after(choice).get(self.name)
        ino = self._ns[metadata]
        if ino is None:
            return self._keyed(("absent",), disk, model, choice)
        fc = None
        for f in choice.files:
            if f.inode == ino:
                fc = f
                break
        return self._file(disk, disk.inode(ino), fc, model, choice)

    def _file(self, disk: SimDisk, inode: InodeView, fc: FileChoice | None,
              model: PersistenceModel, choice: CrashChoice) -> Rec:
        if inode.dropped_ranges or inode.ino == self._overwriting:
            return self._by_bytes(disk, model, choice)
        data = self._lineage(inode.ino).sync(inode)
        if model is PROCESS:
            return self._prefix(inode, data, len(data), disk, model, choice)
        if fc is None or fc.kind is ImageKind.DURABLE:
            if not inode.durable_is_prefix:
                return self._by_bytes(disk, model, choice)
            return self._prefix(inode, data, inode.durable_size_bytes, disk, model, choice)
        if fc.kind is ImageKind.PREFIX:
            return self._prefix(inode, data, fc.length_bytes, disk, model, choice)
        if fc.kind is ImageKind.SIZE_BEFORE_DATA:
            return self._size_before_data(inode, data, fc.length_bytes, disk, model, choice)
        if fc.kind is ImageKind.IN_PLACE:
            # Old data in freed blocks under a newer size: no lineage reads it; recovered in
            # full (each distinct content once).
            return self._by_bytes(disk, model, choice)
        sector = disk.sector_size_bytes
        length = fc.length_bytes
        if fc.kind is ImageKind.REORDERED:
            assert fc.sector_index is not None
            zs = max(fc.sector_index * sector, inode.durable_size_bytes)
            ze = min((fc.sector_index + 1) * sector, length)
            key: tuple[Any, ...] = ("r", inode.ino, length, zs, ze)
            return self._tail(inode, data, key, zs, lambda b0: bytes(data[b0:zs]) + bytes(ze - zs)
                              + bytes(data[ze:length]), disk, model, choice)
        start = max(inode.durable_size_bytes, ((length - 1) // sector) * sector)
        if fc.kind is ImageKind.TORN_ZERO:
            junk = bytes(length - start)
        else:
            # The garbage SimDisk writes for this (inode, sector): derived, so deterministic.
            junk = garbage_sector(inode.ino, (length - 1) // sector, length - start)
        key = ("t", fc.kind.value, inode.ino, length, start)
        return self._tail(inode, data, key, start, lambda b0: bytes(data[b0:start]) + junk,
                          disk, model, choice)

    def _size_before_data(self, inode: InodeView, data: bytearray, length: int,
                          disk: SimDisk, model: PersistenceModel, choice: CrashChoice) -> Rec:
        """A size the journal took before the data (``faults.materialise``: the durable
        contents cut to `length`, or zero-extended to it). With the durable contents a prefix
        of the visible ones it is a prefix image, or that prefix with a zero tail, which the
        loader reads as it reads a torn sector of zeros; otherwise recovered in full."""
        dlen = inode.durable_size_bytes
        if not inode.durable_is_prefix:
            return self._by_bytes(disk, model, choice)
        if length <= dlen:
            return self._prefix(inode, data, length, disk, model, choice)
        key = ("z", inode.ino, length, dlen)
        return self._tail(inode, data, key, dlen,
                          lambda b0: bytes(data[b0:dlen]) + bytes(length - dlen),
                          disk, model, choice)

    def _prefix(self, inode: InodeView, data: bytearray, length: int, disk: SimDisk,
                model: PersistenceModel, choice: CrashChoice) -> Rec:
        lineage = self._lineage(inode.ino)
        bounds = lineage.bounds
        if bounds[-1] <= length:
            lineage.ensure(data, length)
        i = bisect_right(bounds, length) - 1
        b = bounds[i]
        if length == b:
            return self._at(lineage, i, False, disk, model, choice)
        if i + 1 < len(bounds) or not lineage.error:
            return self._at(lineage, i, True, disk, model, choice)
        return self._tail(inode, data, ("e", lineage.uid, length), length,
                          lambda b0: bytes(data[b0:length]), disk, model, choice)

    def _at(self, lineage: _Lineage, i: int, truncated: bool, disk: SimDisk,
            model: PersistenceModel, choice: CrashChoice) -> Rec:
        key = ("p", lineage.uid, i, truncated)
        rec = self.cache.get(key)
        if rec is not None:
            return rec
        entry = lineage.res[i]
        assert entry is not None
        ks, valid, multi_open = entry
        truncated = truncated or valid < lineage.bounds[i]
        if multi_open and D.MULTI_APPLIED_ON_LOAD in self.config.defects:
            rec = self._by_bytes(disk, model, choice)
        elif truncated and not self.config.aof_load_truncated:
            rec = Rec("Unexpected end of file", ())
        else:
            rec = Rec(None, ks)
        return self._remember(key, rec, disk, model, choice)

    def _tail(self, inode: InodeView, data: bytearray, key: tuple[Any, ...], start: int,
              tail_from: Any, disk: SimDisk, model: PersistenceModel,
              choice: CrashChoice) -> Rec:
        lineage = self._lineage(inode.ino)
        key = (*key, lineage.uid)
        rec = self.cache.get(key)
        if rec is not None:
            return rec
        if lineage.bounds[-1] <= start:
            lineage.ensure(data, start)
        i = bisect_right(lineage.bounds, start) - 1
        tail = tail_from(lineage.bounds[i])
        if self.annotations and tail[:1] == b"#":
            rec = self._by_bytes(disk, model, choice)  # an annotation line: the loader judges it
            self.cache[key] = rec
            return rec
        if tail[-1:] == b"\x00" and self._zero_tail_is_torn:
            zero = self._zero_tail(lineage, i, tail, disk, model, choice)
            if zero is not None:
                return self._remember(key, zero, disk, model, choice)
        try:
            parsed = parse_command(tail, 0, len(tail))
        except RespFormatError as exc:
            rec = Rec(f"Bad file format reading the append only file: {exc.reason}", ())
            return self._remember(key, rec, disk, model, choice)
        if parsed is None:
            rec = self._at(lineage, i, True, disk, model, choice)
            self.cache[key] = rec
            return rec
        # Zeros or garbage that parse as a command: apply them on top of boundary i.
        forked = lineage.fork(i, tail)
        if forked is not None:
            return self._remember(key, forked, disk, model, choice)
        rec = self._by_bytes(disk, model, choice)
        self.cache[key] = rec
        return rec

    def _zero_tail(self, lineage: _Lineage, i: int, tail: bytes, disk: SimDisk,
                   model: PersistenceModel, choice: CrashChoice) -> Rec | None:
        """`safe`'s loader on a tail (from boundary i) that ends in zero bytes: the start of a
        command followed by zeros is a torn tail; garbage before the zeros, or a command the
        zeros complete, is refused; None: not decided here (the normal path)."""
        zeros = len(tail.rstrip(b"\x00"))
        try:
            whole = parse_command(tail, 0, len(tail))
        except RespFormatError:
            try:
                head = parse_command(tail, 0, zeros)
            except RespFormatError as exc:
                return Rec(f"Bad file format reading the append only file: {exc.reason}", ())
            if head is None:
                return self._at(lineage, i, True, disk, model, choice)
            return self._by_bytes(disk, model, choice)  # commands before the zeros: exact
        if whole is None:
            return None  # incomplete: a torn tail either way
        if whole[1] > zeros:
            return Rec("Bad file format reading the append only file: the last command ends "
                       "in the zero bytes at the end of the file", ())
        return self._by_bytes(disk, model, choice)

    def _keyed(self, key: tuple[Any, ...], disk: SimDisk, model: PersistenceModel,
               choice: CrashChoice) -> Rec:
        rec = self.cache.get(key)
        if rec is None:
            rec = self._full(None)
            self.cache[key] = rec
        return rec

    def _remember(self, key: Hashable, rec: Rec, disk: SimDisk, model: PersistenceModel,
                  choice: CrashChoice) -> Rec:
        self.cache[key] = rec
        self.fast_keys += 1
        if self.audit_every and (self.fast_keys - 1) % self.audit_every == 0:  # 1, 1+n, ..
            try:
                rec = self._audit(rec, disk, model, choice)
            except FastPathDisagreement as exc:
                self.cache[key] = exc.full  # every later state of this content: the truth
                raise
            self.cache[key] = rec
        return rec

    def _audit(self, rec: Rec, disk: SimDisk, model: PersistenceModel,
               choice: CrashChoice) -> Rec:
        """Recover this content in full: the match must agree; its stability is kept."""
        self.audits += 1
        full = self._full(self.aof_bytes(disk, model, choice))
        if (full.unavailable is None) != (rec.unavailable is None) or full.ks != rec.ks:
            raise FastPathDisagreement(
                f"the fast path's recovery disagrees with a full one: fast={rec} full={full}",
                full)
        return Rec(rec.unavailable, rec.ks, full.stable_process, full.stable_power)

    def aof_bytes(self, disk: SimDisk, model: PersistenceModel,
                  choice: CrashChoice) -> bytes | None:
        """The AOF of this state's image (materialised: for full recoveries and reports)."""
        return disk.crash(model, choice if model is not PROCESS else None).get(self.name)

    def _by_bytes(self, disk: SimDisk, model: PersistenceModel, choice: CrashChoice) -> Rec:
        return self._full(self.aof_bytes(disk, model, choice))

    def _full(self, content: bytes | None) -> Rec:
        digest = "absent" if content is None else hashlib.sha256(content).hexdigest()
        rec = self.full_cache.get(digest)
        if rec is None:
            self.full_recoveries += 1
            rec = full_recover(self.config, content, self.index)[0]
            self.full_cache[digest] = rec
        return rec
