"""The reference's command surface table (reference._surface) against what it implements."""

from __future__ import annotations

import pytest

from reference._commands import COMMANDS
from reference._surface import WRITE_SURFACE, command_forms, surface_pairs


def test_every_write_command_of_the_reference_is_in_the_surface_table() -> None:
    writes = {name.decode().upper() for name, cmd in COMMANDS.items() if cmd.write}
    assert writes <= set(WRITE_SURFACE)
    assert set(WRITE_SURFACE) - writes == {"SELECT", "MULTI"}


@pytest.mark.parametrize(("argv", "pairs"), [
    ((b"SET", b"k", b"v"), {("SET", "plain")}),
    ((b"set", b"k", b"v", b"px", b"10", b"nx"), {("SET", "PX"), ("SET", "NX")}),
    ((b"DEL", b"a", b"b"), {("DEL", "several")}),
    ((b"LPOP", b"l", b"2"), {("LPOP", "count")}),
    ((b"ZADD", b"z", b"GT", b"CH", b"1", b"m"), {("ZADD", "GT"), ("ZADD", "CH"), ("ZADD", "one")}),
    ((b"ZADD", b"z", b"INCR", b"1", b"m"), {("ZADD", "INCR"), ("ZADD", "one")}),
    ((b"HSET", b"h", b"f", b"v", b"g", b"w"), {("HSET", "several")}),
    ((b"EXPIRE", b"k", b"-1"), {("EXPIRE", "past")}),
    ((b"PEXPIREAT", b"k", b"99999"), {("PEXPIREAT", "future")}),
    ((b"FLUSHALL", b"ASYNC"), {("FLUSHALL", "ASYNC|SYNC")}),
    ((b"EXEC",), {("MULTI", "EXEC")}),
    ((b"GET", b"k"), set()),
    ((b"NOSUCHCOMMAND", b"k"), set()),
])
def test_command_forms_names_the_pairs_a_command_line_exercises(
    argv: tuple[bytes, ...], pairs: set[tuple[str, str]],
) -> None:
    assert set(command_forms(argv)) == pairs
    assert set(command_forms(argv)) <= surface_pairs()
