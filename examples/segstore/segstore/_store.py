"""SegStore: a string key-value store kept in log segments named by a MANIFEST.

Files in the store's directory:
- ``seg-NNNNNN.log``: length-prefixed, CRC-checked records (see _records). New records go to the
  last segment of the MANIFEST; it rolls over to a new segment once it would pass
  `segment_limit_bytes`.
- ``MANIFEST``: the live segments in replay order, rewritten via ``MANIFEST.tmp`` + fsync +
  rename + directory fsync.
- ``seg-NNNNNN.tmp``: a compaction in progress.

The store is driven as an event loop without threads: `submit` queues a command, `run_turn`
executes everything queued, writes its records and releases the replies (to `on_reply`, or to
`take_replies`). In ``always`` mode the records are fsynced before any reply of the turn is
released; in ``group`` mode replies go out at once and the log is synced on the first turn at
which its oldest unsynced record is `GROUP_SYNC_AFTER_MS` old.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from segstore._records import Op, Record, encode, scan

__all__ = [
    "BUGS",
    "FSYNC_MODES",
    "GROUP_SYNC_AFTER_MS",
    "MANIFEST",
    "Clock",
    "CorruptStore",
    "ErrorReply",
    "Reply",
    "SegStore",
    "StoreFailed",
]

MANIFEST = "MANIFEST"
_MANIFEST_TEMP = "MANIFEST.tmp"
_MANIFEST_HEADER = "segstore 1"
_MANIFEST_END = "end"
_SEGMENT_NAME = re.compile(r"seg-(\d{6})\.(log|tmp)")
FSYNC_MODES = ("always", "group")
GROUP_SYNC_AFTER_MS = 1000
_GROUP_SYNC_EVERY_TURNS = 10  # only the `group-ack-window` bug uses this

# The planted bugs, each off unless named in `bugs`.
BUGS = frozenset(
    {
        # always: each reply is released right after its record is written; the fsync follows
        # at the end of the turn.
        "reply-before-fsync",
        # load accepts a record whatever its CRC.
        "skip-crc-on-load",
        # load drops the first record of the segment that follows a compacted segment.
        "load-skips-after-snapshot",
        # group: syncs on every 10th turn that wrote something, however old the unsynced
        # records are (idle turns never sync).
        "group-ack-window",
        # compaction never fsyncs the compacted segment before it replaces the old ones.
        "compact-temp-not-fsynced",
        # SET ... PX stores the TTL, and load counts it from the load time.
        "ttl-relative-on-load",
    }
)


class Clock(Protocol):
    @property
    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ErrorReply:
    message: str


Reply = str | int | None | ErrorReply


class CorruptStore(Exception):
    """Load refuses the directory: a bad MANIFEST, a missing segment, damage before the tail."""


class StoreFailed(Exception):
    """An I/O call failed; the store accepts nothing more (restart it to recover)."""


def _segment_name(number: int, suffix: str = "log") -> str:
    return f"seg-{number:06d}.{suffix}"


class SegStore:
    def __init__(
        self,
        fs: Any,
        clock: Clock,
        *,
        directory: str = "data",
        fsync_mode: str = "always",
        segment_limit_bytes: int = 2048,
        compact_at_segments: int = 4,
        bugs: frozenset[str] = frozenset(),
        on_reply: Callable[[int, Reply], None] | None = None,
    ) -> None:
        if fsync_mode not in FSYNC_MODES:
            raise ValueError(f"fsync_mode must be one of {FSYNC_MODES}, not {fsync_mode!r}")
        unknown = set(bugs) - BUGS
        if unknown:
            raise ValueError(f"unknown bugs: {sorted(unknown)}")
        if segment_limit_bytes < 64 or compact_at_segments < 2:
            raise ValueError("segment_limit_bytes must be >= 64, compact_at_segments >= 2")
        self._fs = fs
        self._clock = clock
        self._directory = directory
        self.fsync_mode = fsync_mode
        self._segment_limit_bytes = segment_limit_bytes
        self._compact_at_segments = compact_at_segments
        self._bugs = frozenset(bugs)
        self._on_reply = on_reply
        self._replies: list[tuple[int, Reply]] = []
        self._queue: deque[tuple[int, tuple[str, ...]]] = deque()
        self._next_request_id = 1
        self._data: dict[str, tuple[str, int | None]] = {}
        self._segments: list[str] = []
        self._last_number = 0
        self._active_fd: int | None = None
        self._active_size = 0
        self._oldest_unsynced_ms: int | None = None
        self._writing_turns = 0
        self._opened = False
        self._failure: BaseException | None = None

    # -- paths and small I/O helpers -------------------------------------------------------

    def _path(self, name: str) -> str:
        return posixpath.join(self._directory, name)

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._fs.write(fd, bytes(view))
            if written <= 0:
                raise OSError(f"write returned {written}")
            view = view[written:]

    def _read_all(self, path: str) -> bytes:
        fd = self._fs.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := self._fs.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self._fs.close(fd)

    def _write_manifest(self) -> None:
        text = "\n".join([_MANIFEST_HEADER, *self._segments, _MANIFEST_END]) + "\n"
        temp = self._path(_MANIFEST_TEMP)
        fd = self._fs.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        try:
            self._write_all(fd, text.encode())
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)
        self._fs.rename(temp, self._path(MANIFEST))
        self._fs.fsync_dir(self._directory)

    def _read_manifest(self) -> list[str]:
        try:
            lines = self._read_all(self._path(MANIFEST)).decode().split("\n")
        except UnicodeDecodeError:
            raise CorruptStore("MANIFEST is not text") from None
        if lines[-1] == "":
            lines.pop()
        if len(lines) < 3 or lines[0] != _MANIFEST_HEADER or lines[-1] != _MANIFEST_END:
            raise CorruptStore(f"MANIFEST is malformed: {lines!r}")
        names = lines[1:-1]
        for name in names:
            match = _SEGMENT_NAME.fullmatch(name)
            if match is None or match.group(2) != "log":
                raise CorruptStore(f"MANIFEST names {name!r}, not a segment")
        return names

    # -- opening: create or load ------------------------------------------------------------

    def open(self) -> None:
        """Create the store, or load it from its directory (truncating a torn tail)."""
        if self._opened:
            raise RuntimeError("open() was already called")
        self._opened = True
        try:
            if self._directory and not self._fs.exists(self._directory):
                self._fs.mkdir(self._directory)
                self._fs.fsync_dir(posixpath.dirname(self._directory))
            if MANIFEST in self._fs.listdir(self._directory):
                self._load()
            else:
                self._create()
        except OSError as error:
            self._failure = error
            raise StoreFailed(f"open failed: {error}") from error

    def _remove_leftovers(self, keep: Sequence[str]) -> None:
        for name in self._fs.listdir(self._directory):
            if name == _MANIFEST_TEMP or (_SEGMENT_NAME.fullmatch(name) and name not in keep):
                self._fs.unlink(self._path(name))

    def _create(self) -> None:
        # Segments without a MANIFEST are from a crash during creation: nothing was acknowledged.
        self._remove_leftovers(keep=())
        self._last_number = 1
        self._segments = [_segment_name(1)]
        self._open_new_segment(self._segments[0])
        self._write_manifest()

    def _open_new_segment(self, name: str) -> None:
        fd = self._fs.open(self._path(name), os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        self._fs.fsync(fd)
        self._active_fd = fd
        self._active_size = 0

    def _load(self) -> None:
        self._segments = self._read_manifest()
        present = set(self._fs.listdir(self._directory))
        missing = [name for name in self._segments if name not in present]
        if missing:
            raise CorruptStore(f"MANIFEST names missing segments {missing}")
        self._last_number = max(int(name[4:10]) for name in self._segments)
        now_ms = self._clock.now_ms
        skip_first_record = False
        good_length = 0
        for index, name in enumerate(self._segments):
            is_last = index == len(self._segments) - 1
            records, good_length, problem = scan(
                self._read_all(self._path(name)), check_crc="skip-crc-on-load" not in self._bugs
            )
            if problem is not None and not is_last:
                raise CorruptStore(f"{name}: bad record at byte {good_length}: {problem}")
            if skip_first_record and records:
                records = records[1:]
            skip_first_record = False
            for record in records:
                if record.op is Op.SNAPSHOT:
                    # The marker says the segment is a compacted one; its SETs follow.
                    skip_first_record = "load-skips-after-snapshot" in self._bugs
                    continue
                self._apply(record, now_ms, loading=True)
        self._remove_leftovers(keep=self._segments)
        fd = self._fs.open(self._path(self._segments[-1]), os.O_WRONLY)
        self._active_fd = fd
        if self._fs.stat(self._path(self._segments[-1])).size_bytes != good_length:
            # A torn or damaged tail: cut it off so that new records follow good ones.
            self._fs.ftruncate(fd, good_length)
            self._fs.fsync(fd)
        self._fs.lseek(fd, good_length, os.SEEK_SET)
        self._active_size = good_length

    def _apply(self, record: Record, now_ms: int, *, loading: bool = False) -> None:
        if record.op is Op.SET:
            self._data[record.key] = (record.value, None)
        elif record.op is Op.SET_EXPIRING:
            expiry_ms = record.expiry_ms
            if loading and "ttl-relative-on-load" in self._bugs:
                expiry_ms = now_ms + record.expiry_ms
            self._data[record.key] = (record.value, expiry_ms)
        elif record.op is Op.DEL:
            self._data.pop(record.key, None)

    # -- appending, rolling over, compacting ------------------------------------------------

    def _append(self, record: Record) -> None:
        data = encode(record)
        if self._active_size > 0 and self._active_size + len(data) > self._segment_limit_bytes:
            self._roll_over()
        assert self._active_fd is not None
        self._write_all(self._active_fd, data)
        self._active_size += len(data)
        if self._oldest_unsynced_ms is None:
            self._oldest_unsynced_ms = self._clock.now_ms

    def _sync_active(self) -> None:
        if self._oldest_unsynced_ms is not None and self._active_fd is not None:
            self._fs.fdatasync(self._active_fd)
            self._oldest_unsynced_ms = None

    def _roll_over(self) -> None:
        self._sync_active()
        assert self._active_fd is not None
        self._fs.close(self._active_fd)
        self._active_fd = None
        self._last_number += 1
        name = _segment_name(self._last_number)
        self._open_new_segment(name)
        self._segments.append(name)
        self._write_manifest()
        if len(self._segments) >= self._compact_at_segments:
            self._compact()

    def _compact(self) -> None:
        """Replace every segment but the (empty) active one by one segment of the live keys."""
        now_ms = self._clock.now_ms
        old = self._segments[:-1]
        self._last_number += 1
        name = _segment_name(self._last_number)
        temp = self._path(_segment_name(self._last_number, "tmp"))
        live = [(k, v, e) for k, (v, e) in self._data.items() if e is None or e > now_ms]
        chunks = [encode(Record(Op.SNAPSHOT, count=len(live)))]
        for key, value, expiry_ms in live:
            if expiry_ms is None:
                chunks.append(encode(Record(Op.SET, key, value)))
            else:
                if "ttl-relative-on-load" in self._bugs:
                    expiry_ms -= now_ms
                chunks.append(encode(Record(Op.SET_EXPIRING, key, value, expiry_ms=expiry_ms)))
        fd = self._fs.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        try:
            self._write_all(fd, b"".join(chunks))
            if "compact-temp-not-fsynced" not in self._bugs:
                self._fs.fsync(fd)
        finally:
            self._fs.close(fd)
        self._fs.rename(temp, self._path(name))
        self._segments = [name, self._segments[-1]]
        self._write_manifest()
        for old_name in old:
            self._fs.unlink(self._path(old_name))

    # -- commands -----------------------------------------------------------------------------

    def _live(self, key: str) -> str | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expiry_ms = entry
        if expiry_ms is not None and expiry_ms <= self._clock.now_ms:
            del self._data[key]
            return None
        return value

    def _execute(self, command: tuple[str, ...]) -> Reply:
        if not command:
            return ErrorReply("ERR empty command")
        name, args = command[0].upper(), command[1:]
        if name == "GET":
            if len(args) != 1:
                return ErrorReply("ERR wrong number of arguments for 'GET'")
            return self._live(args[0])
        if name == "SET":
            return self._execute_set(args)
        if name == "DEL":
            if len(args) != 1:
                return ErrorReply("ERR DEL takes exactly one key")
            if self._live(args[0]) is None:
                return 0
            self._append(Record(Op.DEL, args[0]))
            del self._data[args[0]]
            return 1
        return ErrorReply(f"ERR unknown command '{command[0]}'")

    def _execute_set(self, args: tuple[str, ...]) -> Reply:
        if len(args) == 2:
            key, value = args
            self._append(Record(Op.SET, key, value))
            self._data[key] = (value, None)
            return "OK"
        if len(args) == 4 and args[2].upper() == "PX":
            key, value = args[0], args[1]
            try:
                ttl_ms = int(args[3])
            except ValueError:
                return ErrorReply("ERR PX needs an integer")
            if ttl_ms <= 0:
                return ErrorReply("ERR PX needs a positive number of milliseconds")
            expiry_ms = self._clock.now_ms + ttl_ms
            stored_ms = ttl_ms if "ttl-relative-on-load" in self._bugs else expiry_ms
            self._append(Record(Op.SET_EXPIRING, key, value, expiry_ms=stored_ms))
            self._data[key] = (value, expiry_ms)
            return "OK"
        return ErrorReply("ERR syntax: SET key value [PX milliseconds]")

    # -- the event loop -----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if not self._opened:
            raise RuntimeError("call open() first")
        if self._failure is not None:
            raise StoreFailed(f"the store failed earlier: {self._failure}")

    def submit(self, command: Sequence[str]) -> int:
        """Queue `command` (e.g. ``("SET", "k", "v", "PX", "500")``); returns its request id."""
        self._check_usable()
        request_id = self._next_request_id
        self._next_request_id += 1
        self._queue.append((request_id, tuple(command)))
        return request_id

    def _release(self, request_id: int, reply: Reply) -> None:
        if self._on_reply is not None:
            self._on_reply(request_id, reply)
        else:
            self._replies.append((request_id, reply))

    def run_turn(self) -> None:
        """One event-loop turn: execute queued commands, sync as the mode says, reply."""
        self._check_usable()
        held: list[tuple[int, Reply]] = []
        release_at_once = self.fsync_mode == "group" or "reply-before-fsync" in self._bugs
        try:
            if any(command and command[0].upper() in ("SET", "DEL") for _, command in self._queue):
                self._writing_turns += 1
            while self._queue:
                request_id, command = self._queue.popleft()
                reply = self._execute(command)
                if release_at_once:
                    self._release(request_id, reply)
                else:
                    held.append((request_id, reply))
            if self.fsync_mode == "always" or self._group_sync_due():
                self._sync_active()
        except OSError as error:
            self._failure = error
            raise StoreFailed(f"I/O failed: {error}") from error
        for request_id, reply in held:
            self._release(request_id, reply)

    def _group_sync_due(self) -> bool:
        if self._oldest_unsynced_ms is None:
            return False
        if "group-ack-window" in self._bugs:
            return self._writing_turns % _GROUP_SYNC_EVERY_TURNS == 0
        return self._clock.now_ms - self._oldest_unsynced_ms >= GROUP_SYNC_AFTER_MS

    def take_replies(self) -> list[tuple[int, Reply]]:
        """The replies released since the last call (when no `on_reply` was given)."""
        replies, self._replies = self._replies, []
        return replies

    # -- reading and closing ------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The live value of `key`, read directly (no event-loop turn)."""
        self._check_usable()
        return self._live(key)

    def items(self) -> dict[str, str]:
        """Every live key and its value."""
        self._check_usable()
        return {key: value for key in list(self._data) if (value := self._live(key)) is not None}

    def entries(self) -> dict[str, tuple[str, int | None]]:
        """Every live key with its value and absolute expiry time (None: no expiry)."""
        self._check_usable()
        return {key: self._data[key] for key in list(self._data) if self._live(key) is not None}

    @property
    def failed(self) -> bool:
        """True once an I/O call failed (the store accepts nothing more)."""
        return self._failure is not None

    def close(self) -> None:
        """Sync what is unsynced and close the active segment."""
        if self._active_fd is None:
            return
        try:
            if self._failure is None:
                self._sync_active()
        finally:
            self._fs.close(self._active_fd)
            self._active_fd = None
