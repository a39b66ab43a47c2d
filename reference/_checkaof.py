"""check_aof / fix_aof: what redis-check-aof does to a single-file AOF."""

from __future__ import annotations

from dataclasses import dataclass

from reference._resp import RespFormatError, parse_command

__all__ = ["CheckResult", "check_aof", "fix_aof"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on an AOF image.

    ``last_valid_offset_bytes``: the end of the longest clean prefix (a MULTI without its EXEC
    ends it before the MULTI); ``commands``: complete commands in that prefix; ``reason``: why
    the rest is invalid (None when valid); ``ok_up_to_line``: line number of that offset, as
    redis-check-aof prints it.
    """

    valid: bool
    last_valid_offset_bytes: int
    reason: str | None
    commands: int
    size_bytes: int
    ok_up_to_line: int

    @property
    def diff_bytes(self) -> int:
        """Bytes that ``--fix`` would remove."""
        return self.size_bytes - self.last_valid_offset_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "last_valid_offset_bytes": self.last_valid_offset_bytes,
            "reason": self.reason,
            "commands": self.commands,
            "size_bytes": self.size_bytes,
            "ok_up_to_line": self.ok_up_to_line,
            "diff_bytes": self.diff_bytes,
        }


def check_aof(data: bytes) -> CheckResult:
    """Check an AOF image like redis-check-aof (strict framing; MULTI/EXEC pairing)."""
    size = len(data)
    pos = 0
    valid_end = 0  # last offset outside a MULTI block
    valid_commands = 0
    commands = 0
    multi_start: int | None = None
    reason: str | None = None
    while pos < size:
        try:
            parsed = parse_command(data, pos, size, strict=True)
        except RespFormatError as exc:
            reason = f"{exc.reason} at offset {exc.offset_bytes}"
            break
        if parsed is None:
            reason = f"truncated command at offset {pos} (unexpected end of file)"
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
    if reason is None and multi_start is not None:
        reason = f"reached EOF before reading EXEC for MULTI at offset {multi_start}"
    return CheckResult(
        valid=reason is None,
        last_valid_offset_bytes=valid_end,
        reason=reason,
        commands=valid_commands,
        size_bytes=size,
        ok_up_to_line=data.count(b"\n", 0, valid_end) + 1,
    )


def fix_aof(data: bytes) -> bytes:
    """``redis-check-aof --fix``: the image truncated to its longest clean prefix."""
    return data[: check_aof(data).last_valid_offset_bytes]
