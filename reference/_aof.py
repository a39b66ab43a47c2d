"""AOF loading (AofLoader) and the record encodings of the rewrite (rewriteAppendOnlyFileRio).

``AofLoader`` is incremental: ``feed`` bytes, it applies every complete command through a fake
client and keeps the exact offset of the last complete command. Large feeds are parsed with
``hiredis.Reader`` (fast, but it gives no offsets): the data is fed in pieces cut at likely
command boundaries (just before a ``*`` that follows a CRLF); when the reader's buffer is empty
after such a cut, that offset is a known command boundary (an *anchor*). An empty buffer after
any other piece proves nothing: hiredis may hold a half-built array with no bytes left. Exact
offsets (a torn tail, an open MULTI, a parse error) are then
recovered by the pure-Python parser from the nearest anchor, which is at most one piece away.
Small feeds use the pure-Python parser directly.

Both paths are as lax as Redis's own loader about the two bytes after a bulk (it skips them
unchecked). Known difference: hiredis also accepts simple strings (``+x``) as array elements,
which Redis's loader and the pure path reject as a bad format; only a hand-made file has them
(torn or garbage tails do not parse as complete arrays), and anything else unusual that hiredis
returns (integers, nil, nested arrays, errors, unknown commands) is re-judged by the pure path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from reference._commands import (
    COMMANDS,
    EXEC_COMMAND,
    MULTI_COMMAND,
    Client,
    Command,
    Executor,
    Proc,
)
from reference._keyspace import Hash, Keyspace, KeyspaceDump, Value, ZSet
from reference._resp import RespFormatError, encode_command, parse_command

_hiredis: Any
try:  # hiredis is a dependency; the pure-Python path covers its absence
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None

__all__ = [
    "HIREDIS_AVAILABLE",
    "REWRITE_ITEMS_PER_CMD",
    "AofLoader",
    "LoadError",
    "LoadResult",
    "encode_rewrite_key",
]

HIREDIS_AVAILABLE: Final = _hiredis is not None
REWRITE_ITEMS_PER_CMD: Final = 64  # AOF_REWRITE_ITEMS_PER_CMD
_PIECE_BYTES: Final = 64 * 1024
_HIREDIS_MIN_FEED_BYTES: Final = 1024
_DISCARD_COMMAND: Final = COMMANDS[b"discard"]


class LoadError(Exception):
    """The AOF cannot be loaded (the server refuses to start), at ``offset_bytes``."""

    def __init__(self, offset_bytes: int, reason: str) -> None:
        super().__init__(f"{reason} (offset {offset_bytes})")
        self.offset_bytes = offset_bytes
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Where a load ended: the clean prefix, and what was left after it."""

    valid_offset_bytes: int
    size_bytes: int
    commands_applied: int
    multi_open: bool

    @property
    def truncated(self) -> bool:
        """True if bytes after the clean prefix must be dropped (torn tail or open MULTI)."""
        return self.valid_offset_bytes < self.size_bytes


