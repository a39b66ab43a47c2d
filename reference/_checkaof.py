"""check-aof: what redis-check-aof (7.0) does to an AOF, as pure verdicts.

Three inputs, as redis-check-aof 7.0 takes them:

- **one file** (``check_aof(data)``): a RESP AOF (Redis 2.8-6.2), or one that starts with an
  RDB (an RDB preamble, 4.0+; a 7.x ``.base.rdb``), whose commands start after the RDB.
  ``#...`` annotation lines (``#TS:<unix-time>\\r\\n`` with ``aof-timestamp-enabled``) are
  accepted and skipped wherever a command may start, as the 7.0 loader does. A ``*``/``$``
  line's number is read as redis-check-aof reads it (``strtol``: leading blanks and a sign are
  accepted, so ``*+3`` and ``* 3`` are valid) and must be followed at once by ``\\r\\n``
  (``*3\\n`` and ``*3x\\r\\n`` are not, although every loader takes them: see
  ``reference._aof``); each bulk must be followed by ``\\r\\n``.
- **a manifest** and **an appendonlydir** (``check_aof_path(path)``): Redis 7.x / 8.x
  multi-part AOF. The manifest (``appendonly.aof.manifest``) lists ``file <name> seq <n> type
  <b|h|i>`` lines, to which Redis 8 adds the replication offsets of incr files (``startoffset
  <n>``, and ``endoffset <n>`` after a clean shutdown or ``appendonly no``); the base file is
  checked first, then the incr files in manifest order (which must be increasing seq); history
  files (``h``) are ignored, as Redis ignores them. A listed file that is missing is an error.
  Every file gets its own verdict and offset. A field no Redis writes is ignored, as Redis
  ignores it, and named in a note (``Manifest.notes``), never a refusal.

What ``--fix`` may do (``plan_fix``), as redis-check-aof 7.0: truncate the *last* listed file
to its last valid offset, and nothing else. Damage in any earlier file, or inside an RDB (bad
magic, version, body or checksum), is not fixable by truncation. The plan says what the
truncation drops (bytes, complete commands, and those after the damage): a torn tail loses
nothing that was valid; damage in the middle of a file (valid commands after it) or garbage
from offset 0 does, and ``FixPlan.confirm_first`` says a CLI should ask first. Differences from
redis-check-aof 7.0, each deliberate:

- an annotation line cut off by the end of the file is a torn tail (redis-check-aof calls it
  valid, but the next command appended to that file would be glued onto the annotation);
- ``*0``, ``*-1`` and ``*`` without digits are invalid, like negative and digit-less ``$``
  lengths (redis-check-aof reads the first three as a command of no arguments and goes on;
  every loader refuses them);
- a directory is accepted (its one ``*.manifest``; redis-check-aof cannot read a directory);
- ``ok_up_to_line`` counts lines of the file being checked (redis-check-aof's counter runs on
  across the files of a manifest).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from dataclasses import dataclass
from typing import Final, Literal

from reference._aof import HEADER_LINE_MAX_BYTES
from reference._rdb import RdbCheckResult, check_rdb, is_rdb_image
from reference._resp import RespFormatError

__all__ = [
    "AofCheck",
    "AofInputError",
    "AofNotFixableError",
    "CheckResult",
    "FileCheck",
    "FixPlan",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "check_aof",
    "check_aof_path",
    "check_manifest",
    "fix_aof",
    "parse_manifest",
    "plan_fix",
]

# Redis reads an annotation with fgets into a 1024-byte buffer: 1023 bytes with the newline.
_ANNOTATION_MAX_BYTES: Final = 1023
_HASH: Final = 0x23  # '#'
# redis-check-aof's readLong: strtol (blanks, a sign, digits), then "\r\n" at once.
_CHECKED_NUMBER: Final = re.compile(rb"[ \t\v\f\r]*([+-]?[0-9]+)\r\n")


class AofNotFixableError(ValueError):
    """The damage cannot be repaired by truncating the last file's tail (``reason`` says
    why: an RDB is damaged, or the damage is in a file that is not the last)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- one file ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on one AOF image.

    ``last_valid_offset_bytes``: the end of the longest clean prefix (a MULTI without its EXEC
    ends it before the MULTI; a damaged RDB ends it at 0); ``commands``: complete commands in
    that prefix; ``reason``: why the rest is invalid (None when valid); ``ok_up_to_line``: line
    number of that offset, as redis-check-aof prints it; ``rdb``: the verdict on the RDB the
    image starts with (a preamble or a ``.base.rdb``), None for a pure RESP image;
    ``annotations``: ``#`` lines skipped in the valid prefix.

    What ``--fix`` would drop (all 0/None when valid): ``damage_offset_bytes``, where the
    checker stopped (the first byte it could not accept; the size for a file ending inside a
    MULTI); ``torn_tail``, the file ends inside a command, an annotation or a transaction,
    with no command after the damage (a crash during an append, the case truncation is made
    for); ``dropped_commands``, complete commands in the bytes after the valid prefix;
    ``commands_after_damage``, those after the damage, i.e. valid commands a truncation
    throws away (found by trying to parse a command at every ``*`` past the damage, so an
    estimate: a value holding RESP text counts too).
    """

    valid: bool
    last_valid_offset_bytes: int
    reason: str | None
    commands: int
    size_bytes: int
    ok_up_to_line: int
    rdb: RdbCheckResult | None = None
    annotations: int = 0
    damage_offset_bytes: int | None = None
    torn_tail: bool = False
    dropped_commands: int = 0
    commands_after_damage: int = 0

    @property
    def diff_bytes(self) -> int:
        """Bytes that ``--fix`` would remove."""
        return self.size_bytes - self.last_valid_offset_bytes

    @property
    def fixable(self) -> bool:
        """Invalid, and truncating to ``last_valid_offset_bytes`` repairs it (the damage is
        in the RESP part; a damaged RDB cannot be repaired by truncation)."""
        return not self.valid and (self.rdb is None or self.rdb.valid)

    @property
    def format(self) -> str:
        """``resp``, ``rdb`` (an RDB, possibly followed by commands) or ``empty``."""
        if self.rdb is not None:
            return "rdb"
        return "empty" if self.size_bytes == 0 else "resp"

    def to_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "format": self.format,
            "last_valid_offset_bytes": self.last_valid_offset_bytes,
            "reason": self.reason,
            "commands": self.commands,
            "size_bytes": self.size_bytes,
            "ok_up_to_line": self.ok_up_to_line,
            "diff_bytes": self.diff_bytes,
            "fixable": self.fixable,
            "annotations": self.annotations,
            "damage_offset_bytes": self.damage_offset_bytes,
            "torn_tail": self.torn_tail,
            "dropped_commands": self.dropped_commands,
            "commands_after_damage": self.commands_after_damage,
            "rdb": None if self.rdb is None else self.rdb.to_dict(),
        }


def check_aof(data: bytes) -> CheckResult:
    """Check an AOF image like redis-check-aof (an RDB first if it starts with one; strict
    RESP framing; MULTI/EXEC pairing; ``#`` annotation lines skipped). Never raises."""
    size = len(data)
    rdb: RdbCheckResult | None = None
    start = 0
    if is_rdb_image(data):
        rdb = check_rdb(data)
        if not rdb.valid or rdb.end_offset_bytes is None:
            return CheckResult(
                valid=False, last_valid_offset_bytes=0, reason=rdb.reason, commands=0,
                size_bytes=size, ok_up_to_line=1, rdb=rdb, damage_offset_bytes=0,
                dropped_commands=_complete_commands(data, 0, size),
                commands_after_damage=_complete_commands(data, 0, size),
            )
        start = rdb.end_offset_bytes
    pos = start
    valid_end = start  # last offset outside a MULTI block
    valid_commands = commands = 0
    valid_annotations = annotations = 0
    multi_start: int | None = None
    reason: str | None = None
    torn = False
    while pos < size:
        if data[pos] == _HASH:
            newline = data.find(b"\n", pos, pos + _ANNOTATION_MAX_BYTES)
            if newline < 0:
                if size - pos >= _ANNOTATION_MAX_BYTES:
                    reason = (f"annotation line longer than {_ANNOTATION_MAX_BYTES} bytes at "
                              f"offset {pos}")
                else:
                    reason = f"truncated annotation at offset {pos} (unexpected end of file)"
                    torn = True
                break
            pos = newline + 1
            annotations += 1
        else:
            try:
                parsed = _parse_checked(data, pos, size)
            except RespFormatError as exc:
                reason = f"{exc.reason} at offset {exc.offset_bytes}"
                break
            if parsed is None:
                reason = f"truncated command at offset {pos} (unexpected end of file)"
                torn = True
                break
            argv, nxt = parsed
            name = argv[0].lower()
            if name == b"multi":
                if multi_start is not None:
                    reason = f"unexpected MULTI at offset {pos}"
                    break
                multi_start = pos
            elif name == b"exec":
                if multi_start is None:
                    reason = f"unexpected EXEC at offset {pos}"
                    break
                multi_start = None
            pos = nxt
            commands += 1
        if multi_start is None:
            valid_end = pos
            valid_commands = commands
            valid_annotations = annotations
    if reason is None and multi_start is not None:
        reason = f"reached EOF before reading EXEC for MULTI at offset {multi_start}"
        torn = True
    # Where the checker stopped; past it, the commands a truncation would throw away.
    damage = None if reason is None else pos
    # A command cut by the end of the file has nothing after it; a bulk length damaged into a
    # bigger one looks the same, but the commands inside the "value" give it away.
    after = 0 if damage is None else _complete_commands(data, damage + 1, size)
    return CheckResult(
        valid=reason is None,
        last_valid_offset_bytes=valid_end,
        reason=reason,
        commands=valid_commands,
        size_bytes=size,
        ok_up_to_line=data.count(b"\n", start, valid_end) + 1,
        rdb=rdb,
        annotations=valid_annotations,
        damage_offset_bytes=damage,
        torn_tail=torn and after == 0,
        dropped_commands=0 if damage is None else _complete_commands(data, valid_end, size),
        commands_after_damage=after,
    )


def _complete_commands(data: bytes, start: int, end: int) -> int:
    """Complete commands in ``data[start:end]``, resynchronising past damage: a command is
    tried at every ``*``, and after one is found the search goes on from its end."""
    count = 0
    pos = start
    while pos < end:
        star = data.find(b"*", pos, end)
        if star < 0:
            break
        try:
            parsed = _parse_checked(data, star, end)
        except RespFormatError:
            parsed = None
        if parsed is None:
            pos = star + 1
        else:
            count += 1
            pos = parsed[1]
    return count


def _checked_number(data: bytes, pos: int, end: int, prefix: int) -> tuple[int, int] | None:
    """A ``<prefix><number>\\r\\n`` line as redis-check-aof reads it; (number, offset after
    the line), or None if the data ends inside the line."""
    if pos >= end:
        return None
    if data[pos] != prefix:
        raise RespFormatError(pos, f"expected '{chr(prefix)}', got {data[pos:pos + 1]!r}")
    nl = data.find(b"\n", pos, min(end, pos + HEADER_LINE_MAX_BYTES))
    if nl < 0:
        if end - pos >= HEADER_LINE_MAX_BYTES:
            raise RespFormatError(pos, f"invalid '{chr(prefix)}' line (no line end in "
                                  f"{HEADER_LINE_MAX_BYTES} bytes)")
        return None
    match = _CHECKED_NUMBER.fullmatch(data, pos + 1, nl + 1)
    if match is None:
        raise RespFormatError(pos, f"invalid '{chr(prefix)}' line {data[pos + 1 : nl + 1]!r} "
                              "(a number and \\r\\n expected)")
    return int(match.group(1)), nl + 1


def _parse_checked(data: bytes, pos: int, end: int) -> tuple[list[bytes], int] | None:
    """One command at ``pos`` as redis-check-aof reads it: (argv, next offset), or None if the
    data ends inside it; RespFormatError where it is not valid."""
    head = _checked_number(data, pos, end, 0x2A)  # '*'
    if head is None:
        return None
    argc, p = head
    if argc < 1:
        raise RespFormatError(pos, f"invalid array length {argc}")
    argv: list[bytes] = []
    for _ in range(argc):
        bulk = _checked_number(data, p, end, 0x24)  # '$'
        if bulk is None:
            return None
        length, p = bulk
        if length < 0:
            raise RespFormatError(p, f"invalid bulk length {length}")
        stop = p + length
        if stop + 2 > end:
            return None
        if data[stop : stop + 2] != b"\r\n":
            raise RespFormatError(stop, f"expected \\r\\n, got {data[stop:stop + 2]!r}")
        argv.append(data[p:stop])
        p = stop + 2
    return argv, p


def fix_aof(data: bytes) -> bytes:
    """``redis-check-aof --fix``: the image truncated to its longest clean prefix.

    Raises AofNotFixableError when truncation cannot repair it (a damaged RDB preamble):
    cutting the RDB would throw the whole dataset away.
    """
    result = check_aof(data)
    if not result.valid and not result.fixable:
        raise AofNotFixableError(result.reason or "not fixable")
    return data[: result.last_valid_offset_bytes]


# -- the manifest --------------------------------------------------------------------------

ManifestType = Literal["b", "h", "i"]


class ManifestError(ValueError):
    """A manifest Redis would refuse to load; ``line`` is 1-based (None: the whole file)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"{reason} (manifest line {line})")
        self.reason = reason
        self.line = line


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One ``file <name> seq <n> type <b|h|i>`` line (``line`` is 1-based), with the
    replication offsets Redis 8 writes on incr files (``startoffset <n>``, and ``endoffset
    <n>`` once the file is closed by a shutdown or ``appendonly no``; None when absent)."""

    name: str
    seq: int
    type: ManifestType
    line: int
    start_offset: int | None = None
    end_offset: int | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest: the base (if any), incr files in order, history files, and
    ``notes``: what Redis loads without complaint but a reader should know (an unknown field,
    an offset that is not a number), one line each, naming the manifest line."""

    base: ManifestEntry | None
    incrs: tuple[ManifestEntry, ...]
    history: tuple[ManifestEntry, ...]
    notes: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[ManifestEntry, ...]:
        """What Redis loads, in order: the base, then the incr files."""
        return ((self.base,) if self.base is not None else ()) + self.incrs


def _split_args(line: str, lineno: int) -> list[str]:
    """Split a manifest line into words as Redis's sdssplitargs does: blanks separate
    words; "double quotes" take \\n \\r \\t \\b \\a \\xHH and \\<any> escapes; 'single
    quotes' take \\' only; a closing quote must be followed by a blank or the end."""
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        in_double = in_single = False
        while True:
            c = line[i] if i < n else ""
            if in_double:
                if c == "\\" and line[i + 1 : i + 2] == "x" and _is_hex(line[i + 2 : i + 4]):
                    byte = int(line[i + 2 : i + 4], 16)
                    # Bytes >= 0x80 as surrogate escapes, so os.fsencode gives them back.
                    word.append(chr(byte if byte < 0x80 else 0xDC00 + byte))
                    i += 3
                elif c == "\\" and i + 1 < n:
                    i += 1
                    word.append({"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}.get(
                        line[i], line[i]))
                elif c == '"':
                    if i + 1 < n and not line[i + 1].isspace():
                        raise ManifestError("closing quote not followed by a space", lineno)
                    i += 1
                    break
                elif c == "":
                    raise ManifestError("unterminated quotes", lineno)
                else:
                    word.append(c)
            elif in_single:
                if c == "\\" and line[i + 1 : i + 2] == "'":
                    i += 1
                    word.append("'")
                elif c == "'":
                    if i + 1 < n and not line[i + 1].isspace():
                        raise ManifestError("closing quote not followed by a space", lineno)
                    i += 1
                    break
                elif c == "":
                    raise ManifestError("unterminated quotes", lineno)
                else:
                    word.append(c)
            elif c in ("", " ", "\n", "\r", "\t"):
                break
            elif c == '"':
                in_double = True
            elif c == "'":
                in_single = True
            else:
                word.append(c)
            i += 1
        words.append("".join(word))


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def _leading_int(text: str) -> int:
    """C atoll: optional blanks and sign, then digits; anything else ends it (0 if none)."""
    text = text.lstrip()
    sign = -1 if text[:1] == "-" else 1
    text = text[1:] if text[:1] in "+-" else text
    digits = ""
    for c in text:
        if not c.isdigit() or not c.isascii():
            break
        digits += c
    return sign * int(digits) if digits else 0


_MANIFEST_MAX_LINE_BYTES: Final = 1024
# The fields a manifest line has: 7.0 writes the first three, 8.x adds the replication offsets
# of incr files (seen on 8.2.3: "... type i startoffset 0", "... startoffset 2 endoffset 6").
_MANIFEST_KEYS: Final = ("file", "seq", "type", "startoffset", "endoffset")
_OFFSET_RE: Final = re.compile(r"[+-]?[0-9]+")


def _offset(key: str, value: str, index: int, notes: list[str]) -> int | None:
    """A replication offset's value; a value that is not a decimal integer is noted (Redis
    8.2.3 loads such a manifest: the offsets do not decide what is loaded)."""
    if _OFFSET_RE.fullmatch(value):
        return int(value)
    notes.append(f"manifest line {index}: {key} {value!r} is not an integer (Redis 8 loads "
                 "the files anyway)")
    return None


def parse_manifest(data: bytes) -> Manifest:
    """Parse a 7.x / 8.x manifest as Redis's ``aofLoadManifestFromFile`` does (keys in any
    order and any case, quoted names, ``#`` comment lines, 8.x's ``startoffset``/``endoffset``
    read into the entry); raise ManifestError for anything Redis would refuse to start with.
    A field Redis does not know is ignored, as Redis ignores it, and named in ``notes``."""
    if not data:
        raise ManifestError("empty AOF manifest")
    base: ManifestEntry | None = None
    incrs: list[ManifestEntry] = []
    history: list[ManifestEntry] = []
    notes: list[str] = []
    max_seq = 0
    lines = data.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines.pop()
    for index, raw in enumerate(lines, start=1):
        if raw[:1] == b"#":
            continue
        if len(raw) + 1 > _MANIFEST_MAX_LINE_BYTES or (
            index == len(lines) and not ends_with_newline
        ):
            # Redis reads 1024 bytes per line; a line without its newline is refused too.
            raise ManifestError("line too long or without a line end", index)
        text = raw.decode("utf-8", errors="surrogateescape").strip(" \t\r\n")
        if not text:
            raise ManifestError("empty line", index)
        words = _split_args(text, index)
        if len(words) < 6 or len(words) % 2:
            raise ManifestError("expected 'file <name> seq <n> type <b|h|i>'", index)
        name: str | None = None
        seq = 0
        kind = ""
        start: int | None = None
        end: int | None = None
        for key, value in zip(words[::2], words[1::2], strict=True):
            key = key.lower()
            if key == "file":
                if "/" in value or "\\" in value:
                    raise ManifestError(f"file name {value!r} is a path, not a name", index)
                name = value
            elif key == "seq":
                seq = _leading_int(value)
            elif key == "type":
                kind = value[:1]
            elif key == "startoffset":
                start = _offset(key, value, index, notes)
            elif key == "endoffset":
                end = _offset(key, value, index, notes)
            else:
                notes.append(
                    f"manifest line {index}: unknown field {_shown(key)!r} (value "
                    f"{_shown(value)!r}) ignored, as Redis ignores it; known fields: "
                    f"{', '.join(_MANIFEST_KEYS)}"
                )
        if not name or not seq or not kind:
            raise ManifestError("a file, a non-zero seq and a type are all required", index)
        if start is not None and end is not None and end < start:
            notes.append(f"manifest line {index}: endoffset {end} is before startoffset {start}")
        if kind == "b":
            if base is not None:
                raise ManifestError("a second base file", index)
            base = ManifestEntry(name, seq, "b", index, start, end)
        elif kind == "h":
            history.append(ManifestEntry(name, seq, "h", index, start, end))
        elif kind == "i":
            if seq <= max_seq:
                raise ManifestError(f"incr seq {seq} does not increase (after {max_seq})",
                                    index)
            max_seq = seq
            incrs.append(ManifestEntry(name, seq, "i", index, start, end))
        else:
            raise ManifestError(f"unknown file type {kind!r}", index)
    return Manifest(base=base, incrs=tuple(incrs), history=tuple(history), notes=tuple(notes))


# -- a manifest or a directory -------------------------------------------------------------

FileRole = Literal["aof", "base", "incr"]


class AofInputError(ValueError):
    """The path is not something check-aof can check (e.g. a directory without a manifest);
    the message names the path. Unreadable paths raise OSError instead."""


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's verdict. ``result`` is None when the file could not be read (``error``
    says why: missing, a directory, permission); ``last``: the last file of the set, the
    only one whose tail ``--fix`` may cut."""

    name: str
    path: str
    role: FileRole
    last: bool
    result: CheckResult | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.result is not None and self.result.valid

    @property
    def reason(self) -> str | None:
        return self.error if self.result is None else self.result.reason

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "role": self.role,
            "last": self.last,
            "valid": self.valid,
            "error": self.error,
            "result": None if self.result is None else self.result.to_dict(),
        }

    def describe(self) -> str:
        """One line: ``base appendonly.aof.1.base.rdb: valid (...)``."""
        label = _shown(self.name) if self.role == "aof" else f"{self.role} {_shown(self.name)}"
        result = self.result
        if result is None:
            return f"{label}: not valid: {self.error}"
        rdb = ""
        if result.rdb is not None and result.rdb.valid:
            rdb = (f"RDB {result.rdb.header}, {result.rdb.keys} keys, checksum "
                   f"{result.rdb.checksum}; ")
        if result.valid:
            if result.size_bytes == 0:
                return f"{label}: valid (empty)"
            if result.rdb is not None and result.commands == result.annotations == 0:
                return f"{label}: valid ({rdb.removesuffix('; ')}, {result.size_bytes} bytes)"
            return (f"{label}: valid ({rdb}{result.commands} commands, last valid offset "
                    f"{result.last_valid_offset_bytes} bytes of {result.size_bytes})")
        return (f"{label}: not valid: {result.reason}; {rdb}last valid offset "
                f"{result.last_valid_offset_bytes} bytes of {result.size_bytes} "
                f"({result.commands} complete commands before it)")


