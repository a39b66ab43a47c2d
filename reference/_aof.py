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

All-zero tails (a deliberate difference from Redis): when the file ends in a run of zero bytes
and everything between the last complete command and that run is the start of a command (or
nothing), the tail is a *torn tail*, not garbage: the valid prefix ends at the last complete
command (before an open MULTI) and ``LoadResult.zero_tail_offset_bytes`` says where the zeros
begin. That is what a crash leaves when a file's length reached the disk but its data did not
(an extent allocated and never written, or a range dropped by a failed fsync under Linux
semantics): nothing in it was ever on the disk, so nothing in it can have been acknowledged as
durable. Zeros followed by anything non-zero are still garbage (refused), and so is a command
that was completed by zero bytes (its CRLF or its end inside the zero run): only data that
stops where the zeros start is a torn tail. Redis refuses such files ("Bad file format",
redis/redis#5177); ``zero_tail_truncated=False`` does the same (profile ``redis-3.0`` and the
defect ``zero-tail-refused``).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from reference import defects as D
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
_NONZERO: Final = re.compile(rb"[^\x00]")


class LoadError(Exception):
    """The AOF cannot be loaded (the server refuses to start), at ``offset_bytes``."""

    def __init__(self, offset_bytes: int, reason: str) -> None:
        super().__init__(f"{reason} (offset {offset_bytes})")
        self.offset_bytes = offset_bytes
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Where a load ended: the clean prefix, and what was left after it.

    ``zero_tail_offset_bytes``: where an all-zero tail begins (None when the file does not end in
    one that was taken for a torn tail).
    """

    valid_offset_bytes: int
    size_bytes: int
    commands_applied: int
    multi_open: bool
    zero_tail_offset_bytes: int | None = None

    @property
    def truncated(self) -> bool:
        """True if bytes after the clean prefix must be dropped (torn tail or open MULTI)."""
        return self.valid_offset_bytes < self.size_bytes


class AofLoader:
    """Incremental AOF replay into a fresh keyspace.

    ``rollback_multi``: an unfinished MULTI at the tail ends the valid prefix *before* the MULTI
    (Redis >= 4.0); False ends it after the last complete command (Redis 3.0).
    ``apply_unfinished_multi``: the defect that applies the queued commands of that MULTI.
    ``zero_tail_truncated``: an all-zero tail is a torn tail (see the module docstring); False
    refuses it as garbage, as Redis does.
    ``use_hiredis``: None picks hiredis when importable; False forces the pure-Python parser.
    """

    def __init__(
        self,
        *,
        now_ms: int = 0,
        rollback_multi: bool = True,
        apply_unfinished_multi: bool = False,
        zero_tail_truncated: bool = True,
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
        self._zero_tail_truncated = zero_tail_truncated
        self._zero_tail: int | None = None  # offset where an accepted all-zero tail begins
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
        if self._zero_tail is not None:
            if _NONZERO.search(data) is None:
                self._buf += data  # still an all-zero tail: nothing to parse
                return
            self._zero_tail = None  # zeros followed by data: judged as garbage below
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
            zero_tail_offset_bytes=self._zero_tail,
        )

    def finish(self) -> LoadResult:
        """End of file: apply the unfinished MULTI if the defect says so; return the result.

        Raises LoadError if the last command was completed by the file's zero tail.
        """
        buf = self._buf
        if self._zero_tail_truncated and self._zero_tail is None and buf[-1:] == b"\x00":
            zeros = _zero_run_start(buf)
            if zeros < self._last_complete:
                self._error = LoadError(
                    zeros,
                    "Bad file format reading the append only file: the last command ends in "
                    f"the zero bytes at the end of the file (from byte {zeros})",
                )
                raise self._error
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
                if self._zero_tail_truncated and self._is_zero_tail(base + local):
                    return
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

    def _is_zero_tail(self, start: int) -> bool:
        """Whether the bytes from ``start`` (a command boundary) are a command's beginning
        followed by zeros to the end; if so, remember where the zeros begin."""
        buf = self._buf
        zeros = _zero_run_start(buf)
        if zeros == len(buf) or zeros < start:
            # No zero run at the end, or it began inside a command already applied (one that
            # ended in zero bytes: never a record this server wrote).
            return False
        try:
            if parse_command(buf, start, zeros) is not None:
                return False  # cannot happen: the same bytes did not parse as a command
        except RespFormatError:
            return False  # garbage before the zeros
        self._zero_tail = zeros
        return True

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


def _zero_run_start(buf: bytearray) -> int:
    """Offset where the run of zero bytes at the end of ``buf`` begins (len(buf) if none)."""
    end = len(buf)
    while end:
        start = max(0, end - _PIECE_BYTES)
        kept = len(buf[start:end].rstrip(b"\x00"))  # copies one piece at a time, not the file
        if kept:
            return start + kept
        end = start
    return 0


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


def _batches(
    cmd: bytes, key: bytes, flat: list[bytes], width: int, defects: frozenset[str]
) -> list[bytes]:
    """One variadic record per batch of at most 64 items (an item is ``width`` arguments)."""
    size = REWRITE_ITEMS_PER_CMD * width
    step = size
    if D.REWRITE_BATCH_SKIPS_BOUNDARY_ITEM in defects:
        step = size + width  # the defect: the item after each full batch is skipped
    out = [encode_command([cmd, key, *flat[i : i + size]]) for i in range(0, len(flat), step)]
    if D.REWRITE_DROPS_AFTER_FIRST_BATCH in defects:
        del out[1:]  # the defect: the rest of the collection is never written
    if D.REWRITE_BATCH_COUNT_WRONG in defects and len(flat) > size and len(flat) % size:
        # The defect: the last batch's header claims a full batch (items not decremented).
        last = out[-1]
        out[-1] = b"*%d\r\n" % (2 + size) + last[last.index(b"\r\n") + 2 :]
    return out


def encode_rewrite_key(
    key: bytes,
    value: Value,
    expire_at_ms: int | None,
    *,
    with_expiry: bool = True,
    defects: frozenset[str] = frozenset(),
) -> bytes:
    """The records rewriteAppendOnlyFileRio writes for one key (variadic, <= 64 items each).

    ``defects``: the rewrite defects of ``reference.defects`` that act on the batching.
    """
    out: list[bytes] = []
    if isinstance(value, bytes):
        out.append(encode_command([b"SET", key, value]))
    elif isinstance(value, deque):
        out += _batches(b"RPUSH", key, list(value), 1, defects)
    elif isinstance(value, ZSet):
        flat: list[bytes] = []
        for member, score in value.items():
            flat.append(b"%.17g" % score)
            flat.append(member)
        out += _batches(b"ZADD", key, flat, 2, defects)
    elif isinstance(value, Hash):
        flat = []
        for field, val in value.items():
            flat.append(field)
            flat.append(val)
        out += _batches(b"HMSET", key, flat, 2, defects)
    else:
        out += _batches(b"SADD", key, sorted(value), 1, defects)
    if expire_at_ms is not None and with_expiry:
        out.append(encode_command([b"PEXPIREAT", key, b"%d" % expire_at_ms]))
    return b"".join(out)
