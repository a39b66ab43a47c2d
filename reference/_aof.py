"""AOF loading (AofLoader) and the record encodings of the rewrite (rewriteAppendOnlyFileRio).

``AofLoader`` is incremental: ``feed`` bytes, it applies every complete command through a fake
client and keeps the exact offset of the last complete command. Large feeds are parsed with
``hiredis.Reader`` (fast, but it gives no offsets): the data is fed in pieces cut at likely
command boundaries (just before a ``*`` that follows a CRLF); when the reader's buffer is empty
after such a cut, that offset is a known command boundary (an *anchor*). An empty buffer after
any other piece proves nothing: hiredis may hold a half-built array with no bytes left. Exact
offsets (a torn tail, an open MULTI, a parse error) are then
recovered by the pure-Python parser from the nearest anchor, which is at most one piece away.
Small feeds use the pure-Python parser directly. Anything hiredis refuses or returns in an
unusual shape (an annotation, a header it finds malformed) is parsed by the pure-Python parser
up to the end of that piece, after which hiredis takes over again.

What a loader accepts, by profile (``parse_aof_command`` is the per-command parser of both):

Both profiles read a ``*``/``$`` line up to its ``\\n`` and take its number as ``atoi``/
``strtol`` do, like every real loader (Redis reads the line with ``fgets`` and the number with
``atoi``/``strtol``): leading blanks and a sign are accepted, whatever follows the digits is
ignored (``*3\\n``, ``*+3``, ``* 3``, ``*3x\\r\\n`` all read as 3). ``safe`` also skips ``#``
annotation lines (7.0+), truncates a torn annotation, loads an RDB preamble, truncates an
all-zero tail, and cuts a torn MULTI before the MULTI (Valkey 9.1; Redis <= 7.0 cuts after it
and refuses or truncates again on restart). ``redis-3.0`` refuses annotations and preambles.
Both refuse negative or empty lengths, wrong arity and unknown commands, where real servers
crash or drop the command.

In detail, and why:

- A header line must end within 32 bytes (real loaders read up to 127 bytes, 1023 in 7.0): no
  server writes a longer one, and a longer window would let a zero-filled or garbage sector
  spanning a header read as a torn tail instead of garbage.
- ``#`` lines (``#TS:<unix-time>`` with 7.0's ``aof-timestamp-enabled``) are skipped wherever a
  command may start, up to 1023 bytes with their ``\\n`` (7.0's ``fgets`` buffer; every real
  loader refuses a longer one). A torn annotation (cut off by the end of the file) is a torn
  tail in ``safe``; 7.0 and Valkey load it as it is, and the next command appended to the file
  is glued onto it, so their next start refuses the file. The truncation offset after trailing
  annotations is the end of the last complete command, as in 7.0.
- An RDB preamble (``REDIS`` or ``VALKEY`` magic at offset 0, Redis 4.0+ with
  ``aof-use-rdb-preamble``) is checked with ``reference._rdb.check_rdb`` (which finds where the
  commands start and verifies the CRC-64), then its keys are decoded into the keyspace: strings
  (raw, integer-encoded, LZF), lists (linked, ziplist, quicklist 1 and 2), sets (linked,
  intset, listpack), sorted sets (string or binary scores, ziplist, listpack) and hashes
  (linked, zipmap, ziplist, listpack), with their expiries. Empty collections are skipped, as
  Redis skips them. A type the reference has no value for (streams, modules, hashes with field
  expiry), function libraries and module data are refused with an error naming them: loading
  the rest would silently drop them. A damaged or torn preamble is refused whatever
  ``aof-load-truncated`` says (truncating inside it would throw the dataset away), as 7.0 does.
- ``*0``, ``*-1`` and ``*`` without digits are refused, as Redis refuses them (``atoi`` < 1).
  Refused although real servers go on: ``$-1`` and other negative lengths (Redis allocates
  them and crashes), ``$`` without digits (Redis reads an empty argument), wrong arity (Redis
  6.x/7.0 crash or run the command with arguments missing; Valkey refuses) and unknown
  commands. A huge length is a torn tail here (the data ends before it does); Redis tries to
  allocate it.

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

Zero holes (the same switch): a run of zero bytes that starts where a command may start and
ends at a page boundary (a multiple of 4096 bytes from the file's start) with data after it is
a *hole*: the valid prefix ends where the zeros begin and everything after them is dropped
(``LoadResult.zero_hole_end_offset_bytes`` says where the data after the hole began). Linux
leaves exactly that when an fsync fails: the dirty pages it could not write are marked clean
and never written, while pages written after them reach the disk by writeback or a later sync
(an everysec server writes on while a stalled fsync has not yet returned its error). Nothing
after such a hole was acknowledged as durable (the fsync that would have covered it failed),
so it is a torn tail that happens to have bytes after it. Zeros that start inside a command,
or end off a page boundary, are still garbage.
"""

from __future__ import annotations