class AofLoader:
    """Incremental AOF replay into a fresh keyspace.

    ``rollback_multi``: an unfinished MULTI at the tail ends the valid prefix *before* the MULTI
    (Redis >= 4.0); False ends it after the last complete command (Redis 3.0).
    ``apply_unfinished_multi``: the defect that applies the queued commands of that MULTI.
    ``use_hiredis``: None picks hiredis when importable; False forces the pure-Python parser.
    """

    def __init__(
        self,
        *,
        now_ms: int = 0,
        rollback_multi: bool = True,
        apply_unfinished_multi: bool = False,
        use_hiredis: bool | None = None,
    ) -> None:
        if use_hiredis and _hiredis is None:
            raise ValueError("use_hiredis: hiredis is not importable")
        self.keyspace = Keyspace()
        self._ex = Executor(self.keyspace, None)
        self._ex.now_ms = now_ms
        self._client = Client(-1)
        self._rollback_multi = rollback_multi
        self._apply_unfinished_multi = apply_unfinished_multi
        self._use_hiredis = HIREDIS_AVAILABLE if use_hiredis is None else use_hiredis
        self._buf = bytearray()
        self._last_complete = 0  # offset just after the last complete command
        self._multi_start: int | None = None  # offset of the MULTI of the open transaction
        self.commands_read = 0
        self.commands_applied = 0
        self._error: LoadError | None = None

    # -- public API ------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return len(self._buf)

    @property
    def last_complete_offset_bytes(self) -> int:
        return self._last_complete

    @property
    def multi_open(self) -> bool:
        return self._client.multi is not None

    @property
    def valid_offset_bytes(self) -> int:
        """End of the clean prefix: after the last complete command, before an open MULTI."""
        if self._multi_start is not None and self._rollback_multi:
            return self._multi_start
        return self._last_complete

    def feed(self, data: bytes) -> None:
        """Append bytes; apply every command they complete. Raises LoadError on garbage."""
        if self._error is not None:
            raise self._error
        self._buf += data
        pending = len(self._buf) - self._last_complete
        try:
            if self._use_hiredis and pending >= _HIREDIS_MIN_FEED_BYTES:
                self._feed_hiredis()
            else:
                self._parse_pure(self._last_complete, 0)
        except LoadError as exc:
            self._error = exc
            raise

    def result(self) -> LoadResult:
        """Where the file ends up (does not change the loader; more may be fed afterwards)."""
        return LoadResult(
            valid_offset_bytes=self.valid_offset_bytes,
            size_bytes=len(self._buf),
            commands_applied=self.commands_applied,
            multi_open=self.multi_open,
        )

    def finish(self) -> LoadResult:
        """End of file: apply the unfinished MULTI if the defect says so; return the result."""
        client = self._client
        if client.multi is not None and self._apply_unfinished_multi:
            # Defect multi-applied-on-load: half a transaction is applied.
            queue = client.multi
            client.discard()
            for cmd, argv in queue:
                self._ex.run(cmd, client, argv)
                self.commands_applied += 1
            self._multi_start = None
        return self.result()

    def dump(self, now_ms: int) -> KeyspaceDump:
        return self.keyspace.dump(now_ms)

    # -- applying ------------------------------------------------------------------------------

    def _apply_slow(self, argv: list[bytes], start: int, cmd: Command | None) -> None:
        if cmd is None:
            name = argv[0].decode("latin-1") if argv and isinstance(argv[0], bytes) else "?"
            raise LoadError(start, f"Unknown command '{name}' reading the append only file")
        if not cmd.arity_ok(len(argv)):
            raise LoadError(start, f"wrong number of arguments for '{cmd.name}' command in the AOF")
        client = self._client
        if client.multi is not None:
            if cmd is EXEC_COMMAND:
                queued = len(client.multi)
                self._ex.run(cmd, client, argv)
                self.commands_applied += queued
                self._multi_start = None
            elif cmd is _DISCARD_COMMAND:
                client.discard()
                self._multi_start = None
            elif cmd is not MULTI_COMMAND:  # a nested MULTI is an error reply, ignored
                client.multi.append((cmd, argv))
        elif cmd is MULTI_COMMAND:
            client.multi = []
            self._multi_start = start
        elif cmd is not EXEC_COMMAND and cmd is not _DISCARD_COMMAND:
            self._ex.run(cmd, client, argv)
            self.commands_applied += 1
        self.commands_read += 1

    def _parse_pure(self, pos: int, skip: int) -> None:
        """Parse from a known command boundary; the first ``skip`` commands were applied already."""
        base = pos
        region = bytes(self._buf[pos:])  # only the unparsed tail: feeds stay linear overall
        end = len(region)
        get = COMMANDS.get
        local = 0
        while True:
            try:
                parsed = parse_command(region, local, end)
            except RespFormatError as exc:
                raise LoadError(
                    base + local,
                    "Bad file format reading the append only file: "
                    f"{exc.reason} (at byte {base + exc.offset_bytes})",
                ) from None
            if parsed is None:
                break
            argv, nxt = parsed
            if skip:
                skip -= 1
            else:
                self._apply_slow(argv, base + local, get(argv[0].lower()))
            local = nxt
            self._last_complete = base + local

    def _feed_hiredis(self) -> None:
        assert _hiredis is not None
        buf = self._buf
        end = len(buf)
        reader = _hiredis.Reader()
        gets = reader.gets
        anchor = self._last_complete
        pos = anchor
        get = COMMANDS.get
        fast = _FAST_TABLE
        client = self._client
        ex = self._ex
        data = bytes(buf[anchor:end])  # one copy; pieces are fed as (offset, length) into it
        base = anchor
        multi_ref: tuple[int, int] | None = None  # (anchor, index since anchor) of an open MULTI
        count = 0  # commands taken from hiredis in this call
        anchor_count = 0  # ``count`` at the anchor
        safe, safe_count = anchor, 0  # the last anchor known to be a command boundary
        fast_count = 0  # of which applied on the fast path (not yet in the counters)
        in_multi = client.multi is not None
        dbs = self.keyspace.dbs
        cur = dbs[client.db]
        set_proc = _SET_PROC
        join = b"".join
        try:
            while pos < end:
                stop = min(pos + _PIECE_BYTES, end)
                # Cut before the last likely command start of the piece (also of the last
                # piece, so the tail left for the exact pure-Python pass is tiny).
                cut = data.rfind(b"\r\n*", pos - base, stop - base)
                at_cut = cut > pos - base
                if at_cut:
                    stop = base + cut + 2
                reader.feed(data, pos - base, stop - pos)
                pos = stop
                while (argv := gets()) is not False:
                    try:
                        proc, low, high = fast[argv[0]]
                        join(argv)  # TypeError unless all bytes (hiredis nests arrays, ints)
                    except (KeyError, TypeError, IndexError):
                        proc = None
                    if proc is set_proc and len(argv) == 3 and not in_multi:
                        # SET key value, the bulk of every AOF: _set's plain path, inlined.
                        if cur.expires:
                            cur.expires.pop(argv[1], None)
                        cur.data[argv[1]] = argv[2]
                        fast_count += 1
                    elif proc is not None and not in_multi and low <= len(argv) <= high:
                        proc(ex, client, argv)
                        cur = dbs[client.db]
                        fast_count += 1
                    else:
                        # Anything unusual is judged by the pure-Python parser (exact offsets).
                        if type(argv) is not list or not argv:
                            raise _Fallback
                        try:
                            join(argv)
                        except TypeError:
                            raise _Fallback from None
                        cmd = get(argv[0].lower())
                        if cmd is None or not cmd.arity_ok(len(argv)):
                            raise _Fallback
                        was_open = in_multi
                        self._apply_slow(argv, -1, cmd)
                        cur = dbs[client.db]
                        in_multi = client.multi is not None
                        if in_multi and not was_open:
                            self._multi_start = None
                            multi_ref = (anchor, count - anchor_count)
                        elif not in_multi:
                            multi_ref = None
                    count += 1
                # An empty buffer is a command boundary only at a cut before a '*': elsewhere
                # hiredis may hold a half-built array with no bytes left in its buffer.
                # Even then the cut may sit before a nested array inside an unfinished command
                # (never valid in an AOF): such an anchor is confirmed only once a command
                # completes after it; the last confirmed one is kept in ``safe``.
                if at_cut and not reader.has_data():
                    if multi_ref is not None:
                        self._multi_start = self._offset_after(*multi_ref)
                        multi_ref = None
                    if count > anchor_count:
                        safe, safe_count = anchor, anchor_count
                    anchor = pos
                    anchor_count = count
        except (_Fallback, _hiredis.ProtocolError):
            pass
        self.commands_applied += fast_count
        self.commands_read += fast_count
        if multi_ref is not None:
            self._multi_start = self._offset_after(*multi_ref)
        if count == anchor_count:
            anchor, anchor_count = safe, safe_count  # the last anchor is unconfirmed
        # Exact offsets (and a verdict on any leftover bytes) from the last anchor on.
        self._last_complete = anchor
        self._parse_pure(anchor, count - anchor_count)

    def _offset_after(self, anchor: int, count: int) -> int:
        """Offset of the command ``count`` commands after the boundary ``anchor``."""
        pos = anchor
        for _ in range(count):
            parsed = parse_command(self._buf, pos)
            assert parsed is not None
            pos = parsed[1]
        return pos