@dataclass(frozen=True, slots=True)
class FixPlan:
    """What ``--fix`` would do: cut ``path`` from ``size_bytes`` to ``truncate_to_bytes``.
    The CLI should confirm, re-read the file, refuse if its size is no longer
    ``size_bytes``, keep ``<path>.bak``, then write the prefix atomically."""

    path: str
    size_bytes: int
    truncate_to_bytes: int
    damage_offset_bytes: int | None = None
    torn_tail: bool = False
    dropped_commands: int = 0
    commands_after_damage: int = 0

    @property
    def removed_bytes(self) -> int:
        return self.size_bytes - self.truncate_to_bytes

    @property
    def confirm_first(self) -> bool:
        """The fix throws away more than damage at the end: valid commands after the damage
        (damage in the middle of the file), or a whole file that starts with garbage. A CLI
        asks before doing it; a torn tail (nothing valid lost) needs no question."""
        return self.commands_after_damage > 0 or (
            self.truncate_to_bytes == 0 and self.size_bytes > 0 and not self.torn_tail)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "size_bytes": self.size_bytes,
                "truncate_to_bytes": self.truncate_to_bytes,
                "removed_bytes": self.removed_bytes,
                "damage_offset_bytes": self.damage_offset_bytes,
                "torn_tail": self.torn_tail,
                "dropped_commands": self.dropped_commands,
                "commands_after_damage": self.commands_after_damage,
                "confirm_first": self.confirm_first}