import math
import re
import struct
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
from reference._keyspace import DB_COUNT, Hash, Keyspace, KeyspaceDump, Value, ZSet
from reference._rdb import (
    RdbCheckResult,
    _Corrupt,
    _Truncated,
    _type_name,
    _Walker,
    check_rdb,
)
from reference._resp import RespFormatError, encode_command

_hiredis: Any
try:  # hiredis is a dependency; the pure-Python path covers its absence
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None

__all__ = [
    "ANNOTATION_MAX_BYTES",
    "HEADER_LINE_MAX_BYTES",
    "HIREDIS_AVAILABLE",
    "REWRITE_ITEMS_PER_CMD",
    "AofLoader",
    "LoadError",
    "LoadResult",
    "encode_rewrite_key",
    "parse_aof_command",
]

HIREDIS_AVAILABLE: Final = _hiredis is not None
REWRITE_ITEMS_PER_CMD: Final = 64  # AOF_REWRITE_ITEMS_PER_CMD
# A '*' or '$' line with its '\n' (no server writes a longer one; see the module docstring).
HEADER_LINE_MAX_BYTES: Final = 32
# An annotation line with its '\n': Redis 7.0 reads it with fgets into a 1024-byte buffer.
ANNOTATION_MAX_BYTES: Final = 1023
_PIECE_BYTES: Final = 64 * 1024
_HIREDIS_MIN_FEED_BYTES: Final = 1024
_DISCARD_COMMAND: Final = COMMANDS[b"discard"]
_NONZERO: Final = re.compile(rb"[^\x00]")
# Linux writes a file back in pages: a hole a failed fsync left ends at a multiple of this.
_PAGE_BYTES: Final = 4096
# strtol/atoi: C blanks, an optional sign, then digits (what follows them is ignored).
_STRTOL: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_STAR, _DOLLAR, _HASH = 42, 36, 35
_RDB_MAGICS: Final = (b"REDIS", b"VALKEY")
_BAD_FORMAT: Final = "Bad file format reading the append only file"
_BAD_PREAMBLE: Final = "Error reading the RDB preamble of the AOF file"


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
    one that was taken for a torn tail), or a zero hole (see the module docstring);
    ``zero_hole_end_offset_bytes``: where the data after such a hole begins (None for a tail).
    ``rdb_preamble_bytes``: the size of the RDB preamble the file starts with (0 without one);
    ``rdb_keys``: the keys loaded from it.
    """

    valid_offset_bytes: int
    size_bytes: int
    commands_applied: int
    multi_open: bool
    zero_tail_offset_bytes: int | None = None
    zero_hole_end_offset_bytes: int | None = None
    rdb_preamble_bytes: int = 0
    rdb_keys: int = 0

    @property
    def truncated(self) -> bool:
        """True if bytes after the clean prefix must be dropped (torn tail or open MULTI)."""
        return self.valid_offset_bytes < self.size_bytes


# -- the per-command parser ----------------------------------------------------------------------


def _header_number(
    data: bytes | bytearray, pos: int, end: int, prefix: int
) -> tuple[int, int] | None:
    """Read a ``<prefix><number>...\\n`` line at ``pos`` as Redis's loader does (the number as
    strtol reads it); (number, offset after the line), or None if the line is incomplete."""
    if pos >= end:
        return None
    if data[pos] != prefix:
        raise RespFormatError(pos, f"expected '{chr(prefix)}', got {bytes(data[pos:pos + 1])!r}")
    limit = pos + HEADER_LINE_MAX_BYTES
    nl = data.find(b"\n", pos, limit if limit < end else end)
    if nl < 0:
        if end - pos >= HEADER_LINE_MAX_BYTES:
            raise RespFormatError(
                pos, f"invalid '{chr(prefix)}' line (no line end in {HEADER_LINE_MAX_BYTES} bytes)"
            )
        return None
    digits = data[pos + 1 : nl - 1]
    if digits.isdigit() and data[nl - 1] == 13:  # what every server writes: <digits>\r\n
        return int(digits), nl + 1
    match = _STRTOL.match(data, pos + 1, nl)
    if match is None:
        raise RespFormatError(
            pos, f"invalid '{chr(prefix)}' length {bytes(data[pos + 1 : nl + 1])!r}"
        )
    return int(match.group(1)), nl + 1


def parse_aof_command(
    data: bytes | bytearray, pos: int, end: int | None = None
) -> tuple[list[bytes], int] | None:
    """Parse one command at ``pos`` as the AOF loader does; (argv, next_pos), or None if ``data``
    ends inside it. Raises RespFormatError on garbage.

    Like Redis's loader (``fgets`` + ``atoi``/``strtol``, then the bulk and two bytes skipped
    unchecked): a ``*``/``$`` line ends at its ``\\n``, its number may have leading blanks and a
    sign and anything after the digits. A count < 1 is refused, as Redis refuses it; unlike
    Redis, so are negative and digit-less bulk lengths (Redis allocates the first and crashes,
    and reads the second as an empty argument).
    """
    if end is None:
        end = len(data)
    head = _header_number(data, pos, end, _STAR)
    if head is None:
        return None
    argc, p = head
    if argc < 1:
        raise RespFormatError(pos, f"invalid array length {argc}")
    argv: list[bytes] = []
    append = argv.append
    as_bytes = type(data) is bytes
    find = data.find
    for _ in range(argc):
        # The usual "$<digits>\r\n" inline (one call less per argument), else the lax reader.
        limit = p + HEADER_LINE_MAX_BYTES
        nl = find(b"\n", p, limit if limit < end else end)
        digits = data[p + 1 : nl - 1]
        if nl > 0 and data[p] == 36 and digits.isdigit() and data[nl - 1] == 13:
            size = int(digits)
            p = nl + 1
        else:
            bulk = _header_number(data, p, end, _DOLLAR)
            if bulk is None:
                return None
            size, p = bulk
            if size < 0:
                raise RespFormatError(p, f"invalid bulk length {size}")
        stop = p + size
        if stop + 2 > end:
            return None
        append(data[p:stop] if as_bytes else bytes(data[p:stop]))  # type: ignore[arg-type]
        p = stop + 2
    return argv, p


def _annotation_end(data: bytes | bytearray, pos: int, end: int) -> int | None:
    """The offset after the ``#`` line at ``pos``, or None if the data ends inside it."""
    nl = data.find(b"\n", pos, min(end, pos + ANNOTATION_MAX_BYTES))
    if nl < 0:
        if end - pos >= ANNOTATION_MAX_BYTES:
            raise RespFormatError(
                pos, f"annotation line longer than {ANNOTATION_MAX_BYTES} bytes"
            )
        return None
    return nl + 1


