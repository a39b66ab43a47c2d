"""TinyStore: strings with expiries in 16 databases, persisted in an append-only log.

Persistence, in the order an event-loop iteration does it:

1. Commands queued since the last iteration run against memory. Each state change appends a
   record of its *effect* to the log buffer: ``SET key value [PXAT ms]``, ``DEL key...``,
   ``PEXPIREAT key ms``, ``PERSIST key``, ``FLUSHDB``, ``FLUSHALL`` (``SELECT db`` before a
   record of another database). INCR, APPEND, SETEX... are logged as the SET they amount to,
   so a replay never depends on the time it runs at. A transaction's records are wrapped in
   MULTI/EXEC.
2. The buffer is written to the log (short writes continue where they stopped; a failed write
   keeps the rest of the buffer for the next iteration).
3. ``appendfsync always``: fsync now. ``everysec``: fsync when the last one is 1 s old.
   ``no``: never. A failed fsync stops the store (after a failed fsync the kernel may have
   dropped the data while reporting later fsyncs as successful, so no later promise holds).
4. Replies are released in order, once the log holds everything their command did: written,
   and fsynced under ``always``. With ``on_release(ticket, reply)`` given, each reply is handed
   to it at that moment (a server's socket write); without it the reply waits for
   ``pop_reply``.

Loading: the log is replayed with expiries off (a key's TTL applies once loading is done); a
tail that ends inside a record or inside a MULTI without its EXEC, or in zeros (data that never
reached the disk while the file's size did), is a torn tail: cut off on disk (and fsynced) when
``load_truncated``, else the store refuses to start. Bytes that cannot be a record refuse the
start too (``CorruptLog``).

``bug="reply-before-fsync"`` plants a durability bug: under ``always`` replies are released
after the write and the fsync waits for the next iteration, so a power loss between the two
loses acknowledged writes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinyaof._log import CorruptLog, encode, parse

__all__ = ["BUGS", "COMMANDS", "CorruptLog", "StoreError", "TinyStore"]

DATABASES = 16
LOG_NAME = "tiny.aof"
EVERYSEC_MS = 1000
BUGS = ("reply-before-fsync",)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_READ_CHUNK_BYTES = 64 * 1024


class Files(Protocol):
    """The filesystem verbs the store uses (``faults.FileSystem`` and ``os`` provide them)."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...

    def read(self, fd: int, size: int) -> bytes: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def fsync(self, fd: int) -> None: ...

    def ftruncate(self, fd: int, size: int) -> None: ...

    def close(self, fd: int) -> None: ...

    def exists(self, path: str) -> bool: ...

    def fsync_dir(self, path: str) -> None: ...


class Clock(Protocol):
    @property
    def now_ms(self) -> int: ...


class StoreError(Exception):
    """An error reply; the message starts with its code (``ERR``, ``EXECABORT``)."""


Entry = tuple[bytes, int | None]  # value, absolute expiry in ms (None: none)


@dataclass
class _Client:
    db: int = 0
    multi: bool = False
    queued: list[list[bytes]] = field(default_factory=list)
    dirty: bool = False


@dataclass(frozen=True)
class _Spec:
    handler: Callable[[TinyStore, _Client, list[bytes]], Any]
    arity: int  # Redis convention: n exactly, -n at least n (the name counts)


def _int(raw: bytes) -> int:
    if not raw or len(raw) > 20 or not (raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())):
        raise StoreError("ERR value is not an integer or out of range")
    if raw.startswith((b"0", b"-0")) and raw != b"0":
        raise StoreError("ERR value is not an integer or out of range")
    value = int(raw)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise StoreError("ERR value is not an integer or out of range")
    return value