class _Fallback(Exception):
    """hiredis returned something only the pure parser can judge."""


def _fast_table() -> dict[bytes, tuple[Proc, int, int]]:
    """Name (as written, upper or lower case) -> (proc, min argc, max argc) for plain commands."""
    table: dict[bytes, tuple[Proc, int, int]] = {}
    for name, cmd in COMMANDS.items():
        if not cmd.queueable or cmd is _DISCARD_COMMAND:
            continue  # MULTI/EXEC/DISCARD change the fake client's state: slow path
        bounds = (cmd.arity, cmd.arity) if cmd.arity > 0 else (-cmd.arity, 1 << 62)
        table[name] = table[name.upper()] = (cmd.proc, *bounds)
    return table


_FAST_TABLE: Final = _fast_table()
_SET_PROC: Final = COMMANDS[b"set"].proc


def _batches(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def encode_rewrite_key(
    key: bytes, value: Value, expire_at_ms: int | None, *, with_expiry: bool = True
) -> bytes:
    """The records rewriteAppendOnlyFileRio writes for one key (variadic, <= 64 items each)."""
    per = REWRITE_ITEMS_PER_CMD
    out: list[bytes] = []
    if isinstance(value, bytes):
        out.append(encode_command([b"SET", key, value]))
    elif isinstance(value, deque):
        for chunk in _batches(list(value), per):
            out.append(encode_command([b"RPUSH", key, *chunk]))
    elif isinstance(value, ZSet):
        flat: list[bytes] = []
        for member, score in value.items():
            flat.append(b"%.17g" % score)
            flat.append(member)
        for chunk in _batches(flat, 2 * per):
            out.append(encode_command([b"ZADD", key, *chunk]))
    elif isinstance(value, Hash):
        flat = []
        for field, val in value.items():
            flat.append(field)
            flat.append(val)
        for chunk in _batches(flat, 2 * per):
            out.append(encode_command([b"HMSET", key, *chunk]))
    else:
        for chunk in _batches(sorted(value), per):
            out.append(encode_command([b"SADD", key, *chunk]))
    if expire_at_ms is not None and with_expiry:
        out.append(encode_command([b"PEXPIREAT", key, b"%d" % expire_at_ms]))
    return b"".join(out)