# -- the loader ----------------------------------------------------------------------------------


class AofLoader:
    """Incremental AOF replay into a fresh keyspace.

    ``rollback_multi``: an unfinished MULTI at the tail ends the valid prefix *before* the MULTI
    (Redis >= 4.0); False ends it after the last complete command (Redis 3.0).
    ``apply_unfinished_multi``: the defect that applies the queued commands of that MULTI.
    ``zero_tail_truncated``: an all-zero tail is a torn tail (see the module docstring); False
    refuses it as garbage, as Redis does.
    ``annotations``: skip ``#`` lines where a command may start (Redis 7.0+); False refuses them
    as garbage (Redis <= 6.2). ``rdb_preamble``: load an RDB the file starts with (Redis 4.0+);
    False refuses it as garbage (Redis 3.0). None (both): on when ``rollback_multi`` is, so that
    a loader built for a profile (``safe``: all on; ``redis-3.0``: all off) gets them all.
    ``use_hiredis``: None picks hiredis when importable; False forces the pure-Python parser.
    """

    def __init__(
        self,
        *,
        now_ms: int = 0,
        rollback_multi: bool = True,
        apply_unfinished_multi: bool = False,
        zero_tail_truncated: bool = True,
        annotations: bool | None = None,
        rdb_preamble: bool | None = None,
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
        self._annotations = rollback_multi if annotations is None else annotations
        self._zero_tail: int | None = None  # offset where an accepted all-zero tail begins
        # Whether that run starts at a command boundary (so data after it may make it a hole).
        self._zero_tail_at_boundary = False
        self._zero_hole_end: int | None = None  # where the data after an accepted hole begins
        self._use_hiredis = HIREDIS_AVAILABLE if use_hiredis is None else use_hiredis
        self._buf = bytearray()
        self._last_complete = 0  # offset just after the last complete command
        # Offset just after the last complete command or annotation: the file is whole when it
        # ends there (annotations after the last command are kept), but a torn tail after
        # annotations is cut at ``_last_complete``, as Redis 7.0 cuts it.
        self._clean_end = 0
        self._multi_start: int | None = None  # offset of the MULTI of the open transaction
        # Whether the start of the file may still turn out to be an RDB preamble.
        self._preamble_pending = rollback_multi if rdb_preamble is None else rdb_preamble
        self._preamble_tried_bytes = 0  # buffer size at the last attempt on a torn preamble
        self._rdb_bytes = 0
        self.rdb_keys = 0
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
        if self._clean_end == len(self._buf):
            return self._clean_end  # only complete annotations after the last command
        return self._last_complete

    def feed(self, data: bytes) -> None:
        """Append bytes; apply every command they complete. Raises LoadError on garbage."""
        if self._error is not None:
            raise self._error
        if self._zero_hole_end is not None:
            self._buf += data  # after a hole: dropped unread
            return
        if self._zero_tail is not None:
            first = _NONZERO.search(data)
            if first is None:
                self._buf += data  # still an all-zero tail: nothing to parse
                return
            if self._zero_tail_at_boundary and (len(self._buf) + first.start()) % _PAGE_BYTES == 0:
                self._zero_hole_end = len(self._buf) + first.start()
                self._buf += data
                return
            self._zero_tail = None  # zeros followed by data: judged as garbage below
        self._buf += data
        try:
            if self._preamble_pending and not self._take_preamble(final=False):
                return  # an RDB preamble that is not complete yet
            self._parse_new()
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
            zero_hole_end_offset_bytes=self._zero_hole_end,
            rdb_preamble_bytes=self._rdb_bytes,
            rdb_keys=self.rdb_keys,
        )

    def finish(self) -> LoadResult:
        """End of file: apply the unfinished MULTI if the defect says so; return the result.

        Raises LoadError if the file starts with a torn RDB preamble, or if the last command was
        completed by the file's zero tail.
        """
        if self._preamble_pending:
            try:
                self._take_preamble(final=True)
                self._parse_new()
            except LoadError as exc:
                self._error = exc
                raise
        buf = self._buf
        if self._zero_tail_truncated and self._zero_tail is None and buf[-1:] == b"\x00":
            zeros = _zero_run_start(buf)
            # (A run that begins inside an RDB preamble is its checksum, stored as 0.)
            if self._rdb_bytes <= zeros < self._last_complete:
                self._error = LoadError(
                    zeros,
                    f"{_BAD_FORMAT}: the last command ends in "
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

    # -- the RDB preamble ------------------------------------------------------------------------

    def _take_preamble(self, *, final: bool) -> bool:
        """Decide whether the file starts with an RDB preamble and load it when it is complete.
        True when decided (no preamble, or it is loaded: the commands start at
        ``_last_complete``); False while a preamble may still be arriving. ``final``: no more
        data will come (a torn preamble is refused)."""
        buf = self._buf
        if not final and any(m.startswith(buf[: len(m)]) and len(buf) < len(m)
                             for m in _RDB_MAGICS):
            return False  # too short to tell
        if not any(buf.startswith(m) for m in _RDB_MAGICS):
            self._preamble_pending = False
            return True
        size = len(buf)
        if not final and size < 2 * self._preamble_tried_bytes:
            return False  # walk a growing preamble again only once it has doubled
        self._preamble_tried_bytes = size
        check = check_rdb(buf)
        if not check.valid:
            if check.truncated and not final:
                return False
            raise LoadError(0, f"{_BAD_PREAMBLE}: {check.reason}")
        assert check.end_offset_bytes is not None
        self.rdb_keys = _load_rdb(buf, check, self.keyspace)
        self._preamble_pending = False
        self._rdb_bytes = self._last_complete = self._clean_end = check.end_offset_bytes
        return True

    # -- applying ------------------------------------------------------------------------------

    def _parse_new(self) -> None:
        """Parse and apply what was fed after the last complete command."""
        pending = len(self._buf) - self._last_complete
        if self._use_hiredis and pending >= _HIREDIS_MIN_FEED_BYTES:
            self._feed_hiredis()
        else:
            self._parse_pure(self._last_complete, 0)

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

    def _parse_pure(self, pos: int, skip: int, stop: int | None = None) -> bool:
        """Parse from a known command boundary; the first ``skip`` commands were applied already.
        With ``stop``, return True at the first command boundary at or after it (the caller
        resumes there); False once the data ends (or ends inside a command)."""
        base = pos
        region = bytes(self._buf[pos:])  # only the unparsed tail: feeds stay linear overall
        end = len(region)
        limit = end + 1 if stop is None else stop - base
        get = COMMANDS.get
        apply = self._apply_slow
        parse = parse_aof_command
        local = 0
        done = clean = -1  # after the last complete command / command or annotation
        try:
            while True:
                try:
                    parsed = parse(region, local, end)
                except RespFormatError as exc:
                    error = exc
                    if self._annotations and region[local] == _HASH:  # rare: off the fast path
                        try:
                            after = _annotation_end(region, local, end)
                        except RespFormatError as overlong:
                            error = overlong
                        else:
                            if after is None:
                                return False  # a torn annotation: a torn tail
                            local = clean = after
                            continue
                    if self._zero_tail_truncated and self._is_zero_tail(base + local):
                        return False
                    raise LoadError(
                        base + local,
                        f"{_BAD_FORMAT}: {error.reason} (at byte {base + error.offset_bytes})",
                    ) from None
                if parsed is None:
                    return False
                argv, nxt = parsed
                if skip:
                    skip -= 1
                else:
                    apply(argv, base + local, get(argv[0].lower()))
                local = done = clean = nxt
                if local >= limit and local < end and not skip:
                    return True
        finally:
            if done >= 0:
                self._last_complete = base + done
            if clean >= 0:
                self._clean_end = base + clean

    def _is_zero_tail(self, start: int) -> bool:
        """Whether the bytes from ``start`` (a command boundary) are a command's (or an
        annotation's) beginning followed by zeros to the end; if so, remember where the zeros
        begin."""
        buf = self._buf
        if buf[start] == 0:
            after = _NONZERO.search(buf, start)
            if after is not None:
                if after.start() % _PAGE_BYTES:
                    return False  # zeros in the middle that a dropped page cannot explain
                self._zero_tail, self._zero_tail_at_boundary = start, True
                self._zero_hole_end = after.start()
                return True
        zeros = _zero_run_start(buf)
        if zeros < start and start == self._rdb_bytes:
            zeros = start  # the run began in the preamble's checksum (0: checksums disabled)
        if zeros == len(buf) or zeros < start:
            # No zero run at the end, or it began inside a command already applied (one that
            # ended in zero bytes: never a record this server wrote).
            return False
        try:
            if self._annotations and buf[start : start + 1] == b"#":
                if _annotation_end(buf, start, zeros) is not None:
                    return False  # cannot happen: the annotation was not complete
            elif parse_aof_command(buf, start, zeros) is not None:
                return False  # cannot happen: the same bytes did not parse as a command
        except RespFormatError:
            return False  # garbage before the zeros
        self._zero_tail = zeros
        self._zero_tail_at_boundary = zeros == start
        return True

    def _feed_hiredis(self) -> None:
        """hiredis from the last complete command; where it gives up, the pure parser up to the
        end of that piece, then hiredis again from the command boundary reached."""
        while True:
            anchor, skip, failed_at = self._run_hiredis()
            # Exact offsets (and a verdict on any leftover bytes) from the last anchor on.
            self._last_complete = self._clean_end = anchor
            if failed_at is None or len(self._buf) - failed_at < _HIREDIS_MIN_FEED_BYTES:
                self._parse_pure(anchor, skip)
                return
            if not self._parse_pure(anchor, skip, failed_at):
                return

    def _run_hiredis(self) -> tuple[int, int, int | None]:
        """Apply commands with hiredis from ``_last_complete``: (the last confirmed command
        boundary, how many commands after it were applied, where hiredis gave up or None)."""
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
        failed_at: int | None = None
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
            failed_at = pos
        self.commands_applied += fast_count
        self.commands_read += fast_count
        if multi_ref is not None:
            self._multi_start = self._offset_after(*multi_ref)
        if count == anchor_count:
            anchor, anchor_count = safe, safe_count  # the last anchor is unconfirmed
        return anchor, count - anchor_count, failed_at

    def _offset_after(self, anchor: int, count: int) -> int:
        """Offset of the command ``count`` commands after the boundary ``anchor``."""
        pos = anchor
        for _ in range(count):
            parsed = parse_aof_command(self._buf, pos)
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


# -- RDB preamble: decoding values ---------------------------------------------------------------

_OP_SLOT_INFO, _OP_FUNCTION2, _OP_FUNCTION_PRE_GA, _OP_MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
_OP_IDLE, _OP_FREQ, _OP_AUX, _OP_RESIZEDB = 0xF8, 0xF9, 0xFA, 0xFB
_OP_EXPIRETIME_MS, _OP_EXPIRETIME, _OP_SELECTDB, _OP_EOF = 0xFC, 0xFD, 0xFE, 0xFF
_T_STRING, _T_LIST, _T_SET, _T_ZSET, _T_HASH, _T_ZSET_2 = 0, 1, 2, 3, 4, 5
_T_HASH_ZIPMAP, _T_LIST_ZIPLIST, _T_SET_INTSET, _T_ZSET_ZIPLIST = 9, 10, 11, 12
_T_HASH_ZIPLIST, _T_LIST_QUICKLIST, _T_HASH_LISTPACK, _T_ZSET_LISTPACK = 13, 14, 16, 17
_T_LIST_QUICKLIST_2, _T_SET_LISTPACK = 18, 20
_QUICKLIST_PLAIN, _QUICKLIST_PACKED = 1, 2
_BIG_ENDIAN_U32: Final = struct.Struct(">I")
_LITTLE_U32: Final = struct.Struct("<I")
_LITTLE_DOUBLE: Final = struct.Struct("<d")


class _Undecodable(Exception):
    """A record the reference has no value for (``what`` names it)."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset = offset
        self.what = what


def _lzf_decompress(src: bytes, original_bytes: int) -> bytes:
    """liblzf's ``lzf_decompress``: literal runs (ctrl < 32) and back references."""
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            run = ctrl + 1
            if i + run > n:
                raise ValueError("a literal run goes past the compressed data")
            out += src[i : i + run]
            i += run
            continue
        length = ctrl >> 5
        if length == 7:
            if i >= n:
                raise ValueError("a back reference is cut off")
            length += src[i]
            i += 1
        if i >= n:
            raise ValueError("a back reference is cut off")
        ref = len(out) - ((ctrl & 0x1F) << 8) - src[i] - 1
        i += 1
        length += 2
        if ref < 0:
            raise ValueError("a back reference points before the start")
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # an overlapping copy repeats the bytes it is writing
            for k in range(length):
                out.append(out[ref + k])
    if len(out) != original_bytes:
        raise ValueError(f"{len(out)} bytes decompressed, {original_bytes} expected")
    return bytes(out)


def _ziplist(blob: bytes) -> list[bytes | int]:
    """The entries of a ziplist (Redis 2.6-6.2 small lists, hashes, sorted sets)."""
    size = len(blob)
    if size < 11 or _LITTLE_U32.unpack_from(blob)[0] != size or blob[-1] != 0xFF:
        raise ValueError("a ziplist whose header does not match its size")
    out: list[bytes | int] = []
    pos = 10
    while blob[pos] != 0xFF:
        pos += 1 if blob[pos] < 254 else 5  # the previous entry's length
        enc = blob[pos]
        kind = enc >> 6
        if kind < 3:
            if kind == 0:
                length, pos = enc & 0x3F, pos + 1
            elif kind == 1:
                length, pos = ((enc & 0x3F) << 8) | blob[pos + 1], pos + 2
            elif enc == 0x80:
                length, pos = _BIG_ENDIAN_U32.unpack_from(blob, pos + 1)[0], pos + 5
            else:
                raise ValueError(f"unknown ziplist string encoding 0x{enc:02x}")
            if pos + length >= size:
                raise ValueError("a ziplist entry goes past the end")
            out.append(blob[pos : pos + length])
            pos += length
            continue
        width = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}.get(enc)
        if width is not None:
            if pos + 1 + width >= size:
                raise ValueError("a ziplist entry goes past the end")
            out.append(int.from_bytes(blob[pos + 1 : pos + 1 + width], "little", signed=True))
            pos += 1 + width
        elif 0xF1 <= enc <= 0xFD:
            out.append((enc & 0x0F) - 1)  # a 4-bit immediate, 0 to 12
            pos += 1
        else:
            raise ValueError(f"unknown ziplist encoding 0x{enc:02x}")
        if pos >= size:
            raise ValueError("a ziplist without its end byte")
    return out