class TinyStore:
    """The store; see the module docstring. ``open()`` loads the log, then ``submit`` and
    ``run_iteration`` serve commands; ``released``/``pop_reply`` hand out replies."""

    def __init__(self, files: Files, clock: Clock, *, appendfsync: str = "everysec",
                 load_truncated: bool = True, bug: str | None = None,
                 path: str = LOG_NAME,
                 on_release: Callable[[int, Any], None] | None = None) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync: always, everysec or no, got {appendfsync!r}")
        if bug is not None and bug not in BUGS:
            raise ValueError(f"bug: one of {', '.join(BUGS)}, got {bug!r}")
        self.files = files
        self.clock = clock
        self.appendfsync = appendfsync
        self.load_truncated = load_truncated
        self.bug = bug
        self.path = path
        self.on_release = on_release
        self.stopped = False
        self._dbs: list[dict[bytes, Entry]] = [{} for _ in range(DATABASES)]
        self._clients: dict[int, _Client] = {}
        self._fd = -1
        self._next_ticket = 0
        self._queue: list[tuple[int, int, list[bytes]]] = []
        self._waiting: deque[tuple[int, int, Any]] = deque()  # ticket, log offset, reply
        self._ready: dict[int, Any] = {}
        self._buf = bytearray()
        self._group: list[tuple[int | None, list[bytes]]] | None = None
        self._log_db: int | None = None
        self._written = 0  # log bytes written this session
        self._synced = 0
        self._last_fsync_ms = 0
        self._fsync_owed = False  # the planted bug's postponed fsync

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        """Load the log (or create it); raises CorruptLog to refuse."""
        try:
            if self.files.exists(self.path):
                self._load()
            else:
                fd = self.files.open(self.path, os.O_WRONLY | os.O_CREAT)
                self.files.close(fd)
                self.files.fsync_dir("")  # the new log's directory entry survives power loss
            self._fd = self.files.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise CorruptLog(f"cannot open the log: {exc.strerror}") from None
        self._last_fsync_ms = self.clock.now_ms

    def _load(self) -> None:
        fd = self.files.open(self.path, os.O_RDONLY)
        chunks = []
        try:
            while chunk := self.files.read(fd, _READ_CHUNK_BYTES):
                chunks.append(chunk)
        finally:
            self.files.close(fd)
        data = b"".join(chunks)
        pos = good = 0
        group: list[list[bytes]] | None = None
        db = 0
        # Zeros at the end are data that never reached the disk (the file's size did: a failed
        # fsync, a torn sector): a torn tail like any other, unless a record follows them.
        meaningful = len(data.rstrip(b"\0"))
        while pos < len(data):
            try:
                record = parse(data, pos)
            except CorruptLog:
                if pos >= meaningful or parse(data[:meaningful], pos) is None:
                    break
                raise
            if record is None:
                break
            argv, pos = record
            name = argv[0].upper()
            if name == b"MULTI":
                group = []
            elif name == b"EXEC":
                for queued in group or ():
                    db = self._replay(queued, db)
                group = None
                good = pos
            elif group is not None:
                group.append(argv)
            else:
                db = self._replay(argv, db)
                good = pos
        if good < len(data):
            if not self.load_truncated:
                raise CorruptLog(f"the log ends inside a record at byte {good} of {len(data)}")
            fd = self.files.open(self.path, os.O_WRONLY)
            try:
                self.files.ftruncate(fd, good)
                self.files.fsync(fd)
            finally:
                self.files.close(fd)

    def _replay(self, argv: list[bytes], db: int) -> int:
        """Apply one log record as it was recorded (no expiry while loading)."""
        try:
            return self._apply_record(argv, db)
        except ValueError:  # a number that is not one
            raise CorruptLog(f"bad record {argv!r}") from None

    def _apply_record(self, argv: list[bytes], db: int) -> int:
        name, keys = argv[0].upper(), self._dbs[db]
        if name == b"SELECT" and len(argv) == 2 and argv[1].isdigit() and int(argv[1]) < 16:
            return int(argv[1])
        if name == b"SET" and (len(argv) == 3 or (len(argv) == 5 and argv[3] == b"PXAT")):
            keys[argv[1]] = (argv[2], int(argv[4]) if len(argv) == 5 else None)
        elif name == b"DEL" and len(argv) >= 2:
            for key in argv[1:]:
                keys.pop(key, None)
        elif name == b"PEXPIREAT" and len(argv) == 3:
            if argv[1] in keys:
                keys[argv[1]] = (keys[argv[1]][0], int(argv[2]))
        elif name == b"PERSIST" and len(argv) == 2:
            if argv[1] in keys:
                keys[argv[1]] = (keys[argv[1]][0], None)
        elif name == b"FLUSHDB" and len(argv) == 1:
            keys.clear()
        elif name == b"FLUSHALL" and len(argv) == 1:
            for each in self._dbs:
                each.clear()
        else:
            raise CorruptLog(f"unknown record {argv[0]!r} with {len(argv) - 1} argument(s)")
        return db

    # -- the event loop -----------------------------------------------------------------

    def submit(self, argv: Sequence[bytes], *, client: int = 0) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._queue.append((ticket, client, list(argv)))
        return ticket

    def run_iteration(self) -> None:
        if self.stopped:
            return
        if self._fsync_owed:
            self._fsync_owed = False
            if not self._fsync():
                return
        queue, self._queue = self._queue, []
        for ticket, client, argv in queue:
            reply = self._execute(self._clients.setdefault(client, _Client()), argv)
            self._waiting.append((ticket, self._written + len(self._buf), reply))
        if not self._flush():
            return
        durable = self._synced if self.appendfsync == "always" else self._written
        if self.bug == "reply-before-fsync":
            durable = self._written
        self._release_through(durable)

    def _release_through(self, offset: int) -> None:
        """Release, in order, the replies whose records end at or before log `offset`."""
        while self._waiting and self._waiting[0][1] <= offset:
            ticket, _, reply = self._waiting.popleft()
            if self.on_release is not None:
                self.on_release(ticket, reply)
            else:
                self._ready[ticket] = reply

    def _flush(self) -> bool:
        """Write the buffer and fsync as the policy says; False once the store stopped."""
        while self._buf:
            try:
                n = self.files.write(self._fd, bytes(self._buf))
            except OSError:
                break  # keep the rest; the next iteration tries again
            if n <= 0:
                break
            del self._buf[:n]
            self._written += n
        if self._synced == self._written:
            return True
        if self.appendfsync == "always":
            if self.bug == "reply-before-fsync":
                self._fsync_owed = True
                return True
            return self._fsync()
        if (self.appendfsync == "everysec"
                and self.clock.now_ms - self._last_fsync_ms >= EVERYSEC_MS):
            return self._fsync()
        return True

    def _fsync(self) -> bool:
        written = self._written
        try:
            self.files.fsync(self._fd)
        except OSError:
            self.stopped = True
            return False
        self._synced = written
        self._last_fsync_ms = self.clock.now_ms
        return True

    def released(self, ticket: int) -> bool:
        return ticket in self._ready

    def pop_reply(self, ticket: int) -> Any:
        return self._ready.pop(ticket)

    def snapshot(self) -> dict[int, dict[bytes, Entry]]:
        """Every live key: {db: {key: (value, expire_at_ms or None)}}."""
        now = self.clock.now_ms
        out: dict[int, dict[bytes, Entry]] = {}
        for db, keys in enumerate(self._dbs):
            live = {k: e for k, e in keys.items() if e[1] is None or e[1] > now}
            if live:
                out[db] = live
        return out

    # -- commands -----------------------------------------------------------------------

    def _execute(self, client: _Client, argv: list[bytes]) -> Any:
        name = argv[0].upper()
        if client.multi and name not in (b"EXEC", b"DISCARD", b"MULTI"):
            problem = self._check(argv)
            if problem is not None:
                client.dirty = True
                return problem
            client.queued.append(argv)
            return "QUEUED"
        problem = self._check(argv)
        if problem is not None:
            return problem
        try:
            return COMMANDS[name].handler(self, client, argv)
        except StoreError as exc:
            return exc

    @staticmethod
    def _check(argv: list[bytes]) -> StoreError | None:
        name = argv[0].upper()
        spec = COMMANDS.get(name)
        if spec is None:
            shown = " ".join(f"'{a.decode('latin-1')}'" for a in argv[1:4])
            return StoreError(f"ERR unknown command '{argv[0].decode('latin-1')}', "
                              f"with args beginning with: {shown}")
        if (spec.arity >= 0 and len(argv) != spec.arity) or len(argv) < -spec.arity:
            return StoreError(f"ERR wrong number of arguments for "
                              f"'{name.lower().decode()}' command")
        return None

    def _live(self, db: int, key: bytes) -> Entry | None:
        entry = self._dbs[db].get(key)
        if entry is None or (entry[1] is not None and entry[1] <= self.clock.now_ms):
            return None
        return entry

    def _log(self, db: int | None, argv: list[bytes]) -> None:
        if self._group is not None:
            self._group.append((db, argv))
            return
        self._append(db, argv)

    def _append(self, db: int | None, argv: list[bytes]) -> None:
        if db is not None and db != self._log_db:
            self._buf += encode([b"SELECT", b"%d" % db])
            self._log_db = db
        self._buf += encode(argv)

    def _put(self, db: int, key: bytes, value: bytes, expire_at_ms: int | None) -> None:
        self._dbs[db][key] = (value, expire_at_ms)
        extra = [] if expire_at_ms is None else [b"PXAT", b"%d" % expire_at_ms]
        self._log(db, [b"SET", key, value, *extra])

    # string writes

    def _cmd_set(self, c: _Client, a: list[bytes]) -> Any:
        nx = xx = False
        expire_at: int | None = None
        i = 3
        while i < len(a):
            opt = a[i].upper()
            if opt == b"NX" and not xx:
                nx = True
            elif opt == b"XX" and not nx:
                xx = True
            elif opt in (b"EX", b"PX") and expire_at is None and i + 1 < len(a):
                amount = _int(a[i + 1])
                if amount <= 0:
                    raise StoreError("ERR invalid expire time in 'set' command")
                expire_at = self.clock.now_ms + amount * (1000 if opt == b"EX" else 1)
                i += 1
            else:
                raise StoreError("ERR syntax error")
            i += 1
        exists = self._live(c.db, a[1]) is not None
        if (nx and exists) or (xx and not exists):
            return None
        self._put(c.db, a[1], a[2], expire_at)
        return "OK"

    def _setex(self, c: _Client, a: list[bytes], unit_ms: int) -> Any:
        amount = _int(a[2])
        if amount <= 0:
            name = "setex" if unit_ms == 1000 else "psetex"
            raise StoreError(f"ERR invalid expire time in '{name}' command")
        self._put(c.db, a[1], a[3], self.clock.now_ms + amount * unit_ms)
        return "OK"

    def _cmd_append(self, c: _Client, a: list[bytes]) -> Any:
        old = self._live(c.db, a[1])
        value = a[2] if old is None else old[0] + a[2]
        self._put(c.db, a[1], value, None if old is None else old[1])
        return len(value)

    def _add(self, c: _Client, key: bytes, delta: int) -> Any:
        old = self._live(c.db, key)
        current = 0 if old is None else _int(old[0])
        result = current + delta
        if not _INT64_MIN <= result <= _INT64_MAX:
            raise StoreError("ERR increment or decrement would overflow")
        self._put(c.db, key, b"%d" % result, None if old is None else old[1])
        return result

    def _cmd_decrby(self, c: _Client, a: list[bytes]) -> Any:
        delta = _int(a[2])
        if delta == _INT64_MIN:
            raise StoreError("ERR decrement would overflow")
        return self._add(c, a[1], -delta)

    # keys and expiry

    def _cmd_del(self, c: _Client, a: list[bytes]) -> Any:
        gone = []
        for key in a[1:]:
            if self._live(c.db, key) is not None:
                del self._dbs[c.db][key]
                gone.append(key)
        if gone:
            self._log(c.db, [b"DEL", *gone])
        return len(gone)

    def _expire(self, c: _Client, a: list[bytes], unit_ms: int, relative: bool) -> Any:
        when = _int(a[2]) * unit_ms + (self.clock.now_ms if relative else 0)
        if not _INT64_MIN <= when <= _INT64_MAX:
            raise StoreError(f"ERR invalid expire time in '{a[0].lower().decode()}' command")
        old = self._live(c.db, a[1])
        if old is None:
            return 0
        if when <= self.clock.now_ms:
            del self._dbs[c.db][a[1]]
            self._log(c.db, [b"DEL", a[1]])
        else:
            self._dbs[c.db][a[1]] = (old[0], when)
            self._log(c.db, [b"PEXPIREAT", a[1], b"%d" % when])
        return 1

    def _cmd_persist(self, c: _Client, a: list[bytes]) -> Any:
        old = self._live(c.db, a[1])
        if old is None or old[1] is None:
            return 0
        self._dbs[c.db][a[1]] = (old[0], None)
        self._log(c.db, [b"PERSIST", a[1]])
        return 1

    def _cmd_flushdb(self, c: _Client, a: list[bytes]) -> Any:
        self._check_flush(a)
        self._dbs[c.db].clear()
        self._log(c.db, [b"FLUSHDB"])
        return "OK"

    def _cmd_flushall(self, c: _Client, a: list[bytes]) -> Any:
        self._check_flush(a)
        for keys in self._dbs:
            keys.clear()
        self._log(None, [b"FLUSHALL"])
        return "OK"

    @staticmethod
    def _check_flush(a: list[bytes]) -> None:
        if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"ASYNC", b"SYNC")):
            raise StoreError("ERR syntax error")

    # reads

    def _cmd_get(self, c: _Client, a: list[bytes]) -> Any:
        entry = self._live(c.db, a[1])
        return None if entry is None else entry[0]

    def _cmd_exists(self, c: _Client, a: list[bytes]) -> Any:
        return sum(1 for key in a[1:] if self._live(c.db, key) is not None)

    def _ttl(self, c: _Client, a: list[bytes], unit_ms: int) -> Any:
        entry = self._live(c.db, a[1])
        if entry is None:
            return -2
        if entry[1] is None:
            return -1
        left = entry[1] - self.clock.now_ms
        return left if unit_ms == 1 else (left + 500) // 1000

    # connection and transactions

    def _cmd_select(self, c: _Client, a: list[bytes]) -> Any:
        db = _int(a[1])
        if not 0 <= db < DATABASES:
            raise StoreError("ERR DB index is out of range")
        c.db = db
        return "OK"

    def _cmd_multi(self, c: _Client, a: list[bytes]) -> Any:
        if c.multi:
            raise StoreError("ERR MULTI calls can not be nested")
        c.multi, c.queued, c.dirty = True, [], False
        return "OK"

    def _cmd_discard(self, c: _Client, a: list[bytes]) -> Any:
        if not c.multi:
            raise StoreError("ERR DISCARD without MULTI")
        c.multi, c.queued, c.dirty = False, [], False
        return "OK"

    def _cmd_exec(self, c: _Client, a: list[bytes]) -> Any:
        if not c.multi:
            raise StoreError("ERR EXEC without MULTI")
        queued, dirty = c.queued, c.dirty
        c.multi, c.queued, c.dirty = False, [], False
        if dirty:
            raise StoreError("EXECABORT Transaction discarded because of previous errors.")
        self._group = []
        try:
            replies = [self._execute(c, argv) for argv in queued]
        finally:
            group, self._group = self._group, None
        if len(group) == 1:
            self._append(*group[0])
        elif group:
            self._append(None, [b"MULTI"])
            for db, argv in group:
                self._append(db, argv)
            self._append(None, [b"EXEC"])
        return replies

    def _cmd_ping(self, c: _Client, a: list[bytes]) -> Any:
        return "PONG" if len(a) == 1 else a[1]