@dataclass(frozen=True, slots=True)
class AofCheck:
    """The verdict on ``path`` (as given): ``layout`` ``single`` (one AOF file) or ``multi-part`` (a
    manifest and the files it lists, checked base first then incr files in order).

    ``manifest``/``manifest_error``: the parsed manifest, or why it is refused (then no file
    is checked). ``valid``: the manifest and every listed file are valid.
    """

    path: str
    layout: Literal["single", "multi-part"]
    files: tuple[FileCheck, ...]
    manifest_path: str | None = None
    manifest: Manifest | None = None
    manifest_error: str | None = None

    @property
    def valid(self) -> bool:
        return self.manifest_error is None and all(f.valid for f in self.files)

    @property
    def reason(self) -> str | None:
        """The first problem, naming its file; None when valid."""
        if self.manifest_error is not None:
            return f"manifest {self.manifest_path}: {self.manifest_error}"
        for f in self.files:
            if not f.valid:
                return f"{_shown(f.name)}: {f.reason}"
        return None

    @property
    def verdict_result(self) -> CheckResult | None:
        """The file verdict that stands for the set: the first invalid file's, else the last
        file's (None when that file could not be read, or there is none)."""
        last = self.files[-1].result if self.files else None
        return next((f.result for f in self.files if not f.valid and f.result is not None),
                    last)

    def to_dict(self) -> dict[str, object]:
        try:
            plan = plan_fix(self)
            unfixable = None
        except AofNotFixableError as exc:
            plan, unfixable = None, exc.reason
        return {
            "path": self.path,
            "layout": self.layout,
            "valid": self.valid,
            "reason": self.reason,
            "manifest_path": self.manifest_path,
            "manifest_error": self.manifest_error,
            "history_files": [] if self.manifest is None
            else [e.name for e in self.manifest.history],
            "manifest_notes": [] if self.manifest is None else list(self.manifest.notes),
            "offsets": {} if self.manifest is None else {
                e.name: {"start": e.start_offset, "end": e.end_offset}
                for e in self.manifest.files
                if e.start_offset is not None or e.end_offset is not None},
            "files": [f.to_dict() for f in self.files],
            "fix": None if plan is None else plan.to_dict(),
            "not_fixable_reason": unfixable,
        }

    def describe(self) -> list[str]:
        """Human-readable lines: the manifest, one line per file, then the verdict."""
        lines: list[str] = []
        if self.layout == "multi-part":
            if self.manifest_error is not None:
                return [f"manifest {self.manifest_path}: not valid: {self.manifest_error}"]
            assert self.manifest is not None
            history = len(self.manifest.history)
            lines.append(
                f"manifest {self.manifest_path}: {len(self.files)} files"
                + (f" ({history} history files ignored)" if history else "")
            )
            lines.extend(f"  note: {note}" for note in self.manifest.notes)
            lines.extend("  " + f.describe() for f in self.files)
            lines.append("all AOF files and the manifest are valid" if self.valid
                         else f"AOF is not valid: {self.reason}")
        else:
            lines.extend(f.describe() for f in self.files)
        return lines


