"""KvLog: a string key-value store over one checksummed append-only log.

One keyspace, three commands (``SET key value``, ``GET key``, ``DEL key``), each change one
record in ``data.log`` (``kvlog._records``). An event loop in the Redis style: ``submit``
queues a command, ``run_iteration`` executes what is queued, appends the records, syncs as the
fsync mode says and only then releases the replies.

fsync modes: ``always`` (fsync before every reply) and ``batch`` (replies after the write; the
log is fsynced once its oldest unsynced record is ``batch_ms`` old, at the next iteration).
Compaction: once the log reaches ``compact_min_bytes`` (and twice its size after the last
compaction), the live keys are written to ``compact.tmp`` as a snapshot (between begin and
end records), fsynced, renamed over ``data.log`` and the directory fsynced. Loading stops at
the first record that is cut short or fails its checksum and truncates the log there, except
inside the snapshot: its keys are in no history order, so half a snapshot is not a state the
store ever had, and it refuses to start (``CorruptLog``). A leftover ``compact.tmp`` is
removed. Any failed write or fsync stops the store (no reply is released after it).

``BUGS`` are planted durability bugs, off unless named: ``skip-checksum`` (load without
checking checksums), ``batch-size-only`` (batch mode syncs only when 16 records are
pending, never by age), ``compact-no-fsync`` (compaction renames ``compact.tmp`` without
fsyncing it first).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kvlog._records import (
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    BadRecord,
    delete_record,
    parse,
    set_record,
)

__all__ = ["BUGS", "COMMANDS", "LOG", "TEMP", "CorruptLog", "KvLog", "StoreError"]

LOG, TEMP = "data.log", "compact.tmp"
COMMANDS = frozenset({"SET", "GET", "DEL"})
BUGS = frozenset({"skip-checksum", "batch-size-only", "compact-no-fsync"})
_BATCH_RECORDS = 16
_READ_CHUNK_BYTES = 1 << 16


class Files(Protocol):
    """The filesystem verbs the store uses (os-like, paths relative to its directory)."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...
    def read(self, fd: int, size: int) -> bytes: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def fsync(self, fd: int) -> None: ...
    def ftruncate(self, fd: int, size: int) -> None: ...
    def close(self, fd: int) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...
    def fsync_dir(self, path: str) -> None: ...


class Clock(Protocol):
    @property
    def now_ms(self) -> int: ...


class StoreError(Exception):
    """An error reply (its message starts with ``ERR``)."""


class CorruptLog(Exception):
    """The log cannot be loaded (a damaged snapshot): the store refuses to start."""


@dataclass
class _Command:
    argv: tuple[bytes, ...]
    reply: Any = None
    done: bool = False