def _listpack(blob: bytes) -> list[bytes | int]:
    """The entries of a listpack (Redis 7.0+ small collections, quicklist 2 nodes)."""
    size = len(blob)
    if size < 7 or _LITTLE_U32.unpack_from(blob)[0] != size or blob[-1] != 0xFF:
        raise ValueError("a listpack whose header does not match its size")
    out: list[bytes | int] = []
    pos = 6
    while (b := blob[pos]) != 0xFF:
        if b < 0x80:  # 7-bit unsigned integer
            out.append(b)
            entry = 1
        elif b < 0xC0:  # 6-bit string length
            length = b & 0x3F
            out.append(blob[pos + 1 : pos + 1 + length])
            entry = 1 + length
        elif b < 0xE0:  # 13-bit signed integer
            value = ((b & 0x1F) << 8) | blob[pos + 1]
            out.append(value - (1 << 13) if value >= 1 << 12 else value)
            entry = 2
        elif b < 0xF0:  # 12-bit string length
            length = ((b & 0x0F) << 8) | blob[pos + 1]
            out.append(blob[pos + 2 : pos + 2 + length])
            entry = 2 + length
        elif b == 0xF0:  # 32-bit string length
            length = _LITTLE_U32.unpack_from(blob, pos + 1)[0]
            out.append(blob[pos + 5 : pos + 5 + length])
            entry = 5 + length
        elif 0xF1 <= b <= 0xF4:  # 16, 24, 32, 64-bit signed integers
            width = (2, 3, 4, 8)[b - 0xF1]
            out.append(int.from_bytes(blob[pos + 1 : pos + 1 + width], "little", signed=True))
            entry = 1 + width
        else:
            raise ValueError(f"unknown listpack encoding 0x{b:02x}")
        # Each entry is followed by its own length, 7 bits per byte.
        backlen = 1 if entry <= 127 else 2 if entry < 16383 else 3 if entry < 2097151 else (
            4 if entry < 268435455 else 5)
        pos += entry + backlen
        if pos >= size:
            raise ValueError("a listpack entry goes past the end")
    return out