def _shown(name: str) -> str:
    """A file name safe to print: undecodable bytes as backslash escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def plan_fix(check: AofCheck) -> FixPlan | None:
    """What ``--fix`` would truncate: None when there is nothing to fix (valid); raises
    AofNotFixableError when truncating the last file's tail cannot repair the set (a bad
    manifest, a missing file, damage in a file that is not the last, a damaged RDB)."""
    if check.valid:
        return None
    if check.manifest_error is not None:
        raise AofNotFixableError(f"the manifest is not valid: {check.manifest_error}")
    bad = [f for f in check.files if not f.valid]
    first = bad[0]
    if first.result is None:
        raise AofNotFixableError(f"{_shown(first.name)}: {first.error}")
    name = _shown(first.name)
    if not first.last:
        raise AofNotFixableError(
            f"{name} is not the last file: only the last file's tail can be truncated "
            f"({first.reason})"
        )
    if not first.result.fixable:
        raise AofNotFixableError(
            f"{name}: the RDB is damaged, truncation cannot repair it ({first.reason})"
        )
    result = first.result
    return FixPlan(path=first.path, size_bytes=result.size_bytes,
                   truncate_to_bytes=result.last_valid_offset_bytes,
                   damage_offset_bytes=result.damage_offset_bytes, torn_tail=result.torn_tail,
                   dropped_commands=result.dropped_commands,
                   commands_after_damage=result.commands_after_damage)


def _read(path: str) -> tuple[bytes | None, str | None]:
    """The file's bytes, or None and why not (a missing listed file is a verdict)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), None
    except FileNotFoundError:
        return None, "missing (listed in the manifest, not on disk)"
    except IsADirectoryError:
        return None, "is a directory, not a file"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"