class KvLog:
    def __init__(self, files: Files, clock: Clock, *, fsync: str = "always",
                 batch_ms: int = 1000, compact_min_bytes: int = 1024,
                 bug: str | None = None) -> None:
        if fsync not in ("always", "batch"):
            raise ValueError(f"fsync must be 'always' or 'batch', got {fsync!r}")
        if bug is not None and bug not in BUGS:
            raise ValueError(f"unknown bug {bug!r} (known: {', '.join(sorted(BUGS))})")
        self.files, self.clock, self.fsync_mode = files, clock, fsync
        self.batch_ms, self.compact_min_bytes, self.bug = batch_ms, compact_min_bytes, bug
        self.data: dict[bytes, bytes] = {}
        self.stopped = False
        self._fd = -1
        self._size = 0
        self._compact_at = compact_min_bytes
        self._unsynced_records = 0
        self._unsynced_since_ms: int | None = None
        self._queue: list[int] = []
        self._commands: dict[int, _Command] = {}
        self._next_ticket = 0

    # -- loading ---------------------------------------------------------------------------

    def open(self) -> None:
        """Load the log (truncating it at a cut-short or damaged record), or create it."""
        files = self.files
        if files.exists(TEMP):
            files.unlink(TEMP)  # an unfinished compaction: data.log is still whole
        if files.exists(LOG):
            self._load()
        else:
            files.close(files.open(LOG, os.O_WRONLY | os.O_CREAT))
            files.fsync_dir("")
        self._fd = files.open(LOG, os.O_WRONLY | os.O_APPEND)
        self._compact_at = max(self.compact_min_bytes, 2 * self._size)

    def _load(self) -> None:
        fd = self.files.open(LOG, os.O_RDWR)
        try:
            chunks = []
            while chunk := self.files.read(fd, _READ_CHUNK_BYTES):
                chunks.append(chunk)
            data = b"".join(chunks)
            pos = 0
            in_snapshot = False
            while pos < len(data):
                try:
                    got = parse(data, pos, verify=self.bug != "skip-checksum")
                except BadRecord as exc:
                    if in_snapshot:
                        raise CorruptLog(f"damaged snapshot: {exc}") from None
                    break  # damage: keep what came before it
                if got is None:
                    if in_snapshot:
                        raise CorruptLog(f"snapshot cut short at byte {pos}")
                    break  # a torn tail
                (op, key, value), pos = got
                if op in (b"B", b"E"):
                    in_snapshot = op == b"B"
                elif op == b"S":
                    assert value is not None
                    self.data[key] = value
                else:
                    self.data.pop(key, None)
            if pos < len(data):
                # Appends must follow the last good record, or the next load stops early.
                self.files.ftruncate(fd, pos)
                self.files.fsync(fd)
            self._size = pos
        finally:
            self.files.close(fd)

    # -- the event loop ----------------------------------------------------------------------

    def submit(self, argv: Sequence[bytes]) -> int:
        """Queue a command; its reply is released by a later ``run_iteration``."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self._commands[ticket] = _Command(tuple(bytes(a) for a in argv))
        self._queue.append(ticket)
        return ticket

    def released(self, ticket: int) -> bool:
        return self._commands[ticket].done

    def pop_reply(self, ticket: int) -> Any:
        return self._commands.pop(ticket).reply

    def run_iteration(self) -> None:
        if self.stopped:
            return
        try:
            self._sync_if_due()
            queued, self._queue = self._queue, []
            records = [self._execute(self._commands[t]) for t in queued]
            self._append([r for r in records if r])
            if self.fsync_mode == "always" and self._unsynced_records:
                self._sync()
            if self._size >= self._compact_at:
                self._compact()
        except OSError:
            self.stopped = True  # nothing more is released: the disk failed us
            return
        for t in queued:
            self._commands[t].done = True

    def _execute(self, cmd: _Command) -> bytes:
        name = cmd.argv[0].upper().decode("latin-1") if cmd.argv else ""
        args = cmd.argv[1:]
        if name not in COMMANDS:
            cmd.reply = StoreError(f"ERR unknown command '{name}'")
            return b""
        if len(args) != (2 if name == "SET" else 1):
            cmd.reply = StoreError(f"ERR wrong number of arguments for '{name}'")
            return b""
        key = args[0]
        if name == "GET":
            cmd.reply = self.data.get(key)
            return b""
        if name == "SET":
            self.data[key] = args[1]
            cmd.reply = "OK"
            return set_record(key, args[1])
        existed = self.data.pop(key, None) is not None
        cmd.reply = int(existed)
        return delete_record(key) if existed else b""

    def _append(self, records: list[bytes]) -> None:
        if not records:
            return
        data = b"".join(records)
        view = memoryview(data)
        while view:
            view = view[self.files.write(self._fd, bytes(view)):]
        self._size += len(data)
        self._unsynced_records += len(records)
        if self._unsynced_since_ms is None:
            self._unsynced_since_ms = self.clock.now_ms

    def _sync_if_due(self) -> None:
        if self.fsync_mode != "batch" or not self._unsynced_records:
            return
        if self.bug == "batch-size-only":
            due = self._unsynced_records >= _BATCH_RECORDS
        else:
            assert self._unsynced_since_ms is not None
            due = self.clock.now_ms - self._unsynced_since_ms >= self.batch_ms
        if due:
            self._sync()

    def _sync(self) -> None:
        self.files.fsync(self._fd)
        self._unsynced_records = 0
        self._unsynced_since_ms = None

    def _compact(self) -> None:
        files = self.files
        fd = files.open(TEMP, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            data = b"".join([SNAPSHOT_BEGIN, *(set_record(k, v) for k, v in self.data.items()),
                             SNAPSHOT_END])
            view = memoryview(data)
            while view:
                view = view[files.write(fd, bytes(view)):]
            if self.bug != "compact-no-fsync":
                files.fsync(fd)
        finally:
            files.close(fd)
        files.rename(TEMP, LOG)
        files.fsync_dir("")
        files.close(self._fd)
        self._fd = files.open(LOG, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)
        self._unsynced_records = 0
        self._unsynced_since_ms = None
        self._compact_at = max(self.compact_min_bytes, 2 * self._size)