def _intset(blob: bytes) -> list[int]:
    """The members of an intset: width (2, 4, 8), count, then little-endian integers."""
    if len(blob) < 8:
        raise ValueError("an intset shorter than its header")
    width, count = struct.unpack_from("<II", blob)
    if width not in (2, 4, 8) or len(blob) != 8 + width * count:
        raise ValueError("an intset whose header does not match its size")
    return [int.from_bytes(blob[i : i + width], "little", signed=True)
            for i in range(8, len(blob), width)]


def _zipmap(blob: bytes) -> Hash:
    """A zipmap (Redis < 2.6 small hashes): lengths of 1 byte, or 254 and 4 bytes."""
    out = Hash()
    pos = 1  # the entry count (not trusted: it saturates at 254)

    def length() -> int:
        nonlocal pos
        first = blob[pos]
        if first < 254:
            pos += 1
            return first
        if first != 254:
            raise ValueError("a zipmap entry where its end was expected")
        pos += 5
        return int(_LITTLE_U32.unpack_from(blob, pos - 4)[0])

    while blob[pos] != 0xFF:
        key_bytes = length()
        key = blob[pos : pos + key_bytes]
        pos += key_bytes
        value_bytes = length()
        free = blob[pos]
        value = blob[pos + 1 : pos + 1 + value_bytes]
        pos += 1 + value_bytes + free
        if pos >= len(blob):
            raise ValueError("a zipmap entry goes past the end")
        out[key] = value
    return out