def check_manifest(manifest_path: str | os.PathLike[str]) -> AofCheck:
    """Check a multi-part AOF from its manifest; the listed files are looked up next to it.
    Raises OSError only when the manifest itself cannot be read."""
    manifest_path = os.fspath(manifest_path)
    with open(manifest_path, "rb") as handle:
        data = handle.read()
    directory = os.path.dirname(manifest_path) or "."
    try:
        manifest = parse_manifest(data)
    except ManifestError as exc:
        return AofCheck(path=manifest_path, layout="multi-part", files=(),
                        manifest_path=manifest_path, manifest_error=str(exc))
    entries = manifest.files
    checks = []
    for i, entry in enumerate(entries):
        path = os.path.join(directory, entry.name)
        content, error = _read(path)
        role: FileRole = "base" if entry.type == "b" else "incr"
        checks.append(FileCheck(
            name=entry.name, path=path, role=role, last=i == len(entries) - 1,
            result=None if content is None else check_aof(content), error=error,
        ))
    return AofCheck(path=manifest_path, layout="multi-part", files=tuple(checks),
                    manifest_path=manifest_path, manifest=manifest)


def _looks_like_manifest(path: str, data: bytes) -> bool:
    """A ``*.manifest`` file, or one whose first non-comment line is a ``file`` line (what
    redis-check-aof looks for; a RESP or RDB file never starts that way)."""
    if path.endswith(".manifest"):
        return True
    for line in data.split(b"\n"):
        if line[:1] != b"#":
            return line[:5].lower() == b"file " and not is_rdb_image(data)
    return False