def _h(method: Callable[..., Any], **kwargs: Any) -> Callable[[TinyStore, _Client, list[bytes]],
                                                               Any]:
    return lambda store, client, argv: method(store, client, argv, **kwargs)


COMMANDS: dict[bytes, _Spec] = {
    b"SET": _Spec(TinyStore._cmd_set, -3),
    b"SETEX": _Spec(_h(TinyStore._setex, unit_ms=1000), 4),
    b"PSETEX": _Spec(_h(TinyStore._setex, unit_ms=1), 4),
    b"APPEND": _Spec(TinyStore._cmd_append, 3),
    b"INCR": _Spec(lambda s, c, a: s._add(c, a[1], 1), 2),
    b"DECR": _Spec(lambda s, c, a: s._add(c, a[1], -1), 2),
    b"INCRBY": _Spec(lambda s, c, a: s._add(c, a[1], _int(a[2])), 3),
    b"DECRBY": _Spec(TinyStore._cmd_decrby, 3),
    b"DEL": _Spec(TinyStore._cmd_del, -2),
    b"EXPIRE": _Spec(_h(TinyStore._expire, unit_ms=1000, relative=True), 3),
    b"PEXPIRE": _Spec(_h(TinyStore._expire, unit_ms=1, relative=True), 3),
    b"EXPIREAT": _Spec(_h(TinyStore._expire, unit_ms=1000, relative=False), 3),
    b"PEXPIREAT": _Spec(_h(TinyStore._expire, unit_ms=1, relative=False), 3),
    b"PERSIST": _Spec(TinyStore._cmd_persist, 2),
    b"FLUSHDB": _Spec(TinyStore._cmd_flushdb, -1),
    b"FLUSHALL": _Spec(TinyStore._cmd_flushall, -1),
    b"GET": _Spec(TinyStore._cmd_get, 2),
    b"EXISTS": _Spec(TinyStore._cmd_exists, -2),
    b"PTTL": _Spec(_h(TinyStore._ttl, unit_ms=1), 2),
    b"TTL": _Spec(_h(TinyStore._ttl, unit_ms=1000), 2),
    b"SELECT": _Spec(TinyStore._cmd_select, 2),
    b"MULTI": _Spec(TinyStore._cmd_multi, 1),
    b"EXEC": _Spec(TinyStore._cmd_exec, 1),
    b"DISCARD": _Spec(TinyStore._cmd_discard, 1),
    b"PING": _Spec(TinyStore._cmd_ping, -1),
}