def _as_bytes(entry: bytes | int) -> bytes:
    return entry if isinstance(entry, bytes) else b"%d" % entry


def _score(entry: bytes | int) -> float:
    """A score stored in a ziplist or listpack (an integer, or text as ``d2string`` wrote)."""
    if isinstance(entry, int):
        return float(entry)
    value = float(entry)  # ValueError for text that is not a number
    if math.isnan(value):
        raise ValueError("a NaN score")
    return value


def _pairs(entries: list[bytes | int]) -> list[tuple[bytes | int, bytes | int]]:
    if len(entries) % 2:
        raise ValueError("an odd number of entries where pairs were expected")
    return list(zip(entries[::2], entries[1::2], strict=True))


class _RdbDecoder(_Walker):
    """``reference._rdb``'s walker, decoding the values it walks over."""

    __slots__ = ()

    def rstring(self, what: str) -> bytes:
        start = self.pos
        value, encoded = self.length(what)
        if not encoded:
            self.skip(value, what)
            return bytes(self.data[self.pos - value : self.pos])
        if value in (0, 1, 2):  # 8, 16, 32 bit signed integer
            width = 1 << value
            self.skip(width, what)
            number = int.from_bytes(self.data[self.pos - width : self.pos], "little", signed=True)
            return b"%d" % number
        if value == 3:  # LZF: compressed length, uncompressed length, compressed bytes
            compressed = self.plain_length(what)
            original = self.plain_length(what)
            self.skip(compressed, what)
            try:
                return _lzf_decompress(bytes(self.data[self.pos - compressed : self.pos]),
                                       original)
            except ValueError as exc:
                raise _Corrupt(start, f"bad LZF string in {what}: {exc}") from None
        raise _Corrupt(start, f"unknown string encoding {value} in {what}")

    def score(self, what: str) -> float:
        """A score of RDB type 3: a length byte (253-255 are NaN/+inf/-inf) and ASCII."""
        start = self.pos
        size = self.u8(what)
        if size == 254:
            return math.inf
        if size == 255:
            return -math.inf
        if size < 253:
            self.skip(size, what)
            try:
                value = float(bytes(self.data[self.pos - size : self.pos]))
            except ValueError:
                value = math.nan
            if not math.isnan(value):
                return value
        raise _Corrupt(start, f"a NaN or unreadable score in {what}")

    def decode_value(self, rdb_type: int, type_offset: int) -> Value | None:
        """Decode one value of ``rdb_type`` (None: an empty collection, which Redis skips)."""
        what = f"a value of type {rdb_type} ({_type_name(rdb_type, valkey=self.valkey)})"
        try:
            return self._value(rdb_type, type_offset, what)
        except (ValueError, IndexError, struct.error) as exc:
            raise _Corrupt(type_offset, f"{what} is damaged: {exc}") from None

    def _value(self, rdb_type: int, type_offset: int, what: str) -> Value | None:
        out: Value
        if rdb_type == _T_STRING:
            return self.rstring(what)
        if rdb_type == _T_LIST:
            out = deque(self.rstring(what) for _ in range(self.plain_length(what)))
        elif rdb_type == _T_SET:
            out = {self.rstring(what) for _ in range(self.plain_length(what))}
        elif rdb_type in (_T_ZSET, _T_ZSET_2):
            zset = out = ZSet()
            for _ in range(self.plain_length(what)):
                member = self.rstring(what)
                if rdb_type == _T_ZSET:
                    zset[member] = self.score(what)
                else:
                    self.skip(8, what)
                    score = _LITTLE_DOUBLE.unpack_from(self.data, self.pos - 8)[0]
                    if math.isnan(score):
                        raise _Corrupt(self.pos - 8, f"a NaN score in {what}")
                    zset[member] = score
        elif rdb_type == _T_HASH:
            out = Hash()
            for _ in range(self.plain_length(what)):
                field = self.rstring(what)
                out[field] = self.rstring(what)
        elif rdb_type == _T_HASH_ZIPMAP:
            out = _zipmap(self.rstring(what))
        elif rdb_type == _T_LIST_ZIPLIST:
            out = deque(_as_bytes(e) for e in _ziplist(self.rstring(what)))
        elif rdb_type == _T_SET_INTSET:
            out = {b"%d" % m for m in _intset(self.rstring(what))}
        elif rdb_type == _T_SET_LISTPACK:
            out = {_as_bytes(e) for e in _listpack(self.rstring(what))}
        elif rdb_type in (_T_ZSET_ZIPLIST, _T_ZSET_LISTPACK):
            blob = self.rstring(what)
            entries = _ziplist(blob) if rdb_type == _T_ZSET_ZIPLIST else _listpack(blob)
            out = ZSet((_as_bytes(m), _score(s)) for m, s in _pairs(entries))
        elif rdb_type in (_T_HASH_ZIPLIST, _T_HASH_LISTPACK):
            blob = self.rstring(what)
            entries = _ziplist(blob) if rdb_type == _T_HASH_ZIPLIST else _listpack(blob)
            out = Hash((_as_bytes(f), _as_bytes(v)) for f, v in _pairs(entries))
        elif rdb_type == _T_LIST_QUICKLIST:
            out = deque()
            for _ in range(self.plain_length(what)):
                out.extend(_as_bytes(e) for e in _ziplist(self.rstring(what)))
        elif rdb_type == _T_LIST_QUICKLIST_2:
            out = deque()
            for _ in range(self.plain_length(what)):
                container_at = self.pos
                container = self.plain_length(what)
                node = self.rstring(what)
                if container == _QUICKLIST_PLAIN:
                    out.append(node)
                elif container == _QUICKLIST_PACKED:
                    out.extend(_as_bytes(e) for e in _listpack(node))
                else:
                    raise _Corrupt(container_at, f"unknown quicklist container {container}")
        else:
            raise _Undecodable(
                type_offset, f"{_type_name(rdb_type, valkey=self.valkey)} (RDB type {rdb_type})"
            )
        return out if out else None