def _find_manifest(directory: str) -> str:
    """The one ``*.manifest`` of a directory (temp-* manifests of an unfinished rewrite are
    not it); an ``appendonlydir`` inside is looked into when the directory has none."""
    def manifests(d: str) -> list[str]:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return []
        return [n for n in names if n.endswith(".manifest") and not n.startswith("temp-")
                and os.path.isfile(os.path.join(d, n))]

    found = manifests(directory)
    if not found:
        inner = os.path.join(directory, "appendonlydir")
        if os.path.isdir(inner) and manifests(inner):
            return _find_manifest(inner)
        raise AofInputError(
            f"{directory} has no AOF manifest (*.manifest): give a Redis 7 appendonlydir, "
            "its manifest, or a single AOF file"
        )
    if len(found) > 1:
        raise AofInputError(
            f"{directory} has {len(found)} manifests ({', '.join(found)}): give the one to "
            "check"
        )
    return os.path.join(directory, found[0])


def check_aof_path(path: str | os.PathLike[str]) -> AofCheck:
    """Check what ``path`` names: an appendonlydir (its manifest), a manifest, or one AOF
    file (RESP or RDB-preamble). Raises OSError when the path cannot be read and
    AofInputError when it is a directory without a manifest."""
    path = os.fspath(path)
    mode = os.stat(path).st_mode  # OSError (ENOENT, EACCES) for the CLI's exit 2
    if stat.S_ISDIR(mode):
        return dataclasses.replace(check_manifest(_find_manifest(path)), path=path)
    with open(path, "rb") as handle:
        data = handle.read()
    if _looks_like_manifest(path, data):
        return check_manifest(path)
    result = check_aof(data)
    name = os.path.basename(path) or path
    return AofCheck(path=path, layout="single",
                    files=(FileCheck(name=name, path=path, role="aof", last=True,
                                     result=result),))