def _load_rdb(data: bytes | bytearray, check: RdbCheckResult, keyspace: Keyspace) -> int:
    """Decode the keys of the RDB at the start of ``data`` (``check``: its verdict, valid) into
    ``keyspace``; the number of keys loaded. Raises LoadError for what cannot be loaded."""
    decoder = _RdbDecoder(data, 9, valkey=check.magic == "VALKEY")
    db = keyspace.dbs[0]
    expire_at_ms: int | None = None
    keys = 0
    try:
        while True:
            record_at = decoder.pos
            opcode = decoder.u8("the next record")
            if opcode == _OP_EOF:
                return keys
            if opcode == _OP_AUX:
                decoder.rstring("an AUX field")
                decoder.rstring("an AUX field")
            elif opcode == _OP_SELECTDB:
                db_id = decoder.plain_length("SELECTDB")
                if db_id >= DB_COUNT:
                    raise _Corrupt(record_at, f"SELECTDB {db_id}: the reference has "
                                   f"{DB_COUNT} databases")
                db = keyspace.dbs[db_id]
            elif opcode == _OP_RESIZEDB:
                decoder.plain_length("RESIZEDB")
                decoder.plain_length("RESIZEDB")
            elif opcode == _OP_EXPIRETIME_MS:
                decoder.skip(8, "EXPIRETIME_MS")
                expire_at_ms = int.from_bytes(data[decoder.pos - 8 : decoder.pos], "little",
                                              signed=True)
            elif opcode == _OP_EXPIRETIME:
                decoder.skip(4, "EXPIRETIME")
                expire_at_ms = 1000 * int.from_bytes(data[decoder.pos - 4 : decoder.pos],
                                                     "little", signed=True)
            elif opcode == _OP_IDLE:
                decoder.plain_length("IDLE")  # eviction metadata: not data
            elif opcode == _OP_FREQ:
                decoder.skip(1, "FREQ")
            elif opcode == _OP_SLOT_INFO:
                for _ in range(3):  # cluster bookkeeping: not data
                    decoder.plain_length("SLOT_INFO")
            elif opcode in (_OP_FUNCTION2, _OP_FUNCTION_PRE_GA):
                raise _Undecodable(record_at, "a function library")
            elif opcode == _OP_MODULE_AUX:
                raise _Undecodable(record_at, "module data (MODULE_AUX)")
            elif opcode < _OP_SLOT_INFO:
                key = decoder.rstring("a key")
                value = decoder.decode_value(opcode, record_at)
                when, expire_at_ms = expire_at_ms, None
                if value is None:
                    continue  # an empty collection: Redis skips the key
                if key in db.data:
                    raise _Corrupt(record_at, f"duplicate key {key!r} in db {db.id}")
                db.data[key] = value
                if when is not None:
                    db.set_expire(key, when)
                keys += 1
            else:
                raise _Corrupt(record_at, f"unknown RDB opcode 0x{opcode:02x}")
    except _Undecodable as exc:
        raise LoadError(
            0, f"{_BAD_PREAMBLE}: it holds {exc.what} at offset {exc.offset}, which the "
            "reference cannot load (loading the rest would drop it)"
        ) from None
    except (_Corrupt, _Truncated) as exc:  # only what check_rdb does not look at (blobs)
        reason = exc.reason if isinstance(exc, _Corrupt) else f"the data ends inside {exc.what}"
        raise LoadError(0, f"{_BAD_PREAMBLE}: {reason} at offset {exc.offset}") from None


# -- the rewrite's records ----------------------------------------------------------------------


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
